import ContainerObject
import ContainerSystem
import ContainerWire
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The hostile client (Tests/ctrobj-attack), built beside the test bundle.
let attackBinary = "\(buildDir)/ctrobj-attack"

let adversaryTools = ["/usr/sbin/useradd", "/usr/sbin/userdel", "/usr/bin/setpriv", "/usr/bin/prlimit", "/usr/bin/unshare"]

/// A system user (and its group) made for one test and removed, with every
/// process running as it, by `remove()`. Named ctrobj-adv-<pid>-<n>; users
/// and groups of that prefix left by a test process that no longer runs are
/// removed first.
final class ThrowawayUser {
    let name: String
    let uid: uid_t
    let gid: gid_t
    private var removed = false

    /// uid and gid are one number, as for most real users (useradd
    /// --system would give them different ones).
    init() throws {
        ThrowawayUser.removeStale()
        name = "ctrobj-adv-\(uniqueSuffix())"
        var id: UInt32 = 0
        for n in 0..<5000 {
            let candidate = UInt32(20000 + (Int(getpid()) * 7 + n) % 10000)
            if getpwuid(candidate) == nil && getgrgid(candidate) == nil { id = candidate; break }
        }
        guard id != 0 else { throw ContainerError(.system, "no free uid/gid pair for \(name)") }
        let (gcode, gout) = try runProgram(["/usr/sbin/groupadd", "--gid", "\(id)", name])
        guard gcode == 0 else { throw ContainerError(.system, "groupadd \(name) failed (\(gcode)): \(gout)") }
        let (code, out) = try runProgram(["/usr/sbin/useradd", "--system", "--no-create-home", "--uid", "\(id)", "--gid", "\(id)",
                                          "--shell", "/usr/sbin/nologin", name])
        guard code == 0, let pw = getpwnam(name) else {
            _ = try? runProgram(["/usr/sbin/groupdel", name])
            throw ContainerError(.system, "useradd \(name) failed (\(code)): \(out)")
        }
        uid = pw.pointee.pw_uid
        gid = pw.pointee.pw_gid
    }

    /// Kill what runs as the user (all of it was started by this test: the
    /// user did not exist before), then userdel (which also removes its group).
    func remove() {
        guard !removed else { return }
        removed = true
        ThrowawayUser.killProcesses(of: uid)
        var (code, out) = (try? runProgram(["/usr/sbin/userdel", name])) ?? (-1, "")
        if code != 0 {
            // A process still exiting: once more after it is gone.
            usleep(200_000)
            ThrowawayUser.killProcesses(of: uid)
            (code, out) = (try? runProgram(["/usr/sbin/userdel", "--force", name])) ?? (-1, "")
        }
        if code != 0 { Issue.record("userdel \(name) failed (\(code)): \(out)") }
        _ = try? runProgram(["/usr/sbin/groupdel", name]) // usually gone with the user already
    }

    deinit { remove() }

    static func processes(of uid: uid_t) -> [pid_t] {
        Sys.listDirectory("/proc").compactMap { pid_t($0) }.filter { pid in
            guard let ids = ProcInfo.statusField(pid: pid, "Uid") else { return false }
            return ids.contains("\(uid)")
        }
    }

    static func killProcesses(of uid: uid_t) {
        for _ in 0..<100 {
            let pids = processes(of: uid)
            if pids.isEmpty { return }
            for p in pids {
                if let fd = try? Sys.pidfdOpen(p), ProcInfo.statusField(pid: p, "Uid")?.contains("\(uid)") == true {
                    try? Sys.pidfdSendSignal(fd.raw, SIGKILL)
                }
            }
            usleep(20_000)
        }
    }

    /// ctrobj-adv-<pid>-<n> users whose test process is gone.
    static func removeStale() {
        for file in ["/etc/passwd", "/etc/group"] {
            for line in ((try? Sys.readFile(file)) ?? "").split(separator: "\n") where line.hasPrefix("ctrobj-adv-") {
                let user = String(line.prefix { $0 != ":" })
                let parts = user.dropFirst("ctrobj-adv-".count).split(separator: "-")
                guard let pid = parts.first.flatMap({ pid_t($0) }), pid != getpid(), !Sys.exists("/proc/\(pid)") else { continue }
                if file == "/etc/passwd" {
                    if let pw = getpwnam(user) { killProcesses(of: pw.pointee.pw_uid) }
                    _ = try? runProgram(["/usr/sbin/userdel", "--force", user])
                } else {
                    _ = try? runProgram(["/usr/sbin/groupdel", user])
                }
            }
        }
    }
}

