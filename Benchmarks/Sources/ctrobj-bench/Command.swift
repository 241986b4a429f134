import ContainerSystem
#if canImport(Glibc)
import Glibc
#endif

/// An external program run with posix_spawn and waited for; argv and envp
/// are built once, so a timed run is spawn + the program + wait.
final class Command {
    let label: String
    let argv: [String]
    let cArgv: CStringArray
    let cEnv: CStringArray
    let log: String

    init(_ label: String, _ argv: [String], log: String,
         env: [String] = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]) {
        self.label = label
        self.argv = argv
        cArgv = CStringArray(argv)
        cEnv = CStringArray(env)
        self.log = log
    }

    /// Run to completion; returns the wait status. stdout+stderr go to `log`
    /// (truncated each run) so that a failure can be shown.
    @discardableResult
    func run() -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, cArgv.pointers, cEnv.pointers)
        if rc != 0 { return -1 }
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        lastCPUNanos = (UInt64(usage.ru_utime.tv_sec) + UInt64(usage.ru_stime.tv_sec)) * 1_000_000_000
            + (UInt64(usage.ru_utime.tv_usec) + UInt64(usage.ru_stime.tv_usec)) * 1000
        return status
    }

    /// CPU time (user + system) of the last run.
    var lastCPUNanos: UInt64 = 0

    /// Run and throw with the program's output when it fails.
    func check() throws {
        let s = run()
        if s != 0 {
            let out = (try? Sys.readFile(log)) ?? ""
            throw BenchError("\(label): `\(argv.joined(separator: " "))` failed (wait status \(s)): \(out)")
        }
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ s: String) { description = s }
}

/// Run a shell command line to completion (setup and teardown only).
@discardableResult
func shell(_ line: String, log: String) -> Int32 {
    Command("sh", ["/bin/sh", "-c", line], log: log).run()
}

/// A C shared library built by the harness from `sources` into the work
/// directory (`lib<name>.so`, cc's output in `cc-<name>.log`) and loaded with
/// dlopen, so its code runs in this process.
struct LoadedCLibrary {
    let handle: UnsafeMutableRawPointer

    init(name: String, sources: [String], workDir: String) throws {
        let lib = "\(workDir)/lib\(name).so"
        try Command("cc \(name)", ["/usr/bin/cc", "-O2", "-Wall", "-shared", "-fPIC", "-o", lib] + sources,
                    log: "\(workDir)/cc-\(name).log").check()
        guard let h = dlopen(lib, RTLD_NOW | RTLD_LOCAL) else { throw BenchError("dlopen \(lib): \(String(cString: dlerror()))") }
        handle = h
    }

    /// A function of the library, as the C type it has.
    func sym<T>(_ name: String, _: T.Type) throws -> T {
        guard let p = dlsym(handle, name) else { throw BenchError("dlsym \(name)") }
        return unsafeBitCast(p, to: T.self)
    }
}
