import CShim
import ContainerObject
import ContainerSystem
import ContainerWire
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 9: ctrobjd is a root daemon every local user can reach. Each test
/// runs an attack (Tests/ctrobj-attack) as a throwaway unprivileged user
/// against a private daemon and checks the effect a person would check: the
/// root process still alive and in its cgroup, the host file still root's,
/// the daemon still answering root. The user, the daemon, its cgroups and
/// mounts are removed on every path. Crash consistency (finding 7) is in
/// AdversarialTests+Crash.swift.
@Suite("adversarial: a hostile local user against ctrobjd", .serialized,
       .enabled(if: isRoot && adversaryTools.allSatisfy(Sys.exists),
                "needs root (it adds a user and runs a daemon) and util-linux's setpriv, prlimit, unshare, useradd"))
struct AdversarialTests {
    // MARK: finding 1: fork.commit with another's process

    @Test("fork.commit with a root process's pid and a pidfd (or any fd) of it is refused; destroy kills nothing outside",
          arguments: ["pidfd", "nonpidfd"])
    func commitForeignProcess(fdKind: String) throws {
        try withAdversary { user, d in
            let victim = try Victim()
            let r = try attack(["commit-victim", "\(victim.pid)", fdKind], as: user, daemon: d)
            #expect(r.result("create") == "ok", "\(r.at("create"))")
            if fdKind == "pidfd" {
                #expect(r.result("victim-pidfd") == "ok", "an unprivileged user can pidfd_open a root process: \(r.at("victim-pidfd"))")
            }
            #expect([EINVAL, EPERM].contains(r.errno("commit") ?? 0), "fork.commit is refused: \(r.at("commit"))")
            usleep(100_000)
            #expect(victim.isAlive, "root's process survives the user's destroy")
            #expect(d.isRunning, "ctrobjd is still up")
        }
    }

    // MARK: finding 2: cgroup fds

    @Test("a user's fork.prepare hands out no fd on a cgroup filesystem; cgroup.join takes no fields; a root process stays in its cgroups")
    func noCgroupFDs() throws {
        try withAdversary { user, d in
            let victim = try Victim()
            let before = victim.cgroups
            let r = try attack(["prepare-fds", "\(victim.pid)"], as: user, daemon: d)
            #expect(r.result("prepare") == "ok", "\(r.at("prepare"))")
            #expect(r.value("cgroup-fds", "count") == "0", "no cgroup.procs fds for a user: \(r.at("cgroup-fds"))")
            #expect(r.value("cgroup-fds", "victim_written") == "0", "\(r.at("cgroup-fds"))")
            for step in ["join-field-pid", "join-field-x", "join-field-empty"] {
                #expect(r.errno(step) == EINVAL, "\(step): \(r.at(step))")
            }
            #expect(r.result("join-victim-pidfd") == "error", "\(r.at("join-victim-pidfd"))")
            #expect(victim.cgroups == before, "the root process is where it was:\nbefore:\n\(before)\nafter:\n\(victim.cgroups)")
            #expect(victim.isAlive)
        }
    }

    @Test("the legitimate way in still works for a user: init and exec land in the container's cgroups")
    func legitimateSpawn() throws {
        try withAdversary { user, d in
            let r = try attack(["spawn-legit"], as: user, daemon: d)
            #expect(r.exitCode == 0, "\(r)")
            #expect(r.value("init", "in_container_cgroup") == "1", "\(r.at("init"))")
            #expect(r.value("exec", "in_container_cgroup") == "1", "\(r.at("exec"))")
            #expect(r.value("init", "host_uid") == "\(user.uid)", "the container's root is the user on the host: \(r.at("init"))")
        }
    }

    // MARK: finding 3: sockets

    @Test("container_socket on a container without its own netns: AF_PACKET and SOCK_RAW are EPERM for a user; TCP still works")
    func rawSocketsRefusedInHostNetns() throws {
        try withAdversary { user, d in
            let r = try attack(["socket", "\(ContainerFlags.newUserNS)"], as: user, daemon: d)
            #expect(r.errno("packet") == EPERM, "\(r.at("packet"))")
            #expect(r.errno("raw") == EPERM, "\(r.at("raw"))")
            #expect(r.result("stream") == "ok" && r.value("stream", "bind_listen_loopback") == "ok", "\(r.at("stream"))")
        }
    }

    /// Asserted: inside the user's own user + network namespaces raw sockets
    /// are allowed (its root could make them there itself; contract line 3).
    @Test("in the user's own user+net namespaces AF_PACKET and SOCK_RAW are allowed (its root could)")
    func rawSocketsAllowedInOwnNetns() throws {
        try withAdversary { user, d in
            let r = try attack(["socket", "\(ContainerFlags.newUserNS | ContainerFlags.newNetNS)"], as: user, daemon: d)
            #expect(r.result("packet") == "ok", "\(r.at("packet"))")
            #expect(r.result("raw") == "ok", "\(r.at("raw"))")
            #expect(r.result("stream") == "ok", "\(r.at("stream"))")
        }
    }

    @Test("a user's container given the host's netns by setns still gets no raw sockets there")
    func rawSocketsAfterSharingHostNetns() throws {
        try withAdversary { user, d in
            let r = try attack(["socket-hostnet"], as: user, daemon: d)
            #expect(r.errno("packet") == EPERM, "\(r.at("setns-hostnet")) / \(r.at("packet"))")
            #expect(r.errno("raw") == EPERM, "\(r.at("raw"))")
            #expect(r.result("stream") == "ok", "\(r.at("stream"))")
        }
    }

