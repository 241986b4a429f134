import ContainerSystem
#if canImport(Glibc)
import Glibc
#endif

/// The raw C reference (Benchmarks/reference/*.c), compiled with cc into the
/// work directory and loaded with dlopen, so it runs in this process and
/// forks from the same address space as the library.
final class Reference {
    typealias Setup = @convention(c) (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, CInt, UnsafePointer<CChar>?) -> CInt
    typealias Void0 = @convention(c) () -> Void
    typealias CreateFork = @convention(c) (UInt64, UnsafePointer<CChar>?, Int) -> CInt
    typealias EnterStart = @convention(c) (UInt64) -> CInt
    typealias EnterOnce = @convention(c) (UnsafePointer<CChar>?) -> CInt
    typealias Int0 = @convention(c) () -> CInt

    let handle: UnsafeMutableRawPointer
    let setupFn: Setup
    let teardownFn: Void0
    let createForkFn: CreateFork
    let enterStartFn: EnterStart
    let enterOnceFn: EnterOnce
    let enterPidFn: Int0
    let enterStopFn: Void0

    init(sourceDir: String, workDir: String) throws {
        let lib = try LoadedCLibrary(name: "ref", sources: ["create_fork.c", "enter.c"].map { "\(sourceDir)/\($0)" },
                                     workDir: workDir)
        handle = lib.handle
        setupFn = try lib.sym("ref_setup", Setup.self)
        teardownFn = try lib.sym("ref_teardown", Void0.self)
        createForkFn = try lib.sym("ref_create_fork", CreateFork.self)
        enterStartFn = try lib.sym("ref_enter_start", EnterStart.self)
        enterOnceFn = try lib.sym("ref_enter_once", EnterOnce.self)
        enterPidFn = try lib.sym("ref_enter_init_pid", Int0.self)
        enterStopFn = try lib.sym("ref_enter_stop", Void0.self)
    }

    func setup(hierarchies: [String], parent: String) throws {
        let a = CStringArray(hierarchies)
        let r = setupFn(a.pointers, CInt(hierarchies.count), parent)
        if r < 0 { throw BenchError("ref_setup: \(errnoText(-r))") }
    }

    func teardown() { teardownFn() }

    func createFork(flags: UInt64, path: String, seq: Int) throws {
        let r = createForkFn(flags, path, seq)
        if r < 0 { throw BenchError("ref_create_fork: \(errnoText(-r))") }
    }

    func enterStart(flags: UInt64) throws -> pid_t {
        let r = enterStartFn(flags)
        if r < 0 { throw BenchError("ref_enter_start: \(errnoText(-r))") }
        return enterPidFn()
    }

    func enterOnce(path: String) throws {
        let r = enterOnceFn(path)
        if r < 0 { throw BenchError("ref_enter_once: \(r <= -1000 ? "child status \(-r - 1000)" : errnoText(-r))") }
    }

    func enterStop() { enterStopFn() }
}

func errnoText(_ e: CInt) -> String { "\(String(cString: strerror(e))) (errno \(e))" }
