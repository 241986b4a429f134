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
        let lib = "\(workDir)/libref.so"
        let sources = ["create_fork.c", "enter.c"].map { "\(sourceDir)/\($0)" }
        let cc = Command("cc", ["/usr/bin/cc", "-O2", "-Wall", "-shared", "-fPIC", "-o", lib] + sources, log: "\(workDir)/cc.log")
        try cc.check()
        guard let h = dlopen(lib, RTLD_NOW | RTLD_LOCAL) else {
            throw BenchError("dlopen \(lib): \(String(cString: dlerror()))")
        }
        handle = h
        func sym<T>(_ name: String, _: T.Type) throws -> T {
            guard let p = dlsym(h, name) else { throw BenchError("dlsym \(name)") }
            return unsafeBitCast(p, to: T.self)
        }
        setupFn = try sym("ref_setup", Setup.self)
        teardownFn = try sym("ref_teardown", Void0.self)
        createForkFn = try sym("ref_create_fork", CreateFork.self)
        enterStartFn = try sym("ref_enter_start", EnterStart.self)
        enterOnceFn = try sym("ref_enter_once", EnterOnce.self)
        enterPidFn = try sym("ref_enter_init_pid", Int0.self)
        enterStopFn = try sym("ref_enter_stop", Void0.self)
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