    /// A connection's peer is the process that connected; if it has since
    /// exec'd a setuid-root program (su, euid 0, waiting for a password),
    /// cgroup.join must not move it: ctrobjd would act for a process whose
    /// credentials are no longer the connection's.
    @Test("cgroup.join does not move a peer that has become setuid root since it connected")
    func cgroupJoinBySetuidPeer() throws {
        try withAdversary { user, d in
            let run = try RunningAttack(["join-setuid"], as: user, daemon: d)
            let ready = run.waitForStep("ready", timeoutSeconds: 20)
            let now = AttackReport(exitCode: 0, output: run.output)
            #expect(ready, "\(now)")
            if let su = now.value("ready", "su_pid").flatMap({ pid_t($0) }) {
                let cgroups = (try? Sys.readFile("/proc/\(su)/cgroup")) ?? ""
                #expect(!cgroups.contains("/\(d.cgroupParent)/"), "the setuid process was moved into the user's container:\n\(cgroups)")
            }
            #expect(now.value("peer", "euid") == "0", "the peer runs with euid 0: \(now.at("peer"))")
            #expect(now.errno("join-setuid") == EPERM, "\(now.at("join-setuid"))")
            #expect(now.errno("setns-setuid") == EPERM, "setns from the setuid process's pidfd: \(now.at("setns-setuid"))")
            run.go()
            print("join-setuid: \(run.finish(timeoutSeconds: 10))")
        }
    }

