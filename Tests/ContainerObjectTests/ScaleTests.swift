import CShim
import ContainerObject
import ContainerSystem
import ContainerWire
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Node scale, functionally (the timings are Benchmarks/run.sh --scale):
/// thousands of live containers cost the host's mount table one entry,
/// every one of them is listed, survives kill -9 of ctrobjd, and destroying
/// them leaves nothing behind.
@Suite("node scale", .serialized, .enabled(if: isRoot, rootOnly))
struct ScaleTests {
    /// The CLI's usual flags: fs, uts, ipc, pid, net, cgroup, user.
    static let usual: ContainerOptions = [.newFSNS, .newUTSNS, .newIPCNS, .newPIDNS, .newNetNS, .newCgroupNS, .newUserNS]

    /// Host mount-table entries at or below `dir` (this test runs in the host's mount namespace).
    static func hostMounts(below dir: String) -> [String] {
        ((try? Sys.readFile("/proc/self/mountinfo")) ?? "").split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            guard f.count > 4, f[4] == dir || f[4].hasPrefix(dir + "/") else { return nil }
            return String(f[4])
        }
    }

    /// The pinner thread of ctrobjd (the one in another mount namespace).
    static func pinnerTask(_ d: TestDaemon) -> String? {
        guard let p = d.pidfd else { return nil }
        let pid = ccs_pidfd_pid(p.raw)
        let own = readLinkText("/proc/\(pid)/ns/mnt")
        for t in Sys.listDirectory("/proc/\(pid)/task") where readLinkText("/proc/\(pid)/task/\(t)/ns/mnt") != own {
            return "/proc/\(pid)/task/\(t)"
        }
        return nil
    }

    static func readLinkText(_ path: String) -> String {
        var buf = [CChar](repeating: 0, count: 256)
        let n = readlink(path, &buf, buf.count - 1)
        return n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
    }

    /// What a destroyed-everything daemon may still hold: its spares (a
    /// record directory without a record, its cgroup, its pins).
    static func spareDirectories(_ d: TestDaemon) -> [String] {
        Sys.listDirectory("\(d.stateDir)/containers").filter { $0.hasPrefix("c") && !Sys.exists("\(d.stateDir)/containers/\($0)/record") }
    }

    @Test("2,000 containers: one host mount entry, all listed, all back after kill -9, destroy leaves nothing")
    func twoThousand() throws {
        let count = 2000
        try withDaemon { d in
            for i in 0..<count {
                let c = try Container.create("s\(i)", options: Self.usual)
                c.close() // the container stays; its fd does not
            }
            #expect(Self.hostMounts(below: d.stateDir) == ["\(d.stateDir)/containers/mntns"],
                    "the host's mount table holds the pin namespace and nothing else of ctrobjd's")
            let listed = try Container.list()
            #expect(listed.count == count)
            #expect(Set(listed.map(\.name)).count == count)
            // fds: the containers used last keep theirs; the rest cost none.
            if let p = d.pidfd {
                let fds = Sys.listDirectory("/proc/\(ccs_pidfd_pid(p.raw))/fd").count
                #expect(fds < 1200, "ctrobjd holds \(fds) fds for \(count) idle containers")
            }
            // kill -9: the namespaces stay pinned; the next start serves all.
            d.kill9()
            try d.start()
            #expect(try Container.list().count == count)
            let first = try Container.open("s0"), lastOne = try Container.open("s\(count - 1)")
            for c in [first, lastOne] {
                let p = try c.spawnInit(sh("[ \"$(hostname)\" != \"$(cat /proc/sys/kernel/hostname 2>/dev/null)\" ] || true; exit 7"))
                #expect(try p.waitCode() == 7, "a container restored from its pins starts its init")
                c.close()
            }
            for i in 0..<count {
                let c = try Container.open("s\(i)")
                try c.destroy()
                c.close()
            }
            #expect(try Container.list().isEmpty)
            let spares = Self.spareDirectories(d)
            #expect(spares.count <= 4, "only spares are left: \(spares)")
            if let task = Self.pinnerTask(d) {
                let pinned = (try? Sys.readFile("\(task)/mountinfo"))?.split(separator: "\n").count ?? -1
                let sparePins = spares.reduce(0) { $0 + Sys.listDirectory("\(d.stateDir)/containers/\($1)/ns").count }
                #expect(pinned == 1 + sparePins, "the pin namespace holds its root and the spares' pins only")
            }
            let layout = CgroupLayout.discover()
            for h in layout.hierarchies {
                let left = Sys.listDirectory("\(h)/\(d.cgroupParent)").filter { $0.hasPrefix("c") && UInt64($0.dropFirst()) != nil && !spares.contains($0) }
                #expect(left.isEmpty, "cgroups left in \(h): \(left.prefix(5))")
            }
            d.stop()
            #expect(Self.hostMounts(below: d.stateDir).isEmpty)
        }
    }

    @Test("replies of any size: a container with the longest allowed fields is inspected and listed, beside three hundred others")
    func longestFields() throws {
        try withDaemon { d in
            for i in 0..<300 { try Container.create("f\(i)", options: [.newUTSNS]).close() }
            let name = String(repeating: "n", count: 23)
            let c = try Container.create(name, options: Self.usual)
            defer { c.close() }
            let core = "handler:/" + String(repeating: "h", count: 4096 - 9)
            // 63 names of 64 bytes: 4,094 bytes joined, under the 4,096 a request value may have
            let modules = (0..<63).map { "m\($0)" + String(repeating: "x", count: 64 - "m\($0)".count) }
            let devices = (0..<63).map { "d\($0)" + String(repeating: "y", count: 64 - "d\($0)".count) }
            try c.setPolicy(core: core, modules: modules, devices: devices)
            let env = ["CTROBJ_STATE_DIR=\(d.stateDir)", "PATH=/usr/bin:/bin"]
            let (code, out) = try runProgram(["\(buildDir)/ctrobj", "inspect", name], env: env)
            #expect(code == 0, "\(out.prefix(300))")
            #expect(out.contains(name))
            let (jcode, jout) = try runProgram(["\(buildDir)/ctrobj", "inspect", name, "--json"], env: env)
            #expect(jcode == 0 && jout.hasPrefix("{") && jout.contains(name), "\(jout.prefix(300))")
            let all = try Container.list()
            #expect(all.count == 301)
            #expect(all.contains { $0.name == name })
            let (lcode, lout) = try runProgram(["\(buildDir)/ctrobj", "ls"], env: env)
            #expect(lcode == 0 && lout.split(separator: "\n").count == 302, "ctrobj ls: \(lout.prefix(200))")
        }
    }

    @Test("pins of the old layout (in the host's mount table) move into the pin namespace at start")
    func migration() throws {
        try withDaemon { d in
            let names = ["m0", "m1", "m2"]
            for n in names { try Container.create(n, options: Self.usual).close() }
            _ = try Container.list() // the loop has taken in the spare made after the last create
            usleep(300_000)
            let task = try #require(Self.pinnerTask(d))
            let root = "\(task)/root" // the pin namespace's root: <state>/containers
            let pins = Sys.listDirectory(d.stateDir + "/containers").filter { $0.hasPrefix("c") }.flatMap { dir in
                Sys.listDirectory("\(d.stateDir)/containers/\(dir)/ns").map { "\(dir)/ns/\($0)" }
            }
            #expect(pins.count >= 15)
            let held = try pins.map { try Sys.open("\(root)/\($0)", O_RDONLY) }
            // The old layout: every pin a bind mount in the host's table, no pin namespace.
            d.kill9()
            for (p, fd) in zip(pins, held) where Namespaces.kind(of: fd.raw) != nil {
                let host = "\(d.stateDir)/containers/\(p)"
                let rc = mount("/proc/self/fd/\(fd.raw)", host, nil, UInt(MS_BIND), nil)
                let e = errno
                #expect(rc == 0, "bind \(p): \(errnoDescription(e))")
            }
            held.forEach { $0.close() }
            _ = umount2("\(d.stateDir)/containers/mntns", Int32(MNT_DETACH))
            unlink("\(d.stateDir)/containers/mntns")
            try d.start()
            // Moved inside, except mount namespaces older than the new pin
            // namespace, which the kernel will not pin in it (ELOOP): those
            // stay on the host until their container goes.
            let left = Self.hostMounts(below: d.stateDir + "/containers").filter { $0 != "\(d.stateDir)/containers/mntns" }
            #expect(left.allSatisfy { $0.contains("/ns/mnt-") }, "left on the host: \(left)")
            #expect(left.count <= names.count)
            for n in names {
                let c = try Container.open(n)
                let p = try c.spawnInit(sh("exit 3"))
                #expect(try p.waitCode() == 3, "container \(n) works after the migration")
                try c.destroy()
                c.close()
            }
            #expect(Self.hostMounts(below: d.stateDir) == ["\(d.stateDir)/containers/mntns"])
        }
    }
}
