import CShim
#if canImport(Glibc)
import Glibc
#endif

/// A pidfd: a handle on one task that a recycled pid cannot be mistaken
/// for. What is read about a task through /proc/PID is that task's only
/// if a pidfd pinned it and `names(pid)` still holds afterwards: every
/// check of that kind goes through here.
///
/// Shares its OwnedFD: a Pidfd made from an fd (one a client or the kernel
/// passed) closes it when the last owner goes.
public struct Pidfd: CustomStringConvertible {
    public let fd: OwnedFD

    /// An fd that should be a pidfd (from a client, the kernel): nothing is
    /// believed until `task` or `names` says so.
    public init(_ fd: OwnedFD) { self.fd = fd }

    public static func open(_ pid: pid_t) throws -> Pidfd { Pidfd(try Sys.pidfdOpen(pid)) }

    /// A pidfd of any task, a thread included (PIDFD_THREAD where the kernel has it).
    public static func openTask(_ tid: pid_t) throws -> Pidfd { Pidfd(try Sys.pidfdOpenTask(tid)) }

    /// The peer of a unix socket (SO_PEERPIDFD), nil with errno set.
    public static func ofPeer(_ socket: CInt) -> Pidfd? {
        let raw = ccs_peer_pidfd(socket)
        return raw >= 0 ? Pidfd(OwnedFD(raw)) : nil
    }

    public var raw: CInt { fd.raw }

    /// What the fd names now.
    public enum Task: Equatable, Sendable {
        /// A live task, by its pid in our pid namespace.
        case alive(pid_t)
        /// A pidfd whose task has exited (ESRCH).
        case gone
        /// Not a pidfd (or one of a task we cannot see).
        case notAPidfd
    }

    public var task: Task {
        let pid = ccs_pidfd_pid(fd.raw)
        if pid > 0 { return .alive(pid) }
        return pid < 0 && errno == ESRCH ? .gone : .notAPidfd
    }

    /// The live task's pid, nil once it is gone.
    public var pid: pid_t? {
        if case .alive(let p) = task { return p }
        return nil
    }

    /// Whether it still names `pid`: checked after reading /proc/`pid`, it
    /// says what was read is this task's.
    public func names(_ pid: pid_t) -> Bool { ccs_pidfd_pid(fd.raw) == pid }

    /// True once the task has exited (the pidfd polls readable).
    public var hasExited: Bool { ccs_wait_readable(fd.raw, 0) == 0 }

    public func sendSignal(_ sig: CInt) throws { try Sys.pidfdSendSignal(fd.raw, sig) }

    /// Whether the task still runs (waitid WNOHANG|WNOWAIT: nothing reaped).
    public var isRunning: Bool {
        var status: CInt = 0
        return ccs_pidfd_wait(fd.raw, WNOHANG | WNOWAIT, &status) == 0
    }

    /// Reap our child `pid` (this pidfd's), waiting at most `timeoutSeconds`
    /// asleep in poll: its wait status; nil when the time ran out, after
    /// SIGKILL to its process group (first, while the unreaped child keeps
    /// the group's id from being reused), to it, and reaping it. For a
    /// helper started with a process group of its own.
    public func waitOrKillGroup(pid: pid_t, timeoutSeconds: Int) -> CInt? {
        let deadline = Sys.monotonicNanos() + UInt64(max(timeoutSeconds, 0)) * 1_000_000_000
        while true {
            let now = Sys.monotonicNanos()
            if now >= deadline { break }
            let left = CInt(clamping: (deadline - now + 999_999) / 1_000_000)
            if Sys.isReadable(fd.raw, timeoutMs: left), let status = try? wait(nohang: true) { return status }
        }
        kill(-pid, SIGKILL)
        try? sendSignal(SIGKILL)
        _ = try? wait()
        return nil
    }

    /// Reap our child: its wait status, or nil with `nohang` while it runs.
    public func wait(nohang: Bool = false) throws -> CInt? { try Sys.pidfdWait(fd.raw, nohang: nohang) }

    /// The exit status the kernel keeps once the task was reaped by its
    /// parent (PIDFD_GET_INFO, 6.15+): .some(status), .none not yet; throws
    /// when the kernel cannot say.
    public func exitStatus() throws -> CInt? {
        var status: CInt = 0
        switch ccs_pidfd_exit_status(fd.raw, &status) {
        case 1: return status
        case 0: return nil
        default: throw ContainerError.sys("PIDFD_GET_INFO")
        }
    }

    /// PIDFD_GET_INFO: who the task is and, while the kernel dumps its
    /// core, the dump's facts.
    public func info() throws -> ccs_core_info {
        var info = ccs_core_info()
        guard ccs_pidfd_coredump_info(fd.raw, &info) == 0 else { throw ContainerError.sys("PIDFD_GET_INFO") }
        return info
    }

    public var description: String { "pidfd \(fd.raw)" }
}
