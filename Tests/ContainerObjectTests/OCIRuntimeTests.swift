import CShim
import ContainerObject
import UpcallInstall
import ContainerSystem
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A bundle for ctrobj-oci and runc: `runc spec`'s config.json (edited by
/// the test) and a rootfs of busybox-static with applet links.
final class OCIBundle {
    let dir: String
    var rootfs: String { "\(dir)/rootfs" }
    var config: [String: Any]

    init(_ args: [String], edit: (inout [String: Any]) -> Void = { _ in }) throws {
        dir = "/tmp/ctrobj-oci-test-\(uniqueSuffix())"
        try Sys.mkdirs("\(dir)/rootfs/bin", 0o755)
        for d in ["proc", "sys", "dev", "etc", "tmp", "shared"] { try Sys.mkdirs("\(dir)/rootfs/\(d)", 0o755) }
        let (code, out) = try runProgram(["/bin/cp", "/bin/busybox", "\(dir)/rootfs/bin/busybox"])
        try #require(code == 0, "\(out)")
        for a in ["sh", "true", "false", "cat", "ls", "echo", "hostname", "id", "sleep", "ps", "grep", "readlink", "kill", "sed", "sort", "ip", "tty"] {
            symlink("busybox", "\(dir)/rootfs/bin/\(a)")
        }
        let (c2, o2) = try runProgram(["/usr/sbin/runc", "spec", "--bundle", dir])
        try #require(c2 == 0, "runc spec: \(o2)")
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/config.json"))
        config = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        var p = config["process"] as! [String: Any]
        p["terminal"] = false
        p["args"] = args
        config["process"] = p
        edit(&config)
        try save()
    }

    func save() throws {
        let data = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: "\(dir)/config.json"))
    }

    func remove() { _ = try? runProgram(["/bin/rm", "-rf", dir]) }
}

/// ctrobj-oci (and runc) run as the CLIs they are, against a private ctrobjd.
struct OCI {
    let d: PrivateDaemon
    let root: String

    init(_ d: PrivateDaemon) throws {
        self.d = d
        root = "/tmp/ctrobj-oci-root-\(uniqueSuffix())"
    }

    var env: [String] { ["CTROBJ_SOCKET=\(d.socket)", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] }

    @discardableResult
    func run(_ args: [String], timeout: Int = 60) throws -> (Int32, String) {
        try runProgram(["\(buildDir)/ctrobj-oci", "--root", root] + args, env: env, timeoutSeconds: timeout)
    }

    func state(_ id: String) throws -> [String: Any] {
        let (code, out) = try run(["state", id])
        try #require(code == 0, "state \(id): \(out)")
        return try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
    }

    func status(_ id: String) throws -> String { try state(id)["status"] as? String ?? "?" }

    /// Everything this test made under --root goes, containers included.
    func cleanup() {
        for id in Sys.listDirectory(root) where !id.hasPrefix(".") { _ = try? run(["delete", "--force", id]) }
        _ = try? runProgram(["/bin/rm", "-rf", root])
    }
}

func runc(_ root: String, _ args: [String], timeout: Int = 60) throws -> (Int32, String) {
    try runProgram(["/usr/sbin/runc", "--root", root] + args, timeoutSeconds: timeout)
}

func waitFor(_ seconds: Int = 10, _ cond: () throws -> Bool) rethrows -> Bool {
    for _ in 0..<(seconds * 50) {
        if try cond() { return true }
        usleep(20_000)
    }
    return false
}

@Suite("ctrobj-oci: an OCI runtime on container objects", .serialized,
       .enabled(if: isRoot && Sys.exists("/bin/busybox") && Sys.exists("/usr/sbin/runc"), "needs root, busybox-static and runc"))
struct OCIRuntimeTests {
    func with(_ body: (OCI) throws -> Void) throws {
        try withDaemon { d in
            let oci = try OCI(d)
            defer { oci.cleanup() }
            try body(oci)
        }
    }

    @Test("run: output and exit code of the container's process come back")
    func runExitCode() throws {
        try with { oci in
            let b = try OCIBundle(["/bin/sh", "-c", "echo hello-from-oci; exit 3"])
            defer { b.remove() }
            let (code, out) = try oci.run(["run", "--bundle", b.dir, "r1"])
            #expect(code == 3, "\(out)")
            #expect(out.contains("hello-from-oci"))
            // run deletes: no state, and no container object once it has
            // exited (KILL_ON_CLOSE: ctrobjd destroys it when run's fd closes).
            #expect(try oci.run(["state", "r1"]).0 == 1)
            #expect(try waitFor { try Container.list().allSatisfy { !$0.name.hasPrefix("oci-r1") } })
        }
    }

