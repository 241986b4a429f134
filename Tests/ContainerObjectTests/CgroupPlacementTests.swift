import ContainerObject
import ContainerSystem
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Where ctrobjd puts containers' cgroups (CgroupPlacement) and how it
/// enables v2 controllers for them (CgroupSubtree). Pure v2 itself is proven
/// in a qemu guest (scripts/cgroup2-guest.sh); here the decision table, and
/// the subtree_control writes on this machine's own cgroup2 tree, whose one
/// controller (hugetlb) stands in for memory, pids and cpu.
@Suite("cgroup placement and v2 controllers", .serialized)
struct CgroupPlacementTests {
    static let pureV2 = CgroupLayout(v2Mount: "/sys/fs/cgroup", v2Controllers: ["memory", "pids", "cpu", "io"], v1Mounts: [:])
    static let hybrid = CgroupLayout(v2Mount: "/sys/fs/cgroup/unified", v2Controllers: ["hugetlb"],
                                     v1Mounts: ["memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids",
                                                "cpu": "/sys/fs/cgroup/cpu", "cpuacct": "/sys/fs/cgroup/cpuacct"])
    static let v1 = CgroupLayout(v2Mount: nil, v2Controllers: [], v1Mounts: ["memory": "/m", "pids": "/p", "cpu": "/c", "freezer": "/f"])

    @Test("the layouts are told apart, and only pure v2 takes limit controllers from v2")
    func layouts() {
        #expect(Self.pureV2.kindName == "v2" && Self.pureV2.isPureV2)
        #expect(Self.pureV2.v2LimitControllers == ["memory", "pids", "cpu"])
        #expect(Self.pureV2.hierarchies == ["/sys/fs/cgroup"])
        #expect(Self.hybrid.kindName == "hybrid" && !Self.hybrid.isPureV2)
        #expect(Self.hybrid.v2LimitControllers.isEmpty)
        #expect(Self.v1.kindName == "v1" && Self.v1.v2LimitControllers.isEmpty)
    }

    @Test("delegated only on pure v2, outside the root cgroup, when asked or handed over")
    func decisions() {
        func d(_ l: CgroupLayout, _ choice: CgroupPlacement.Choice, own: String?, given: Bool = false) -> CgroupPlacement {
            CgroupPlacement.decide(layout: l, configuredParent: "ctrobj", choice: choice, parentGiven: given, ownCgroup: own)
        }
        #expect(d(Self.hybrid, .yes, own: "/x.service").mode == .configured)
        #expect(d(Self.v1, .auto, own: nil).mode == .configured)
        #expect(d(Self.pureV2, .auto, own: "/").mode == .configured)
        #expect(d(Self.pureV2, .yes, own: "/").parent == "ctrobj")
        #expect(d(Self.pureV2, .no, own: "/x.service").mode == .configured)
        #expect(d(Self.pureV2, .auto, own: "/x.service", given: true).mode == .configured)
        let yes = d(Self.pureV2, .yes, own: "/system.slice/ctrobjd.service", given: true)
        #expect(yes.mode == .delegated)
        #expect(yes.parent == "system.slice/ctrobjd.service/containers")
        #expect(yes.daemonCgroup == "system.slice/ctrobjd.service/daemon")
        #expect(d(Self.pureV2, .yes, own: "/a/../b").mode == .configured)
    }

    @Test("under systemd only a cgroup it marked delegated counts; elsewhere a writable domain cgroup does")
    func delegatedCheck() throws {
        let dir = "/tmp/ctrobj-deleg-\(uniqueSuffix())"
        try Sys.mkdir(dir)
        defer { rmdir(dir) }
        #expect(CgroupPlacement.isDelegated(dir, systemd: true).0 == false)
        // A plain directory has no cgroup.type: not a domain cgroup.
        #expect(CgroupPlacement.isDelegated(dir, systemd: false).0 == false)
    }

    @Test("a mount that is shared or a slave propagates; a private one does not")
    func propagation() {
        let info = """
        22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
        30 22 0:25 / /run rw,nosuid shared:5 - tmpfs tmpfs rw
        31 30 0:25 /ctrobj/containers /run/ctrobj/containers rw - tmpfs tmpfs rw
        40 22 0:30 / /srv\\040data rw master:7 - tmpfs tmpfs rw
        41 22 0:31 / /private rw - tmpfs tmpfs rw
        """
        #expect(MountPropagation.propagates("/run/ctrobj", mountinfo: info))
        #expect(!MountPropagation.propagates("/run/ctrobj/containers", mountinfo: info))
        #expect(!MountPropagation.propagates("/run/ctrobj/containers/c1/ns", mountinfo: info))
        #expect(MountPropagation.propagates("/srv data/x", mountinfo: info))
        #expect(!MountPropagation.propagates("/private/x", mountinfo: info))
        #expect(MountPropagation.propagates("/etc", mountinfo: info))
    }

