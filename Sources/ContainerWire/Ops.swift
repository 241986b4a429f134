/// The requests the library and tools send to ctrobjd.
///
/// | op            | fields in                              | fds in                 | reply fields                 | fds out             |
/// |---------------|----------------------------------------|------------------------|------------------------------|---------------------|
/// | create        | name, flags, prepare (1: also fork.prepare) | -                 | id (+ JoinPlan fields)       | container fd (+ the plan's fds) |
/// | open          | name, cloexec                          | -                      | id                           | container fd        |
/// | status        | -                                      | container fd           | Record.statusFields          | -                   |
/// | fork.prepare  | mode ("init" / "enter")                | container fd           | JoinPlan fields              | the plan's fds      |
/// | fork.commit   | pid                                    | container fd, pidfd    | -                            | -                   |
/// | fork.abort    | -                                      | container fd           | -                            | -                   |
/// | socket        | domain, type, protocol                 | container fd           | -                            | socket              |
/// | root          | -                                      | container fd           | -                            | O_PATH root dir     |
/// | mount         | source, target, fstype, flags, data    | container fd           | -                            | -                   |
/// | setns         | nstypes                                | container fd, source   | -                            | -                   |
/// | limit         | which, value                           | container fd           | -                            | -                   |
/// | stats         | -                                      | container fd           | memory, memory_anon, pids, cpu | -                 |
/// | freeze, thaw  | -                                      | container fd           | -                            | -                   |
/// | kill          | signal                                 | container fd           | -                            | -                   |
/// | destroy       | -                                      | container fd           | -                            | -                   |
/// | adopt         | name                                   | pidfd of the process   | id                           | container fd        |
/// | policy        | core (file/drop), modules (a,b,c), devices (loop3,veth1) | container fd | core, modules, devices | -                |
/// | list          | after (an id; paging), compact (0/1)   | -                      | count, N.field or N (compact: ListEntry), next | - |
/// | cgroup.join   | -                                      | container fd           | -                            | -                   |
///
/// What each op accepts (field types and ranges, fd counts) is checked by
/// RequestRules before any handler runs. A page of list holds the entries
/// after the id `after`; `next` names the id to pass for the next page.
/// cgroup.join moves the connection's own peer process (SO_PEERPIDFD) into
/// the container's cgroups: a non-root caller's child joins that way, since
/// cgroup.procs fds opened by ctrobjd would let it move any process.
/// fork.prepare reserves the container for the connection that sent it,
/// until fork.commit or fork.abort on that connection; if the connection
/// closes first, the container goes back to "created".
/// Nothing travels on a container fd itself: when init has exited, ctrobjd
/// shuts its end down (holders see POLLHUP) and keeps it to see the last close.
public enum Op {
    public static let create = "create"
    public static let open = "open"
    public static let status = "status"
    public static let forkPrepare = "fork.prepare"
    public static let forkCommit = "fork.commit"
    public static let forkAbort = "fork.abort"
    public static let socket = "socket"
    public static let root = "root"
    public static let mount = "mount"
    public static let setns = "setns"
    public static let limit = "limit"
    public static let stats = "stats"
    public static let freeze = "freeze"
    public static let thaw = "thaw"
    public static let kill = "kill"
    public static let destroy = "destroy"
    public static let policy = "policy"
    public static let adopt = "adopt"
    public static let list = "list"
    public static let cgroupJoin = "cgroup.join"

    /// Replies: "ok" (Message.ok) or "error" (Message.error, fields errno,
    /// message, code).
    public static let ok = "ok"
    public static let error = "error"

    /// The ops and replies of the upcall socket, <state>/upcall.sock,
    /// where the helpers the kernel runs ask and ctrobjd answers (its table
    /// is at the top of Broker's UpcallServer.swift).
    public enum Upcall {
        public static let core = "core"
        public static let key = "key"
        public static let modprobe = "modprobe"
        /// Not in a container of ctrobjd's: handled as before install.
        public static let `fallthrough` = "fallthrough"
        public static let allow = "allow"
        public static let deny = "deny"
    }
}

/// The uapi flag values (container.h).
public enum ContainerFlags {
    public static let newFSNS: UInt32 = 0x001
    public static let newEmptyFSNS: UInt32 = 0x002
    public static let newCgroupNS: UInt32 = 0x004
    public static let newUTSNS: UInt32 = 0x008
    public static let newIPCNS: UInt32 = 0x010
    public static let newUserNS: UInt32 = 0x020
    public static let newPIDNS: UInt32 = 0x040
    public static let newNetNS: UInt32 = 0x080
    public static let killOnClose: UInt32 = 0x100
    public static let fdCloexec: UInt32 = 0x200
    public static let newTimeNS: UInt32 = 0x400
    public static let mask: UInt32 = 0x7ff
    public static let nameMax = 24

    public static let names: [(UInt32, String)] = [
        (newFSNS, "NEW_FS_NS"), (newEmptyFSNS, "NEW_EMPTY_FS_NS"), (newCgroupNS, "NEW_CGROUP_NS"),
        (newUTSNS, "NEW_UTS_NS"), (newIPCNS, "NEW_IPC_NS"), (newUserNS, "NEW_USER_NS"),
        (newPIDNS, "NEW_PID_NS"), (newNetNS, "NEW_NET_NS"), (killOnClose, "KILL_ON_CLOSE"),
        (fdCloexec, "FD_CLOEXEC"), (newTimeNS, "NEW_TIME_NS"),
    ]

    public static func describe(_ flags: UInt32) -> String {
        let parts = names.filter { flags & $0.0 != 0 }.map { $0.1 }
        return parts.isEmpty ? "0" : parts.joined(separator: "|")
    }

    public static func parse(_ text: String) -> UInt32? {
        var out: UInt32 = 0
        for part in text.split(separator: "|").flatMap({ $0.split(separator: ",") }) {
            let p = part.uppercased().replacing("CONTAINER_", with: "")
            if let v = UInt32(p) { out |= v; continue }
            if p.hasPrefix("0X"), let v = UInt32(p.dropFirst(2), radix: 16) { out |= v; continue }
            guard let v = names.first(where: { $0.1 == p })?.0 else { return nil }
            out |= v
        }
        return out
    }
}

/// The container states of container.h.
public enum ContainerState: Int, Sendable {
    case created = 1, running = 2, frozen = 3, exited = 4

    public var name: String {
        switch self {
        case .created: return "created"
        case .running: return "running"
        case .frozen: return "frozen"
        case .exited: return "exited"
        }
    }
}
