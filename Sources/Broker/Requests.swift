import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// The requests of the client socket, as a table: op -> handler. By the
/// time a handler runs, RequestRules has checked the fields' types and
/// ranges and the fd count (Connections.swift); each handler checks the
/// caller's rights on what it acts on (docs/security.md).
extension Broker {
    typealias Handler = (Broker) -> (Message, [OwnedFD], ClientConnection) throws -> Reply
    /// A handler on a container named by the request's first fd.
    typealias RecordHandler = (Broker) -> (ContainerRecord, Message, [OwnedFD], ClientConnection) throws -> Reply

    static let handlers: [String: Handler] = [
        Op.create: { $0.createRequest },
        Op.open: { $0.openByName },
        Op.list: { $0.list },
        Op.adopt: { $0.adopt },
        Op.forkCommit: { $0.forkCommit },
        Op.forkAbort: { $0.forkAbort },
    ]

    static let recordHandlers: [String: RecordHandler] = [
        Op.status: { $0.status },
        Op.forkPrepare: { $0.forkPrepareRequest },
        Op.cgroupJoin: { $0.cgroupJoin },
        Op.socket: { $0.socketIn },
        Op.root: { $0.rootRequest },
        Op.mount: { $0.mountIn },
        Op.setns: { $0.shareNamespaces },
        Op.limit: { $0.setLimit },
        Op.stats: { $0.stats },
        Op.freeze: { $0.freezeOrThaw },
        Op.thaw: { $0.freezeOrThaw },
        Op.kill: { $0.killMembers },
        Op.policy: { $0.setPolicy },
        Op.destroy: { $0.destroyRequest },
    ]

    func handle(_ m: Message, fds: [OwnedFD], conn: ClientConnection) throws -> Reply {
        crashPointsPassed = 0
        if let h = Self.handlers[m.op] { return try h(self)(m, fds, conn) }
        guard let h = Self.recordHandlers[m.op] else {
            throw ContainerError(.invalidArgument, "unknown request \"\(RequestRules.escaped(m.op))\"", errno: EOPNOTSUPP)
        }
        let r = try record(for: fds.first, action: m.op)
        return try h(self)(r, m, fds, conn)
    }

    func requireAlive(_ r: ContainerRecord, _ action: String) throws {
        if r.state == .exited { throw r.err(.dead, action, "its init has exited") }
    }

    /// Owner or root: for what changes the container itself (its policy,
    /// its namespaces) or ends it.
    func requireOwner(_ r: ContainerRecord, _ conn: ClientConnection, _ action: String) throws {
        if conn.uid != 0 && conn.uid != r.owner {
            throw r.err(.permission, action, "only its owner (uid \(r.owner)) or root may do this; uid \(conn.uid) may not")
        }
    }

    // MARK: small requests

    func status(_ r: ContainerRecord, _ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        refreshExitStatus(r)
        return Reply(.ok(r.statusFields))
    }

    func forkAbort(_ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        if let r = conn.forking, r.forkingConnection == ObjectIdentifier(conn) {
            r.forkingConnection = nil
        }
        conn.forking = nil
        return Reply(.ok())
    }

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

    func setPolicy(_ r: ContainerRecord, _ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        try requireOwner(r, conn, "policy")
        let maxItems = 64, maxItemBytes = 64
        func list(_ text: String, _ what: String) throws -> [String] {
            let items = text.split(separator: ",").map(String.init)
            guard items.count <= maxItems, items.allSatisfy({ $0.utf8.count <= maxItemBytes }) else {
                throw r.err(.invalidArgument, "policy", "at most \(maxItems) \(what), each at most \(maxItemBytes) bytes")
            }
            return items
        }
        var core: String?, modules: [String]?, devices: [String]?
        if let c = m["core"] {
            guard ["file", "drop"].contains(c) || (c.hasPrefix("handler:/") && c.count > 9 && c.utf8.count <= 4096
                                                   && !c.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7f }) else {
                throw r.err(.invalidArgument, "policy", "core policy must be file, drop or handler:/absolute/path/inside (at most 4096 bytes)")
            }
            core = c
        }
        if let text = m["modules"] {
            // Loading a module changes the host kernel: only root may allow it.
            guard conn.uid == 0 else {
                throw r.err(.permission, "policy", "only root may allow a container to load modules")
            }
            let l = try list(text, "modules")
            guard l.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_".contains($0)) } }) else {
                throw r.err(.invalidArgument, "policy", "module names are letters, digits, '-' and '_'")
            }
            modules = l
        }
        if let text = m["devices"] {
            // A grant shows host device events to the container: only root may give one.
            guard conn.uid == 0 else {
                throw r.err(.permission, "policy", "only root may grant a container a host device's uevents")
            }
            let l = try list(text, "devices")
            guard l.allSatisfy(UeventForwarding.validDeviceName) else {
                throw r.err(.invalidArgument, "policy",
                            "device names are kernel names (DEVNAME below /dev, or an interface): letters, digits, '-_.:+@' and '/'")
            }
            devices = l
        }
        // Everything checked: only now change the record.
        if let core { r.corePolicy = core }
        if let modules { r.allowedModules = modules }
        if let devices {
            r.grantedDevices = devices
            forgetUeventTarget(r)
            learnDevicePaths(devices)
        }
        try persistence.save(r)
        if devices != nil { updateUeventMonitor() }
        return Reply(.ok(["core": r.corePolicy, "modules": r.allowedModules.joined(separator: ","),
                          "devices": r.grantedDevices.joined(separator: ",")]))
    }

    func destroyRequest(_ r: ContainerRecord, _ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        try requireOwner(r, conn, "container_destroy")
        destroy(r)
        return Reply(.ok())
    }
}
