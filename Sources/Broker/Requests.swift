import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// The requests of the client socket, as a table: op -> handler. By the
/// time a handler runs, RequestRules has checked the fields' types and
/// ranges and the fd count (Connections.swift), and `record(for:)` has
/// turned the container fd into its record (holding the fd is the right to
/// act on it); each handler then checks the caller's rights on what it
/// acts on (requireOwner below, the uid checks in its file; docs/security.md).
///
/// | handlers in              | ops                                             |
/// |--------------------------|-------------------------------------------------|
/// | ContainerCreate.swift    | create, open, list, adopt                        |
/// | Joining.swift            | fork.prepare, fork.commit, fork.abort, cgroup.join |
/// | ContainerIO.swift        | socket, root, mount, setns                       |
/// | ContainerCgroup.swift    | limit, stats, freeze, thaw, kill                 |
/// | UpcallPolicy.swift       | policy                                           |
/// | Lifecycle.swift          | status, destroy                                  |
extension Broker {
    typealias Handler = @Sendable (Broker) -> (Message, [OwnedFD], ClientConnection) throws -> Reply
    /// A handler on a container named by the request's first fd.
    typealias RecordHandler = @Sendable (Broker) -> (ContainerRecord, Message, [OwnedFD], ClientConnection) throws -> Reply

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
}
