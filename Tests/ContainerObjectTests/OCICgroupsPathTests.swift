import ContainerObject
import ContainerSystem
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// linux.cgroupsPath through ctrobj-oci (issue 11): honoured, or create fails naming it.
extension OCIRuntimeTests {
    @Test("linux.cgroupsPath: init is in that cgroup in every hierarchy, resources land there, delete removes it; one ctrobjd refuses fails create naming the field")
    func cgroupsPath() throws {
        let top = CgroupPathTests.top()
        defer { CgroupPathTests.removeTop(top) }
        try with { oci in
            let path = "/\(top)/libpod-1"
            let b = try OCIBundle(["/bin/sleep", "1000"]) { c in
                var l = c["linux"] as! [String: Any]
                l["cgroupsPath"] = path
                l["resources"] = ["pids": ["limit": 44]]
                c["linux"] = l
            }
            defer { b.remove() }
            var (code, out) = try oci.run(["create", "--bundle", b.dir, "cg1"])
            try #require(code == 0, "\(out)")
            #expect(!out.contains("not honoured"), "no warning any more: \(out)")
            let pid = try oci.state("cg1")["pid"] as? Int ?? 0
            #expect(pid > 0 && CgroupPathTests.member(pid_t(pid), path).isEmpty,
                    "init is in \(path) everywhere; not in \(CgroupPathTests.member(pid_t(pid), path))")
            let pidsDir: String? = {
                switch CgroupPathTests.layout.source(of: "pids") {
                case .v2: return CgroupPathTests.layout.v2Mount
                case .v1(let m): return m
                case .none: return nil
                }
            }()
            if let m = pidsDir {
                #expect(((try? Sys.readFile("\(m)\(path)/pids.max")) ?? "").trimmingSuffixNewline() == "44")
            }
            #expect(try Container.open("oci-cg1").status().cgroup == String(path.dropFirst()))
            (code, out) = try oci.run(["delete", "--force", "cg1"])
            #expect(code == 0, "\(out)")
            #expect(waitFor(5) { !CgroupPathTests.exists(anywhere: top) }, "delete removes the cgroup and the parent ctrobjd made")

            // Below ctrobjd's own parent: refused, the field named, nothing left.
            let bad = try OCIBundle(["/bin/true"]) { c in
                var l = c["linux"] as! [String: Any]
                l["cgroupsPath"] = "/\(oci.d.cgroupParent)/mine"
                c["linux"] = l
            }
            defer { bad.remove() }
            (code, out) = try oci.run(["create", "--bundle", bad.dir, "cg2"])
            #expect(code != 0 && out.contains("linux.cgroupsPath"), "\(out)")
            #expect(try Container.list().allSatisfy { !$0.name.hasPrefix("oci-cg2") })
            // A bad shape is refused before anything exists.
            let dots = try OCIBundle(["/bin/true"]) { c in
                var l = c["linux"] as! [String: Any]
                l["cgroupsPath"] = "/\(top)/../x"
                c["linux"] = l
            }
            defer { dots.remove() }
            (code, out) = try oci.run(["create", "--bundle", dots.dir, "cg3"])
            #expect(code != 0 && out.contains("linux.cgroupsPath"), "\(out)")
        }
    }
}