    @Test("create, start, state, pause, resume, kill, delete through every state; delete --force of created and running; kill --all")
    func lifecycle() throws {
        try with { oci in
            let b = try OCIBundle(["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"])
            defer { b.remove() }
            let pidFile = "\(b.dir)/pid"
            var (code, out) = try oci.run(["create", "--bundle", b.dir, "--pid-file", pidFile, "l1"])
            try #require(code == 0, "\(out)")
            let st = try oci.state("l1")
            #expect(st["status"] as? String == "created")
            #expect(st["id"] as? String == "l1")
            #expect(st["bundle"] as? String == b.dir)
            let pid = st["pid"] as? Int ?? 0
            #expect(pid > 0 && (try? Sys.readFile(pidFile)) == "\(pid)")
            // The container object exists, named after the id.
            #expect(try Container.list().contains { $0.name == "oci-l1" && $0.initPid == pid })
            // init is in the container's cgroup in every hierarchy ctrobjd
            // made it one (it joined by `tasks` and CLONE_INTO_CGROUP).
            let cg = try Container.open("oci-l1").status().cgroup.split(separator: "/").joined(separator: "/")
            let lines = ((try? Sys.readFile("/proc/\(pid)/cgroup")) ?? "").split(separator: "\n")
            let layout = CgroupLayout.discover()
            var checked = 0
            func line(_ match: (Substring) -> Bool) -> Substring? {
                lines.first { l in
                    let f = l.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
                    return f.count == 3 && match(f[1])
                }
            }
            if let v2 = layout.v2Mount, Sys.exists("\(v2)/\(cg)") {
                let l = line { $0.isEmpty }
                #expect(l?.hasSuffix("/\(cg)") == true, "v2: \(String(describing: l))")
                checked += 1
            }
            for (ctrl, path) in layout.v1Mounts where Sys.exists("\(path)/\(cg)") {
                let l = line { $0.split(separator: ",").contains(Substring(ctrl)) }
                #expect(l?.hasSuffix("/\(cg)") == true, "\(ctrl): \(String(describing: l))")
                checked += 1
            }
            #expect(checked > 0)
            (code, out) = try oci.run(["start", "l1"])
            #expect(code == 0, "\(out)")
            #expect(try oci.status("l1") == "running")
            #expect(try oci.run(["start", "l1"]).0 == 1, "a second start is refused")
            #expect(try oci.run(["delete", "l1"]).0 == 1, "delete of a running container needs --force")
            (code, out) = try oci.run(["pause", "l1"])
            #expect(code == 0, "\(out)")
            #expect(try oci.status("l1") == "paused")
            (code, out) = try oci.run(["resume", "l1"])
            #expect(code == 0, "\(out)")
            #expect(try oci.status("l1") == "running")
            let (pc, pout) = try oci.run(["ps", "--format", "json", "l1"])
            #expect(pc == 0 && pout.contains("\(pid)"), "\(pout)")
            (code, out) = try oci.run(["kill", "l1", "TERM"])
            #expect(code == 0, "\(out)")
            #expect(try waitFor { try oci.status("l1") == "stopped" })
            #expect(try oci.run(["kill", "l1", "KILL"]).0 == 1, "kill of a stopped container fails, as runc's")
            (code, out) = try oci.run(["delete", "l1"])
            #expect(code == 0, "\(out)")
            #expect(try oci.run(["state", "l1"]).0 == 1)
            #expect(try Container.list().allSatisfy { $0.name != "oci-l1" })

            // delete --force of a created one, and of a running one.
            #expect(try oci.run(["create", "--bundle", b.dir, "l2"]).0 == 0)
            (code, out) = try oci.run(["delete", "--force", "l2"])
            #expect(code == 0, "\(out)")
            #expect(try oci.run(["create", "--bundle", b.dir, "l3"]).0 == 0)
            #expect(try oci.run(["start", "l3"]).0 == 0)
            (code, out) = try oci.run(["delete", "--force", "l3"])
            #expect(code == 0, "\(out)")
            #expect(try Container.list().allSatisfy { !$0.name.hasPrefix("oci-l") })

            // kill --all reaches a process exec'd in, through the container.
            #expect(try oci.run(["create", "--bundle", b.dir, "l4"]).0 == 0)
            #expect(try oci.run(["start", "l4"]).0 == 0)
            (code, out) = try oci.run(["exec", "--detach", "--pid-file", "\(b.dir)/exec.pid", "l4", "/bin/sleep", "1000"])
            #expect(code == 0, "\(out)")
            let execPid = pid_t((try? Sys.readFile("\(b.dir)/exec.pid")) ?? "") ?? 0
            #expect(execPid > 0)
            (code, out) = try oci.run(["kill", "--all", "l4", "9"])
            #expect(code == 0, "\(out)")
            #expect(waitFor { kill(execPid, 0) != 0 || ((try? Sys.readFile("/proc/\(execPid)/stat")) ?? "").contains(") Z") },
                    "the exec'd process died too")
            #expect(try waitFor { try oci.status("l4") == "stopped" })
            #expect(try oci.run(["delete", "l4"]).0 == 0)
        }
    }

    @Test("init waiting for start is not dumpable (no ptrace, no pidfd_getfd of the runtime's fds); after exec it is")
    func initNotDumpableBeforeStart() throws {
        try with { oci in
            let b = try OCIBundle(["/bin/sleep", "1000"]) { c in
                var p = c["process"] as! [String: Any]
                p["user"] = ["uid": 1000, "gid": 1000]
                c["process"] = p
            }
            defer { b.remove() }
            #expect(try oci.run(["create", "--bundle", b.dir, "d1"]).0 == 0)
            let pid = (try oci.state("d1")["pid"] as? Int).map { pid_t($0) } ?? 0
            try #require(pid > 0)
            // A non-dumpable task's private /proc files (environ, mem) belong to root, whatever its uid.
            // (The switch to uid 1000 alone would also clear dumpability: this checks the
            // property at the gate, not which of the two gave it; a root init with every
            // capability, where only the prctl does, cannot be told apart through /proc.)
            #expect(ProcInfo.statusField(pid: pid, "Uid")?.first == "1000", "init runs as the bundle's user at the gate")
            var st = stat()
            #expect(stat("/proc/\(pid)/environ", &st) == 0 && st.st_uid == 0, "init at the start gate is dumpable (owner \(st.st_uid))")
            #expect(try oci.run(["start", "d1"]).0 == 0)
            #expect(waitFor(10) { stat("/proc/\(pid)/environ", &st) == 0 && st.st_uid == 1000 }, "after exec the process is dumpable again")
            #expect(try oci.run(["delete", "--force", "d1"]).0 == 0)
        }
    }

    @Test("exec: a process joins the running container as the given user, exit code returned")
    func exec() throws {
        try with { oci in
            let b = try OCIBundle(["/bin/sleep", "1000"]) { c in
                c["hostname"] = "exechost"
            }
            defer { b.remove() }
            #expect(try oci.run(["create", "--bundle", b.dir, "e1"]).0 == 0)
            #expect(try oci.run(["start", "e1"]).0 == 0)
            let (code, out) = try oci.run(["exec", "--user", "1000:1000", "e1", "/bin/sh", "-c", "hostname; id -u; exit 5"])
            #expect(code == 5, "\(out)")
            #expect(out.contains("exechost") && out.contains("1000"), "\(out)")
            // exec --process: a field it cannot honour is refused by name.
            let pf = "\(b.dir)/process.json"
            try Sys.writeFileAtomically(pf, #"{"args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "appArmorProfileX": "x"}"#, mode: 0o644)
            let (c2, o2) = try oci.run(["exec", "--process", pf, "e1"])
            #expect(c2 != 0 && o2.contains("process.appArmorProfileX"), "\(o2)")
            try Sys.writeFileAtomically(pf, #"{"args": ["/bin/sh", "-c", "exit 3"], "cwd": "/", "user": {"uid": 0, "gid": 0}}"#, mode: 0o644)
            #expect(try oci.run(["exec", "--process", pf, "e1"]).0 == 3)
            #expect(try oci.run(["delete", "--force", "e1"]).0 == 0)
        }
    }

    @Test("hooks: each runs at its stage and gets the state with the status the runtime-spec gives it")
    func hooks() throws {
        try with { oci in
            let out = "/tmp/ctrobj-oci-hooks-\(uniqueSuffix())"
            try Sys.mkdirs(out, 0o755)
            defer { _ = try? runProgram(["/bin/rm", "-rf", out]) }
            let b = try OCIBundle(["/bin/sh", "-c", "cat /shared/createContainer.stage > /dev/null && exit 0"]) { c in
                func host(_ n: String) -> [String: Any] {
                    ["path": "/bin/sh", "args": ["sh", "-c", "cat > \(out)/\(n); echo \(n) >> \(out)/order"], "timeout": 10]
                }
                func inside(_ n: String) -> [String: Any] {
                    ["path": "/bin/sh", "args": ["sh", "-c", "cat > /shared/\(n); echo \(n) > /shared/\(n).stage"]]
                }
                c["hooks"] = ["prestart": [host("prestart")], "createRuntime": [host("createRuntime")],
                              "createContainer": [inside("createContainer")], "startContainer": [inside("startContainer")],
                              "poststart": [host("poststart")], "poststop": [host("poststop")]]
                var mounts = c["mounts"] as! [[String: Any]]
                mounts.append(["destination": "/shared", "type": "bind", "source": out, "options": ["rbind", "rw"]])
                c["mounts"] = mounts
            }
            defer { b.remove() }
            var (code, o) = try oci.run(["create", "--bundle", b.dir, "h1"])
            try #require(code == 0, "\(o)")
            func state(_ f: String) -> [String: Any]? {
                guard let t = try? Sys.readFile("\(out)/\(f)") else { return nil }
                return try? JSONSerialization.jsonObject(with: Data(t.utf8)) as? [String: Any]
            }
            // After create: prestart, createRuntime (host), createContainer (inside); not the others.
            for n in ["prestart", "createRuntime", "createContainer"] {
                let s = state(n)
                #expect(s?["status"] as? String == "creating", "\(n): \(String(describing: s))")
                #expect(s?["id"] as? String == "h1" && (s?["pid"] as? Int ?? 0) > 0 && s?["bundle"] as? String == b.dir)
            }
            #expect(state("startContainer") == nil && state("poststart") == nil)
            (code, o) = try oci.run(["start", "h1"])
            #expect(code == 0, "\(o)")
            #expect(waitFor { state("startContainer") != nil })
            #expect(state("startContainer")?["status"] as? String == "created")
            #expect(state("poststart")?["status"] as? String == "running")
            #expect(state("poststop") == nil)
            #expect(try waitFor { try oci.status("h1") == "stopped" })
            (code, o) = try oci.run(["delete", "h1"])
            #expect(code == 0, "\(o)")
            #expect(state("poststop")?["status"] as? String == "stopped")
            let order = ((try? Sys.readFile("\(out)/order")) ?? "").split(separator: "\n")
            #expect(order == ["prestart", "createRuntime", "poststart", "poststop"], "\(order)")
        }
    }

    @Test("a hook that fails or outlives its timeout fails create, and nothing is left")
    func hookFailure() throws {
        try with { oci in
            let b = try OCIBundle(["/bin/true"]) { c in
                c["hooks"] = ["createRuntime": [["path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1]]]
            }
            defer { b.remove() }
            let (code, out) = try oci.run(["create", "--bundle", b.dir, "hf"])
            #expect(code == 1)
            #expect(out.contains("hooks.createRuntime[0]") && out.contains("timed out"), "\(out)")
            #expect(try oci.run(["state", "hf"]).0 == 1)
            #expect(try Container.list().allSatisfy { $0.name != "oci-hf" })
        }
    }

    @Test("config.json fields it cannot honour are refused by name; nothing is left behind", arguments: [
        ("process.apparmorProfile", #"{"process":{"apparmorProfile":"docker-default"}}"#),
        ("linux.resources.blockIO", #"{"linux":{"resources":{"blockIO":{"weight":10}}}}"#),
        ("linux.uidMappings", #"{"linux":{"uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],"namespaces":[{"type":"user"},{"type":"mount"},{"type":"pid"}]}}"#),
        ("linux.intelRdt", #"{"linux":{"intelRdt":{"closID":"x"}}}"#),
        ("process.capabilities.bounding", #"{"process":{"capabilities":{"bounding":["CAP_NOT_A_CAP"]}}}"#),
        ("linux.bogusField", #"{"linux":{"bogusField":1}}"#),
        ("mounts[0].options", #"{"mounts":[{"destination":"/x","type":"bind","source":"/tmp","options":["rbind","idmap"]}]}"#),
        ("linux.seccomp.defaultAction", #"{"linux":{"seccomp":{"defaultAction":"SCMP_ACT_WHATEVER"}}}"#),
        ("ociVersion", #"{"ociVersion":"2.0.0"}"#),
        ("linux.resources.memory.swap", #"{"linux":{"resources":{"memory":{"limit":100000000,"swap":300000000}}}}"#),
        ("linux.namespaces", #"{"linux":{"namespaces":[{"type":"pid"}]}}"#),
        ("linux.resources.cpu.shares", #"{"linux":{"resources":{"cpu":{"shares":512}}}}"#),
    ])
    func refused(field: String, patch: String) throws {
        try with { oci in
            let b = try OCIBundle(["/bin/true"]) { c in
                let p = try! JSONSerialization.jsonObject(with: Data(patch.utf8)) as! [String: Any]
                func merge(_ a: [String: Any], _ b: [String: Any]) -> [String: Any] {
                    var out = a
                    for (k, v) in b {
                        if let sub = v as? [String: Any], let base = a[k] as? [String: Any] { out[k] = merge(base, sub) } else { out[k] = v }
                    }
                    return out
                }
                c = merge(c, p)
            }
            defer { b.remove() }
            let log = "\(b.dir)/log.json"
            let (code, out) = try oci.run(["--log", log, "--log-format", "json", "create", "--bundle", b.dir, "bad"])
            #expect(code == 1)
            #expect(out.contains(field), "\(field): \(out)")
            // conmon reads the last error from --log as a JSON line.
            let last = ((try? Sys.readFile(log)) ?? "").split(separator: "\n").last.map(String.init) ?? ""
            let j = try? JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any]
            #expect(j?["level"] as? String == "error" && (j?["msg"] as? String ?? "").contains(field) && j?["time"] != nil, "\(last)")
            #expect(try oci.run(["state", "bad"]).0 == 1)
            #expect(try Container.list().allSatisfy { $0.name != "oci-bad" })
        }
    }

    @Test("--systemd-cgroup is refused with a clear error; unknown flags do not break a command")
    func flags() throws {
        try with { oci in
            let (code, out) = try oci.run(["--systemd-cgroup", "list"])
            #expect(code == 1 && out.contains("systemd"), "\(out)")
            let (c2, o2) = try oci.run(["--criu", "/x", "list", "--format", "json"])
            #expect(c2 == 0 && o2.hasPrefix("["), "\(o2)")
            let (c3, o3) = try oci.run(["features"])
            #expect(c3 == 0 && o3.contains("ociVersionMax"), "\(o3)")
        }
    }

    @Test("a state root another user could write to, or a link, is refused before anything is read or made")
    func untrustedStateRoot() throws {
        try with { oci in
            let b = try OCIBundle(["/bin/true"])
            defer { b.remove() }
            let base = "/tmp/ctrobj-oci-roots-\(uniqueSuffix())"
            try Sys.mkdirs(base, 0o700)
            defer { _ = try? runProgram(["/bin/rm", "-rf", base]) }
            func runWithRoot(_ root: String, _ args: [String]) throws -> (Int32, String) {
                try runProgram(["\(buildDir)/ctrobj-oci", "--root", root] + args, env: oci.env)
            }
            let open = "\(base)/open"
            try Sys.mkdirs(open, 0o700)
            chmod(open, 0o777)
            var (code, out) = try runWithRoot(open, ["create", "--bundle", b.dir, "u1"])
            #expect(code != 0 && out.contains("writable by group or others"), "\(out)")
            let other = "\(base)/other"
            try Sys.mkdirs(other, 0o700)
            chown(other, 65534, 65534)
            (code, out) = try runWithRoot(other, ["create", "--bundle", b.dir, "u2"])
            #expect(code != 0 && out.contains("owned by uid 65534"), "\(out)")
            symlink(open, "\(base)/link")
            (code, out) = try runWithRoot("\(base)/link", ["state", "u3"])
            #expect(code != 0 && out.contains("not a directory"), "\(out)")
            #expect(Sys.listDirectory(open).isEmpty && Sys.listDirectory(other).isEmpty, "nothing was made in a refused root")
            #expect((try? Container.list())?.isEmpty ?? false, "no container object was made")
        }
    }

    @Test("console socket: the pty master (of the container's devpts) arrives over SCM_RIGHTS and talks to the container's shell")
    func consoleSocket() throws {
        try with { oci in
            let b = try OCIBundle(["/bin/sh"]) { c in
                var p = c["process"] as! [String: Any]
                p["terminal"] = true
                c["process"] = p
            }
            defer { b.remove() }
            let sockPath = "\(b.dir)/console.sock"
            let listener = try Sys.listenUnix(sockPath, type: SOCK_STREAM, mode: 0o600)
            let createPid = try spawn(["\(buildDir)/ctrobj-oci", "--root", oci.root, "create", "--bundle", b.dir,
                                       "--console-socket", sockPath, "t1"], env: oci.env, output: "\(b.dir)/create.out")
            let createFD = try Sys.pidfdOpen(createPid)
            try #require(ccs_wait_readable(listener.raw, 20_000) == 0, "no connection on the console socket")
            let conn = OwnedFD(ccs_accept(listener.raw))
            var buf = [UInt8](repeating: 0, count: 256)
            var fds: [CInt] = [-1]
            var nfds: CInt = 0
            let n = ccs_recv_with_fds(conn.raw, &buf, buf.count, &fds, 1, &nfds)
            try #require(n > 0 && nfds == 1, "no fd received")
            let master = OwnedFD(fds[0])
            let status = try Sys.pidfdWait(createFD.raw) ?? -1
            #expect(status == 0, "create: \((try? Sys.readFile("\(b.dir)/create.out")) ?? "")")
            #expect(try oci.run(["start", "t1"]).0 == 0)
            try Sys.write(master.raw, "tty; echo tty-$((40+2)); exit 7\n")
            var text = ""
            _ = waitFor(20) {
                var p = pollfd(fd: master.raw, events: Int16(POLLIN), revents: 0)
                if poll(&p, 1, 100) > 0 {
                    let r = read(master.raw, &buf, buf.count)
                    if r > 0 { text += String(decoding: buf[0..<r], as: UTF8.self) }
                }
                return text.contains("tty-42\r\n")
            }
            #expect(text.contains("tty-42"), "\(text)")
            // The pty is the container's own (its devpts): ttyname works inside.
            #expect(text.contains("/dev/pts/") && !text.contains("not a tty"), "\(text)")
            #expect(try waitFor { try oci.status("t1") == "stopped" })
            #expect(try oci.run(["delete", "t1"]).0 == 0)
        }
    }

    @Test("the same bundle under runc and ctrobj-oci: same state fields, exit status, hostname, uid and mount points")
    func sameAsRunc() throws {
        try with { oci in
            let script = "hostname; id -u; id -g; cat /proc/self/mountinfo | while read a b c d mp rest; do echo $mp; done | sort; grep -E 'Cap(Prm|Eff|Bnd)|NoNewPrivs' /proc/self/status; ls /dev; exit 4"
            let b = try OCIBundle(["/bin/sh", "-c", script]) { c in
                c["hostname"] = "samehost"
                var p = c["process"] as! [String: Any]
                p["user"] = ["uid": 0, "gid": 0, "additionalGids": [10]]
                c["process"] = p
            }
            defer { b.remove() }
            let runcRoot = "/tmp/ctrobj-oci-runc-\(uniqueSuffix())"
            defer {
                _ = try? runc(runcRoot, ["delete", "--force", "sr"])
                _ = try? runProgram(["/bin/rm", "-rf", runcRoot])
            }
            let (rc, rout) = try runc(runcRoot, ["run", "--bundle", b.dir, "sr"])
            let (oc, oout) = try oci.run(["run", "--bundle", b.dir, "so"])
            #expect(rc == 4 && oc == 4, "runc \(rc) ctrobj-oci \(oc)")
            #expect(rout.split(separator: "\n").sorted() == oout.split(separator: "\n").sorted(),
                    "runc:\n\(rout)\nctrobj-oci:\n\(oout)")
            #expect(oout.contains("samehost"))
            // State JSON after create, field by field.
            let b2 = try OCIBundle(["/bin/sleep", "100"]) { c in c["annotations"] = ["a.b": "c"] }
            defer { b2.remove() }
            #expect(try runc(runcRoot, ["create", "--bundle", b2.dir, "sr"]).0 == 0)
            #expect(try oci.run(["create", "--bundle", b2.dir, "sr"]).0 == 0)
            let (_, rs) = try runc(runcRoot, ["state", "sr"])
            let r = try JSONSerialization.jsonObject(with: Data(rs.utf8)) as! [String: Any]
            let o = try oci.state("sr")
            for k in ["ociVersion", "id", "status", "bundle", "rootfs"] {
                #expect(String(describing: r[k] ?? "nil") == String(describing: o[k] ?? "nil"), "\(k): runc \(r[k] ?? "nil") ctrobj-oci \(o[k] ?? "nil")")
            }
            #expect((o["annotations"] as? [String: String]) == ["a.b": "c"])
            #expect((o["pid"] as? Int ?? 0) > 0 && (r["pid"] as? Int ?? 0) > 0)
            #expect(try oci.run(["delete", "--force", "sr"]).0 == 0)
            #expect(try runc(runcRoot, ["delete", "--force", "sr"]).0 == 0)
        }
    }

    @Test("a pod: a second container joins the first's net, ipc and uts by path and sees its hostname and loopback")
    func podSharing() throws {
        try with { oci in
            let pause = try OCIBundle(["/bin/sh", "-c", "ip link set lo up; sleep 1000"]) { c in
                c["hostname"] = "thepod"
                var p = c["process"] as! [String: Any]
                let caps = ["CAP_NET_ADMIN", "CAP_KILL"]
                p["capabilities"] = ["bounding": caps, "effective": caps, "permitted": caps]
                c["process"] = p
                var l = c["linux"] as! [String: Any]
                l["namespaces"] = [["type": "pid"], ["type": "network"], ["type": "ipc"], ["type": "uts"], ["type": "mount"]]
                c["linux"] = l
            }
            defer { pause.remove() }
            #expect(try oci.run(["create", "--bundle", pause.dir, "pod-pause"]).0 == 0)
            #expect(try oci.run(["start", "pod-pause"]).0 == 0)
            let ppid = try oci.state("pod-pause")["pid"] as? Int ?? 0
            try #require(ppid > 0)
            _ = waitFor { ((try? Sys.readFile("/proc/\(ppid)/net/dev")) ?? "").contains("lo") }
            let member = try OCIBundle(["/bin/sh", "-c", "hostname; for n in net ipc uts; do readlink /proc/self/ns/$n; done; ip addr show lo"]) { c in
                c["hostname"] = "thepod"
                var l = c["linux"] as! [String: Any]
                l["namespaces"] = [["type": "pid"], ["type": "mount"], ["type": "network", "path": "/proc/\(ppid)/ns/net"],
                                   ["type": "ipc", "path": "/proc/\(ppid)/ns/ipc"], ["type": "uts", "path": "/proc/\(ppid)/ns/uts"]]
                c["linux"] = l
            }
            defer { member.remove() }
            let (code, out) = try oci.run(["run", "--bundle", member.dir, "pod-member"])
            #expect(code == 0, "\(out)")
            #expect(out.contains("thepod"))
            for ns in ["net", "ipc", "uts"] {
                let want = (try? Sys.readLink("/proc/\(ppid)/ns/\(ns)")) ?? "?"
                #expect(out.contains(want), "\(ns): \(want) not in \(out)")
            }
            #expect(out.contains("127.0.0.1") && out.contains("UP"), "loopback as the pause container set it: \(out)")
            #expect(try oci.run(["delete", "--force", "pod-pause"]).0 == 0)
        }
    }

    @Test("seccomp: a profile with an errno rule is compiled by libseccomp and enforced; unknown syscall names are skipped")
    func seccomp() throws {
        try with { oci in
            let b = try OCIBundle(["/bin/sh", "-c", "mkdir /tmp/x && echo made || echo refused"]) { c in
                var l = c["linux"] as! [String: Any]
                l["seccomp"] = ["defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                                "syscalls": [["names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38],
                                             ["names": ["no_such_syscall_here"], "action": "SCMP_ACT_ERRNO"]]]
                c["linux"] = l
                c["root"] = ["path": "rootfs", "readonly": false]
            }
            defer { b.remove() }
            let (code, out) = try oci.run(["run", "--bundle", b.dir, "sc"])
            #expect(code == 0, "\(out)")
            #expect(out.contains("refused") && !out.contains("made"), "\(out)")
            // The compiled program is kept (podman writes one profile for every
            // container); the second run takes it from there, enforced the same.
            let kept = Sys.listDirectory("\(oci.root)/.seccomp")
            #expect(kept.count == 1, "\(kept)")
            let (code2, out2) = try oci.run(["run", "--bundle", b.dir, "sc2"])
            #expect(code2 == 0 && out2.contains("refused") && !out2.contains("made"), "\(out2)")
            #expect(Sys.listDirectory("\(oci.root)/.seccomp") == kept)
            // A corrupt entry is not used: compiled again, and still enforced.
            for k in kept { try Sys.writeFileAtomically("\(oci.root)/.seccomp/\(k)", "garbage", mode: 0o600) }
            let (code3, out3) = try oci.run(["run", "--bundle", b.dir, "sc3"])
            #expect(code3 == 0 && out3.contains("refused") && !out3.contains("made"), "\(out3)")
        }
    }

    @Test("annotations set the container object's core policy; a bad one, and any module or device grant, is refused by name")
    func annotations() throws {
        try with { oci in
            let b = try OCIBundle(["/bin/sleep", "100"]) { c in c["annotations"] = ["org.ctrobj.core": "drop"] }
            defer { b.remove() }
            let (code, out) = try oci.run(["create", "--bundle", b.dir, "an"])
            #expect(code == 0, "\(out)")
            let bad = try OCIBundle(["/bin/true"]) { c in c["annotations"] = ["org.ctrobj.core": "somewhere"] }
            defer { bad.remove() }
            let (c2, o2) = try oci.run(["create", "--bundle", bad.dir, "an2"])
            #expect(c2 == 1 && o2.contains("org.ctrobj.core"), "\(o2)")
            // review2 F2: ctrobj-oci runs as root; annotations are written by
            // whoever asks for the container. Module loading and device grants
            // from them are refused by name, with how root grants them, and
            // nothing is left behind.
            for (key, flag) in [("org.ctrobj.modules", "--modules"), ("org.ctrobj.devices", "--devices")] {
                let granted = try OCIBundle(["/bin/true"]) { c in c["annotations"] = ["org.ctrobj.core": "drop", key: "dummy,nf_tables"] }
                defer { granted.remove() }
                let (c3, o3) = try oci.run(["create", "--bundle", granted.dir, "an3"])
                #expect(c3 == 1 && o3.contains(key) && o3.contains("ctrobj policy NAME \(flag)"), "\(o3)")
                #expect(try oci.run(["state", "an3"]).0 != 0, "no state is left for a refused create")
            }
            #expect(try oci.run(["delete", "--force", "an"]).0 == 0)
        }
    }

    @Test("review2 F4: an image whose /dev/null is a symlink to core_pattern (no /dev mount) gets the real null device over its masked paths; a device node over a symlink is refused")
    func maskThroughDevNullSymlink() throws {
        let corePattern = "/proc/sys/kernel/core_pattern"
        let saved = try Sys.readFile(corePattern)
        // Put core_pattern back whatever happens (the bug would let the container write it).
        defer { if (try? Sys.readFile(corePattern)) != saved { try? Sys.writeFile(corePattern, saved) } }
        try with { oci in
            // runc spec's maskedPaths (/proc/keys …) and readonlyPaths
            // (/proc/sys …), without the /dev tmpfs: the image's /dev shows.
            func bundle(_ args: [String], _ edit: @escaping (inout [String: Any]) -> Void = { _ in }) throws -> OCIBundle {
                let b = try OCIBundle(args) { c in
                    c["mounts"] = (c["mounts"] as! [[String: Any]]).filter { ($0["destination"] as? String) != "/dev" && !(($0["destination"] as? String) ?? "").hasPrefix("/dev/") }
                    var l = c["linux"] as! [String: Any]
                    #expect((l["maskedPaths"] as? [String] ?? []).contains("/proc/keys"))
                    l["maskedPaths"] = (l["maskedPaths"] as? [String] ?? []) + ["/proc/timer_list"]
                    c["linux"] = l
                    edit(&c)
                }
                try b.save()
                #expect(symlink(corePattern, "\(b.rootfs)/dev/null") == 0)
                return b
            }
            let b = try bundle(["/bin/sh", "-c",
                                "ls -l /proc/keys; echo pwned-by-container > /proc/keys; echo write=$?; echo read=[$(cat /proc/keys)]"])
            defer { b.remove() }
            let (code, out) = try oci.run(["run", "--bundle", b.dir, "f4"])
            // Either refused with a clear message, or masked with the host's null device.
            if code == 0 {
                #expect(out.contains("crw") && out.range(of: #"1,\s+3 "#, options: .regularExpression) != nil, "masked by the null device: \(out)")
                #expect(out.contains("write=0") && out.contains("read=[]"), "the masked path reads empty, not core_pattern: \(out)")
            } else {
                #expect(out.contains("maskedPaths"), "\(out)")
            }
            #expect(try Sys.readFile(corePattern) == saved, "the host's core_pattern is unchanged")
            // linux.devices over the same symlink: the node is not made through
            // it, nor chowned through it.
            let d = try bundle(["/bin/true"]) { c in
                var l = c["linux"] as! [String: Any]
                l["devices"] = [["path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666, "uid": 1000, "gid": 1000]]
                c["linux"] = l
            }
            defer { d.remove() }
            let (c2, o2) = try oci.run(["create", "--bundle", d.dir, "f4d"])
            #expect(c2 != 0 && o2.contains("linux.devices") && o2.contains("exists"), "\(o2)")
            // proc is not mounted through a symlink the image put at /proc
            // (it would land beside the path the masks protect).
            let p = try OCIBundle(["/bin/true"])
            defer { p.remove() }
            try Sys.mkdirs("\(p.rootfs)/elsewhere", 0o755)
            #expect(rmdir("\(p.rootfs)/proc") == 0 && symlink("/elsewhere", "\(p.rootfs)/proc") == 0)
            let (c3, o3) = try oci.run(["run", "--bundle", p.dir, "f4p"])
            #expect(c3 != 0 && o3.contains("mounts"), "\(o3)")
            #expect(try Sys.readFile(corePattern) == saved)
            #expect(try Sys.readFile(corePattern) == saved)
            var st = stat()
            #expect(stat(corePattern, &st) == 0 && st.st_uid == 0, "core_pattern was not chowned")
            _ = try? oci.run(["delete", "--force", "f4d"])
        }
    }

    @Test("masked and read-only paths, made by fd, hold in a container with a user namespace too")
    func masksInUserNamespace() throws {
        try with { oci in
            // No proc (ctrobj-oci mounts none in a user namespace today): the
            // paths are the image's own, a file, a directory and a tree.
            let b = try OCIBundle(["/bin/sh", "-c",
                                   "ls -l /etc/secret; echo read=[$(cat /etc/secret)]; echo dir=[$(ls /tmp/hidden)]; echo x > /etc/new; echo ro=$?"]) { c in
                var l = c["linux"] as! [String: Any]
                l["namespaces"] = (l["namespaces"] as! [[String: Any]]) + [["type": "user"]]
                l["maskedPaths"] = ["/etc/secret", "/tmp/hidden", "/nonexistent"]
                l["readonlyPaths"] = ["/etc"]
                c["linux"] = l
                c["mounts"] = (c["mounts"] as! [[String: Any]]).filter { ($0["destination"] as? String) == "/dev" }
            }
            defer { b.remove() }
            try Sys.writeFileAtomically("\(b.rootfs)/etc/secret", "s3cret\n", mode: 0o644)
            try Sys.mkdirs("\(b.rootfs)/tmp/hidden", 0o755)
            try Sys.writeFileAtomically("\(b.rootfs)/tmp/hidden/file", "x", mode: 0o644)
            let (code, out) = try oci.run(["run", "--bundle", b.dir, "usermask"])
            #expect(code == 0, "\(out)")
            #expect(out.contains("crw") && out.range(of: #"1,\s+3 "#, options: .regularExpression) != nil && out.contains("read=[]"), "\(out)")
            #expect(out.contains("dir=[]") && !out.contains("ro=0"), "\(out)")
        }
    }

    @Test("ctrobjd down: create fails with the library's one error; state, kill and delete still work, and the record goes once it is back")
    func daemonDown() throws {
        try with { oci in
            let b = try OCIBundle(["/bin/sleep", "1000"])
            defer { b.remove() }
            #expect(try oci.run(["create", "--bundle", b.dir, "dd"]).0 == 0)
            #expect(try oci.run(["start", "dd"]).0 == 0)
            oci.d.signal(SIGTERM)
            let (c1, o1) = try oci.run(["create", "--bundle", b.dir, "dd2"])
            #expect(c1 == 1 && o1.contains("ctrobjd is not running"), "\(o1)")
            #expect(try oci.status("dd") == "running")
            #expect(try oci.run(["kill", "dd", "KILL"]).0 == 0)
            #expect(try waitFor { try oci.status("dd") == "stopped" })
            let (c2, o2) = try oci.run(["delete", "dd"])
            #expect(c2 == 0, "\(o2)")
            try oci.d.start()
            // The next command that reaches ctrobjd destroys the leftover record.
            _ = try oci.run(["create", "--bundle", b.dir, "dd3"])
            #expect(try Container.list().allSatisfy { $0.name != "oci-dd" })
            _ = try oci.run(["delete", "--force", "dd3"])
        }
    }
    @Test("a core dump inside a ctrobj-oci container lands in its own root, owned by its root")
    func coreInsideOCIContainer() throws {
        _ = machineLock // before reading: another test process may have its settings in place
        let before = try KernelSettings.read()
        defer {
            try? before.restore()
            #expect((try? KernelSettings.read()) == before, "kernel settings were not restored")
        }
        try with { oci in
            let inst = UpcallInstaller(stateDir: oci.d.stateDir, helper: upcallHelper, spoolDir: "\(oci.d.stateDir)-spool", coreMode: .auto)
            _ = try inst.install()
            defer { _ = try? inst.uninstall() }
            let b = try OCIBundle(["/bin/sh", "-c", "sh -c 'kill -SEGV $$'; sleep 1000"]) { c in
                c["root"] = ["path": "rootfs", "readonly": false]
            }
            defer { b.remove() }
            var (code, out) = try oci.run(["create", "--bundle", b.dir, "core1"])
            try #require(code == 0, "\(out)")
            (code, out) = try oci.run(["start", "core1"])
            #expect(code == 0, "\(out)")
            let dir = "\(b.rootfs)/var/lib/ctrobj/cores"
            #expect(waitFor(30) { Sys.listDirectory(dir).contains { $0.hasPrefix("core.") } }, "no core in the container's root")
            let cores = Sys.listDirectory(dir).filter { $0.hasPrefix("core.") }
            #expect(cores.count == 1 && cores[0].hasPrefix("core.sh.") || cores.first?.hasPrefix("core.busybox.") == true, "\(cores)")
            var st = stat()
            // The file is there before the core is written into it.
            if let f = cores.first {
                _ = waitFor(10) { stat("\(dir)/\(f)", &st) == 0 && st.st_size > 0 }
                #expect(st.st_size > 0 && st.st_uid == 0, "a non-empty core owned by the container's root (no user ns: host root)")
            }
            #expect(try oci.run(["delete", "--force", "core1"]).0 == 0)
        }
    }
    @Test("commands after create reach the daemon create used, with no socket given (podman's cleanup passes no runtime flags)")
    func socketRemembered() throws {
        try with { oci in
            let b = try OCIBundle(["/bin/sleep", "100"])
            defer { b.remove() }
            let bin = "\(buildDir)/ctrobj-oci"
            let (c1, o1) = try runProgram([bin, "--root", oci.root, "--ctrobj-socket", oci.d.socket, "create", "--bundle", b.dir, "sk"],
                                          env: ["PATH=/usr/bin:/bin"])
            try #require(c1 == 0, "\(o1)")
            let (c2, o2) = try runProgram([bin, "--root", oci.root, "delete", "--force", "sk"], env: ["PATH=/usr/bin:/bin"])
            #expect(c2 == 0, "\(o2)")
            #expect(try Container.list().allSatisfy { $0.name != "oci-sk" }, "destroyed in the daemon that made it")
        }
    }
    @Test("linux.resources memory, pids and cpu land on the container's cgroup, as the container sees it under /sys/fs/cgroup")
    func resources() throws {
        try with { oci in
            let script = "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>&1 || cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max"
            let b = try OCIBundle(["/bin/sh", "-c", script]) { c in
                var l = c["linux"] as! [String: Any]
                l["resources"] = ["memory": ["limit": 64 << 20], "pids": ["limit": 50], "cpu": ["quota": 50000, "period": 100000],
                                  "devices": [["allow": false, "access": "rwm"]]]
                c["linux"] = l
            }
            defer { b.remove() }
            let (code, out) = try oci.run(["run", "--bundle", b.dir, "res"])
            #expect(code == 0, "\(out)")
            #expect(out.contains("50") && out.contains("\(64 << 20)") && out.contains("50000"), "\(out)")
        }
    }

    @Test("a network namespace of its own has lo up (as runc); cpu.shares 1024 (containerd's ctr default, the kernel's default weight) is accepted")
    func loopbackAndNeutralShares() throws {
        try with { oci in
            let b = try OCIBundle(["/bin/sh", "-c", "ip addr show lo; echo ping | nc -l -p 7000 -w 5 & sleep 0.3; nc 127.0.0.1 7000 </dev/null; wait"]) { c in
                var l = c["linux"] as! [String: Any]
                l["resources"] = ["cpu": ["shares": 1024], "devices": [["allow": false, "access": "rwm"]]]
                c["linux"] = l
            }
            defer { b.remove() }
            symlink("busybox", "\(b.rootfs)/bin/nc")
            let (code, out) = try oci.run(["run", "--bundle", b.dir, "lo"])
            #expect(code == 0, "\(out)")
            #expect(out.contains("127.0.0.1") && out.contains("UP"), "lo is up: \(out)")
            #expect(out.contains("ping"), "a connection over 127.0.0.1 inside: \(out)")
        }
    }
}
