import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// One container, as the daemon (playing the kernel) holds it. Confined to
/// the loop thread like the Broker; a worker that needs a field copies it
/// before it starts (Sendable only to be carried back through `loop.post`).
public final class ContainerRecord: @unchecked Sendable {
    public let id: UInt64
    public let name: String
    public let flags: UInt32
    public let owner: uid_t
    public let ownerGid: gid_t
    public let createdAt: Int
    /// First host id of the user namespace's block (root creators only).
    public var idBase: UInt32?
    public var state: ContainerState = .created
    /// Its namespaces, each pinned by a bind mount of its nsfs file at
    /// <record dir>/ns/<pin name> ("net-4026532001"; "net" in records of
    /// older versions). pid appears once init runs (or when shared in).
    /// What the container has is what is pinned here.
    public var pins: [NamespaceKind: String] = [:]
    public var namespaceInodes: [NamespaceKind: UInt64] = [:]
    /// Namespaces it joined (container_set_ns) rather than was born with:
    /// other processes live in them too, so they never attribute upcalls.
    public var joinedKinds: Set<NamespaceKind> = []
    /// Open namespace fds: made at create, opened from the pins on use
    /// (Broker.namespaceFD), closed when init exits or when the container
    /// falls out of the broker's fd cache (Broker.touchFDCache).
    var namespaces: [NamespaceKind: OwnedFD] = [:]
    /// Pins replaced by set_ns: unmounted once the record naming their
    /// successors is on disk (Persistence.save).
    var stalePins: [String] = []
    /// The container's "/", an O_PATH directory fd (opened on first use after a restart).
    var root: OwnedFD?
    /// container_destroy has begun: a restart finishes it.
    public var destroying = false
    public let cgroup: CgroupSet
    public var initPid: pid_t = 0
    public var initStartTime: UInt64 = 0
    public var initPidfd: Pidfd?
    public var exitStatus: Int32?
    /// Live container fds: client end's socket cookie -> daemon's end.
    public var ends: [UInt64: OwnedFD] = [:]
    /// Every client end ever handed out that may still exist (at most maxCookies).
    public var cookies: Set<UInt64> = []
    static let maxCookies = 256
    /// Whom each live end is charged to (Broker.endsPerPrincipal).
    var endCharges: [UInt64: uid_t] = [:]
    /// Where its cores go: "file" (default) or "drop".
    public var corePolicy = "file"
    /// Registered from another runtime's running process (ctrobj adopt):
    /// ctrobjd never kills its processes nor removes its cgroup.
    public var adopted = false
    /// The host uid that root inside maps to, when ctrobjd did not make the
    /// user namespace itself (adopted containers).
    public var adoptedRootUID: UInt32?
    /// The host uid and gid of the container's root, as which its files are made.
    public var rootHostID: UInt32 {
        guard pins[.user] != nil else { return 0 }
        return adoptedRootUID ?? idBase ?? owner
    }
    /// The host gid of the container's root (an unprivileged creator maps its own gid).
    public var rootHostGID: UInt32 {
        guard pins[.user] != nil else { return 0 }
        if adopted || idBase != nil { return rootHostID }
        return ownerGid
    }
    /// How many host ids its user namespace maps, from the root's id on.
    public var adoptedIDCount: UInt32?
    func idCount(_ config: BrokerConfig) -> UInt32 {
        if adopted { return adoptedIDCount ?? 1 }
        return idBase != nil ? config.idRangeSize : 1
    }
    /// Modules a request from this container may load (none by default).
    public var allowedModules: [String] = []
    /// Host devices whose uevents are forwarded into its network namespace
    /// (kernel names: "loop3", "veth1"; their children follow). None by default.
    public var grantedDevices: [String] = []
    /// The connection that is starting init, if any.
    public var forkingConnection: ObjectIdentifier?

    public init(id: UInt64, name: String, flags: UInt32, owner: uid_t, ownerGid: gid_t,
                createdAt: Int, cgroup: CgroupSet) {
        self.id = id
        self.name = name
        self.flags = flags
        self.owner = owner
        self.ownerGid = ownerGid
        self.createdAt = createdAt
        self.cgroup = cgroup
    }

    public var directoryName: String { "c\(id)" }

    /// Fresh fds on its cgroup.procs files, for one join plan, opened anew
    /// each time (a plan goes out for each exec, and for each key request
    /// from inside): keeping them open would cost one fd per hierarchy per
    /// container, which at thousands of containers is more than
    /// RLIMIT_NOFILE allows (docs/architecture.md, "Node scale").
    func procsFilesForJoin() throws -> [OwnedFD] {
        try cgroup.procsFiles()
    }

    public var killOnClose: Bool { flags & ContainerFlags.killOnClose != 0 }

    /// The state a caller sees (frozen is read from the cgroup).
    public var visibleState: ContainerState {
        if state == .running && cgroup.isFrozen { return .frozen }
        return state
    }

