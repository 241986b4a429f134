#if canImport(Glibc)
import Glibc
#endif

/// Where the cgroup hierarchies are mounted, read from /proc/self/mountinfo.
/// Works on pure v1, pure v2 and hybrid machines: each controller is taken
/// from v2 when the v2 root offers it and from its v1 mount otherwise.
public struct CgroupLayout: Sendable {
    public var v2Mount: String?
    public var v2Controllers: Set<String>
    /// v1 controller name -> mount point ("cpu" -> "/sys/fs/cgroup/cpu").
    public var v1Mounts: [String: String]

    public init(v2Mount: String?, v2Controllers: Set<String>, v1Mounts: [String: String]) {
        self.v2Mount = v2Mount
        self.v2Controllers = v2Controllers
        self.v1Mounts = v1Mounts
    }

    public static func discover() -> CgroupLayout {
        var v2: String?
        var v1: [String: String] = [:]
        let text = (try? Sys.readFile("/proc/self/mountinfo")) ?? ""
        for line in text.split(separator: "\n") {
            let halves = line.split(separator: " - ")
            guard halves.count == 2 else { continue }
            let left = halves[0].split(separator: " ")
            let right = halves[1].split(separator: " ")
            guard left.count >= 5, right.count >= 3 else { continue }
            let mountPoint = String(left[4])
            if right[0] == "cgroup2" {
                if v2 == nil { v2 = mountPoint }
            } else if right[0] == "cgroup" {
                for opt in right[2].split(separator: ",") {
                    let o = String(opt)
                    if ["rw", "ro", "relatime", "nosuid", "nodev", "noexec"].contains(o) || o.hasPrefix("name=") { continue }
                    if v1[o] == nil { v1[o] = mountPoint }
                }
            }
        }
        var controllers = Set<String>()
        if let v2, let c = try? Sys.readFile("\(v2)/cgroup.controllers") {
            controllers = Set(c.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
        }
        return CgroupLayout(v2Mount: v2, v2Controllers: controllers, v1Mounts: v1)
    }

    public enum Source: Equatable, Sendable { case v2, v1(String), none }

    /// Where a controller lives on this machine.
    public func source(of controller: String) -> Source {
        if v2Mount != nil && v2Controllers.contains(controller) { return .v2 }
        if let m = v1Mounts[controller] { return .v1(m) }
        return .none
    }

    /// The controllers whose limits the project offers (memory.max, pids.max,
    /// cpu.max). cpuset and io would join them with limits of their own.
    public static let limitControllers = ["memory", "pids", "cpu"]

    /// The controllers taken from v2 here: these must be enabled in
    /// `cgroup.subtree_control` down the path to the containers' parent.
    public var v2LimitControllers: [String] {
        CgroupLayout.limitControllers.filter { source(of: $0) == .v2 }
    }

    /// Every hierarchy the project writes is cgroup2: no v1 file is touched.
    public var isPureV2: Bool {
        guard let v2Mount else { return false }
        return hierarchies == [v2Mount]
    }

    /// "v2" (cgroup2 only), "v1" (no cgroup2) or "hybrid" (both in use).
    public var kindName: String {
        if isPureV2 { return "v2" }
        return v2Mount == nil ? "v1" : "hybrid"
    }

    /// The hierarchies a container's cgroup is made in: v2 (if mounted) and
    /// the v1 mounts of the controllers the project uses that v2 lacks.
    public var hierarchies: [String] {
        var out: [String] = []
        if let v2Mount { out.append(v2Mount) }
        let freezerFromV1 = v2Mount == nil
        for c in ["memory", "pids", "cpu", "cpuacct"] + (freezerFromV1 ? ["freezer"] : []) {
            if case .v1(let m) = source(of: c), !out.contains(m) { out.append(m) }
        }
        return out
    }
}
