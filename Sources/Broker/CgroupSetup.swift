import ContainerSystem
#if canImport(Glibc)
import Glibc
#endif

/// Where containers' cgroups go, settled once at start (before any record is
/// restored or made): a delegated cgroup v2 subtree ctrobjd was started in,
/// or the configured `--cgroup-parent` (CgroupPlacement has the table). On
/// cgroup v2 the limit controllers are enabled down the path, each write read
/// back; a failure there stops the start with the cgroup and the reason.
extension Broker {
    func placeCgroups() throws {
        let layout = config.cgroupLayout
        let placement = CgroupPlacement.decide(layout: layout, configuredParent: config.cgroupParent,
                                               choice: config.cgroupDelegation, parentGiven: config.cgroupParentGiven)
        let enabled = try placement.apply(layout: layout)
        config.cgroupParent = placement.parent
        cgroupPlacement = placement
        let missing = layout.v2LimitControllers.filter { !enabled.contains($0) }
        var line = "cgroups: \(layout.kindName) layout; "
        if placement.mode == .delegated, let root = placement.delegatedRoot, let leaf = placement.daemonCgroup {
            line += "delegated subtree /\(root): ctrobjd moved to /\(leaf), containers under /\(placement.parent)"
        } else {
            line += "containers under --cgroup-parent \(placement.parent)"
        }
        line += " (\(placement.reason))"
        if !enabled.isEmpty { line += "; v2 controllers enabled for them: \(enabled.sorted().joined(separator: " "))" }
        logger.info("\(line)")
        if !missing.isEmpty {
            logger.warning("cgroups: \(missing.joined(separator: " ")) not offered to /\(placement.parent): its limits will fail")
        }
        let text = placement.describe(layout: layout, enabled: enabled).map { "\($0.0): \($0.1)\n" }.joined()
        try Sys.writeFileAtomically(config.placementPath, text, mode: 0o644)
    }
}
