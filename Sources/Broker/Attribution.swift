import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// Attribution: which container an upcall came from. The one place that
/// decides it, for every route:
///
/// | route     | what names the process                          | decided by                      |
/// |-----------|-------------------------------------------------|---------------------------------|
/// | core      | %F / SO_PEERPIDFD pidfd (or pid, task pinned); a spooled core's saved identity | `attributeLive`, `attribute` |
/// | key       | the requester's pidfd (pid: of .request_key_auth) | `attributeLive`               |
/// | modprobe  | the kernel patch's CONTAINER_NAME (a stock kernel names no task) | `container(namedByKernel:)` |
/// | uevent    | the user namespace that owns the device's netns | `container(owningUserNamespace:)` |
///
/// A process identity (ProcessIdentity: its pid, cgroup v2 path, namespace
/// inodes) goes in; a container, or nil for the host (or another runtime:
/// handled as before install), comes out. O(1): the cgroup first (every
/// container made here has its own), then the namespaces. By namespace only
/// when the process is in the container's own user namespace (if it has
/// one): a container may share namespaces of others (set_ns), and that must
/// not bring it their processes' upcalls. ctrobjd's own namespaces (the
/// host's) are never indexed. The index is kept here too (AttributionIndex:
/// Broker.register, unregister and setNamespace call it).
struct AttributionIndex {
    /// Namespace inode -> the container that owns it.
    private(set) var byNamespace: [UInt64: ContainerRecord] = [:]
    /// Cgroup path below the hierarchies ("ctrobj/c5") -> container.
    private(set) var byCgroup: [String: ContainerRecord] = [:]

    /// What the identity already holds, looked up; nothing is read.
    func lookup(_ who: ProcessIdentity) -> ContainerRecord? {
        if let r = byCgroup[who.cgroupKey] { return r }
        // Only the namespaces a container or runtime makes for itself:
        // net, uts, ipc and cgroup namespaces are shared with other
        // processes by design (a named netns, a pod's), and a process in
        // one is not thereby the container's.
        for kind in [NamespaceKind.pid, .mnt, .user] {
            guard let ino = who.namespaces[kind], let r = byNamespace[ino] else { continue }
            if let user = r.namespaceInodes[.user], who.namespaces[.user] != user { continue }
            return r
        }
        return nil
    }

    /// Index a record by its cgroup and namespaces. An adopted container's
    /// cgroup may hold host processes too: it is found by its namespaces only.
    mutating func add(_ r: ContainerRecord) {
        if !r.adopted && !r.cgroup.relativePath.isEmpty && !r.cgroup.removed { byCgroup[r.cgroup.relativePath] = r }
        for (kind, ino) in r.namespaceInodes where !r.joinedKinds.contains(kind) { addNamespace(kind, ino, of: r) }
    }

    mutating func remove(_ r: ContainerRecord) {
        removeCgroup(of: r)
        for (_, ino) in r.namespaceInodes { removeNamespace(ino, of: r) }
    }

    /// Its cgroup is gone (removed): a process at that path is not its
    /// (a requested path may be made again by someone else).
    mutating func removeCgroup(of r: ContainerRecord) {
        if byCgroup[r.cgroup.relativePath] === r { byCgroup.removeValue(forKey: r.cgroup.relativePath) }
    }

    /// A shared namespace (a pod's net) attributes to its first owner; the
    /// host's (ctrobjd's own) to nobody.
    mutating func addNamespace(_ kind: NamespaceKind, _ ino: UInt64, of r: ContainerRecord) {
        if byNamespace[ino] == nil && !Self.isOwn(kind, ino) { byNamespace[ino] = r }
    }

    mutating func removeNamespace(_ ino: UInt64, of r: ContainerRecord) {
        if byNamespace[ino] === r { byNamespace.removeValue(forKey: ino) }
    }

    /// Whether a namespace inode is ctrobjd's own (the host's).
    static func isOwn(_ kind: NamespaceKind, _ ino: UInt64) -> Bool { Namespaces.own[kind]?.inode == ino }
}

extension Broker {
    /// What the identity already holds, looked up; nothing is read.
    func attribute(_ who: ProcessIdentity) -> ContainerRecord? { attribution.lookup(who) }

    enum LiveAttribution {
        case container(ContainerRecord)
        /// In no container of ours: the host's handling.
        case host
        /// The pidfd no longer names the task: what was read is not its.
        case gone
    }

    /// A live process pinned by `pidfd`: what the identity lacks is read
    /// through /proc, the cheap part first (the cgroup: one read), the
    /// namespaces (seven stats) only when the cgroup names no container;
    /// then the answer stands only if the pidfd still names the task.
    func attributeLive(_ who: inout ProcessIdentity, pidfd: Pidfd) -> LiveAttribution {
        if who.cgroup.isEmpty { who.readCgroup() }
        var found = attribute(who)
        if found == nil && who.namespaces.isEmpty {
            who.readNamespaces()
            found = attribute(who)
        }
        guard pidfd.names(who.pid) else { return .gone }
        return found.map { .container($0) } ?? .host
    }

    /// A module request names its container only through the kernel patch
    /// (CONTAINER_NAME in the helper's environment); nil: no such container.
    func container(namedByKernel name: String) -> ContainerRecord? { byName[name] }

    /// The container whose own user namespace is `userns` (a device's uevents
    /// go in as that container's root); nil if none is.
    func container(owningUserNamespace userns: UInt64) -> ContainerRecord? {
        guard let r = attribution.byNamespace[userns], r.namespaceInodes[.user] == userns else { return nil }
        return r
    }

    /// Whether a namespace inode is ctrobjd's own (the host's): never indexed.
    func isOwnNamespace(_ kind: NamespaceKind, _ ino: UInt64) -> Bool { AttributionIndex.isOwn(kind, ino) }
}
