import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// One container, as the daemon (playing the kernel) holds it.
public final class ContainerRecord {
    public let id: UInt64
    public let name: String
    public let flags: UInt32
    public let owner: uid_t
    public let ownerGid: gid_t
    public let createdAt: Int
    /// First host id of the user namespace's block (root creators only).
    public var idBase: UInt32?
    public var state: ContainerState = .created
    /// Namespace fds by kind; pid appears once init runs (or when shared in).
    public var namespaces: [NamespaceKind: OwnedFD] = [:]
    public var namespaceInodes: [NamespaceKind: UInt64] = [:]
    /// The container's "/", an O_PATH directory fd.
    public var root: OwnedFD?
    public let cgroup: CgroupSet
    public var initPid: pid_t = 0
    public var initStartTime: UInt64 = 0
    public var initPidfd: OwnedFD?
    public var exitStatus: Int32?
    /// Live container fds: client end's socket cookie -> daemon's end.
    public var ends: [UInt64: OwnedFD] = [:]
    /// Every client end ever handed out that may still exist.
    public var cookies: Set<UInt64> = []
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
        guard namespaces[.user] != nil else { return 0 }
        return adoptedRootUID ?? idBase ?? owner
    }
    /// Modules a request from this container may load (none by default).
    public var allowedModules: [String] = []
    /// Host devices whose uevents are forwarded into its network namespace
    /// (kernel names: "loop3", "veth1"; their children follow). None by default.
    public var grantedDevices: [String] = []
    /// The connection that is starting init, if any.
    public var forkingConnection: ObjectIdentifier?
    /// cgroup.procs of each of its cgroup directories, opened (with ctrobjd's
    /// rights) at the first join plan and duplicated for every later one: a
    /// plan goes out for each exec, and for each key request from inside.
    var procsFiles: [OwnedFD] = []

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

    /// Fresh fds on its cgroup.procs files, for one join plan. An adopted
    /// container's cgroups belong to another runtime, which may remove and
    /// remake them: those are opened anew each time.
    func procsFilesForJoin() throws -> [OwnedFD] {
        if adopted { return try cgroup.procsFiles() }
        if procsFiles.isEmpty { procsFiles = try cgroup.procsFiles() }
        return try procsFiles.map { try $0.duplicate() }
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
        var f: [String: String] = [
            "id": "\(id)", "name": name, "flags": "\(flags)", "state": "\(visibleState.rawValue)",
            "state_name": visibleState.name, "init_pid": "\(initPid)", "owner": "\(owner)",
            "created": "\(createdAt)", "cgroup": cgroup.relativePath, "core_policy": corePolicy,
            "modules": allowedModules.joined(separator: ","), "devices": grantedDevices.joined(separator: ","),
        ]
        if let s = exitStatus { f["exit_status"] = "\(s)" }
        for (k, ino) in namespaceInodes { f["ns.\(k.rawValue)"] = "\(ino)" }
        return f
    }

    // MARK: persistence

    var persistedFields: [String: String] {
        var f: [String: String] = [
            "id": "\(id)", "name": name, "flags": "\(flags)", "owner": "\(owner)", "gid": "\(ownerGid)",
            "created": "\(createdAt)", "state": "\(state.rawValue)", "cgroup": cgroup.relativePath,
            "init_pid": "\(initPid)", "init_start": "\(initStartTime)",
            "cookies": cookies.sorted().map(String.init).joined(separator: ","),
            "namespaces": namespaces.keys.map(\.rawValue).sorted().joined(separator: ","),
        ]
        if let b = idBase { f["id_base"] = "\(b)" }
        if let s = exitStatus { f["exit_status"] = "\(s)" }
        f["core_policy"] = corePolicy
        f["modules"] = allowedModules.joined(separator: ",")
        f["devices"] = grantedDevices.joined(separator: ",")
        if adopted { f["adopted"] = "1" }
        if let a = adoptedRootUID { f["adopted_root_uid"] = "\(a)" }
        return f
    }

    static func fromPersisted(_ m: Message, layout: CgroupLayout) throws -> ContainerRecord {
        guard let id = m.uint64("id"), let name = m["name"], let flags = m.int("flags"),
              let owner = m.int("owner"), let gid = m.int("gid"), let cg = m["cgroup"] else {
            throw ContainerError(.protocolError, "record is missing fields")
        }
        let r = ContainerRecord(id: id, name: name, flags: UInt32(flags), owner: uid_t(owner), ownerGid: gid_t(gid),
                                createdAt: m.int("created") ?? 0,
                                cgroup: CgroupSet(layout: layout, relativePath: cg))
        r.state = ContainerState(rawValue: m.int("state") ?? 1) ?? .created
        r.idBase = m.int("id_base").map { UInt32($0) }
        r.initPid = pid_t(m.int("init_pid") ?? 0)
        r.initStartTime = m.uint64("init_start") ?? 0
        r.exitStatus = m.int("exit_status").map { Int32($0) }
        r.corePolicy = m["core_policy"] ?? "file"
        r.adopted = m["adopted"] == "1"
        r.adoptedRootUID = m.int("adopted_root_uid").map { UInt32($0) }
        r.allowedModules = (m["modules"] ?? "").split(separator: ",").map(String.init)
        r.grantedDevices = (m["devices"] ?? "").split(separator: ",").map(String.init)
        r.cookies = Set((m["cookies"] ?? "").split(separator: ",").compactMap { UInt64($0) })
        return r
    }
}
