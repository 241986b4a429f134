import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// What `status` and `list` report about a container.
public struct ContainerStatus: Sendable, Equatable {
    public var id: UInt64
    public var name: String
    public var flags: UInt32
    public var state: ContainerState
    public var initPid: pid_t
    /// A wait(2) status, when init has exited and been reaped.
    public var exitStatus: Int32?
    public var owner: uid_t
    public var created: Int
    public var cgroup: String
    public var namespaceInodes: [String: UInt64]
    /// Registered from another runtime's process (adopt): ctrobjd never
    /// kills it, and destroying it only forgets the record.
    public var adopted: Bool
    /// Its upcall policy: "file", "drop" or "handler:/PATH"; the modules it may load.
    public var corePolicy: String
    public var modules: [String]

    init(fields f: [String: String]) {
        id = UInt64(f["id"] ?? "") ?? 0
        name = f["name"] ?? ""
        flags = UInt32(f["flags"] ?? "") ?? 0
        state = ContainerState(rawValue: Int(f["state"] ?? "") ?? 1) ?? .created
        initPid = pid_t(f["init_pid"] ?? "") ?? 0
        exitStatus = f["exit_status"].flatMap { Int32($0) }
        owner = uid_t(f["owner"] ?? "") ?? 0
        created = Int(f["created"] ?? "") ?? 0
        cgroup = f["cgroup"] ?? ""
        var ns: [String: UInt64] = [:]
        for (k, v) in f where k.hasPrefix("ns.") { ns[String(k.dropFirst(3))] = UInt64(v) }
        namespaceInodes = ns
        adopted = f["adopted"] == "1"
        corePolicy = f["core_policy"] ?? ""
        modules = (f["modules"] ?? "").split(separator: ",").map(String.init)
    }

    /// "exited 3", "killed by signal 9", or nil.
    public var exitDescription: String? {
        guard let s = exitStatus else { return state == .exited ? "exited (status not yet known)" : nil }
        if s & 0x7f == 0 { return "exited \((s >> 8) & 0xff)" }
        return "killed by signal \(s & 0x7f)"
    }
}
