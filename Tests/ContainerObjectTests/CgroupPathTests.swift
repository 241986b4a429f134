import ContainerObject
import ContainerSystem
import ContainerWire
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// create's `cgroup` field (issue 11: OCI `linux.cgroupsPath`): root places
/// a container's cgroup at a path relative to each hierarchy's root;
/// ctrobjd makes it, records what it made, and removes only that. Every
/// cgroup a test makes is named ctrobj-cgp-<pid>-<n> at the top of each
/// hierarchy and removed on every path.
@Suite("requested cgroup paths (create's cgroup field)", .serialized)
struct CgroupPathTests {
    static let layout = CgroupLayout.discover()

    /// The directory of `path` in every hierarchy ctrobjd uses.
    static func dirs(_ path: String) -> [String] {
        let rel = path.split(separator: "/").joined(separator: "/")
        return layout.hierarchies.map { "\($0)/\(rel)" }
    }

    static func exists(anywhere path: String) -> Bool { dirs(path).contains { Sys.exists($0) } }

    /// Is `pid` a member of `path` in every hierarchy?
    static func member(_ pid: pid_t, _ path: String) -> [String] {
        dirs(path).filter { d in
            !((try? Sys.readFile("\(d)/cgroup.procs")) ?? "").split(separator: "\n").contains(Substring("\(pid)"))
        }
    }

