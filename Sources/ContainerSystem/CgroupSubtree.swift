#if canImport(Glibc)
import Glibc
#endif

/// cgroup v2 controllers for the containers' parent: a controller's files
/// (memory.max, pids.max, cpu.max) exist in a cgroup only when its parent
/// lists it in `cgroup.subtree_control`, and a parent may list it only when
/// its own parent does. So every directory from the top we were given down
/// to the containers' parent enables the controllers for its children, once,
/// at ctrobjd's start, and each write is read back.
///
/// The no-internal-process rule: a non-root cgroup that holds processes may
/// not enable controllers for children (EBUSY). The root cgroup is exempt.
public enum CgroupSubtree {
    /// Enable `controllers` (those the directory offers) in the
    /// `cgroup.subtree_control` of `top` and of every directory below it down
    /// to `path` (both relative to `v2Mount`; "" is the root), making missing
    /// directories below `top`. Returns what `path` enables for its children.
    @discardableResult
    public static func enable(_ controllers: [String], v2Mount: String, top: String, path: String) throws -> Set<String> {
        let topParts = top.split(separator: "/").map(String.init)
        let parts = path.split(separator: "/").map(String.init)
        guard parts.starts(with: topParts) else {
            throw ContainerError(.invalidArgument, "cgroup \(path) is not below \(top.isEmpty ? "/" : top)")
        }
        var dir = v2Mount + topParts.map { "/\($0)" }.joined()
        var enabled = try enableOne(controllers, dir: dir)
        for part in parts.dropFirst(topParts.count) {
            dir += "/\(part)"
            try Sys.mkdir(dir)
            enabled = try enableOne(controllers, dir: dir)
        }
        return enabled
    }

    /// The controllers a cgroup directory offers (cgroup.controllers) or
    /// enables for its children (cgroup.subtree_control).
    public static func read(_ dir: String, _ file: String) -> Set<String> {
        let text = (try? Sys.readFile("\(dir)/\(file)")) ?? ""
        return Set(text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
    }

    static func enableOne(_ controllers: [String], dir: String) throws -> Set<String> {
        let offered = read(dir, "cgroup.controllers")
        let already = read(dir, "cgroup.subtree_control")
        let missing = controllers.filter { offered.contains($0) && !already.contains($0) }
        if !missing.isEmpty {
            do {
                try Sys.writeFile("\(dir)/cgroup.subtree_control", missing.map { "+\($0)" }.joined(separator: " "))
            } catch let e as ContainerError {
                let why = e.errno == EBUSY
                    ? "it holds processes (the no-internal-process rule) or is threaded"
                    : e.message
                throw ContainerError(ContainerError.codeFor(e.errno),
                                     "cgroup \(dir): cannot enable \(missing.joined(separator: " ")) for its children: \(why)",
                                     errno: e.errno)
            }
        }
        let now = read(dir, "cgroup.subtree_control")
        let notTaken = missing.filter { !now.contains($0) }
        guard notTaken.isEmpty else {
            throw ContainerError(.system, "cgroup \(dir): cgroup.subtree_control does not list \(notTaken.joined(separator: " ")) after enabling it", errno: EIO)
        }
        return now.intersection(controllers)
    }
}
