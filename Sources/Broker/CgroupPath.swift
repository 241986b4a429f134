import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// create's `cgroup` field: the container's cgroup at a path its creator
/// chose, relative to each hierarchy's root (OCI `linux.cgroupsPath`, as
/// runc's cgroupfs driver takes it), instead of <parent>/c<id>.
///
/// Rights: root only (uid 0 as ctrobjd sees it, i.e. root in ctrobjd's
/// user namespace, the initial one): placing a cgroup anywhere in the tree
/// is placing it outside every limit ctrobjd's parent imposes. Everyone
/// else gets EPERM.
///
/// What may be asked for (besides RequestRules.cgroupPath's shape): a leaf
/// that exists in no hierarchy (CgroupRequest: never an existing cgroup,
/// even an empty one), not at or below ctrobjd's parent (its housekeeping
/// owns every c<id> there) nor its delegated subtree, not below another
/// container's cgroup (recorded, or dead and still being removed). On pure
/// v2, no existing parent but the root may hold processes.
///
/// Crash consistency: before the first directory is made, the record's
/// directory exists; after each one, `<dir>/cgroup` says what has been made
/// (written whole: tmp + rename). A crash before the record leaves that
/// file in a directory without a record, and the next start's
/// removeOrphans takes away exactly what it names (each only if empty).
/// A crash between a mkdir and that write leaves one empty directory
/// behind, never removes one ctrobjd did not make. Once the record is on
/// disk it carries the same facts (`cgroup_made`).
extension Broker {
    /// The normalised requested path, after the rights and placement
    /// checks; nil when the request has no `cgroup` field. Changes nothing.
    func requestedCgroupPath(_ m: Message, conn: ClientConnection, name: String) throws -> String? {
        guard let raw = m["cgroup"] else { return nil }
        let shown = RequestRules.escaped(String(raw.prefix(200)))
        guard conn.uid == 0 else {
            throw ContainerError(.permission,
                "container \"\(RequestRules.escaped(name))\": container_create: cgroup \(shown): only root may choose a container's cgroup path; uid \(conn.uid) may not (its containers go below ctrobjd's parent)",
                errno: EPERM)
        }
        let path = try RequestRules.cgroupPath(raw, field: "container \"\(RequestRules.escaped(name))\": container_create: cgroup")
        func refuse(_ why: String) -> ContainerError {
            ContainerError(.permission, "container \"\(RequestRules.escaped(name))\": container_create: cgroup /\(RequestRules.escaped(path)): \(why)", errno: EPERM)
        }
        func within(_ p: String, _ top: String) -> Bool { !top.isEmpty && (p == top || p.hasPrefix(top + "/")) }
        if within(path, config.cgroupParent) {
            throw refuse("it is at or below ctrobjd's own parent /\(config.cgroupParent), whose cgroups ctrobjd names and removes itself")
        }
        if within(config.cgroupParent, path) {
            throw refuse("it holds ctrobjd's own parent /\(config.cgroupParent)")
        }
        if let root = cgroupPlacement?.delegatedRoot, within(path, root) || within(root, path) {
            throw refuse("it is ctrobjd's delegated subtree /\(root) or in it")
        }
        for r in byID.values where !r.cgroup.relativePath.isEmpty && !r.cgroup.removed && within(path, r.cgroup.relativePath) {
            throw refuse("it is at or below the cgroup of container \"\(RequestRules.escaped(r.name))\"")
        }
        for (cg, other, _) in pendingCgroups where within(path, cg.relativePath) {
            throw refuse("it is at or below the cgroup of destroyed container \"\(RequestRules.escaped(other))\", still being removed")
        }
        return path
    }

    /// Make the requested cgroup for container `id` (CgroupRequest), its
    /// progress recorded in `<state>/containers/c<id>/cgroup`.
    func makeRequestedCgroup(_ path: String, id: UInt64, name: String) throws -> CgroupSet {
        let dir = "c\(id)"
        try persistence.makeDirectory(dir)
        crashPoint("cgpath")
        do {
            return try CgroupRequest.make(layout: config.cgroupLayout, path: path) { made in
                try Sys.writeFileAtomically(cgroupIntentPath(dir), Self.encodeIntent(path: path, made: made), mode: 0o600)
                crashPoint("cgpath")
            }
        } catch let e as ContainerError {
            persistence.remove(directory: dir)
            throw ContainerError(e.code, "container \"\(RequestRules.escaped(name))\": container_create: \(e.message)", errno: e.errno)
        }
    }

    func cgroupIntentPath(_ dir: String) -> String { "\(config.containersDir)/\(dir)/cgroup" }

    static func encodeIntent(path: String, made: [String: CgroupRequest.Made]) -> String {
        let list = made.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.text)" }.joined(separator: ",")
        return String(decoding: Message("cgroup", ["path": path, "made": list]).encoded(), as: UTF8.self)
    }

    /// A record directory without a record (a create that never finished):
    /// take away the cgroup directories its `cgroup` file says were made.
    /// What the file names is checked as a request would be: a path of the
    /// right shape, only this machine's hierarchies.
    func removeOrphanCgroup(directory dir: String) {
        guard let text = try? Sys.readFile(cgroupIntentPath(dir)),
              let m = try? Message.decode(Array(text.utf8)),
              let raw = m["path"], let path = try? RequestRules.cgroupPath(raw), path == raw else { return }
        var made: [String: CgroupRequest.Made] = [:]
        let mounts = Set(config.cgroupLayout.hierarchies)
        for item in (m["made"] ?? "").split(separator: ",") {
            guard let eq = item.lastIndex(of: "=") else { return }
            let mount = String(item[..<eq])
            guard mounts.contains(mount), let v = CgroupRequest.Made(text: item[item.index(after: eq)...]) else { return }
            made[mount] = v
        }
        CgroupRequest.undo(path: path, made: made)
        logger.warning("\(dir): a create with cgroup /\(RequestRules.escaped(path)) did not finish: the cgroup directories it made were removed")
    }

    /// Once its cgroup is removed, a container is no longer found by that
    /// path: a requested path may be made again by someone else, and a
    /// process there is not this container's.
    func forgetRemovedCgroup(_ r: ContainerRecord) {
        if r.cgroup.removed { attribution.removeCgroup(of: r) }
    }

    /// `cgroup_made` of a record: "mount=count,…".
    static func encodeMade(_ made: [String: Int]) -> String {
        made.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
    }
}

extension ContainerRecord {
    /// The record fields of a requested cgroup (none for one below the parent).
    var requestedCgroupFields: [String: String] {
        guard !cgroup.made.isEmpty else { return [:] }
        var f = ["cgroup_made": Broker.encodeMade(cgroup.made)]
        if cgroup.removed { f["cgroup_removed"] = "1" }
        return f
    }

    /// Read them back; a malformed value makes the record unreadable.
    static func requestedCgroup(_ m: Message, path: String, layout: CgroupLayout) throws -> CgroupSet {
        let set = CgroupSet(layout: layout, relativePath: path)
        guard let text = m["cgroup_made"] else { return set }
        guard (try? RequestRules.cgroupPath(path)) == path else {
            throw ContainerError(.protocolError, "record has a requested cgroup path out of range")
        }
        let depth = path.split(separator: "/").count
        for item in text.split(separator: ",") {
            guard let eq = item.lastIndex(of: "="), let k = Int(item[item.index(after: eq)...]), k >= 1, k <= depth else {
                throw ContainerError(.protocolError, "record has a bad cgroup_made entry")
            }
            set.made[String(item[..<eq])] = k
        }
        set.removed = m["cgroup_removed"] == "1"
        return set
    }
}
