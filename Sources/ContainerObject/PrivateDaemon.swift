import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// A ctrobjd of the caller's own: its own state directory and cgroup parent,
/// started from a given binary and removed without a trace by `stop()`.
/// The tour, the tests and the benchmarks use it so they never touch
/// /run/ctrobj or a daemon that someone else runs.
public final class PrivateDaemon {
    public let binary: String
    public let stateDir: String
    public let cgroupParent: String
    public let logPath: String
    public private(set) var pidfd: OwnedFD?
    public var socket: String { "\(stateDir)/ctrobjd.sock" }

    /// Options added after the ones this type passes (`--max-containers-per-uid 20`);
    /// read at every `start()`, so a restart can change them.
    public var extraArguments: [String]
    /// A command the daemon is started through (`prlimit --nofile=300:300 --`);
    /// it must exec ctrobjd in the same process, so `pidfd` names the daemon.
    public var wrapper: [String]

    public init(binary: String, name: String, logLevel: String = "info",
                extraArguments: [String] = [], wrapper: [String] = []) throws {
        self.binary = binary
        stateDir = "/tmp/\(name)"
        cgroupParent = name
        logPath = "/tmp/\(name).log"
        self.logLevel = logLevel
        self.extraArguments = extraArguments
        self.wrapper = wrapper
        try start()
    }

    let logLevel: String

    /// The daemon's pid, while it runs.
    public var pid: pid_t? { pidfd.flatMap { Pidfd($0).pid } }

    /// Whether the daemon is still running (it is not reaped here).
    public var isRunning: Bool {
        pidfd.map { Pidfd($0).isRunning } ?? false
    }

    public func start() throws {
        // A socket left by a daemon killed before (kill -9 in tests): not
        // what we wait for below.
        unlink(socket)
        let argv = wrapper + [binary, "--state-dir", stateDir, "--cgroup-parent", cgroupParent, "--log-level", logLevel] + extraArguments
        let pid = try spawnProcess(argv, output: logPath)
        pidfd = try Sys.pidfdOpen(pid)
        let deadline = Sys.monotonicNanos() + 10_000_000_000
        while Sys.monotonicNanos() < deadline {
            // Up once it answers a request: a listening socket alone might be
            // an old daemon's, still held by one of its children.
            if let c = try? Connection.connect(socket), (try? c.call(Message(Op.list, ["after": "\(UInt64.max >> 1)"]))) != nil { return }
            if let p = pidfd, (try? Sys.pidfdWait(p.raw, nohang: true)) != nil {
                pidfd = nil
                break
            }
            usleep(5000)
        }
        throw ContainerError(.daemonUnavailable, "private ctrobjd did not start: \((try? Sys.readFile(logPath)) ?? "")")
    }

    /// Run `body` with the library pointed at this daemon.
    public func with<T>(_ body: () throws -> T) rethrows -> T {
        try DaemonAddress.$override.withValue(socket) { try body() }
    }

    /// Send a signal and reap the daemon.
    public func signal(_ sig: Int32) {
        guard let p = pidfd else { return }
        try? Sys.pidfdSendSignal(p.raw, sig)
        _ = try? Sys.pidfdWait(p.raw)
        pidfd = nil
    }

    /// SIGTERM, then remove everything the daemon left: processes in its
    /// cgroups, the cgroups, the namespace bind mounts, the state directory.
    public func stop(keepLog: Bool = false) {
        signal(SIGTERM)
        let layout = CgroupLayout.discover()
        for h in layout.hierarchies {
            let base = "\(h)/\(cgroupParent)"
            for child in Sys.listDirectory(base) where child.hasPrefix("c") {
                let set = CgroupSet(layout: layout, relativePath: "\(cgroupParent)/\(child)")
                set.killAll()
                try? set.remove(timeoutMs: 2000)
            }
            rmdir(base)
        }
        removeTree(stateDir)
        if !keepLog { unlink(logPath) }
    }
}


/// posix_spawn a program; stdin from /dev/null, stdout+stderr to `output`
/// when given. CTROBJ_* variables are not passed on unless in `env`.
public func spawnProcess(_ argv: [String], env: [String]? = nil, output: String? = nil) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    if let output {
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
    }
    let a = CStringArray(argv)
    var environment = env ?? currentEnvironment()
    if env == nil { environment.removeAll { $0.hasPrefix("CTROBJ_") } }
    let e = CStringArray(environment)
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, argv[0], &actions, nil, a.pointers, e.pointers)
    if rc != 0 { throw ContainerError.sys("posix_spawn \(argv[0])", rc) }
    return pid
}

public func currentEnvironment() -> [String] {
    var out: [String] = []
    var p = environ
    while let s = p.pointee {
        out.append(String(cString: s))
        p += 1
    }
    return out
}

/// The directory of the running executable (where ctrobjd sits beside ctrobj).
public func executableDirectory() -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    guard n > 0 else { return "." }
    let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    var parts = exe.split(separator: "/").map(String.init)
    parts.removeLast()
    return "/" + parts.joined(separator: "/")
}
