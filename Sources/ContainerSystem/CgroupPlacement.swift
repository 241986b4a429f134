import CShim
#if canImport(Glibc)
import Glibc
#endif

/// Where ctrobjd makes containers' cgroups, decided once at its start.
///
/// | layout          | ctrobjd's own v2 cgroup            | placement                                        |
/// |-----------------|------------------------------------|--------------------------------------------------|
/// | v1 or hybrid    | any                                | configured: `--cgroup-parent` in every hierarchy |
/// | pure v2         | "/"                                | configured: `--cgroup-parent` below the root     |
/// | pure v2         | X, delegated (see `isDelegated`)   | delegated: ctrobjd moves to X/daemon, containers under X/containers |
/// | pure v2         | X/daemon, X/containers beside it   | delegated (a restart inside the leaf it made)    |
/// | pure v2         | X, not delegated                   | configured                                       |
///
/// An explicit `--cgroup-parent` (a private daemon's, a test's) is kept to
/// unless `--cgroup-delegation yes`; `--cgroup-delegation no` always keeps to it.
///
/// On a systemd host (/run/systemd/system exists) a cgroup counts as
/// delegated only when systemd says so: the `trusted.delegate` xattr it sets
/// on a unit's cgroup with `Delegate=yes` (`user.delegate` from a user
/// manager). Elsewhere nobody else manages the tree, and any non-root cgroup
/// ctrobjd was started in and may write counts.
public struct CgroupPlacement: Sendable, Equatable {
    public enum Mode: String, Sendable { case configured, delegated }
    public var mode: Mode
    /// The containers' parent, relative to each hierarchy's mount.
    public var parent: String
    /// The delegated cgroup (relative to the v2 mount), when delegated.
    public var delegatedRoot: String?
    /// The leaf ctrobjd moved itself into, when delegated.
    public var daemonCgroup: String?
    /// Why this placement: one sentence for the log and `ctrobj info`.
    public var reason: String

    public enum Choice: String, Sendable { case auto, yes, no }

    /// ctrobjd's own cgroup2 path ("/system.slice/ctrobjd.service"), from /proc/self/cgroup.
    public static func ownV2Cgroup(procFile: String = "/proc/self/cgroup") -> String? {
        (try? Sys.readBytes(procFile)).flatMap { ProcInfo.cgroupV2Path($0) }
    }

    /// Whether the cgroup directory `dir` was handed to us (table above).
    public static func isDelegated(_ dir: String, systemd: Bool = Sys.exists("/run/systemd/system")) -> (Bool, String) {
        if systemd {
            for name in ["trusted.delegate", "user.delegate"] {
                var buf = [UInt8](repeating: 0, count: 16)
                let n = buf.withUnsafeMutableBytes { ccs_getxattr(dir, name, $0.baseAddress, UInt($0.count)) }
                if n > 0 && buf[0] == UInt8(ascii: "1") { return (true, "systemd delegated it (\(name)=1)") }
            }
            return (false, "systemd manages the tree and has not delegated it (no trusted.delegate xattr: Delegate=yes)")
        }
        for f in ["", "/cgroup.procs", "/cgroup.subtree_control"] where access(dir + f, W_OK) != 0 {
            return (false, "it is not writable (\(dir + f))")
        }
        let type = ((try? Sys.readFile("\(dir)/cgroup.type")) ?? "").trimmingSuffixNewline()
        guard type == "domain" else { return (false, "it is a \(type) cgroup, not a domain") }
        return (true, "no systemd, and ctrobjd was started in it and may write it")
    }