/// A user and a private daemon it can reach, for one test; both removed on
/// every path. The body runs with the library pointed at the daemon.
func withAdversary(daemonArguments: [String] = [], wrapper: [String] = [],
                   _ body: (ThrowawayUser, TestDaemon) throws -> Void) throws {
    let user = try ThrowawayUser()
    defer { user.remove() }
    let d = try startDaemon(name: "ctrobj-adv-d-\(uniqueSuffix())", arguments: daemonArguments, wrapper: wrapper)
    defer {
        d.stop()
        ThrowawayUser.killProcesses(of: user.uid)
    }
    // The state directory must be reachable by the user (the socket is 0666).
    chmod(d.stateDir, 0o755)
    try d.with { try body(user, d) }
}

/// A private daemon; if it does not start, its log and state directory go too
/// (PrivateDaemon leaves them to its `stop()`, which a failed init never reaches).
func startDaemon(name: String, arguments: [String], wrapper: [String] = []) throws -> TestDaemon {
    _ = machineLock // one test process at a time on this machine (Support.swift)
    do {
        return try TestDaemon(binary: "\(buildDir)/ctrobjd", name: name, logLevel: "debug", extraArguments: arguments, wrapper: wrapper)
    } catch {
        unlink("/tmp/\(name).log")
        removeTree("/tmp/\(name)")
        throw error
    }
}

/// What one run of ctrobj-attack reported.
struct AttackReport: CustomStringConvertible {
    let exitCode: Int32
    let output: String

    /// step -> its key=value pairs (the last line of that step).
    var steps: [String: [String: String]] {
        var out: [String: [String: String]] = [:]
        for line in output.split(separator: "\n") where line.hasPrefix("step=") {
            var kv: [String: String] = [:]
            for pair in line.split(separator: "\t") {
                guard let eq = pair.firstIndex(of: "=") else { continue }
                kv[String(pair[..<eq])] = String(pair[pair.index(after: eq)...])
            }
            if let s = kv["step"] { out[s] = kv }
        }
        return out
    }

    subscript(step: String) -> [String: String]? { steps[step] }
    func errno(_ step: String) -> Int32? { steps[step]?["errno"].flatMap { Int32($0) } }
    func result(_ step: String) -> String? { steps[step]?["result"] }
    func value(_ step: String, _ key: String) -> String? { steps[step]?[key] }
    var description: String { "ctrobj-attack exited \(exitCode):\n\(output)" }

    /// The exit status and one step's line, for a failure message (the
    /// whole report is printed once by `attack`).
    func at(_ step: String) -> String {
        let line = output.split(separator: "\n").last { $0.hasPrefix("step=\(step)\t") || $0 == "step=\(step)" }
        return "[attack exit \(exitCode)] " + (line.map(String.init) ?? "no step \(step) in the report (setup: \(steps["setup"]?["message"] ?? "-"))")
    }
}

/// ctrobj-attack running in the background as `user` (nil: as root).
final class RunningAttack {
    let pid: pid_t
    let pidfd: OwnedFD
    let outputPath: String
    let goPath: String
    private(set) var exitCode: Int32?

    init(_ args: [String], as user: ThrowawayUser?, daemon: TestDaemon?, env: [String] = [], passing fds: [CInt] = []) throws {
        let dir = "/tmp/ctrobj-adv-run-\(uniqueSuffix())"
        try Sys.mkdir(dir, 0o755, existOK: false)
        outputPath = "\(dir)/out"
        goPath = "\(dir)/go"
        var argv = [attackBinary] + args
        if let user {
            argv = ["/usr/bin/setpriv", "--reuid=\(user.uid)", "--regid=\(user.gid)", "--clear-groups", "--"] + argv
        }
        var environment = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "ATTACK_GO=\(goPath)"] + env
        if let daemon, !env.contains(where: { $0.hasPrefix("CTROBJ_SOCKET=") }) {
            environment.append("CTROBJ_SOCKET=\(daemon.socket)")
        }
        pid = try spawnPassing(argv, env: environment, output: outputPath, fds: fds)
        pidfd = try Sys.pidfdOpen(pid)
    }

    var output: String { (try? Sys.readFile(outputPath)) ?? "" }

    /// Wait until the output has a `step=NAME` line (or the tool exits).
    func waitForStep(_ step: String, timeoutSeconds: Int) -> Bool {
        let deadline = Sys.monotonicNanos() + UInt64(timeoutSeconds) * 1_000_000_000
        while Sys.monotonicNanos() < deadline {
            if output.split(separator: "\n").contains(where: { $0.hasPrefix("step=\(step)\t") || $0 == "step=\(step)" }) { return true }
            if exitCode == nil, let s = try? Sys.pidfdWait(pidfd.raw, nohang: true) { exitCode = code(s) }
            if exitCode != nil { return false }
            usleep(20_000)
        }
        return false
    }

    /// Tell the tool to go on (it polls $ATTACK_GO).
    func go() { try? Sys.writeFileAtomically(goPath, "go\n", mode: 0o644) }

    /// Wait for exit (killed after the deadline) and return what it reported.
    func finish(timeoutSeconds: Int = 60) -> AttackReport {
        if exitCode == nil {
            let deadline = Sys.monotonicNanos() + UInt64(timeoutSeconds) * 1_000_000_000
            while exitCode == nil {
                if let s = try? Sys.pidfdWait(pidfd.raw, nohang: true) { exitCode = code(s); break }
                if Sys.monotonicNanos() > deadline {
                    try? Sys.pidfdSendSignal(pidfd.raw, SIGKILL)
                    exitCode = code((try? Sys.pidfdWait(pidfd.raw)) ?? 9)
                    break
                }
                usleep(10_000)
            }
        }
        let report = AttackReport(exitCode: exitCode ?? -1, output: output)
        cleanUp()
        return report
    }

    private var cleaned = false
    private func cleanUp() {
        guard !cleaned else { return }
        cleaned = true
        unlink(outputPath)
        unlink(goPath)
        rmdir(String(outputPath.dropLast("/out".count)))
    }

    deinit {
        if exitCode == nil {
            try? Sys.pidfdSendSignal(pidfd.raw, SIGKILL)
            _ = try? Sys.pidfdWait(pidfd.raw)
        }
        cleanUp()
    }

    private func code(_ s: Int32) -> Int32 { s & 0x7f == 0 ? (s >> 8) & 0xff : 128 + (s & 0x7f) }
}