    /// This machine's cgroup2 tree offers one controller (hugetlb).
    static var v2WithController: (String, String)? {
        let layout = CgroupLayout.discover()
        guard let v2 = layout.v2Mount, let c = CgroupSubtree.read(v2, "cgroup.controllers").sorted().first else { return nil }
        return (v2, c)
    }

    @Test("controllers are enabled down the path and read back; the root's setting is put back",
          .enabled(if: isRoot && v2WithController != nil, "needs root and a cgroup2 tree with a controller"))
    func enableDownThePath() throws {
        _ = machineLock
        let (v2, c) = try #require(Self.v2WithController)
        let top = "ctrobj-subtree-\(uniqueSuffix())"
        let rootBefore = CgroupSubtree.read(v2, "cgroup.subtree_control")
        defer {
            rmdir("\(v2)/\(top)/a/b")
            rmdir("\(v2)/\(top)/a")
            rmdir("\(v2)/\(top)")
            if !rootBefore.contains(c) { try? Sys.writeFile("\(v2)/cgroup.subtree_control", "-\(c)") }
        }
        let enabled = try CgroupSubtree.enable([c, "no-such-controller"], v2Mount: v2, top: "", path: "\(top)/a")
        #expect(enabled == [c])
        #expect(CgroupSubtree.read("\(v2)/\(top)", "cgroup.subtree_control").contains(c))
        #expect(CgroupSubtree.read("\(v2)/\(top)/a", "cgroup.subtree_control").contains(c))
        // A container's cgroup below the parent gets the controller's files.
        try Sys.mkdir("\(v2)/\(top)/a/b")
        #expect(CgroupSubtree.read("\(v2)/\(top)/a/b", "cgroup.controllers").contains(c))
        // Once more: nothing to do, same answer.
        #expect(try CgroupSubtree.enable([c], v2Mount: v2, top: "", path: "\(top)/a") == [c])
        #expect(throws: ContainerError.self) {
            try CgroupSubtree.enable([c], v2Mount: v2, top: "elsewhere", path: "\(top)/a")
        }
    }

    @Test("a directory on the way that holds a process is refused with the reason (no-internal-process rule)",
          .enabled(if: isRoot && v2WithController != nil, "needs root and a cgroup2 tree with a controller"))
    func internalProcess() throws {
        _ = machineLock
        let (v2, c) = try #require(Self.v2WithController)
        let top = "ctrobj-subtree-\(uniqueSuffix())"
        let rootBefore = CgroupSubtree.read(v2, "cgroup.subtree_control")
        try Sys.mkdir("\(v2)/\(top)")
        let pid = try spawnProcess(["/bin/sleep", "30"])
        let pidfd = try Sys.pidfdOpen(pid)
        let home = ((try? Sys.readFile("/proc/\(pid)/cgroup")) ?? "").split(separator: "\n")
            .first { $0.hasPrefix("0::") }.map { String($0.dropFirst(3)) } ?? "/"
        defer {
            try? Sys.writeFile("\(v2)\(home == "/" ? "" : home)/cgroup.procs", "\(pid)")
            try? Sys.pidfdSendSignal(pidfd.raw, SIGKILL)
            _ = try? Sys.pidfdWait(pidfd.raw)
            rmdir("\(v2)/\(top)/a")
            rmdir("\(v2)/\(top)")
            if !rootBefore.contains(c) { try? Sys.writeFile("\(v2)/cgroup.subtree_control", "-\(c)") }
        }
        try Sys.writeFile("\(v2)/\(top)/cgroup.procs", "\(pid)")
        var message = ""
        do {
            try CgroupSubtree.enable([c], v2Mount: v2, top: "", path: "\(top)/a")
        } catch let e as ContainerError {
            message = e.message
            #expect(e.errno == EBUSY)
        }
        #expect(message.contains("no-internal-process"), "\(message)")
        #expect(!CgroupSubtree.read("\(v2)/\(top)", "cgroup.subtree_control").contains(c))
    }
}
