import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// The requests on a container's cgroup: container_set_limit, its stats,
/// freeze and thaw, and container_kill (every member).
extension Broker {
    func setLimit(_ r: ContainerRecord, _ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        try requireAlive(r, "container_set_limit")
        guard let which = m.int("which"), let limit = CgroupSet.Limit(rawValue: which), let value = m.int64("value") else {
            throw r.err(.invalidArgument, "container_set_limit", "unknown limit \(m["which"] ?? "?")")
        }
        // -1 lifts a limit; anything else must be a value the kernel takes
        // and our arithmetic (cpu: value * period) cannot overflow.
        let range: ClosedRange<Int64>
        switch limit {
        case .memory: range = 0...(Int64(1) << 53)
        case .pids: range = 0...RequestRules.pidMax
        case .cpu: range = 1...1_000_000
        }
        guard value == -1 || range.contains(value) else {
            throw r.err(.invalidArgument, "container_set_limit", "value \(value) is out of range: -1 or \(range.lowerBound)...\(range.upperBound)")
        }
        do { try r.cgroup.setLimit(limit, value) } catch let e as ContainerError {
            throw r.err(ContainerError.codeFor(e.errno), "container_set_limit", e.message, errno: e.errno)
        }
        return Reply(.ok())
    }

    func stats(_ r: ContainerRecord, _ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        let s = r.cgroup.stats()
        return Reply(.ok(["memory": "\(s.memoryBytes)", "memory_anon": "\(s.anonMemoryBytes)", "pids": "\(s.pids)",
                          "cpu": "\(s.cpuUsageNanos)"]))
    }

    func freezeOrThaw(_ r: ContainerRecord, _ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        let freeze = m.op == Op.freeze
        let action = freeze ? "container_freeze" : "container_thaw"
        try requireAlive(r, action)
        // Written here; the kernel's answer (every task frozen or thawed) is
        // awaited on a worker: a task stuck in the kernel must not hold the loop.
        let cgroup = r.cgroup
        do { try cgroup.setFrozen(freeze, timeoutMs: 0) } catch let e as ContainerError where e.code == .timeout {
            return answerLater(conn, { () -> ContainerError? in
                do { try cgroup.waitFrozen(freeze, timeoutMs: 2000); return nil } catch let e as ContainerError { return e } catch { return nil }
            }, then: { e in
                guard let e else { return Reply(.ok()) }
                return Reply(.error(r.err(ContainerError.codeFor(e.errno), action, e.message, errno: e.errno)))
            })
        } catch let e as ContainerError {
            throw r.err(ContainerError.codeFor(e.errno), action, e.message, errno: e.errno)
        }
        return Reply(.ok())
    }

    /// container_kill: every member, signalled with the caller's own
    /// credentials (a non-root caller reaches only processes it could
    /// signal itself, whatever else got into the cgroup).
    func killMembers(_ r: ContainerRecord, _ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        try requireAlive(r, "container_kill")
        guard let sig = m.int("signal").flatMap({ CInt(exactly: $0) }), sig > 0, sig < 65 else {
            throw r.err(.invalidArgument, "container_kill", "invalid signal \(m["signal"] ?? "?")")
        }
        if conn.uid == 0 {
            r.cgroup.signalAll(sig)
        } else {
            let pids = r.cgroup.members()
            _ = pids.withUnsafeBufferPointer { ccs_signal_pids_as(conn.uid, conn.gid, $0.baseAddress, CInt($0.count), sig) }
        }
        return Reply(.ok())
    }
}