    /// Attribution maps a crashing process to a container by its cgroup,
    /// then by its namespaces. A user who records the host's own namespaces
    /// in its container (setns from /proc/self/ns/*, which it is in) must not
    /// thereby receive the upcalls of host processes: with a core handler of
    /// its own (policy handler:/h, /h copying stdin to /stolen) it would be
    /// handed a root process's memory.
    @Test("a user's container holding the host's namespaces does not get a root host process's core", arguments: ["file", "handler"])
    func hostNamespacesDoNotAttribute(policy: String) throws {
        let upcalls = UpcallTests()
        try upcalls.preservingKernelSettings {
            try withAdversary { user, d in
                let hostCores = "/tmp/ctrobj-adv-hostcores-\(uniqueSuffix())"
                try Sys.mkdir(hostCores, 0o700, existOK: false)
                defer { removeTree(hostCores) }
                try Sys.writeFile(KernelSettings.corePatternPath, "\(hostCores)/core.%e.%p")
                let inst = upcalls.installer(d)
                defer { removeTree("\(d.stateDir)-spool") } // the installer's spool, where undeliverable cores go
                _ = try inst.install()
                defer { _ = try? inst.uninstall() }
                let r = try attack(["host-namespaces", policy], as: user, daemon: d)
                #expect(r.result("create") == "ok", "\(r.at("create"))")
                // A root process on the host crashes.
                let (code, _) = try runProgram(["/bin/sh", "-c", "ulimit -c unlimited; sh -c 'kill -SEGV $$'; true"])
                #expect(code == 0)
                var files: [String] = []
                for _ in 0..<250 { files = Sys.listDirectory(hostCores); if !files.isEmpty { break }; usleep(20_000) }
                let log = ((try? Sys.readFile(d.logPath, limit: 8 << 20)) ?? "").split(separator: "\n").filter { $0.contains("core") }.suffix(6)
                #expect(files.count == 1, "the host's own pattern got the root process's core: \(files); ctrobjd says:\n\(log.joined(separator: "\n"))")
                let c = try Container.open("adv-hostns")
                if policy == "handler" { #expect(r.result("handler") == "ok", "\(r.at("handler"))") }
                usleep(500_000)
                let stolen = (try? c.openFile("/stolen", flags: O_RDONLY)).map { f -> Int in
                    var st = stat()
                    fstat(f.raw, &st)
                    return Int(st.st_size)
                }
                #expect(stolen == nil, "the user's handler was given a root host process's core: /stolen is \(stolen ?? 0) bytes")
                let inside = upcalls.cores(c)
                let owners = inside.map { name -> String in
                    var st = stat()
                    if let f = try? c.openFile("/var/lib/ctrobj/cores/\(name)", flags: O_RDONLY) { fstat(f.raw, &st) }
                    return "\(name) (\(st.st_size) bytes, host owner \(st.st_uid), mode \(String(st.st_mode & 0o777, radix: 8)))"
                }
                #expect(inside.isEmpty, "a root host process's core was delivered into the user's (uid \(user.uid)) container: \(owners)")
            }
        }
    }

    // MARK: finding 4: numbers

    @Test("an out-of-range number is EINVAL and ctrobjd keeps serving root",
          arguments: ["limit-cpu", "limit-memory", "limit-pids", "limit-huge", "socket-domain", "socket-type", "socket-protocol",
                      "commit-pid", "commit-pid-negative", "kill-signal", "setns-nstypes", "create-flags"])
    func outOfRangeNumber(which: String) throws {
        try withAdversary { user, d in
            let r = try attack(["number", which], as: user, daemon: d)
            #expect(r.errno("attack") == EINVAL, "\(which): \(r.at("attack"))")
            #expect(d.isRunning, "ctrobjd survived \(which); log:\n\(tail(d.logPath))")
            #expect(throws: Never.self, "root's list is answered") { _ = try rootListNames(d) }
        }
    }

    // MARK: finding 5: exhaustion

    @Test("--max-containers-per-uid 20: the user's 21st create is EDQUOT; root can still create")
    func perUidContainerLimit() throws {
        try withAdversary(daemonArguments: ["--max-containers-per-uid", "20"]) { user, d in
            let r = try attack(["create-many", "25"], as: user, daemon: d)
            #expect(r.value("create-many", "created") == "20", "\(r.at("create-many"))")
            #expect(r.errno("create-many") == EDQUOT, "\(r.at("create-many"))")
            #expect(r.value("create-many", "message")?.contains("max-containers-per-uid") == true, "the message names the option: \(r.at("create-many"))")
            #expect(r.result("list-after") == "ok", "\(r.at("list-after"))")
            #expect(throws: Never.self) { _ = try rootCall(d, Message(Op.create, ["name": "root-after", "flags": "0"])) }
        }
    }

    @Test("at the per-uid container limit a destroy makes room for exactly one more")
    func perUidContainerLimitRecycles() throws {
        try withAdversary(daemonArguments: ["--max-containers-per-uid", "20"]) { user, d in
            let r = try attack(["create-recycle", "25"], as: user, daemon: d)
            #expect(r.value("create-many", "created") == "20" && r.errno("create-many") == EDQUOT, "\(r.at("create-many"))")
            #expect(r.result("destroy-one") == "ok", "\(r.at("destroy-one"))")
            #expect(r.result("create-again") == "ok", "\(r.at("create-again"))")
            #expect(r.errno("create-over-again") == EDQUOT, "\(r.at("create-over-again"))")
        }
    }

    @Test("--max-connections-per-uid 8: the user's 9th connection gets one EUSERS error; root still connects")
    func perUidConnectionLimit() throws {
        try withAdversary(daemonArguments: ["--max-connections-per-uid", "8"]) { user, d in
            let r = try attack(["connections", "10"], as: user, daemon: d)
            for i in 0..<8 { #expect(r.result("conn.\(i)") == "ok", "connection \(i): \(r.at("conn.\(i)"))") }
            #expect(r.errno("conn.8") == EUSERS, "\(r.at("conn.8"))")
            #expect(r.errno("conn.9") == EUSERS, "\(r.at("conn.9"))")
            #expect(throws: Never.self) { _ = try rootListNames(d) }
            // Closed connections are counted out again.
            let again = try attack(["connections", "8"], as: user, daemon: d)
            for i in 0..<8 { #expect(again.result("conn.\(i)") == "ok", "after the first 10 closed: \(again.at("conn.\(i)"))") }
        }
    }

    @Test("under prlimit --nofile=300:300 creates fail cleanly at the limit; ctrobjd stays up, idle and answering, and after kill -9 it comes back")
    func fdExhaustion() throws {
        try withAdversary(wrapper: ["/usr/bin/prlimit", "--nofile=300:300", "--"]) { user, d in
            // Root's connection, made before the limit: existing connections keep being served.
            let rootConn = try Connection.connect(d.socket)
            let started = Sys.monotonicNanos()
            func mark(_ what: String) { print("fd exhaustion: \(what) at \((Sys.monotonicNanos() - started) / 1_000_000) ms") }
            let flood = try RunningAttack(["create-many", "400", "60", "20"], as: user, daemon: d)
            let saturated = flood.waitForStep("saturated", timeoutSeconds: 90)
            #expect(saturated, "the attack reached the limit: \(flood.output)")
            let report = AttackReport(exitCode: 0, output: flood.output)
            print("fd exhaustion: \(report)")
            let created = Int(report.value("create-many", "created") ?? "") ?? 0
            #expect(created > 0 && created < 400, "\(report)")
            #expect([EMFILE, EDQUOT].contains(report.errno("create-many") ?? 0), "a clean error at the limit: \(report)")
            #expect(d.isRunning, "ctrobjd survived the limit; log:\n\(tail(d.logPath))")
            if d.isRunning, let pid = d.pid {
                try rootConn.send(Message(Op.list))
                #expect(throws: Never.self, "root's existing connection is answered at the limit") {
                    _ = try rootConn.receive(timeoutMs: 5000).0.checked()
                }
                // A resource check, not a latency one: at the limit with
                // connections waiting, ctrobjd does not spin on accept.
                let t0 = cpuSeconds(pid: pid) ?? 0
                usleep(2_000_000)
                let used = (cpuSeconds(pid: pid) ?? 0) - t0
                #expect(used < 0.5, "ctrobjd used \(used) s of CPU in 2 s while saturated")
            }
            mark("saturated and checked")
            flood.go()
            _ = flood.finish(timeoutSeconds: 30)
            mark("attack gone")
            d.kill9()
            try d.start()
            mark("restarted")
            let names = try rootListNames(d, timeoutMs: 10_000)
            #expect(names.filter { $0.hasPrefix("adv-many-") }.count == created, "every recorded container is back after the restart")
            #expect(throws: Never.self, "root can create after the restart") {
                _ = try rootCall(d, Message(Op.create, ["name": "root-after-restart", "flags": "0"]), timeoutMs: 10_000)
            }
            #expect(d.isRunning)
        }
    }

    // MARK: finding 6: a client that never reads

    @Test("a user flooding list requests on 4 connections and never reading delays nobody and is dropped")
    func floodNeverReading() throws {
        try withAdversary { user, d in
            let flood = try RunningAttack(["flood", "2000", "30", "4"], as: user, daemon: d)
            #expect(flood.waitForStep("flooded", timeoutSeconds: 30), "\(flood.output)")
            let flooded = Sys.monotonicNanos()
            #expect(throws: Never.self, "root's list is answered during the flood") { _ = try rootListNames(d, timeoutMs: 5000) }
            let (code, out) = try runProgram(["\(buildDir)/ctrobj", "ls"],
                                             env: ["CTROBJ_SOCKET=\(d.socket)", "CTROBJ_TIMEOUT_MS=3000", "PATH=/usr/bin:/bin"],
                                             timeoutSeconds: 10)
            #expect(code == 0, "ctrobj ls during the flood: \(out)")
            // Past the 5 s no-progress rule, then let the attacker read.
            while Sys.monotonicNanos() - flooded < 6_000_000_000 { usleep(50_000) }
            flood.go()
            let r = flood.finish(timeoutSeconds: 60)
            print("flood: \(r)")
            #expect(r.value("drain", "dropped") == "4", "the attacker's connections were dropped: \(r.at("drain"))")
            #expect(d.isRunning)
        }
    }

    @Test("the library and ctrobj ls give up on a daemon that never answers: ETIMEDOUT after CTROBJ_TIMEOUT_MS")
    func clientTimeout() throws {
        // A listening socket that never accepts: connect and send succeed
        // (the connection waits in the backlog), no answer ever comes.
        let path = "/tmp/ctrobj-adv-silent-\(uniqueSuffix()).sock"
        // SOCK_SEQPACKET is 5; the name is not visible in this module (Glibc's
        // module lacks it, and CShim's <sys/socket.h> is not imported here).
        let silent = try Sys.listenUnix(path, type: __socket_type(rawValue: 5), mode: 0o666)
        defer { unlink(path) }
        let env = ["CTROBJ_SOCKET=\(path)", "CTROBJ_TIMEOUT_MS=500"]
        let r = try attack(["lib-list"], as: nil, daemon: nil, env: env, timeoutSeconds: 5)
        #expect(r.errno("lib-list") == ETIMEDOUT, "\(r.at("lib-list"))")
        #expect(r.value("lib-list", "code") == "timeout", "\(r.at("lib-list"))")
        #expect(r.value("lib-list", "message")?.contains("did not answer within 500 ms") == true, "\(r.at("lib-list"))")
        let elapsed = Int(r.value("lib-list", "elapsed_ms") ?? "") ?? -1
        #expect(elapsed >= 400 && elapsed < 5000, "gave up after about 500 ms: \(elapsed) ms")
        let (code, out) = try runProgram(["\(buildDir)/ctrobj", "ls"], env: env + ["PATH=/usr/bin:/bin"], timeoutSeconds: 5)
        #expect(code != 0 && code < 128 && out.contains("500 ms"), "ctrobj ls: exit \(code): \(out)")
        withExtendedLifetime(silent) {}
    }

    // MARK: finding 8: unbounded fields

    @Test("a 213,000-byte core policy is refused and nothing is saved; root's list still works")
    func oversizedPolicy() throws {
        try withAdversary { user, d in
            let r = try attack(["policy-big"], as: user, daemon: d)
            #expect(r.result("core-213000") == "error", "\(r.at("core-213000"))")
            #expect(r.result("core-4097") == "error", "\(r.at("core-4097"))")
            #expect(r.result("status-after") == "ok" && r.result("list-after") == "ok", "\(r.at("status-after"))")
            let containers = "\(d.stateDir)/containers"
            for dir in Sys.listDirectory(containers) {
                var st = stat()
                if stat("\(containers)/\(dir)/record", &st) == 0 {
                    #expect(st.st_size < 8192, "record \(dir) is \(st.st_size) bytes")
                }
            }
            #expect(throws: Never.self) { _ = try rootListNames(d) }
        }
    }

    @Test("module and device lists over 64 names or 64 bytes a name are refused, even from root, and nothing is saved")
    func boundedPolicyLists() throws {
        try withDaemon { d in
            let c = try Container.create("bounded", options: [])
            defer { try? c.destroy() }
            let tooMany = (0..<65).map { "m\($0)" }
            let tooLong = [String(repeating: "m", count: 65)]
            let cases: [(String, () throws -> Void)] = [
                ("65 modules", { try c.setPolicy(modules: tooMany) }),
                ("a 65-byte module", { try c.setPolicy(modules: tooLong) }),
                ("65 devices", { try c.setPolicy(devices: (0..<65).map { "loop\($0)" }) }),
                ("a 65-byte device", { try c.setPolicy(devices: [String(repeating: "l", count: 65)]) }),
            ]
            for (what, call) in cases {
                do {
                    try call()
                    Issue.record("\(what) accepted")
                } catch let e as ContainerError {
                    #expect([EINVAL, E2BIG, EMSGSIZE].contains(e.errno), "\(what): \(e)")
                }
            }
            let st = try c.status()
            _ = st
            let (m, _) = try rootCall(d, Message(Op.list))
            #expect(m.fields.filter { $0.key.hasSuffix(".modules") || $0.key.hasSuffix(".devices") }.allSatisfy { $0.value.isEmpty },
                    "no list was saved: \(m.fields)")
            // 64 names, and a name of 64 bytes, are still fine. (64 names of
            // 64 bytes each would be 4159 bytes, over the 4096-byte field bound.)
            #expect(throws: Never.self) { try c.setPolicy(modules: (0..<64).map { "m\($0)" }) }
            #expect(throws: Never.self) { try c.setPolicy(modules: [format64(0)]) }
        }
    }

