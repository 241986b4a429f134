#if canImport(Glibc)
import Glibc
#endif

/// A container's cgroup at a path its (root) creator asked for, relative to
/// each hierarchy's root (an OCI `linux.cgroupsPath` such as
/// "libpod_parent/libpod-<id>"), instead of below ctrobjd's parent.
///
/// The rule that keeps it from taking over or deleting anything else: the
/// leaf must not exist in any hierarchy. ctrobjd makes it (and the missing
/// parents, recorded per hierarchy in `CgroupSet.made`), and on removal
/// takes away only what it made: the leaf, then each made parent that is
/// empty. An existing cgroup, even an empty one, is refused: whether
/// nobody else uses it cannot be known (an empty cgroup may be about to be
/// joined, or be another manager's placeholder).
///
/// On pure cgroup v2 the limit controllers are enabled in the
/// `cgroup.subtree_control` of every directory from the root down to the
/// leaf's parent (as CgroupSubtree does for ctrobjd's parent); an existing
/// parent other than the root that holds processes is refused before
/// anything is made (the no-internal-process rule would refuse the
/// controllers, and the container would have no limits).
public enum CgroupRequest {
    /// Make the cgroup at `path` (normalised: RequestRules.cgroupPath).
    /// `progress` is called after each directory made, with what is made
    /// so far (`Made`), so that the caller can record it before the next
    /// step (crash consistency); an error it throws undoes what was made.
    public static func make(layout: CgroupLayout, path: String,
                            progress: ([String: Made]) throws -> Void) throws -> CgroupSet {
        let parts = path.split(separator: "/").map(String.init)
        guard !parts.isEmpty else { throw ContainerError(.invalidArgument, "cgroup path: names the root cgroup") }
        let hierarchies = layout.hierarchies
        guard !hierarchies.isEmpty else { throw ContainerError(.invalidArgument, "cgroup path: no cgroup hierarchy is mounted", errno: EOPNOTSUPP) }
        // Look first, change nothing: how much of the path exists where.
        var firstMissing: [String: Int] = [:]
        for mount in hierarchies {
            var dir = mount
            var i = 0
            while i < parts.count {
                var st = stat()
                if lstat(dir + "/" + parts[i], &st) < 0 {
                    let e = errno
                    if e == ENOENT { break }
                    throw ContainerError(ContainerError.codeFor(e), "cgroup /\(path): \(dir)/\(parts[i]): \(errnoDescription(e))", errno: e)
                }
                guard st.st_mode & S_IFMT == S_IFDIR else {
                    throw ContainerError(.invalidArgument, "cgroup /\(path): \(dir)/\(parts[i]) is not a cgroup directory", errno: ENOTDIR)
                }
                dir += "/" + parts[i]
                i += 1
            }
            if i == parts.count {
                throw ContainerError(.exists, "cgroup /\(path) already exists (\(dir)): ctrobjd makes a container's cgroup itself and never takes over an existing one",
                                     errno: EEXIST)
            }
            firstMissing[mount] = i
        }
        let wanted = layout.isPureV2 ? layout.v2LimitControllers : []
        if layout.isPureV2, let v2 = layout.v2Mount {
            var dir = v2
            for p in parts.prefix(firstMissing[v2] ?? 0) {
                dir += "/" + p
                let procs = ((try? Sys.readFile("\(dir)/cgroup.procs")) ?? "").split(separator: "\n")
                if !procs.isEmpty {
                    throw ContainerError(.busy, "cgroup /\(path): its parent \(dir) holds processes (\(procs.prefix(4).joined(separator: " "))\(procs.count > 4 ? " …" : "")); on cgroup v2 a container's cgroup cannot go below it",
                                         errno: EBUSY)
                }
            }
        }
        let set = CgroupSet(layout: layout, relativePath: path)
        var made: [String: Made] = [:]
        do {
            for mount in hierarchies {
                let first = firstMissing[mount] ?? 0
                var dir = mount
                for (i, p) in parts.enumerated() {
                    if mount == layout.v2Mount && !wanted.isEmpty {
                        _ = try CgroupSubtree.enableOne(wanted, dir: dir)
                    }
                    dir += "/" + p
                    guard i >= first else { continue }
                    if Glibc.mkdir(dir, 0o755) < 0 {
                        let e = errno
                        if e == EEXIST {
                            throw ContainerError(.exists, "cgroup /\(path): \(dir) appeared while ctrobjd made the path; not taken over", errno: EEXIST)
                        }
                        throw ContainerError(ContainerError.codeFor(e), "cgroup /\(path): mkdir \(dir): \(errnoDescription(e))", errno: e)
                    }
                    made[mount] = Made(depth: i + 1, count: i - first + 1)
                    try progress(made)
                }
                set.made[mount] = made[mount]?.count
            }
        } catch {
            undo(path: path, made: made)
            throw error
        }
        return set
    }

    /// What was made in one hierarchy: the `count` directories ending at
    /// `depth` components of the path (so `depth - count` existed before).
    public struct Made: Sendable, Equatable {
        public var depth: Int
        public var count: Int
        public init(depth: Int, count: Int) {
            self.depth = depth
            self.count = count
        }

        /// "depth:count", as ctrobjd records it.
        public var text: String { "\(depth):\(count)" }
        public init?(text: Substring) {
            let f = text.split(separator: ":")
            guard f.count == 2, let d = Int(f[0]), let c = Int(f[1]), c >= 1, d >= c, d <= 64 else { return nil }
            self.init(depth: d, count: c)
        }
    }

    /// Remove what `make` made (in whatever state it stopped): per
    /// hierarchy mount, the made directories deepest first, each only if
    /// empty (rmdir); the first that will not go stops that hierarchy.
    public static func undo(path: String, made: [String: Made]) {
        let all = path.split(separator: "/")
        for (mount, m) in made where m.count > 0 && m.depth <= all.count {
            var parts = Array(all.prefix(m.depth))
            for _ in 0..<m.count {
                if rmdir(mount + parts.map { "/\($0)" }.joined()) < 0 { break }
                parts.removeLast()
            }
        }
    }
}