    /// rmdir every directory below `top` (deepest first) in every
    /// hierarchy, then `top`: what a test made, whatever state it is in.
    static func removeTop(_ top: String) {
        for d in dirs(top) where Sys.exists(d) {
            _ = try? runProgram(["/usr/bin/find", d, "-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
        }
    }

    static func top() -> String { "ctrobj-cgp-\(uniqueSuffix())" }

    // MARK: the shape (no root needed)

    @Test("a requested path is normalised, and every bad shape is refused by the request rules")
    func shape() throws {
        #expect(try RequestRules.cgroupPath("/libpod_parent/libpod-1") == "libpod_parent/libpod-1")
        #expect(try RequestRules.cgroupPath("a/b/") == "a/b")
        #expect(try RequestRules.cgroupPath("a") == "a")
        for bad in ["", "/", "//", "a//b", "../x", "a/../b", "a/./b", ".", "a/\u{1}b", "a\nb", "a\u{7f}", "a\u{85}",
                    String(repeating: "x", count: 256), String(repeating: "a/", count: 17) + "a",
                    String(repeating: "abcdefgh/", count: 120)] {
            #expect(throws: ContainerError.self, "\(bad.debugDescription)") { try RequestRules.cgroupPath(bad) }
        }
        // Through the wire rules too: create's field is checked before any handler.
        let m = Message(Op.create, ["name": "x", "flags": "0", "cgroup": "a/../b"])
        #expect(throws: ContainerError.self) { try RequestRules.check(m, fdCount: 0) }
        try RequestRules.check(Message(Op.create, ["name": "x", "flags": "0", "cgroup": "/a/b"]), fdCount: 0)
    }

    // MARK: root

    @Test("root's container at a requested path: init there in every hierarchy, limits and stats there; destroy removes the leaf and the parents ctrobjd made, not an existing one",
          .enabled(if: isRoot, rootOnly))
    func placed() throws {
        let made = Self.top(), kept = Self.top()
        defer { Self.removeTop(made); Self.removeTop(kept) }
        // `kept` exists before (someone else's parent): never removed.
        for d in Self.dirs(kept) { try Sys.mkdir(d) }
        try withDaemon { d in
            let path = "\(made)/pod/leaf"
            let c = try Container.create("cgp-a", options: [.newPIDNS, .newUTSNS, .newIPCNS], cgroupPath: "/\(path)/")
            let c2 = try Container.create("cgp-b", options: [.newUTSNS], cgroupPath: "\(kept)/leaf")
            let p = try c.spawnInit(ProcessSpec("/bin/sleep", ["sleep", "60"]))
            defer { try? p.signal(SIGKILL); _ = try? p.waitCode() }
            #expect(try c.status().cgroup == path)
            #expect(try c2.status().cgroup == "\(kept)/leaf")
            #expect(Self.member(p.pid, path).isEmpty, "init is in \(path) in every hierarchy; not in: \(Self.member(p.pid, path))")
            // Nothing of it below ctrobjd's parent (spares aside: prewarm is on).
            let id = try c.status().id
            #expect(Self.dirs("\(d.cgroupParent)/c\(id)").allSatisfy { !Sys.exists($0) })
            try c.setLimit(.pids, 33)
            try c.setLimit(.memory, 64 << 20)
            let rel = path
            switch Self.layout.source(of: "pids") {
            case .v2: #expect(try Sys.readFile("\(Self.layout.v2Mount!)/\(rel)/pids.max").trimmingSuffixNewline() == "33")
            case .v1(let m): #expect(try Sys.readFile("\(m)/\(rel)/pids.max").trimmingSuffixNewline() == "33")
            case .none: break
            }
            switch Self.layout.source(of: "memory") {
            case .v2: #expect(try Sys.readFile("\(Self.layout.v2Mount!)/\(rel)/memory.max").trimmingSuffixNewline() == "\(64 << 20)")
            case .v1(let m): #expect(try Sys.readFile("\(m)/\(rel)/memory.limit_in_bytes").trimmingSuffixNewline() == "\(64 << 20)")
            case .none: break
            }
            let s = try c.stats()
            #expect(s.pids >= 1 && s.memoryBytes > 0, "stats read from the requested cgroup: \(s)")
            // An exec lands there too.
            let e = try c.exec(ProcessSpec("/bin/sh", ["sh", "-c", "cat /proc/self/cgroup"]))
            _ = try e.waitCode()
            try c.destroy()
            try c2.destroy()
            #expect(waitFor(5) { !Self.exists(anywhere: made) }, "the leaf and its made parents are gone: \(Self.dirs(made).filter(Sys.exists))")
            #expect(waitFor(5) { !Self.exists(anywhere: "\(kept)/leaf") })
            #expect(Self.dirs(kept).allSatisfy(Sys.exists), "a parent ctrobjd did not make stays")
            #expect(d.isRunning)
        }
    }

    @Test("the C call container_create_cgroup places the container there; a bad path is refused with errno set",
          .enabled(if: isRoot, rootOnly))
    func cCall() throws {
        let top = Self.top()
        defer { Self.removeTop(top) }
        let src = "/tmp/ctrobj-cgp-c-\(uniqueSuffix())"
        defer { unlink("\(src).c"); unlink(src) }
        try Sys.writeFileAtomically("\(src).c", """
            #include <container.h>
            #include <errno.h>
            #include <stdio.h>
            int main(int argc, char **argv) {
                (void)argc;
                int fd = container_create_cgroup("cgp-c", CONTAINER_NEW_UTS_NS, argv[1]);
                if (fd < 0) { printf("create failed %d %s\\n", errno, container_last_error()); return 1; }
                int bad = container_create_cgroup("cgp-c2", CONTAINER_NEW_UTS_NS, argv[2]);
                int e1 = errno;
                int nul = container_create_cgroup("cgp-c3", CONTAINER_NEW_UTS_NS, NULL);
                int e2 = errno;
                printf("ok %d %d %d %d\\n", bad, e1, nul, e2);
                return 0;
            }
            """, mode: 0o644)
        let (cc, ccOut) = try runProgram([
            "/usr/bin/cc", "-std=gnu11", "-Wall", "-Werror", "-D_GNU_SOURCE", "-I", "\(repoRoot)/Sources/ContainerABI/include",
            "-o", src, "\(src).c", "-L", buildDir, "-lcontainerobject", "-Wl,-rpath,\(buildDir)",
        ])
        try #require(cc == 0, "\(ccOut)")
        try withDaemon { d in
            let (code, out) = try runProgram([src, "/\(top)/leaf", "\(top)/../x"], env: ["CTROBJ_STATE_DIR=\(d.stateDir)"])
            #expect(code == 0 && out.hasPrefix("ok -1 \(EINVAL) -1 \(EFAULT)"), "\(out)")
            let c = try Container.open("cgp-c")
            #expect(try c.status().cgroup == "\(top)/leaf")
            #expect(Self.dirs("\(top)/leaf").allSatisfy(Sys.exists))
            try c.destroy()
            #expect(waitFor(5) { !Self.exists(anywhere: top) })
        }
    }

    @Test("root's refusals: an existing cgroup (with a process, or empty), ctrobjd's parent and a container's cgroup; nothing is deleted",
          .enabled(if: isRoot, rootOnly))
    func refusals() throws {
        let busy = Self.top(), empty = Self.top()
        let victim = try Victim()
        defer { Self.kill(victim); Self.removeTop(busy); Self.removeTop(empty) }
        for d in Self.dirs(busy) + Self.dirs(empty) { try Sys.mkdir(d) }
        for d in Self.dirs(busy) { try Sys.writeFile("\(d)/cgroup.procs", "\(victim.pid)") }
        try withDaemon { d in
            let other = try Container.create("cgp-other", options: [.newUTSNS])
            let otherCg = try other.status().cgroup
            // The test's own cgroups (whatever hierarchy puts it below the root).
            var own: [String] = []
            for line in ((try? Sys.readFile("/proc/self/cgroup")) ?? "").split(separator: "\n") {
                let p = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).last.map(String.init) ?? "/"
                if p != "/" && Self.exists(anywhere: p) { own.append(p) }
            }
            let cases: [(String, Int32)] = [
                (busy, EEXIST), (empty, EEXIST), (d.cgroupParent, EPERM), ("\(d.cgroupParent)/c999", EPERM),
                ("\(d.cgroupParent)/new/x", EPERM), (otherCg, EPERM), ("\(otherCg)/sub", EPERM),
                ("\(busy)/../x", EINVAL), ("/", EINVAL), ("a//b", EINVAL),
            ] + own.map { ($0, EEXIST) }
            for (i, (path, want)) in cases.enumerated() {
                do {
                    _ = try Container.create("cgp-r\(i)", options: [.newUTSNS], cgroupPath: path)
                    Issue.record("create with cgroup \(path) succeeded")
                } catch let e as ContainerError {
                    #expect(e.errno == want, "\(path): \(e.message) (errno \(e.errno), expected \(want))")
                    #expect(e.message.contains("cgroup"), "the message names the cgroup: \(e.message)")
                }
            }
            #expect(try Container.list().map(\.name).sorted() == ["cgp-other"], "no container came of the refused requests")
            #expect(Self.dirs(busy).allSatisfy(Sys.exists) && Self.dirs(empty).allSatisfy(Sys.exists), "nothing was deleted")
            #expect(Self.member(victim.pid, busy).isEmpty, "the process stays in its cgroup")
            #expect(victim.isAlive)
            #expect(Self.dirs(otherCg).allSatisfy(Sys.exists))
            try other.destroy()
        }
    }

    /// The victim goes before its cgroup can.
    static func kill(_ v: Victim) {
        try? Sys.pidfdSendSignal(v.pidfd.raw, SIGKILL)
        _ = try? Sys.pidfdWait(v.pidfd.raw)
    }

    @Test("kill -9 and a restart keep a container at a requested path (and its made parents); destroy after it removes them",
          .enabled(if: isRoot, rootOnly))
    func restart() throws {
        let top = Self.top()
        defer { Self.removeTop(top) }
        try withDaemon { d in
            let path = "\(top)/x/leaf"
            var p: ContainerProcess?
            do {
                let c = try Container.create("cgp-restart", options: [.newPIDNS, .newUTSNS], cgroupPath: path)
                p = try c.spawnInit(ProcessSpec("/bin/sleep", ["sleep", "60"]))
                _ = try c.status()
            }
            defer { try? p?.signal(SIGKILL); _ = try? p?.waitCode() }
            let record = Sys.listDirectory("\(d.stateDir)/containers").filter { $0.hasPrefix("c") }
                .compactMap { try? Sys.readFile("\(d.stateDir)/containers/\($0)/record") }.first ?? ""
            #expect(record.contains("cgroup_made"), "the record says what ctrobjd made: \(record)")
            d.kill9()
            try d.start()
            let c = try Container.open("cgp-restart")
            let st = try c.status()
            #expect(st.cgroup == path && st.state == .running, "\(st)")
            #expect(Self.member(p!.pid, path).isEmpty)
            try c.setLimit(.pids, 21)
            try c.destroy()
            #expect(waitFor(5) { !Self.exists(anywhere: top) }, "left: \(Self.dirs(top).filter(Sys.exists))")
        }
    }

    @Test("kill -9 at each crash point of a create with a requested path leaves it whole or gone, with no cgroup directory it made left over",
          .enabled(if: isRoot, rootOnly), arguments: ["cgpath", "create"])
    func crash(op: String) throws {
        var completed = false, crashes = 0
        for n in 1...20 {
            let top = Self.top(), kept = Self.top()
            defer { Self.removeTop(top); Self.removeTop(kept) }
            // `kept` exists in the first hierarchy only: made counts differ per hierarchy.
            try Sys.mkdir(Self.dirs(kept)[0])
            for (path, keptTop) in [("\(top)/a/leaf", false), ("\(kept)/leaf", true)] {
                let d = try startDaemon(name: "ctrobj-cgp-crash-\(uniqueSuffix())", arguments: ["--no-prewarm", "--crash-at", "\(op):\(n)"])
                defer { d.stop() }
                var failure: ContainerError?
                d.with {
                    do { _ = try Container.create("cgp-crash", options: [.newUTSNS, .newPIDNS], cgroupPath: path) }
                    catch let e as ContainerError { failure = e } catch {}
                }
                var died = false
                for _ in 0..<50 where !died { died = !d.isRunning; if !died { usleep(10_000) } }
                if died {
                    d.kill9()
                    d.extraArguments = ["--no-prewarm"]
                    try d.start()
                    crashes += 1
                } else if let failure {
                    Issue.record("\(op):\(n) without a crash failed: \(failure)")
                }
                try d.with {
                    let listed = try Container.list().filter { $0.name == "cgp-crash" }
                    if let st = listed.first {
                        #expect(st.cgroup == path.split(separator: "/").joined(separator: "/"))
                        #expect(Self.dirs(path).allSatisfy(Sys.exists), "\(op):\(n) listed: its cgroup exists everywhere")
                        let c = try Container.open("cgp-crash")
                        let p = try c.spawnInit(ProcessSpec("/bin/true", ["true"]))
                        _ = try? p.waitCode()
                        try c.destroy()
                    } else {
                        // Gone: retried removal is asynchronous for busy leaves; these are empty.
                        #expect(waitFor(3) { !Self.exists(anywhere: path) }, "\(op):\(n) gone: nothing of \(path) is left")
                    }
                    let base = keptTop ? "\(kept)/leaf" : top
                    #expect(waitFor(5) { !Self.exists(anywhere: base) }, "\(op):\(n): after destroy nothing ctrobjd made is left: \(Self.dirs(base).filter(Sys.exists))")
                    #expect(Sys.exists(Self.dirs(kept)[0]), "the parent ctrobjd did not make stays")
                    // The record directory of a create that never finished is gone too.
                    #expect(Sys.listDirectory("\(d.stateDir)/containers").filter { $0.hasPrefix("c") && Int($0.dropFirst()) != nil }.isEmpty)
                }
                if !died && !keptTop { completed = true }
            }
            print("crash-at \(op):\(n): \(completed ? "completed" : "crashed, restarted, checked")")
            if completed { break }
        }
        #expect(completed && crashes > 0, "\(op): completed \(completed), crashes \(crashes)")
    }

    // MARK: an unprivileged user

    @Test("a user's create with a cgroup path is refused (EPERM, or EINVAL for a bad shape); nothing is made or deleted",
          .enabled(if: isRoot && adversaryTools.allSatisfy(Sys.exists), "needs root and util-linux"))
    func unprivileged() throws {
        let fresh = Self.top(), busy = Self.top()
        let victim = try Victim()
        defer { Self.kill(victim); Self.removeTop(fresh); Self.removeTop(busy) }
        for d in Self.dirs(busy) { try Sys.mkdir(d) }
        for d in Self.dirs(busy) { try Sys.writeFile("\(d)/cgroup.procs", "\(victim.pid)") }
        try withAdversary { user, d in
            let r = try attack(["cgroup-path", "/\(fresh)/leaf", "\(fresh)/../x", busy, d.cgroupParent, "\(d.cgroupParent)/c1"], as: user, daemon: d)
            #expect(r.exitCode == 0, "\(r)")
            for i in 0..<5 {
                #expect([EPERM, EINVAL].contains(r.errno("raw-\(i)") ?? 0), "\(r.at("raw-\(i)"))")
                #expect(r.value("lib-\(i)", "verdict") == "held", "\(r.at("lib-\(i)"))")
            }
            #expect(r.errno("raw-0") == EPERM && r.errno("raw-2") == EPERM, "root's right, refused as such")
            #expect(r.result("plain") == "ok", "\(r.at("plain"))")
            #expect(!Self.exists(anywhere: fresh), "nothing was made")
            #expect(Self.dirs(busy).allSatisfy(Sys.exists) && Self.member(victim.pid, busy).isEmpty, "nothing was deleted or moved")
            #expect(victim.isAlive && d.isRunning)
            #expect(try rootListNames(d) == ["adv-cg-plain"])
        }
    }
}

/// Upcalls from a container placed at a requested cgroup path are routed
/// into it (the cgroup index is keyed by the path, whatever it is).
extension UpcallTests {
    @Test("a crash inside a container at a requested cgroup path leaves its core inside that container")
    func coreAtRequestedCgroupPath() throws {
        let top = CgroupPathTests.top()
        defer { CgroupPathTests.removeTop(top) }
        try withBroker { d, inst in
            let path = "\(top)/pod/ctr"
            let c = try Container.create("crash-cgp", options: [.newEmptyFSNS, .newPIDNS, .newUserNS, .newNetNS, .killOnClose],
                                         cgroupPath: path)
            try c.mkdirs("/bin")
            try c.copyIn(hostPath: "/bin/busybox", to: "/bin/busybox")
            let p = try c.spawnInit(ProcessSpec("/bin/busybox", ["busybox", "sleep", "120"]))
            defer { try? p.signal(SIGKILL); _ = try? p.waitCode() }
            #expect(CgroupPathTests.member(p.pid, path).isEmpty)
            try crash(c)
            let found = waitForCores(c, count: 1)
            #expect(found.count == 1 && found.first?.hasPrefix("core.busybox.") == true, "cores: \(found)")
        }
    }
}
