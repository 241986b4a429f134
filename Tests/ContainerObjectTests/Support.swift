import ContainerObject
import ContainerSystem
import ContainerWire
import Synchronization
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
let buildDir: String = executableDirectory()

/// ctrobj-upcall, for the upcall suites' installers, with the per-upcall C
/// helpers beside it (ctrobj-upcall-pipe, ctrobj-upcall-key): scripts/setup.sh
/// builds them after `swift build`; a bare `swift build` leaves them out, so
/// they are built here then, and the suites exercise what an install uses.
let upcallHelper: String = {
    let dir = buildDir
    if !Sys.exists("\(dir)/ctrobj-upcall-pipe") || !Sys.exists("\(dir)/ctrobj-upcall-key") {
        _ = try? runProgram(["/bin/bash", "\(repoRoot)/scripts/build-c-helpers.sh", dir], timeoutSeconds: 120)
    }
    return "\(dir)/ctrobj-upcall"
}()

/// A static C program built from `source` for one test: `body` gets its path
/// and its directory (fresh, under /tmp, where the test may write too), which
/// is removed afterwards.
func withStaticProgram(_ name: String, _ source: String, _ body: (_ program: String, _ dir: String) throws -> Void) throws {
    let dir = "/tmp/ctrobj-\(name)-\(uniqueSuffix())"
    try Sys.mkdirs(dir, 0o755)
    defer {
        for f in Sys.listDirectory(dir) { unlink("\(dir)/\(f)") }
        rmdir(dir)
    }
    try Sys.writeFileAtomically("\(dir)/\(name).c", source)
    let (code, out) = try runProgram(["/usr/bin/cc", "-D_GNU_SOURCE", "-O2", "-static", "-pthread", "-o", "\(dir)/\(name)", "\(dir)/\(name).c"])
    try #require(code == 0, "cc \(name): \(out)")
    try body("\(dir)/\(name)", dir)
}

private let counter = Atomic(0)

func uniqueSuffix() -> String {
    let n = counter.add(1, ordering: .relaxed).newValue
    return "\(getpid())-\(n)"
}

func spawn(_ argv: [String], env: [String]? = nil, output: String? = nil) throws -> pid_t {
    try spawnProcess(argv, env: env, output: output)
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

/// Suites change machine-wide state (core_pattern, request-key.d, the
/// modprobe path): one test process at a time on a machine, whichever
/// checkout it runs from. Taken by the first daemon a test starts and held
/// until the process exits.
let machineLock: CInt = {
    let fd = open("/run/lock/ctrobj-tests.lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
    if fd >= 0 { _ = flock(fd, LOCK_EX) }
    return fd
}()

typealias TestDaemon = PrivateDaemon

extension PrivateDaemon {
    convenience init() throws {
        _ = machineLock
        try self.init(binary: "\(buildDir)/ctrobjd", name: "ctrobj-test-\(uniqueSuffix())", logLevel: "debug")
    }

    func kill9() { signal(SIGKILL) }
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
