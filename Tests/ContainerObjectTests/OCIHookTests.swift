import ContainerObject
import ContainerSystem
import ContainerWire
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `ctrobj oci-hook` without a runtime: what it reads and how it refuses.
@Suite("oci hook: state, names, annotations")
struct OCIHookInputTests {
    let podmanState = #"{"ociVersion":"1.0.2-dev","id":"af7de81c21fe3c480fe3ecb560631a8300575f0e1efcbd26164af6f55be7ed68","status":"creating","pid":11033,"bundle":"/b","annotations":{"org.ctrobj.core":"drop","io.podman.annotations.init":"FALSE"}}"#

    @Test("the runtime-spec state podman hands a createRuntime hook is read")
    func podmanStateParses() throws {
        let s = try OCIHook.parseState(Array(podmanState.utf8))
        #expect(s.id.hasPrefix("af7de81c") && s.status == "creating" && s.pid == 11033 && s.bundle == "/b")
        #expect(s.annotations["org.ctrobj.core"] == "drop")
        // poststop: no pid.
        let stopped = try OCIHook.parseState(Array(#"{"id":"x","status":"stopped","bundle":"/b"}"#.utf8))
        #expect(stopped.pid == 0 && stopped.status == "stopped")
        // Escapes, surrogate pairs, whitespace.
        let esc = try OCIHook.parseState(Array(" {\"id\" : \"a\\u00e9\\ud83d\\ude00\\n\", \"pid\": 1}\n".utf8))
        #expect(esc.id == "aé😀\n")
    }

    @Test("bad state JSON is refused with a reason, never a crash", arguments: [
        "", "{", "[]", "null", "{\"id\":1}", "{\"id\":\"\"}", "{\"id\":\"x\",\"pid\":-1}", "{\"id\":\"x\",\"pid\":1.5}",
        "{\"id\":\"x\",\"pid\":99999999999999999999999}", "{\"id\":\"x\",\"annotations\":[]}", "{\"id\":\"x\",\"annotations\":{\"a\":1}}",
        "{\"id\":\"x\"} trailing", "{\"id\":\"\\ud800\"}", "{\"id\":\"a\u{01}b\"}", "{\"id\":\"x\",\"status\":5}",
        String(repeating: "[", count: 100_000), "{\"id\":\"\\u0000\"}",
    ])
    func badState(input: String) {
        #expect(throws: OCIHook.InputError.self) { _ = try OCIHook.parseState(Array(input.utf8)) }
        let o = OCIHook.run(stage: .createRuntime, input: Array(input.utf8))
        #expect(o.exitCode == 2 && o.messages.count == 1 && o.messages[0].hasPrefix("refused: "), "\(o)")
    }

    @Test("invalid UTF-8 and oversized input are refused")
    func badBytes() {
        #expect(throws: OCIHook.InputError.self) { _ = try OCIHook.parseState([0x7b, 0x22, 0x69, 0x64, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]) }
        let big = Array("{\"id\":\"".utf8) + [UInt8](repeating: 0x61, count: OCIJSON.maxBytes) + Array("\"}".utf8)
        #expect(throws: OCIHook.InputError.self) { _ = try OCIHook.parseState(big) }
    }

    @Test("container names: short, no '/', distinct for podman ids, plain ids and others")
    func names() {
        let podmanID = "af7de81c21fe3c480fe3ecb560631a8300575f0e1efcbd26164af6f55be7ed68"
        #expect(OCIHook.containerName(forID: podmanID) == "oci-af7de81c21fe3c480fe")
        #expect(OCIHook.containerName(forID: "test1") == "oci-test1")
        let odd = ["a/b", "x y", String(repeating: "z", count: 40), "ÄÖ", "../../etc", String(repeating: "A", count: 64)]
        var seen = Set<String>()
        for id in [podmanID, "test1"] + odd {
            let n = OCIHook.containerName(forID: id)
            #expect(n.utf8.count < ContainerFlags.nameMax && !n.contains("/") && n.hasPrefix("oci"), "\(id) -> \(n)")
            seen.insert(n)
        }
        #expect(seen.count == odd.count + 2)
        #expect(OCIHook.containerName(forID: "a/b").hasPrefix("ocih-"))
    }

    @Test("policy annotations are checked before ctrobjd is asked")
    func annotations() throws {
        let p = try OCIHook.policy(from: ["org.ctrobj.core": "handler:/usr/bin/h", "other": "x"])
        #expect(p.core == "handler:/usr/bin/h")
        #expect(try OCIHook.policy(from: [:]).isEmpty)
        for bad in [["org.ctrobj.core": "bogus"], ["org.ctrobj.core": "handler:relative"], ["org.ctrobj.modules": "a b"],
                    ["org.ctrobj.devices": "loop0;rm"]] {
            #expect(throws: OCIHook.InputError.self) { _ = try OCIHook.policy(from: bad) }
        }
        // review2 F2: module loading and device grants are root's word, never
        // an annotation's (whoever asks for the container writes those), even
        // an empty list or one beside a good core.
        for (key, flag) in [("org.ctrobj.modules", "--modules"), ("org.ctrobj.devices", "--devices")] {
            for value in ["dummy,nf_tables,ext4", "sda", ""] {
                do {
                    _ = try OCIHook.policy(from: ["org.ctrobj.core": "drop", key: value])
                    Issue.record("\(key)=\(value) was accepted")
                } catch let e as OCIHook.InputError {
                    #expect(e.description.contains(key) && e.description.contains("ctrobj policy NAME \(flag)"), "\(e)")
                }
            }
        }
    }

    @Test("the hooks.d file is what podman reads: version 1.0.0, createRuntime and poststop, ctrobj oci-hook")
    func hooksFile() throws {
        let text = OCIHook.hooksJSON(ctrobj: "/usr/local/bin/ctrobj", env: ["CTROBJ_STATE_DIR=/tmp/x \"q\""])
        let v = try OCIJSON.parse(Array(text.utf8))
        #expect(v["version"] == .string("1.0.0"))
        #expect(v["hook"]?["path"] == .string("/usr/local/bin/ctrobj"))
        #expect(v["hook"]?["args"] == .array([.string("ctrobj"), .string("oci-hook")]))
        #expect(v["hook"]?["env"] == .array([.string("CTROBJ_STATE_DIR=/tmp/x \"q\"")]))
        #expect(v["stages"] == .array([.string("createRuntime"), .string("poststop")]))
        #expect(v["when"]?["always"] == .bool(true))
        // The copy shipped in dist/ is the same but for the path.
        let dist = try Sys.readFile("\(repoRoot)/dist/oci/ctrobj-oci-hook.json")
        #expect(try OCIJSON.parse(Array(dist.utf8)) == OCIJSON.parse(Array(OCIHook.hooksJSON(ctrobj: "/usr/local/bin/ctrobj").utf8)))
    }

    @Test("the CLI: bad stdin exits 2 with one clear line; ctrobjd down exits 0 (--strict: 1) and says so")
    func cli() throws {
        let dir = "/tmp/ctrobj-hookcli-\(uniqueSuffix())"
        try Sys.mkdirs(dir, 0o755)
        defer { removeTree(dir) }
        func hook(_ stdin: String, _ args: [String]) throws -> (Int32, String) {
            try Sys.writeFileAtomically("\(dir)/in", stdin, mode: 0o644)
            return try runProgram(["/bin/sh", "-c", "exec \"$@\" < \(dir)/in", "sh", "\(buildDir)/ctrobj", "oci-hook"] + args,
                                  env: ["CTROBJ_SOCKET=\(dir)/nobody-listens.sock"])
        }
        let (c1, o1) = try hook("not json", ["createRuntime"])
        #expect(c1 == 2 && o1.hasPrefix("ctrobj oci-hook: refused: stdin is not JSON") && o1.split(separator: "\n").count == 1, "\(o1)")
        let (c2, o2) = try hook(#"{"id":"abc","status":"creating","pid":1}"#, [])
        #expect(c2 == 0 && o2.contains("ctrobjd is not running") && o2.contains("the container runs anyway"), "\(o2)")
        let (c3, o3) = try hook(#"{"id":"abc","status":"creating","pid":1}"#, ["--strict", "--log", "\(dir)/log"])
        #expect(c3 == 1 && o3.contains("ctrobjd is not running"), "\(o3)")
        #expect(((try? Sys.readFile("\(dir)/log")) ?? "").contains("ctrobjd is not running"))
        let (c4, o4) = try hook(#"{"id":"abc","status":"creating","pid":1}"#, ["createContainer"])
        #expect(c4 == 2 && o4.contains("runs inside the container"), "\(o4)")
        let (c5, o5) = try hook(#"{"id":"abc","status":"paused"}"#, [])
        #expect(c5 == 2 && o5.contains("names no stage"), "\(o5)")
        let (c6, o6) = try hook("{}", ["nosuchstage"])
        #expect(c6 == 2 && o6.contains("unknown stage"), "\(o6)")
        let (c7, o7) = try hook(#"{"id":"abc","status":"creating","pid":1,"annotations":{"org.ctrobj.core":"bogus"}}"#, [])
        #expect(c7 == 1 && o7.contains("org.ctrobj.core"), "annotations asking for the impossible fail the container: \(o7)")
    }

    @Test("ctrobj install --oci-hook writes the hooks.d file (with the daemon's state dir), uninstall --oci-hook removes only ours")
    func installCommand() throws {
        let dir = "/tmp/ctrobj-hooksd-\(uniqueSuffix())"
        defer { removeTree(dir) }
        let ctrobj = "\(buildDir)/ctrobj"
        let (c1, o1) = try runProgram([ctrobj, "install", "--oci-hook", "--hooks-dir", "\(dir)/hooks.d", "--state-dir", "/tmp/some-state"])
        #expect(c1 == 0 && o1.contains("\(dir)/hooks.d/ctrobj-oci-hook.json"), "\(o1)")
        let v = try OCIJSON.parse(Array(try Sys.readFile("\(dir)/hooks.d/ctrobj-oci-hook.json").utf8))
        #expect(v["hook"]?["env"] == .array([.string("CTROBJ_STATE_DIR=/tmp/some-state")]))
        if case .string(let path)? = v["hook"]?["path"] { #expect(path.hasPrefix("/") && path.hasSuffix("/ctrobj") && Sys.exists(path)) }
        let (c2, o2) = try runProgram([ctrobj, "uninstall", "--oci-hook", "--hooks-dir", "\(dir)/hooks.d"])
        #expect(c2 == 0 && !Sys.exists("\(dir)/hooks.d/ctrobj-oci-hook.json"), "\(o2)")
        // A file of that name that is not ours stays.
        try Sys.writeFileAtomically("\(dir)/hooks.d/ctrobj-oci-hook.json", "{\"version\":\"1.0.0\"}", mode: 0o644)
        let (c3, o3) = try runProgram([ctrobj, "uninstall", "--oci-hook", "--hooks-dir", "\(dir)/hooks.d"])
        #expect(c3 == 1 && o3.contains("left in place") && Sys.exists("\(dir)/hooks.d/ctrobj-oci-hook.json"), "\(o3)")
    }
}

/// The hook with ctrobjd: adoption by an unprivileged user, name clashes.
@Suite("oci hook: against ctrobjd", .serialized, .enabled(if: isRoot && Sys.exists("/usr/bin/unshare") && Sys.exists("/usr/bin/setpriv"), rootOnly))
struct OCIHookDaemonTests {
    /// A root process with namespaces of its own (as a runtime's init would be).
    func namespacedSleeper() throws -> (pid_t, OwnedFD) {
        let pid = try spawn(["/usr/bin/unshare", "--mount", "--uts", "--ipc", "--pid", "--fork", "--kill-child", "/bin/sleep", "120"])
        let fd = try Sys.pidfdOpen(pid)
        // The sleeper is unshare's child: its pid once it exists.
        for _ in 0..<500 {
            if let kids = try? Sys.readFile("/proc/\(pid)/task/\(pid)/children"), let k = kids.split(separator: " ").first.flatMap({ pid_t($0) }),
               Namespaces.inode(pid: k, kind: .pid) != Namespaces.inode(pid: getpid(), kind: .pid) {
                return (k, fd)
            }
            usleep(10_000)
        }
        try? Sys.pidfdSendSignal(fd.raw, SIGKILL)
        _ = try? Sys.pidfdWait(fd.raw)
        throw ContainerError(.system, "unshare's child did not appear")
    }

    func state(_ id: String, status: String, pid: pid_t) -> [UInt8] {
        Array(#"{"ociVersion":"1.0.2","id":"\#(id)","status":"\#(status)","pid":\#(pid),"bundle":"/nonexistent","annotations":{}}"#.utf8)
    }

    @Test("createRuntime adopts, again is a no-op, poststop forgets; policy comes from annotations; a stale record is replaced")
    func adoptForget() throws {
        try withDaemon { _ in
            let (pid, holder) = try namespacedSleeper()
            defer { try? Sys.pidfdSendSignal(holder.raw, SIGKILL); _ = try? Sys.pidfdWait(holder.raw) }
            let input = Array(#"{"id":"hooktest1","status":"creating","pid":\#(pid),"annotations":{"org.ctrobj.core":"drop"}}"#.utf8)
            let o = OCIHook.run(stage: nil, input: input)
            #expect(o.exitCode == 0 && o.name == "oci-hooktest1", "\(o)")
            let s = try Container.open("oci-hooktest1").status()
            #expect(s.adopted && s.initPid == pid && s.state == .running && s.corePolicy == "drop", "\(s)")
            // The hook's fd is closed: the record stays (no KILL_ON_CLOSE for adopted ones).
            let again = OCIHook.run(stage: .createRuntime, input: input)
            #expect(again.exitCode == 0 && again.messages.joined().contains("already adopted"), "\(again)")
            // poststop while it still runs: another container's, left alone.
            let early = OCIHook.run(stage: .poststop, input: state("hooktest1", status: "stopped", pid: 0))
            #expect(early.exitCode == 0 && early.messages.joined().contains("left alone"), "\(early)")
            #expect((try? Container.open("oci-hooktest1")) != nil)
            // The container ends; poststop forgets it, and nothing was killed by ctrobjd before that.
            try Sys.pidfdSendSignal(holder.raw, SIGKILL)
            _ = try Sys.pidfdWait(holder.raw)
            let bye = OCIHook.run(stage: .poststop, input: state("hooktest1", status: "stopped", pid: 0))
            #expect(bye.exitCode == 0 && bye.messages.joined().contains("forgot"), "\(bye)")
            #expect(throws: ContainerError.self) { _ = try Container.open("oci-hooktest1") }
            let none = OCIHook.run(stage: .poststop, input: state("hooktest1", status: "stopped", pid: 0))
            #expect(none.exitCode == 0 && none.messages.joined().contains("no record"), "\(none)")

            // A record whose container exited without a poststop is replaced by the next adopt of that name.
            let (pid2, holder2) = try namespacedSleeper()
            defer { try? Sys.pidfdSendSignal(holder2.raw, SIGKILL); _ = try? Sys.pidfdWait(holder2.raw) }
            _ = try Container.adopt("oci-hooktest2", pid: pid2)
            try Sys.pidfdSendSignal(holder2.raw, SIGKILL)
            _ = try Sys.pidfdWait(holder2.raw)
            let (pid3, holder3) = try namespacedSleeper()
            defer { try? Sys.pidfdSendSignal(holder3.raw, SIGKILL); _ = try? Sys.pidfdWait(holder3.raw) }
            var stale = OCIHook.run(stage: .createRuntime, input: state("hooktest2", status: "creating", pid: pid3))
            for _ in 0..<100 where !stale.messages.joined().contains("stale") {
                usleep(20_000)
                stale = OCIHook.run(stage: .createRuntime, input: state("hooktest2", status: "creating", pid: pid3))
            }
            #expect(stale.exitCode == 0 && stale.messages.joined().contains("stale record"), "\(stale)")
            #expect(try Container.open("oci-hooktest2").status().initPid == pid3)
            try Container.open("oci-hooktest2").destroy()
            // A container object of our own is never adopted twice nor destroyed by the hook.
            let mine = try Container.create("oci-mine", options: [.newPIDNS, .newUTSNS, .newIPCNS, .newFSNS])
            let p = try mine.spawnInit(ProcessSpec("/bin/sleep", ["sleep", "60"]))
            defer { try? p.signal(SIGKILL); _ = try? p.waitCode(); try? mine.destroy() }
            let twice = OCIHook.run(stage: .createRuntime, input: state("other", status: "creating", pid: p.pid))
            #expect(twice.exitCode == 0 && twice.messages.joined().contains("already in container \"oci-mine\""), "\(twice)")
            #expect((try? Container.open("oci-other")) == nil)
            let keep = OCIHook.run(stage: .poststop, input: state("mine", status: "stopped", pid: 0))
            #expect(keep.messages.joined().contains("not an adopted container"), "\(keep)")
            #expect(try mine.status().state == .running)
            // Annotations refused leave no record behind.
            let (pid4, holder4) = try namespacedSleeper()
            defer { try? Sys.pidfdSendSignal(holder4.raw, SIGKILL); _ = try? Sys.pidfdWait(holder4.raw) }
            let refused = OCIHook.run(stage: .createRuntime, input: Array(
                #"{"id":"hooktest4","status":"creating","pid":\#(pid4),"annotations":{"org.ctrobj.devices":"nosuchdev!"}}"#.utf8))
            #expect(refused.exitCode == 1, "\(refused)")
            #expect((try? Container.open("oci-hooktest4")) == nil)
            // review2 F2 (the PoC): the hook runs as root, the annotations are
            // the container asker's; a module list and device grants from them
            // are refused (exit 1, as any unobtainable annotation), nothing is
            // adopted, and ctrobjd holds no such policy.
            let attack = OCIHook.run(stage: .createRuntime, input: Array(
                #"{"ociVersion":"1.0.2","id":"hooktest5","status":"creating","pid":\#(pid4),"bundle":"/x","annotations":{"org.ctrobj.modules":"dummy,nf_tables,ext4","org.ctrobj.devices":"sda,eth0"}}"#.utf8))
            #expect(attack.exitCode == 1 && attack.messages.joined().contains("org.ctrobj.modules")
                    && attack.messages.joined().contains("ctrobj policy NAME --modules"), "\(attack)")
            #expect((try? Container.open("oci-hooktest5")) == nil)
            let strictAttack = OCIHook.run(stage: .createRuntime, input: Array(
                #"{"id":"hooktest5","status":"creating","pid":\#(pid4),"annotations":{"org.ctrobj.devices":"sda"}}"#.utf8), strict: true)
            #expect(strictAttack.exitCode == 1 && strictAttack.messages.joined().contains("org.ctrobj.devices"), "\(strictAttack)")
            #expect((try? Container.open("oci-hooktest5")) == nil)
        }
    }

    @Test("an unprivileged user running the hook cannot adopt a root process nor forget root's adopted record")
    func unprivileged() throws {
        try withAdversary { user, d in
            let (pid, holder) = try namespacedSleeper()
            defer { try? Sys.pidfdSendSignal(holder.raw, SIGKILL); _ = try? Sys.pidfdWait(holder.raw) }
            let dir = "/tmp/ctrobj-hookadv-\(uniqueSuffix())"
            try Sys.mkdirs(dir, 0o755)
            defer { removeTree(dir) }
            func hookAsUser(_ stdin: [UInt8], _ args: [String]) throws -> (Int32, String) {
                try Sys.writeFileAtomically("\(dir)/in", String(decoding: stdin, as: UTF8.self), mode: 0o644)
                return try runProgram(["/usr/bin/setpriv", "--reuid=\(user.uid)", "--regid=\(user.gid)", "--clear-groups", "/bin/sh", "-c",
                                       "exec \"$@\" < \(dir)/in", "sh", "\(buildDir)/ctrobj", "oci-hook"] + args,
                                      env: ["CTROBJ_STATE_DIR=\(d.stateDir)", "PATH=/usr/bin:/bin"])
            }
            let (c1, o1) = try hookAsUser(state("advhook", status: "creating", pid: pid), [])
            #expect(c1 == 0 && o1.contains("only root may adopt"), "refused by ctrobjd, the container runs on: \(o1)")
            let (c2, o2) = try hookAsUser(state("advhook", status: "creating", pid: pid), ["--strict"])
            #expect(c2 == 1 && o2.contains("only root may adopt"), "\(o2)")
            #expect(try !rootListNames(d).contains("oci-advhook"))

            _ = try Container.adopt("oci-advhook2", pid: pid)
            try Sys.pidfdSendSignal(holder.raw, SIGKILL)
            _ = try Sys.pidfdWait(holder.raw)
            let (c3, o3) = try hookAsUser(state("advhook2", status: "stopped", pid: 0), ["poststop"])
            #expect(c3 == 0 && o3.contains("may not open"), "\(o3)")
            #expect(try rootListNames(d).contains("oci-advhook2"), "root's record is still there")
            try Container.open("oci-advhook2").destroy()
        }
    }
}

/// podman and containerd, for real: runc containers made into container
/// objects by the hook, their cores and keys routed into them.
@Suite("oci hook: podman and containerd", .serialized, .enabled(if: havePodman, podmanMissing))
struct PodmanHookTests {
    let upcalls = UpcallTests()

    /// The hook, in the private hooks directory, pointed at daemon `d`.
    func installHook(_ p: PrivatePodman, _ d: PrivateDaemon) throws -> String {
        let log = "\(p.dir)/hook.log"
        try OCIHook.installHookFile(hooksDir: p.hooksDir, ctrobj: "\(buildDir)/ctrobj", env: ["CTROBJ_STATE_DIR=\(d.stateDir)"], log: log)
        return log
    }

    func waitFor(seconds: Int = 30, _ cond: () -> Bool) -> Bool {
        for _ in 0..<(seconds * 50) {
            if cond() { return true }
            usleep(20_000)
        }
        return cond()
    }

    @Test("a crash in a runc container under podman leaves its core inside that container; after podman rm no record is left")
    func podmanCore() throws {
        try upcalls.withBroker { d, _ in
            try PrivatePodman.with { p in
                let log = try installHook(p, d)
                let id = try p.runDetached([], ["/bin/sh", "-c", "ulimit -c unlimited; sh -c 'kill -SEGV $$'; sleep 120"])
                let name = OCIHook.containerName(forID: id)
                let pid = pid_t(try p.inspect(id, "{{.State.Pid}}")) ?? 0
                let s = try Container.open(name).status()
                #expect(s.adopted && s.initPid == pid && s.state == .running, "adopted at createRuntime: \(s); hook log: \((try? Sys.readFile(log)) ?? "")")
                #expect(s.namespaceInodes["mnt"] == Namespaces.inode(pid: pid, kind: .mnt))
                // The core, in the container's own root (the vfs directory podman made), owned by its root (host root: no user namespace).
                let root = try p.rootfs(id)
                var cores: [String] = []
                _ = waitFor { cores = Sys.listDirectory("\(root)/var/lib/ctrobj/cores").filter { $0.hasPrefix("core.sh.") }; return !cores.isEmpty }
                try #require(cores.count == 1, "cores in \(root): \(cores); daemon log: \((try? Sys.readFile(d.logPath)) ?? "")")
                let f = try Sys.open("\(root)/var/lib/ctrobj/cores/\(cores[0])", O_RDONLY)
                var st = stat()
                fstat(f.raw, &st)
                #expect(st.st_uid == 0 && st.st_mode & 0o777 == 0o600)
                let end = try elfCoreEnd(f.raw)
                #expect(end > 0 && UInt64(st.st_size) >= end, "the core is whole: \(st.st_size) bytes, segments end at \(end)")
                // And it is the same file the container sees.
                var inside = stat()
                #expect(stat("/proc/\(pid)/root/var/lib/ctrobj/cores/\(cores[0])", &inside) == 0 && inside.st_ino == st.st_ino)
                // Gone with the container: poststop forgot the record.
                let (rc, ro) = try p.podman(["rm", "--force", "--time", "0", id])
                #expect(rc == 0, "\(ro)")
                #expect(waitFor(seconds: 10) { (try? Container.list().contains { $0.name == name }) == false },
                        "no record after podman rm; hook log: \((try? Sys.readFile(log)) ?? "")")
                #expect(try Container.list().isEmpty, "nothing else was left either")
            }
        }
    }

    @Test("org.ctrobj.core=drop from podman's --annotation: no core; --rm run of a short container leaves no record")
    func podmanAnnotationAndRm() throws {
        try upcalls.withBroker { d, _ in
            try PrivatePodman.with { p in
                let log = try installHook(p, d)
                let id = try p.runDetached(["--annotation", "org.ctrobj.core=drop"], ["/bin/sh", "-c", "sleep 120"])
                let name = OCIHook.containerName(forID: id)
                let s = try Container.open(name).status()
                #expect(s.adopted && s.corePolicy == "drop", "\(s); hook log: \((try? Sys.readFile(log)) ?? "")")
                let (ec, eo) = try p.podman(["exec", id, "/bin/sh", "-c", "ulimit -c unlimited; sh -c 'kill -SEGV $$'; echo done"])
                #expect(ec == 0 && eo.contains("done"), "\(eo)")
                #expect(waitFor(seconds: 10) { ((try? Sys.readFile(d.logPath)) ?? "").contains("dropped by policy") }, "ctrobjd dropped it")
                let root = try p.rootfs(id)
                #expect(Sys.listDirectory("\(root)/var/lib/ctrobj/cores").isEmpty)
                _ = try p.podman(["rm", "--force", "--time", "0", id])
                let (rc, ro) = try p.run(["--rm"], ["/bin/sh", "-c", "echo short-lived; exit 3"])
                #expect(rc == 3 && ro.contains("short-lived"), "exit codes pass through the hooked container: \(ro)")
                #expect(waitFor(seconds: 10) { (try? Container.list().isEmpty) == true }, "\((try? Container.list().map(\.name)) ?? [])")
            }
        }
    }

    @Test("a podman pod: infra and two members adopted one by one, sharing a network namespace; a member's core lands in that member only")
    func podmanPod() throws {
        try upcalls.withBroker { d, _ in
            try PrivatePodman.with { p in
                let log = try installHook(p, d)
                let (pc, po) = try p.podman(["pod", "create", "--name", "hookpod", "--cgroup-parent", "/\(p.cgroupParent)", "--network", "none",
                                             "--infra-image", PrivatePodman.image, "--infra-command", "/bin/pause"])
                try #require(pc == 0, "\(po)")
                let limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
                let (ac, ao) = try p.podman(["run", "-d", "--pod", "hookpod"] + limits + [PrivatePodman.image, "/bin/sh", "-c",
                                             "ulimit -c unlimited; sleep 1; sh -c 'kill -SEGV $$'; sleep 120"])
                let (bc, bo) = try p.podman(["run", "-d", "--pod", "hookpod"] + limits + [PrivatePodman.image, "/bin/sleep", "120"])
                try #require(ac == 0 && bc == 0, "\(ao)\n\(bo)")
                let a = String(ao.split(separator: "\n").last ?? ""), b = String(bo.split(separator: "\n").last ?? "")
                let records = try Container.list()
                #expect(records.count == 3 && records.allSatisfy(\.adopted), "infra, a, b: \(records.map(\.name)); hook log: \((try? Sys.readFile(log)) ?? "")")
                let ra = try Container.open(OCIHook.containerName(forID: a)).status()
                let rb = try Container.open(OCIHook.containerName(forID: b)).status()
                #expect(ra.namespaceInodes["net"] != nil && ra.namespaceInodes["net"] == rb.namespaceInodes["net"], "the pod's network namespace is shared")
                #expect(ra.namespaceInodes["pid"] != rb.namespaceInodes["pid"])
                let rootA = try p.rootfs(a), rootB = try p.rootfs(b)
                var cores: [String] = []
                _ = waitFor { cores = Sys.listDirectory("\(rootA)/var/lib/ctrobj/cores").filter { $0.hasPrefix("core.sh.") }; return !cores.isEmpty }
                #expect(cores.count == 1, "the crashing member's core is in its root: \(cores); daemon log: \((try? Sys.readFile(d.logPath)) ?? "")")
                #expect(Sys.listDirectory("\(rootB)/var/lib/ctrobj/cores").isEmpty, "and not in its pod neighbour's")
                let (rc, ro) = try p.podman(["pod", "rm", "--force", "--time", "0", "hookpod"])
                #expect(rc == 0, "\(ro)")
                #expect(waitFor(seconds: 10) { (try? Container.list().isEmpty) == true }, "no record after pod rm: \((try? Container.list().map(\.name)) ?? [])")
            }
        }
    }

    @Test("with ctrobjd down the hook lets podman's container run, and says why in its log")
    func daemonDown() throws {
        try PrivatePodman.with { p in
            let log = "\(p.dir)/hook.log"
            try OCIHook.installHookFile(hooksDir: p.hooksDir, ctrobj: "\(buildDir)/ctrobj", env: ["CTROBJ_STATE_DIR=\(p.dir)/no-daemon"], log: log)
            let (code, out) = try p.run(["--rm"], ["/bin/echo", "still-runs"])
            #expect(code == 0 && out.contains("still-runs"), "\(out)")
            #expect(((try? Sys.readFile(log)) ?? "").contains("ctrobjd is not running"))
        }
    }

    @Test("a key requested inside a hooked podman container is answered by that container's own request-key",
          .enabled(if: Sys.exists("/bin/keyctl") && Sys.exists("/sbin/request-key"), "needs keyutils"))
    func podmanKey() throws {
        let keys = KeyUpcallTests()
        try upcalls.preservingKernelSettings {
            try withDaemon { d in
                try keys.installed(d) {
                    try PrivatePodman.with { p in
                        let log = try installHook(p, d)
                        try Sys.writeFileAtomically("\(p.dir)/request-key.conf",
                                                    "create user ctrobjpod:* * /usr/bin/keyctl instantiate %k from-podman-container %S\n", mode: 0o644)
                        // The container's own request-key and keyctl (Debian's, with their libraries);
                        // podman's default seccomp profile refuses the key syscalls (as Docker's does).
                        let binds = ["-v", "/sbin/request-key:/sbin/request-key:ro", "-v", "/bin/keyctl:/usr/bin/keyctl:ro",
                                     "-v", "/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu:ro", "-v", "/usr/lib64:/lib64:ro",
                                     "-v", "\(p.dir)/request-key.conf:/etc/request-key.conf:ro",
                                     "--security-opt", "seccomp=unconfined"]
                        let (code, out) = try p.run(["--rm"] + binds, ["/bin/sh", "-c",
                            "/usr/bin/keyctl session - /bin/sh -c '/usr/bin/keyctl print $(/usr/bin/keyctl request2 user ctrobjpod:1 hello @s)'"])
                        #expect(code == 0 && out.contains("from-podman-container"),
                                "\(out)\nhook log: \((try? Sys.readFile(log)) ?? "")\ndaemon log: \((try? Sys.readFile(d.logPath)) ?? "")")
                    }
                }
            }
        }
    }

    @Test("the harness: --runtime PATH is what conmon runs (create, start, delete), with runtimeEnvironment set for it")
    func runtimeIsPluggable() throws {
        let dir = "/tmp/ctrobj-rtwrap-\(uniqueSuffix())"
        try Sys.mkdirs(dir, 0o755)
        defer { removeTree(dir) }
        let wrapper = "\(dir)/runtime"
        try Sys.writeFileAtomically(wrapper, "#!/bin/sh\necho \"$CTROBJ_PROBE $*\" >> \(dir)/calls\nexec \(runcBinary) \"$@\"\n", mode: 0o755)
        let p = try PrivatePodman(runtime: wrapper, runtimeEnvironment: ["CTROBJ_PROBE=probe-env"])
        defer { p.cleanUp() }
        let (code, out) = try p.run(["--rm"], ["/bin/sh", "-c", "echo wrapped"])
        #expect(code == 0 && out.contains("wrapped"), "\(out)")
        let calls = (try? Sys.readFile("\(dir)/calls")) ?? ""
        for verb in [" create ", " start ", " delete "] {
            #expect(calls.split(separator: "\n").contains { $0.hasPrefix("probe-env") && $0.contains(verb) }, "\(verb): \(calls)")
        }
    }

    @Test("containerd: a spec whose createRuntime and poststop hooks run ctrobj oci-hook; the core of a crash lands in its root, no record is left",
          .enabled(if: haveContainerd, containerdMissing))
    func containerdHook() throws {
        try upcalls.withBroker { d, _ in
            try PrivateContainerd.with { c in
                let rootfs = "\(c.dir)/rootfs-hooked"
                try makeBusyboxRootfs(rootfs)
                let hook = #"{ "path": "\#(buildDir)/ctrobj", "args": ["ctrobj", "oci-hook", "--log", "\#(c.dir)/hook.log"], "env": ["CTROBJ_STATE_DIR=\#(d.stateDir)"] }"#
                let spec = PrivateContainerd.spec(rootfs: rootfs, args: ["/bin/sh", "-c",
                    "ulimit -c unlimited; sh -c 'kill -SEGV $$'; ls /var/lib/ctrobj/cores; echo hooked-$(hostname)"],
                    hooks: #"{ "createRuntime": [\#(hook)], "poststop": [\#(hook)] }"#)
                let (code, out) = try c.runSpec(id: "hooked", spec: spec)
                let log = (try? Sys.readFile("\(c.dir)/hook.log")) ?? ""
                #expect(code == 0 && out.contains("hooked-ctrobj-ctr"), "\(out)")
                #expect(out.contains("core.sh."), "the container sees its core in its own /var/lib/ctrobj/cores: \(out)")
                #expect(log.contains("(oci-hooked): adopted pid") && log.contains("(oci-hooked): forgot the adopted record"), "\(log)")
                let cores = Sys.listDirectory("\(rootfs)/var/lib/ctrobj/cores").filter { $0.hasPrefix("core.sh.") }
                #expect(cores.count == 1, "\(cores); daemon log: \((try? Sys.readFile(d.logPath)) ?? "")")
                #expect(waitFor(seconds: 10) { (try? Container.list().isEmpty) == true }, "no record left: \((try? Container.list().map(\.name)) ?? [])")
            }
        }
    }

    @Test("containerd: ctr run --rm of one runc container end to end, in a private containerd",
          .enabled(if: haveContainerd, containerdMissing))
    func containerdSmoke() throws {
        try PrivateContainerd.with { c in
            let (code, out) = try c.runRemoving(id: "smoke", ["/bin/sh", "-c", "echo hello-$((6*7)) from $(cat /proc/1/comm); exit 0"])
            #expect(code == 0 && out.contains("hello-42 from sh"), "\(out)")
            let (ec, eo) = try c.runRemoving(id: "exit7", ["/bin/sh", "-c", "exit 7"])
            #expect(ec == 7, "the exit status comes back through the shim: \(eo)")
            let (_, left) = try c.ctr(["container", "ls", "--quiet"])
            #expect(left.trimmingSuffixNewline().isEmpty, "--rm removed them: \(left)")
        }
    }
}