    func err(_ code: ContainerError.Code, _ action: String, _ what: String, errno: Int32? = nil) -> ContainerError {
        ContainerError(code, "container \"\(name)\": \(action): \(what)", errno: errno)
    }

    public var statusFields: [String: String] {
        Dictionary(statusPairs, uniquingKeysWith: { a, _ in a })
    }

    /// statusFields as pairs, in a fixed order (list's compact entries).
    public var statusPairs: [(String, String)] {
        let state = visibleState
        var f: [(String, String)] = [
            ("id", "\(id)"), ("name", name), ("flags", "\(flags)"), ("state", "\(state.rawValue)"),
            ("state_name", state.name), ("init_pid", "\(initPid)"), ("owner", "\(owner)"),
            ("created", "\(createdAt)"), ("cgroup", cgroup.relativePath), ("core_policy", corePolicy),
            ("modules", allowedModules.joined(separator: ",")), ("devices", grantedDevices.joined(separator: ",")),
        ]
        if let s = exitStatus { f.append(("exit_status", "\(s)")) }
        if adopted { f.append(("adopted", "1")) }
        for (k, ino) in namespaceInodes { f.append(("ns.\(k.rawValue)", "\(ino)")) }
        return f
    }

    // MARK: persistence

    var persistedFields: [String: String] {
        var f: [String: String] = [
            "id": "\(id)", "name": name, "flags": "\(flags)", "owner": "\(owner)", "gid": "\(ownerGid)",
            "created": "\(createdAt)", "state": "\(state.rawValue)", "cgroup": cgroup.relativePath,
            "init_pid": "\(initPid)", "init_start": "\(initStartTime)",
            "cookies": cookies.sorted().map(String.init).joined(separator: ","),
            "namespaces": pins.values.sorted().joined(separator: ","),
        ]
        if let b = idBase { f["id_base"] = "\(b)" }
        if let s = exitStatus { f["exit_status"] = "\(s)" }
        f["core_policy"] = corePolicy
        f["modules"] = allowedModules.joined(separator: ",")
        f["devices"] = grantedDevices.joined(separator: ",")
        if adopted { f["adopted"] = "1" }
        if !joinedKinds.isEmpty { f["joined"] = joinedKinds.map(\.rawValue).sorted().joined(separator: ",") }
        if destroying { f["destroying"] = "1" }
        if let a = adoptedRootUID { f["adopted_root_uid"] = "\(a)" }
        if let a = adoptedIDCount { f["adopted_id_count"] = "\(a)" }
        f.merge(requestedCgroupFields) { a, _ in a }
        return f
    }

    /// A record as saved; a field out of range makes the whole record unreadable (never a trap).
    static func fromPersisted(_ m: Message, layout: CgroupLayout) throws -> ContainerRecord {
        func n<T: FixedWidthInteger>(_ key: String, _: T.Type) -> T? { m[key].flatMap { T($0) } }
        guard let id = n("id", UInt64.self), let name = m["name"], let flags = n("flags", UInt32.self),
              let owner = n("owner", uid_t.self), let gid = n("gid", gid_t.self), let cg = m["cgroup"] else {
            throw ContainerError(.protocolError, "record is missing fields")
        }
        // What a request could not have made, a record may not bring back.
        try Creator.validate(name: name, flags: flags)
        guard let state = ContainerState(rawValue: n("state", Int.self) ?? 1),
              let initPid = m["init_pid"] == nil ? 0 : n("init_pid", pid_t.self), initPid >= 0, Int64(initPid) <= RequestRules.pidMax,
              !cg.utf8.contains(where: { $0 < 0x20 }), !cg.split(separator: "/").contains("..") else {
            throw ContainerError(.protocolError, "record has fields out of range")
        }
        let r = ContainerRecord(id: id, name: name, flags: flags, owner: owner, ownerGid: gid,
                                createdAt: n("created", Int.self) ?? 0,
                                cgroup: try requestedCgroup(m, path: cg, layout: layout))
        r.state = state
        r.idBase = n("id_base", UInt32.self)
        r.initPid = initPid
        r.initStartTime = n("init_start", UInt64.self) ?? 0
        r.exitStatus = n("exit_status", Int32.self)
        r.corePolicy = m["core_policy"] ?? "file"
        r.adopted = m["adopted"] == "1"
        r.joinedKinds = Set((m["joined"] ?? "").split(separator: ",").compactMap { NamespaceKind(rawValue: String($0)) })
        r.destroying = m["destroying"] == "1"
        r.adoptedRootUID = n("adopted_root_uid", UInt32.self)
        r.adoptedIDCount = n("adopted_id_count", UInt32.self)
        r.allowedModules = (m["modules"] ?? "").split(separator: ",").map(String.init)
        r.grantedDevices = (m["devices"] ?? "").split(separator: ",").map(String.init)
        r.cookies = Set((m["cookies"] ?? "").split(separator: ",").compactMap { UInt64($0) })
        return r
    }
}