/// Run ctrobj-attack to completion as `user` against `daemon`.
func attack(_ args: [String], as user: ThrowawayUser?, daemon: TestDaemon?, env: [String] = [], passing fds: [CInt] = [],
            timeoutSeconds: Int = 60) throws -> AttackReport {
    let r = try RunningAttack(args, as: user, daemon: daemon, env: env, passing: fds).finish(timeoutSeconds: timeoutSeconds)
    print("ctrobj-attack \(args.joined(separator: " ")) as \(user?.name ?? "root"): exit \(r.exitCode)\n\(r.output)")
    return r
}

/// posix_spawn with `fds` becoming 3, 4, ... in the child (CLOEXEC cleared
/// there only); stdin /dev/null, stdout and stderr to `output`.
func spawnPassing(_ argv: [String], env: [String], output: String, fds: [CInt]) throws -> pid_t {
    // Above every target number first, so no dup2 is a no-op that keeps CLOEXEC.
    let high = try fds.map { f -> OwnedFD in
        let d = fcntl(f, F_DUPFD_CLOEXEC, 100)
        if d < 0 { throw ContainerError.sys("dup") }
        return OwnedFD(d)
    }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    for (i, f) in high.enumerated() { posix_spawn_file_actions_adddup2(&actions, f.raw, CInt(3 + i)) }
    let a = CStringArray(argv)
    let e = CStringArray(env)
    var pid: pid_t = 0
    let rc = withExtendedLifetime(high) { posix_spawn(&pid, argv[0], &actions, nil, a.pointers, e.pointers) }
    if rc != 0 { throw ContainerError.sys("posix_spawn \(argv[0])", rc) }
    return pid
}

// MARK: root's view, never hanging

/// One request from root on a fresh connection, with a deadline: a daemon
/// that hangs fails the test instead of hanging it.
func rootCall(_ d: TestDaemon, _ m: Message, fds: [CInt] = [], timeoutMs: Int32 = 5000) throws -> (Message, [OwnedFD]) {
    let c = try Connection.connect(d.socket)
    try c.send(m, fds: fds)
    let (reply, got) = try c.receive(timeoutMs: timeoutMs)
    return (try reply.checked(), got)
}

/// Names root's `list` shows (one page is enough for these tests).
func rootListNames(_ d: TestDaemon, timeoutMs: Int32 = 5000) throws -> [String] {
    let (m, _) = try rootCall(d, Message(Op.list), timeoutMs: timeoutMs)
    return m.fields.filter { $0.key.hasSuffix(".name") }.map(\.value).sorted()
}

/// A root process the user will aim at: `sleep 1000`, killed by `stop()`.
final class Victim {
    let pid: pid_t
    let pidfd: OwnedFD

    init() throws {
        pid = try spawn(["/bin/sleep", "1000"])
        pidfd = try Sys.pidfdOpen(pid)
    }

    var isAlive: Bool {
        do { return try Sys.pidfdWait(pidfd.raw, nohang: true) == nil } catch { return false }
    }
    var cgroups: String { (try? Sys.readFile("/proc/\(pid)/cgroup")) ?? "" }

    deinit {
        try? Sys.pidfdSendSignal(pidfd.raw, SIGKILL)
        _ = try? Sys.pidfdWait(pidfd.raw)
    }
}

/// utime + stime of a process, in seconds.
func cpuSeconds(pid: pid_t) -> Double? {
    guard let stat = try? Sys.readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
    let rest = stat[stat.index(after: close)...].split(separator: " ")
    // After "(comm)": state is field 3, utime 14 and stime 15.
    guard rest.count > 13, let u = Double(rest[11]), let s = Double(rest[12]) else { return nil }
    return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
}