    /// Decide, without changing anything.
    public static func decide(layout: CgroupLayout, configuredParent: String, choice: Choice, parentGiven: Bool = false,
                              ownCgroup: String? = ownV2Cgroup()) -> CgroupPlacement {
        func configured(_ why: String) -> CgroupPlacement {
            CgroupPlacement(mode: .configured, parent: configuredParent, delegatedRoot: nil, daemonCgroup: nil, reason: why)
        }
        if choice == .no { return configured("--cgroup-delegation no") }
        if choice == .auto && parentGiven { return configured("--cgroup-parent was given") }
        guard layout.isPureV2, let v2 = layout.v2Mount else {
            return configured("the cgroup layout is \(layout.kindName), not pure v2")
        }
        guard let own = ownCgroup, own != "/", own.hasPrefix("/"), !own.contains("/../") else {
            return configured("ctrobjd runs in the root cgroup")
        }
        var root = String(own.dropFirst())
        // A restart inside the leaf an earlier start made.
        if root.hasSuffix("/daemon") {
            let up = String(root.dropLast("/daemon".count))
            if Sys.exists("\(v2)/\(up)/containers") { root = up }
        }
        let (delegated, why) = choice == .yes ? (true, "--cgroup-delegation yes") : isDelegated("\(v2)/\(root)")
        guard delegated else { return configured("its cgroup /\(root) is not delegated: \(why)") }
        return CgroupPlacement(mode: .delegated, parent: "\(root)/containers", delegatedRoot: root,
                               daemonCgroup: "\(root)/daemon", reason: why)
    }

    /// Carry it out: for a delegated cgroup, move every process in it
    /// (ctrobjd and whatever the service started with it) to the `daemon`
    /// leaf, so that the cgroup may enable controllers for its children;
    /// then enable the v2 controllers the project limits down the path to
    /// the containers' parent. Returns the controllers the parent enables.
    public func apply(layout: CgroupLayout) throws -> Set<String> {
        let wanted = layout.v2LimitControllers
        guard let v2 = layout.v2Mount else { return [] }
        guard mode == .delegated, let root = delegatedRoot, let leaf = daemonCgroup else {
            if wanted.isEmpty { return [] }
            return try CgroupSubtree.enable(wanted, v2Mount: v2, top: "", path: parent)
        }
        try Sys.mkdir("\(v2)/\(leaf)")
        let procs = try Sys.open("\(v2)/\(leaf)/cgroup.procs", O_WRONLY)
        // Our own pid first; then the rest, again while new ones appear.
        for _ in 0..<50 {
            let members = ((try? Sys.readFile("\(v2)/\(root)/cgroup.procs")) ?? "")
                .split(separator: "\n").compactMap { pid_t($0) }
            if members.isEmpty { break }
            let me = getpid()
            for pid in members.filter({ $0 == me }) + members.filter({ $0 != me }) {
                let text = Array("\(pid)".utf8)
                if pwrite(procs.raw, text, text.count, 0) < 0 {
                    let e = errno
                    if e == ESRCH { continue }
                    throw ContainerError(ContainerError.codeFor(e), "cgroup /\(leaf): moving pid \(pid) there: \(errnoDescription(e))", errno: e)
                }
            }
        }
        let left = ((try? Sys.readFile("\(v2)/\(root)/cgroup.procs")) ?? "").split(separator: "\n")
        guard left.isEmpty else {
            throw ContainerError(.busy, "cgroup /\(root): processes keep arriving (\(left.joined(separator: " "))); cannot empty it for its children")
        }
        // The daemon leaf gets what its parent offers; the containers' parent too.
        return try CgroupSubtree.enable(wanted, v2Mount: v2, top: root, path: parent)
    }

    /// What ctrobjd writes to `<state>/cgroup-placement` and `ctrobj info` prints.
    public func describe(layout: CgroupLayout, enabled: Set<String>) -> [(String, String)] {
        var out: [(String, String)] = [("layout", layout.kindName), ("placement", mode.rawValue)]
        if let r = delegatedRoot { out.append(("delegated", "/\(r)")) }
        if let d = daemonCgroup { out.append(("daemon", "/\(d)")) }
        out.append(("parent", "/\(parent)"))
        out.append(("v2-controllers", enabled.sorted().joined(separator: " ")))
        var sources: [String] = []
        for c in ["memory", "pids", "cpu", "cpuacct"] + (layout.v2Mount == nil ? ["freezer"] : []) {
            switch layout.source(of: c) {
            case .v2: sources.append("\(c)=v2")
            case .v1(let m): sources.append("\(c)=v1:\(m)")
            case .none: sources.append("\(c)=none")
            }
        }
        out.append(("controllers", sources.joined(separator: " ")))
        out.append(("freeze-kill", layout.v2Mount != nil ? "cgroup.freeze cgroup.kill" : "freezer.state, SIGKILL per member"))
        out.append(("reason", reason))
        return out
    }
}
