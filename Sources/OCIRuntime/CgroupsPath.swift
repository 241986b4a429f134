import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// `linux.cgroupsPath`, as runc's cgroupfs driver reads it, turned into the
/// path ctrobjd's create takes (relative to each hierarchy's root):
///
///   "/a/b"  absolute: below each hierarchy's root, the same in all of them
///   "a/b"   relative: below the runtime's own cgroup, which is what runc
///           does: in a v1 hierarchy below the cgroup it runs in there, in
///           cgroup v2 below the parent of the cgroup it runs in (its own
///           holds it, and a cgroup with processes cannot give controllers
///           to children). ctrobjd places one path in every hierarchy, so a
///           relative path is honoured only when those bases agree (a
///           runtime started from the root cgroups, as podman's conmon and
///           containerd's shim usually are); otherwise create fails naming
///           the field.
///
/// The runtime-spec leaves relative paths to the runtime; it requires that
/// the path, when given, be used (never a silent drop), which ctrobjd's
/// create then does or refuses.
enum CgroupsPath {
    static func resolve(_ raw: String, procFile: String = "/proc/self/cgroup", layout: CgroupLayout = .discover()) throws -> String {
        let field = "linux.cgroupsPath"
        let shaped: String
        do { shaped = try RequestRules.cgroupPath(raw, field: field) }
        catch let e as ContainerError { throw OCIError.field(field, e.message) }
        if raw.hasPrefix("/") { return shaped }
        // Relative: the base per hierarchy, as runc takes it.
        let text = (try? Sys.readFile(procFile)) ?? ""
        var own: [String: String] = [:] // controller ("" for v2) -> path
        for line in text.split(separator: "\n") {
            let f = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard f.count == 3 else { continue }
            if f[1].isEmpty { own[""] = String(f[2]); continue }
            for c in f[1].split(separator: ",") { own[String(c)] = String(f[2]) }
        }
        var bases: [String: String] = [:] // mount -> base
        for mount in layout.hierarchies {
            if mount == layout.v2Mount {
                guard let p = own[""] else { throw OCIError.field(field, "relative \(raw.debugDescription): no cgroup v2 line in \(procFile)") }
                var parts = p.split(separator: "/")
                if !parts.isEmpty { parts.removeLast() }
                bases[mount] = parts.joined(separator: "/")
            } else {
                guard let c = layout.v1Mounts.first(where: { $0.value == mount })?.key, let p = own[c] else {
                    throw OCIError.field(field, "relative \(raw.debugDescription): the runtime's cgroup in \(mount) is not in \(procFile)")
                }
                bases[mount] = p.split(separator: "/").joined(separator: "/")
            }
        }
        let distinct = Set(bases.values)
        guard distinct.count == 1, let base = distinct.first else {
            let shown = bases.sorted { $0.key < $1.key }.map { "\($0.key): /\($0.value)" }.joined(separator: ", ")
            throw OCIError.field(field, "relative \(raw.debugDescription) is taken below the runtime's own cgroup (as runc: v1 its cgroup, v2 that cgroup's parent), and here those differ between hierarchies (\(shown)); ctrobjd places one path in all of them: give an absolute path")
        }
        let joined = base.isEmpty ? shaped : "\(base)/\(shaped)"
        do { return try RequestRules.cgroupPath(joined, field: field) }
        catch let e as ContainerError { throw OCIError.field(field, e.message) }
    }
}
