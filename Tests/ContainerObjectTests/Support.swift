import ContainerObject
import ContainerSystem
import ContainerWire
import Testing
#if canImport(Glibc)
import Glibc
#endif

let isRoot = geteuid() == 0
let rootOnly: Comment = "needs root: the tests create namespaces and cgroups on the real kernel"

/// The repository, from this file's path.
let repoRoot: String = {
    var parts = #filePath.split(separator: "/").map(String.init)
    parts.removeLast(3)
    return "/" + parts.joined(separator: "/")
}()

/// The build products (ctrobjd, ctrobj, libcontainerobject.so) sit beside the test bundle.
let buildDir: String = {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    let exe = n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
    var parts = exe.split(separator: "/").map(String.init)
    // .build/debug/ContainerObjectsPackageTests.xctest
    parts.removeLast()
    return "/" + parts.joined(separator: "/")
}()

private var counter = 0
private let counterLock = NSLockish()

final class NSLockish {
    private var m = pthread_mutex_t()
    init() { pthread_mutex_init(&m, nil) }
    func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        return body()
    }
}

func uniqueSuffix() -> String {
    let n = counterLock.locked { () -> Int in counter += 1; return counter }
    return "\(getpid())-\(n)"
}

/// Spawn a program; returns its pid. stdout+stderr go to `output` if given.
func spawn(_ argv: [String], env: [String]? = nil, output: String? = nil, stdinNull: Bool = true) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    if stdinNull { posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0) }
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

func currentEnvironment() -> [String] {
    var out: [String] = []
    var p = environ
    while let s = p.pointee {
        out.append(String(cString: s))
        p += 1
    }
    return out
}

/// Run a program to completion; returns (exit code, combined output).
func runProgram(_ argv: [String], env: [String]? = nil, timeoutSeconds: Int = 60) throws -> (Int32, String) {
    let out = "/tmp/ctrobj-test-out-\(uniqueSuffix())"
    defer { unlink(out) }
    let pid = try spawn(argv, env: env, output: out)
    let pidfd = try Sys.pidfdOpen(pid)
    let deadline = Sys.monotonicNanos() + UInt64(timeoutSeconds) * 1_000_000_000
    var status: Int32 = 0
    while true {
        if let s = try Sys.pidfdWait(pidfd.raw, nohang: true) { status = s; break }
        if Sys.monotonicNanos() > deadline {
            try? Sys.pidfdSendSignal(pidfd.raw, SIGKILL)
            status = try Sys.pidfdWait(pidfd.raw) ?? 0
            break
        }
        usleep(5000)
    }
    let text = (try? Sys.readFile(out)) ?? ""
    let code = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return (code, text)
}

/// A ctrobjd of the test's own: its own state directory and cgroup parent,
/// stopped and cleaned up by `stop()`, so tests never touch /run/ctrobj.
final class TestDaemon {
    let name: String
    let stateDir: String
    let cgroupParent: String
    var pidfd: OwnedFD?
    var socket: String { "\(stateDir)/ctrobjd.sock" }
    var logPath: String { "/tmp/\(name).log" }

    init() throws {
        name = "ctrobj-test-\(uniqueSuffix())"
        stateDir = "/tmp/\(name)"
        cgroupParent = name
        try start()
    }

    func start() throws {
        let pid = try spawn(["\(buildDir)/ctrobjd", "--state-dir", stateDir, "--cgroup-parent", cgroupParent,
                             "--log-level", "debug"], output: logPath)
        pidfd = try Sys.pidfdOpen(pid)
        let deadline = Sys.monotonicNanos() + 10_000_000_000
        while Sys.monotonicNanos() < deadline {
            if (try? Connection.connect(socket)) != nil { return }
            if let p = pidfd, (try? Sys.pidfdWait(p.raw, nohang: true)) != nil {
                pidfd = nil
                break
            }
            usleep(5000)
        }
        throw ContainerError(.daemonUnavailable, "test ctrobjd did not start: \((try? Sys.readFile(logPath)) ?? "")")
    }

    /// Run `body` with the library pointed at this daemon.
    func with<T>(_ body: () throws -> T) rethrows -> T {
        try DaemonAddress.$override.withValue(socket) { try body() }
    }

    func signal(_ sig: Int32) {
        guard let p = pidfd else { return }
        try? Sys.pidfdSendSignal(p.raw, sig)
        _ = try? Sys.pidfdWait(p.raw)
        pidfd = nil
    }

    func kill9() { signal(SIGKILL) }

    /// SIGTERM, then remove everything the daemon left: processes in its
    /// cgroups, the cgroups, the namespace bind mounts, the state directory.
    func stop() {
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
        unlink(logPath)
    }
}

/// rm -rf that first detaches any mount inside (namespace bind mounts).
func removeTree(_ path: String) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    if (st.st_mode & S_IFMT) == S_IFDIR {
        for e in Sys.listDirectory(path) { removeTree("\(path)/\(e)") }
        rmdir(path)
    } else {
        _ = umount2(path, Int32(MNT_DETACH))
        unlink(path)
    }
}

/// Make a test daemon, run body, always clean up.
func withDaemon(_ body: (TestDaemon) throws -> Void) throws {
    let d = try TestDaemon()
    defer { d.stop() }
    try d.with { try body(d) }
}

func sh(_ script: String) -> ProcessSpec { ProcessSpec("/bin/sh", ["/bin/sh", "-c", script]) }

extension ContainerProcess {
    /// Wait with a deadline: a test never hangs.
    func waitCode(timeoutSeconds: Int = 20) throws -> Int32 {
        let deadline = Sys.monotonicNanos() + UInt64(timeoutSeconds) * 1_000_000_000
        while Sys.monotonicNanos() < deadline {
            if let s = try Sys.pidfdWait(pidfd.raw, nohang: true) {
                return s & 0x7f == 0 ? (s >> 8) & 0xff : 128 + (s & 0x7f)
            }
            usleep(2000)
        }
        try? signal(SIGKILL)
        _ = try? Sys.pidfdWait(pidfd.raw)
        throw ContainerError(.timeout, "process \(pid) did not exit in \(timeoutSeconds) s")
    }
}