    @Test("requests over 65536 bytes, fields over 4096 bytes or 64 fields get an error and the connection keeps answering")
    func messageBounds() throws {
        try withAdversary { user, d in
            let r = try attack(["bounds"], as: user, daemon: d)
            #expect(r.exitCode == 0, "\(r)")
            #expect(d.isRunning)
        }
    }

    // MARK: finding 9: path calls

    @Test("root's fchownat on a container path bound to a root-owned host file is EPERM; the host file stays root's")
    func pathCallConfusedDeputy() throws {
        try withAdversary { user, d in
            let file = "/tmp/ctrobj-adv-secret-\(uniqueSuffix())"
            try Sys.writeFileAtomically(file, "secret\n", mode: 0o600)
            defer { unlink(file) }
            chown(file, 0, 0)
            let r = try attack(["bind-victim", file], as: user, daemon: d)
            #expect(r.result("bind") == "ok", "the user could bind the file it can name (O_PATH): \(r.at("bind"))")
            let c = try Container.open("adv-bind")
            do {
                try c.chown("/v", uid: user.uid, gid: user.gid)
                Issue.record("root's fchownat through the user's container succeeded")
            } catch let e as ContainerError {
                #expect(e.errno == EPERM, "\(e)")
            }
            do {
                let text = try c.readFile("/v")
                Issue.record("root's path call read the host file: \(text)")
            } catch let e as ContainerError {
                #expect([EACCES, EPERM].contains(e.errno), "\(e)")
            }
            var st = stat()
            #expect(stat(file, &st) == 0)
            #expect(st.st_uid == 0 && st.st_gid == 0 && st.st_mode & 0o7777 == 0o600,
                    "host file is \(st.st_uid):\(st.st_gid) \(String(st.st_mode & 0o7777, radix: 8))")
        }
    }

    @Test("root's path calls into a host directory a user bound into its container act as the container's root: nothing changes on the host")
    func pathCallsInBoundHostDir() throws {
        try withAdversary { user, d in
            let dir = "/tmp/ctrobj-adv-dir-\(uniqueSuffix())"
            try Sys.mkdir(dir, 0o755, existOK: false)
            defer { removeTree(dir) }
            try Sys.writeFileAtomically("\(dir)/f", "root's\n", mode: 0o644)
            let r = try attack(["bind-dir", dir], as: user, daemon: d)
            #expect(r.result("bind") == "ok", "\(r.at("bind"))")
            let c = try Container.open("adv-binddir")
            let calls: [(String, () throws -> Void)] = [
                ("open /d/f for writing", { _ = try c.openFile("/d/f", flags: O_WRONLY | O_TRUNC) }),
                ("create /d/new", { _ = try c.openFile("/d/new", flags: O_WRONLY | O_CREAT) }),
                ("mkdir /d/sub", { try c.mkdir("/d/sub") }),
                ("symlink /d/l", { try c.symlink("/etc/shadow", at: "/d/l") }),
                ("unlink /d/f", { try c.unlink("/d/f") }),
                ("chown /d/f", { try c.chown("/d/f", uid: user.uid, gid: user.gid) }),
                ("chown /d", { try c.chown("/d", uid: user.uid, gid: user.gid) }),
            ]
            for (what, call) in calls {
                do {
                    try call()
                    Issue.record("root's \(what) in the user's container succeeded on a host directory")
                } catch let e as ContainerError {
                    #expect([EACCES, EPERM].contains(e.errno), "\(what): \(e)")
                }
            }
            #expect(Sys.listDirectory(dir).sorted() == ["f"], "\(Sys.listDirectory(dir))")
            #expect((try? Sys.readFile("\(dir)/f")) == "root's\n")
            var st = stat()
            #expect(stat(dir, &st) == 0 && st.st_uid == 0 && stat("\(dir)/f", &st) == 0 && st.st_uid == 0 && st.st_gid == 0)
        }
    }

    @Test("a user's bind without MS_REC does not uncover what a mount on the host hides")
    func bindCannotPeelSubmounts() throws {
        try withAdversary { user, d in
            let dir = "/tmp/ctrobj-adv-peel-\(uniqueSuffix())"
            try Sys.mkdirs("\(dir)/sub", 0o755)
            try Sys.writeFileAtomically("\(dir)/sub/secret", "hidden-secret\n", mode: 0o644)
            // The host hides sub/ under a tmpfs: a mount this test adds and removes.
            try #require(mount("none", "\(dir)/sub", "tmpfs", 0, "mode=0755") == 0, "mount tmpfs: \(errno)")
            defer {
                _ = umount2("\(dir)/sub", Int32(MNT_DETACH))
                removeTree(dir)
            }
            let r = try attack(["bind-peel", dir], as: user, daemon: d)
            #expect(!(r.value("read-direct", "content") ?? "").contains("hidden-secret"), "\(r.at("read-direct"))")
            #expect(!(r.value("peel", "output") ?? "").contains("hidden-secret"), "umount -l inside uncovered it: \(r.at("peel"))")
        }
    }

    @Test("a user's bind of a read-only, nodev, noexec host mount cannot be remounted writable inside its container")
    func bindKeepsHostMountLocks() throws {
        let source = """
        #include <errno.h>
        #include <fcntl.h>
        #include <stdio.h>
        #include <sys/mount.h>
        #include <unistd.h>
        int main(int argc, char **argv) {
            char file[256];
            int rc = mount(NULL, argv[1], NULL, MS_REMOUNT | MS_BIND, NULL);
            printf("remount=%d errno=%d\\n", rc, rc < 0 ? errno : 0);
            snprintf(file, sizeof(file), "%s/written", argv[1]);
            int fd = open(file, O_WRONLY | O_CREAT, 0644);
            printf("write=%d errno=%d\\n", fd < 0 ? -1 : 0, fd < 0 ? errno : 0);
            return 0;
        }
        """
        try withStaticProgram("remount", source) { program, _ in
        try withAdversary { user, d in
            let dir = "/tmp/ctrobj-adv-ro-\(uniqueSuffix())"
            try Sys.mkdirs(dir, 0o755)
            // A mount this test adds and removes: read-only, nodev, noexec, nosuid.
            let flags = UInt(MS_RDONLY) | UInt(MS_NODEV) | UInt(MS_NOEXEC) | UInt(MS_NOSUID)
            try #require(mount("none", dir, "tmpfs", flags, "mode=0777") == 0, "mount tmpfs: \(errno)")
            defer {
                _ = umount2(dir, Int32(MNT_DETACH))
                removeTree(dir)
            }
            let r = try attack(["bind-remount", dir, program], as: user, daemon: d)
            #expect(r.result("bind") == "ok", "\(r.at("bind"))")
            let out = r.value("remount", "output") ?? ""
            #expect(out.contains("remount=-1 errno=\(EPERM)"), "remounted read-write inside: \(out)")
            #expect(out.contains("write=-1"), "wrote through the bind: \(out)")
            #expect(!Sys.exists("\(dir)/written"))
        }
        }
    }

    @Test("--max-container-fds-per-uid 16: a user's 17th open container fd is refused (EMFILE); closing makes room")
    func containerFDsPerUID() throws {
        try withAdversary(daemonArguments: ["--max-container-fds-per-uid", "16"]) { user, d in
            let r = try attack(["open-many", "40"], as: user, daemon: d)
            #expect(r.value("open-many", "held") == "16", "\(r.at("open-many"))")
            #expect(r.errno("open-many") == EMFILE, "\(r.at("open-many"))")
            #expect(r.result("open-after-close") == "ok", "\(r.at("open-after-close"))")
        }
    }

    @Test("setns with a pidfd of a non-dumpable process of the user's uid is refused, as the kernel refuses the user its /proc/PID/ns")
    func setnsPidfdAsTheKernelWould() throws {
        let source = """
        #include <sched.h>
        #include <stdlib.h>
        #include <sys/syscall.h>
        #include <unistd.h>
        /* root: a private network namespace, then the user's ids without exec (not dumpable) */
        int main(int argc, char **argv) {
            unsigned id = (unsigned)atoi(argv[1]);
            if (unshare(CLONE_NEWNET) < 0) return 1;
            if (syscall(SYS_setresgid, id, id, id) < 0 || syscall(SYS_setresuid, id, id, id) < 0) return 2;
            sleep(60);
            return 0;
        }
        """
        try withStaticProgram("nondump", source) { program, _ in
            try withAdversary { user, d in
                let pid = try spawn([program, "\(user.uid)"])
                let pfd = try Sys.pidfdOpen(pid)
                defer {
                    try? Sys.pidfdSendSignal(pfd.raw, SIGKILL)
                    _ = try? Sys.pidfdWait(pfd.raw)
                }
                for _ in 0..<200 where ProcInfo.statusField(pid: pid, "Uid")?.first != "\(user.uid)" { usleep(5000) }
                let r = try attack(["setns-pidfd", "\(pid)"], as: user, daemon: d)
                #expect(r.result("own-open") == "error", "the kernel itself refuses the user: \(r.at("own-open"))")
                #expect(r.errno("setns-nondumpable") == EACCES || r.errno("setns-nondumpable") == EPERM, "\(r.at("setns-nondumpable"))")
            }
        }
    }

    // MARK: finding 10

    @Test("names with control bytes are EINVAL; ctrobj ls prints no raw control byte")
    func controlBytesInNames() throws {
        try withAdversary { user, d in
            let r = try attack(["names"], as: user, daemon: d)
            for step in ["name-newline", "name-esc", "name-del", "name-cr", "name-tab", "name-bell"] {
                #expect(r.errno(step) == EINVAL, "\(step): \(r.at(step))")
            }
            #expect(r.result("name-odd") == "ok", "\(r.at("name-odd"))")
            let out = "/tmp/ctrobj-adv-ls-\(uniqueSuffix())"
            defer { unlink(out) }
            let pid = try spawnProcess(["/bin/sh", "-c", "exec \"$0\" ls > \"$1\" 2>&1", "\(buildDir)/ctrobj", out],
                                       env: ["CTROBJ_SOCKET=\(d.socket)", "CTROBJ_TIMEOUT_MS=5000", "PATH=/usr/bin:/bin"])
            let pfd = try Sys.pidfdOpen(pid)
            _ = try Sys.pidfdWait(pfd.raw)
            let bytes = try Sys.readBytes(out)
            let raw = bytes.filter { ($0 < 0x20 && $0 != 0x0a) || $0 == 0x7f }
            #expect(raw.isEmpty, "ctrobj ls printed raw control bytes \(raw): \(String(decoding: bytes, as: UTF8.self))")
            #expect(String(decoding: bytes, as: UTF8.self).contains("sp ace"), "\(String(decoding: bytes, as: UTF8.self))")
        }
    }

    @Test("fork.prepare of A then B on one connection frees A for another connection")
    func prepareTwo() throws {
        try withAdversary { user, d in
            let r = try attack(["prepare-two"], as: user, daemon: d)
            #expect(r.result("prepare-a-again") == "ok", "\(r.at("prepare-a-again"))")
            #expect(r.errno("prepare-b-other") == EBUSY, "\(r.at("prepare-b-other"))")
        }
    }

    @Test("empty, fd-stuffed and unknown messages get an error reply (EPROTO, EOPNOTSUPP) and the connection keeps answering")
    func wireJunk() throws {
        try withAdversary { user, d in
            func daemonFDs() -> Int { d.pid.map { Sys.listDirectory("/proc/\($0)/fd").count } ?? -1 }
            _ = try attack(["wire-junk", "adv-junk-warm"], as: user, daemon: d)
            let before = daemonFDs()
            let r = try attack(["wire-junk", "adv-junk"], as: user, daemon: d)
            usleep(100_000)
            let after = daemonFDs()
            #expect(after - before < 10, "the stuffed fds were closed: ctrobjd held \(before) fds, then \(after)")
            for step in ["empty-datagram", "empty-op", "fds-33", "fds-9", "status-extra-fd", "list-fd"] {
                #expect(r.errno(step) == EPROTO, "\(step): \(r.at(step))")
            }
            #expect(r.errno("unknown-op") == EOPNOTSUPP, "\(r.at("unknown-op"))")
            #expect(r.errno("unknown-op-fd") == EOPNOTSUPP, "\(r.at("unknown-op-fd"))")
            for step in ["empty-datagram", "empty-op", "fds-33", "fds-9", "status-extra-fd", "list-fd", "unknown-op", "unknown-op-fd", "garbage"] {
                #expect(r.result("list-after-\(step)") == "ok", "the connection answers after \(step): \(r.at("list-after-\(step)"))")
            }
            #expect(d.isRunning)
        }
    }

    @Test("list is paged: no reply over 65536 bytes, and the library still sees every container")
    func listIsPaged() throws {
        try withDaemon { d in
            var fds: [CInt] = []
            defer { fds.forEach { close($0) } }
            for i in 0..<220 { fds.append(try ContainerCalls.create(name: "page-\(i)-" + String(repeating: "p", count: 12), flags: ContainerFlags.fdCloexec)) }
            let c = try Connection.connect(d.socket)
            try c.send(Message(Op.list))
            let (first, _) = try c.receive(timeoutMs: 5000)
            #expect(first.encoded().count <= 65536, "one page is \(first.encoded().count) bytes")
            #expect(first["next"] != nil && (first.int("count") ?? 0) < 220, "the first page says there is more: count \(first["count"] ?? "?")")
            let all = try Container.list()
            #expect(all.count == 220 && Set(all.map(\.name)).count == 220, "the library saw \(all.count)")
            let (code, out) = try runProgram(["\(buildDir)/ctrobj", "ls"], env: ["CTROBJ_SOCKET=\(d.socket)", "CTROBJ_TIMEOUT_MS=5000"], timeoutSeconds: 20)
            #expect(code == 0 && out.split(separator: "\n").filter { $0.hasPrefix("page-") }.count == 220, "ctrobj ls: exit \(code)")
        }
    }

    /// Records are root's files (0700): not a user's attack, but the threat
    /// model says a record is parsed with the request rules, never trapped on.
    @Test("records with out-of-range fields make ctrobjd drop them at start, never crash")
    func tamperedRecords() throws {
        try withDaemon { d in
            for name in ["t-pid", "t-flags", "t-name", "t-ok"] { _ = try Container.create(name, options: [.newUTSNS]) }
            d.kill9()
            let containers = "\(d.stateDir)/containers"
            let edits: [String: [String: String]] = [
                "t-pid": ["init_pid": "99999999999999999999", "state": "9"],
                "t-flags": ["flags": "99999999999", "owner": "-1"],
                "t-name": ["name": "x\u{1b}[2Jy", "created": "1e99"],
            ]
            for dir in Sys.listDirectory(containers) {
                let path = "\(containers)/\(dir)/record"
                guard let text = try? Sys.readFile(path), var m = try? Message.decode(Array(text.utf8)),
                      let name = m["name"], let edit = edits[name] else { continue }
                for (k, v) in edit { m[k] = v }
                try Sys.writeFileAtomically(path, String(decoding: m.encoded(), as: UTF8.self))
            }
            try d.start()
            #expect(d.isRunning, "ctrobjd survived the records; log:\n\(tail(d.logPath))")
            let names = try rootListNames(d)
            #expect(names.contains("t-ok"), "the untouched record is back: \(names)")
            #expect(!names.contains { $0.utf8.contains(0x1b) }, "a name with ESC came back: \(names)")
            #expect(!names.contains("t-pid"), "a record with init_pid 99999999999999999999 and state 9 came back: \(names)")
            #expect(!names.contains("t-flags"), "a record with flags 99999999999 and owner -1 came back: \(names)")
        }
    }

    @Test("odd CTROBJ_TIMEOUT_MS values do not crash the library", arguments: ["abc", "-5", "99999999999999999999", ""])
    func timeoutEnvironmentGarbage(value: String) throws {
        try withDaemon { d in
            let r = try attack(["lib-list"], as: nil, daemon: d, env: ["CTROBJ_TIMEOUT_MS=\(value)"], timeoutSeconds: 20)
            #expect(r.exitCode == 0 && r.result("lib-list") == "ok", "CTROBJ_TIMEOUT_MS=\(value): \(r.at("lib-list"))")
        }
    }

    // MARK: rights (the threat model)

    @Test("a user cannot open, see or destroy root's container, adopt, or take a root process's namespaces")
    func rootsThingsAreRoots() throws {
        try withAdversary { user, d in
            let c = try Container.create("rootbox", options: [.newFSNS, .newUTSNS])
            let victim = try Victim()
            let r = try attack(["rights", "rootbox", "\(victim.pid)", "\(d.stateDir)/upcall.sock"], as: user, daemon: d)
            #expect(r.result("connect-upcall") == "error", "the upcall socket is root's: \(r.at("connect-upcall"))")
            #expect(r.errno("open-roots") == EPERM, "\(r.at("open-roots"))")
            #expect(r.value("list-shows-roots", "leaked") == "0", "\(r.at("list-shows-roots"))")
            #expect(r.result("destroy-not-a-container") == "error" && r.result("destroy-no-fd") == "error", "\(r.at("destroy-not-a-container"))")
            #expect(r.errno("adopt-as-user") == EPERM, "\(r.at("adopt-as-user"))")
            #expect(r.errno("setns-root-pidfd") == EPERM, "\(r.at("setns-root-pidfd"))")
            #expect(r.result("victim-netns-open") == nil, "the user cannot open a root process's netns itself either")
            #expect(try rootListNames(d).contains("rootbox"))
            #expect(victim.isAlive)
            try c.destroy()
        }
    }

    @Test("a user given root's container fd may not set its policy, destroy it, mount into it, or get raw sockets in the host netns")
    func nonOwnerHoldingTheFD() throws {
        try withAdversary { user, d in
            let c = try Container.create("held", options: [.newFSNS])
            let net = try Container.create("held-net", options: [.newNetNS])
            defer { try? net.destroy() }
            let r = try attack(["fd-holder"], as: user, daemon: d, passing: [c.fd.raw, net.fd.raw])
            #expect(r.errno("netns-packet") == EPERM, "\(r.at("netns-packet"))")
            #expect(r.errno("netns-raw") == EPERM, "\(r.at("netns-raw"))")
            #expect(r.result("netns-stream") == "ok", "\(r.at("netns-stream"))")
            #expect(r.result("status") == "ok", "holding the fd lets the user ask about it: \(r.at("status"))")
            for step in ["policy", "destroy", "packet", "raw", "mount-tmpfs"] {
                #expect(r.errno(step) == EPERM, "\(step): \(r.at(step))")
            }
            #expect([EPERM, EACCES].contains(r.errno("mount-bind") ?? 0), "\(r.at("mount-bind"))")
            #expect(try rootListNames(d).contains("held"))
            // Nothing was mounted in the container: its own process sees no /mnt mount.
            let p = try c.spawnInit(ProcessSpec("/bin/sleep", ["sleep", "30"]))
            let mounts = (try? Sys.readFile("/proc/\(p.pid)/mountinfo")) ?? ""
            #expect(!mounts.split(separator: "\n").contains { $0.split(separator: " ").dropFirst(4).first == "/mnt" },
                    "a mount at /mnt appeared in root's container")
            try? p.signal(SIGKILL)
            _ = try? p.wait()
            try c.destroy()
        }
    }
}

/// A 64-byte module name, different for each n.
func format64(_ n: Int) -> String {
    let s = "m\(n)"
    return s + String(repeating: "x", count: 64 - s.count)
}

/// What a daemon's log says about how it ended, for failure messages: its
/// fatal-error and crash-at lines and its last lines before the register dump.
func tail(_ path: String, lines: Int = 8) -> String {
    let all = ((try? Sys.readFile(path, limit: 8 << 20)) ?? "").split(separator: "\n").map(String.init)
    let key = all.filter { $0.contains("Fatal error") || $0.contains("crash-at") || $0.contains("Crash") }
    let beforeDump = all.prefix { !$0.hasPrefix("💣") && !$0.contains("Thread 0 crashed") }.suffix(lines)
    return (key.prefix(5) + ["..."] + beforeDump).joined(separator: "\n")
}
