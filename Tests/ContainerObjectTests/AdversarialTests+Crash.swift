import ContainerObject
import ContainerSystem
import ContainerWire
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Finding 7 / contract line 12: ctrobjd killed at any crash point of a
/// request leaves, after a restart, each container either listed and whole
/// or absent without a trace. `--crash-at OP:N` for N = 1, 2, ... until the
/// request completes without the daemon dying. The daemons run with
/// --no-prewarm so that every cgroup and record directory belongs to a
/// listed container (spares would be legitimate extras).
extension AdversarialTests {
    /// "create-by-user": create as the throwaway user (an unprivileged
    /// NEW_USER_NS container, the torn record of finding 7).
    /// "fork-by-user": the user's own init and exec (its child joins the
    /// cgroup by cgroup.join, then fork.commit), crashed at each fork point.
    static let crashOps = ["create", "create-by-user", "fork", "fork-by-user", "setns", "destroy", "adopt"]
    static let crashFlags: ContainerOptions = [.newUserNS, .newPIDNS, .newNetNS, .newUTSNS, .newIPCNS, .newFSNS]

    @Test("kill -9 at every crash point of a request leaves each container whole or gone after a restart",
          arguments: crashOps)
    func crashConsistency(op: String) throws {
        var completed = false
        var crashes = 0
        for n in 1...15 {
            let byUser = op.hasSuffix("-by-user")
            let crashed = try crashRound(op: byUser ? String(op.dropLast("-by-user".count)) : op, point: n, byUser: byUser)
            print("crash-at \(op):\(n): \(crashed ? "ctrobjd died; restarted and checked" : "the request completed")")
            if !crashed {
                completed = true
                break
            }
            crashes += 1
        }
        #expect(completed, "\(op) never completed within 15 crash points")
        #expect(crashes > 0, "\(op) has no crash point: the fault injection never fired")
    }

    /// One round: a daemon that dies at OP:N, the request, a restart, the
    /// check. Returns whether the daemon died.
    func crashRound(op: String, point n: Int, byUser: Bool = false) throws -> Bool {
        let user = byUser ? try ThrowawayUser() : nil
        defer { user?.remove() }
        let d = try startDaemon(name: "ctrobj-adv-crash-\(uniqueSuffix())", arguments: ["--no-prewarm", "--crash-at", "\(op):\(n)"])
        var processes: [ContainerProcess] = []
        var unshareFD: OwnedFD?
        defer {
            for p in processes { try? p.signal(SIGKILL); _ = try? p.wait() }
            if let u = unshareFD { try? Sys.pidfdSendSignal(u.raw, SIGKILL); _ = try? Sys.pidfdWait(u.raw) }
            d.stop()
        }
        var names: [String] = []
        var adoptedPid: pid_t = 0
        var requestError: ContainerError?
        try d.with {
            do {
                switch op {
                case "create" where byUser:
                    chmod(d.stateDir, 0o755)
                    names = ["adv-many-0"]
                    let r = try attack(["create-many", "1"], as: user, daemon: d)
                    if r.result("create-many") != "ok" && r.result("create-many") != "hangup" {
                        Issue.record("the user's create: \(r.at("create-many"))")
                    }
                case "fork" where byUser:
                    chmod(d.stateDir, 0o755)
                    names = ["adv-legit"]
                    _ = try attack(["spawn-legit"], as: user, daemon: d)
                case "create":
                    names = ["crash-create"]
                    _ = try Container.create("crash-create", options: Self.crashFlags)
                case "fork":
                    names = ["crash-fork"]
                    let c = try Container.create("crash-fork", options: Self.crashFlags)
                    processes.append(try c.spawnInit(ProcessSpec("/bin/sleep", ["sleep", "60"])))
                    _ = try c.status() // fork.commit is posted: its answer is read before this one's
                case "setns":
                    names = ["crash-net", "crash-setns"]
                    let a = try Container.create("crash-net", options: [.newNetNS, .newUTSNS])
                    let b = try Container.create("crash-setns", options: [.newUTSNS])
                    try b.shareNamespaces([.net], with: a)
                case "destroy":
                    names = ["crash-destroy"]
                    let c = try Container.create("crash-destroy", options: Self.crashFlags)
                    processes.append(try c.spawnInit(ProcessSpec("/bin/sleep", ["sleep", "60"])))
                    _ = try c.status()
                    try c.destroy()
                case "adopt":
                    names = ["crash-adopt"]
                    let (u, child) = try unshareProcess()
                    unshareFD = u
                    adoptedPid = child
                    _ = try Container.adopt("crash-adopt", pid: child)
                default:
                    Issue.record("unknown op \(op)")
                }
            } catch let e as ContainerError {
                requestError = e
            }
        }
        // Did it die? (The request may have been answered just before.)
        var died = false
        for _ in 0..<50 {
            if !d.isRunning { died = true; break }
            usleep(10_000)
        }
        let log = (try? Sys.readFile(d.logPath)) ?? ""
        if !died {
            if let requestError { Issue.record("\(op) at point \(n) (no crash) failed: \(requestError)") }
            try checkWholeOrGone(d, names: names, op: op, point: n, processes: processes, adoptedPid: adoptedPid)
            return false
        }
        #expect(log.contains("crash-at \(op):\(n)"), "\(op):\(n): ctrobjd died, but not at the injected point; log:\n\(tail(d.logPath))")
        d.kill9() // reap
        d.extraArguments = ["--no-prewarm"]
        try d.start()
        try checkWholeOrGone(d, names: names, op: op, point: n, processes: processes, adoptedPid: adoptedPid)
        return true
    }

    /// The contract after a restart: each named container is listed and whole
    /// (its flags' namespaces recorded; a process started in it sees exactly
    /// the recorded namespaces, none of them the host's; `id -u` inside is 0
    /// and, with a user namespace of ctrobjd's making, not 0 on the host), or
    /// absent; and no record directory, cgroup or namespace mount is left for
    /// a container that is not listed.
    func checkWholeOrGone(_ d: TestDaemon, names: [String], op: String, point n: Int,
                          processes: [ContainerProcess], adoptedPid: pid_t) throws {
        let at = "\(op):\(n)"
        try d.with {
            let listed = try Container.list()
            for name in names {
                guard let st = listed.first(where: { $0.name == name }) else {
                    print("  \(at): \"\(name)\" absent")
                    continue
                }
                print("  \(at): \"\(name)\" listed, \(st.state.name)")
                let c = try Container.open(name)
                let flagKinds: [(UInt32, NamespaceKind)] = [(ContainerFlags.newUserNS, .user), (ContainerFlags.newFSNS, .mnt),
                                                           (ContainerFlags.newNetNS, .net), (ContainerFlags.newUTSNS, .uts),
                                                           (ContainerFlags.newIPCNS, .ipc)]
                for (flag, kind) in flagKinds where st.flags & flag != 0 {
                    #expect(st.namespaceInodes[kind.rawValue] != nil, "\(at): \"\(name)\" has \(ContainerFlags.describe(flag)) but no \(kind) namespace recorded: \(st.namespaceInodes)")
                }
                if op == "fork" && st.state == .created, let first = processes.first {
                    // A fork whose commit never reached the disk: its process is killed at start.
                    var dead = false
                    for _ in 0..<200 {
                        do { dead = try Sys.pidfdWait(first.pidfd.raw, nohang: true) != nil } catch { dead = true }
                        if dead { break }
                        usleep(10_000)
                    }
                    #expect(dead, "\(at): \"\(name)\" is created again, but the process forked into it still runs")
                }
                switch st.state {
                case .created, .running, .frozen:
                    let (p, idInside) = try startInside(c, enter: st.state != .created)
                    defer { try? p.signal(SIGKILL); _ = try? p.wait() }
                    #expect(idInside == "0", "\(at): id -u in \"\(name)\" is \(idInside)")
                    let hostUID = ProcInfo.statusField(pid: p.pid, "Uid")?.first
                    if st.flags & ContainerFlags.newUserNS != 0 && op != "adopt" {
                        #expect(hostUID != nil && hostUID != "0", "\(at): \"\(name)\"'s root is host uid \(hostUID ?? "?")")
                    }
                    for (kind, ino) in st.namespaceInodes {
                        guard let k = NamespaceKind(rawValue: kind) else { continue }
                        let seen = Namespaces.inode(pid: p.pid, kind: k)
                        #expect(seen == ino, "\(at): \"\(name)\": a process in it is in \(kind) \(seen.map(String.init) ?? "?"), the record says \(ino)")
                        #expect(seen != Namespaces.inode(pid: getpid(), kind: k), "\(at): \"\(name)\" is in the host's \(kind) namespace")
                    }
                case .exited:
                    // Only a container whose init really is dead may say so; it can still be destroyed cleanly.
                    let ourInitAlive = processes.contains { p in
                        do { return try Sys.pidfdWait(p.pidfd.raw, nohang: true) == nil } catch { return false }
                    }
                    #expect(!ourInitAlive || op == "adopt", "\(at): \"\(name)\" is listed as exited while its init runs")
                    try c.destroy()
                }
            }
        }
        // Leftovers belong to listed containers only (polled: cgroups of a
        // dead container may take a moment to go).
        var problems: [String] = []
        for _ in 0..<30 {
            problems = leftovers(d)
            if problems.isEmpty { break }
            usleep(100_000)
        }
        #expect(problems.isEmpty, "\(at): \(problems.joined(separator: "; "))")
    }

    /// Record dirs, cgroups and namespace mounts of containers not listed.
    func leftovers(_ d: TestDaemon) -> [String] {
        guard let ids = try? rootCall(d, Message(Op.list)).0.fields.filter({ $0.key.hasSuffix(".id") }).map({ "c\($0.value)" }) else {
            return ["root's list failed"]
        }
        let listed = Set(ids)
        var out: [String] = []
        // containers/mntns is the pin namespace's own pin, there while the state directory is.
        for dir in Sys.listDirectory("\(d.stateDir)/containers") where !listed.contains(dir) && dir != "mntns" {
            out.append("record dir \(d.stateDir)/containers/\(dir)")
        }
        for h in CgroupLayout.discover().hierarchies {
            for child in Sys.listDirectory("\(h)/\(d.cgroupParent)") where child.hasPrefix("c") && !listed.contains(child) {
                var st = stat()
                if stat("\(h)/\(d.cgroupParent)/\(child)", &st) == 0 && st.st_mode & S_IFMT == S_IFDIR {
                    out.append("cgroup \(h)/\(d.cgroupParent)/\(child)")
                }
            }
        }
        var mountinfos = ["/proc/self/mountinfo"]
        if let pid = d.pid { mountinfos.append("/proc/\(pid)/mountinfo") }
        let prefix = "\(d.stateDir)/containers/"
        for path in mountinfos {
            for line in ((try? Sys.readFile(path)) ?? "").split(separator: "\n") {
                let f = line.split(separator: " ")
                guard f.count > 4, f[4].hasPrefix(prefix), f[4] != "\(prefix)mntns" else { continue }
                let dir = f[4].dropFirst(prefix.count).split(separator: "/").first.map(String.init) ?? ""
                if !listed.contains(dir) { out.append("mount \(f[4]) (in \(path))") }
            }
        }
        // The pins themselves live in the pin namespace, whose root is
        // <state>/containers: its mount points read "/c5/ns/net-4026532001".
        if let pid = d.pid, let pinner = ScaleTests.pinnerTask(d) {
            _ = pid
            for line in ((try? Sys.readBytes("\(pinner)/mountinfo", limit: 1 << 28)).map { String(decoding: $0, as: UTF8.self) } ?? "").split(separator: "\n") {
                let f = line.split(separator: " ")
                guard f.count > 4, f[4] != "/" else { continue }
                let dir = f[4].dropFirst().split(separator: "/").first.map(String.init) ?? ""
                if !listed.contains(dir) { out.append("pin \(f[4]) (in the pin namespace, \(pinner)/mountinfo)") }
            }
        }
        return out
    }

    /// `sh -c 'id -u; exec sleep 30'` started in the container (as init or
    /// entering it); returns the process and what `id -u` printed.
    func startInside(_ c: Container, enter: Bool) throws -> (ContainerProcess, String) {
        var fds: [CInt] = [-1, -1]
        guard pipe(&fds) == 0 else { throw ContainerError.sys("pipe") }
        for f in fds { _ = fcntl(f, F_SETFD, FD_CLOEXEC) }
        let r = OwnedFD(fds[0]), w = OwnedFD(fds[1])
        let null = try Sys.open("/dev/null", O_RDONLY)
        let spec = ProcessSpec("/bin/sh", ["/bin/sh", "-c", "id -u; exec sleep 30"], stdio: (null.raw, w.raw, w.raw))
        let p = try withExtendedLifetime((w, null)) { enter ? try c.exec(spec) : try c.spawnInit(spec) }
        w.close()
        var line = ""
        var pfd = pollfd(fd: r.raw, events: Int16(POLLIN), revents: 0)
        if poll(&pfd, 1, 10_000) == 1 {
            var buf = [UInt8](repeating: 0, count: 64)
            let n = read(r.raw, &buf, buf.count)
            if n > 0 { line = String(decoding: buf[0..<n], as: UTF8.self).split(separator: "\n").first.map(String.init) ?? "" }
        }
        return (p, line)
    }

    /// unshare(1) with its own user (root mapped), pid, mount, uts and net
    /// namespaces; returns unshare's pidfd and its sleeping child's pid.
    func unshareProcess() throws -> (OwnedFD, pid_t) {
        let u = try spawn(["/usr/bin/unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child", "--mount",
                           "--uts", "--net", "/bin/sleep", "60"])
        let fd = try Sys.pidfdOpen(u)
        for _ in 0..<500 {
            let kids = ((try? Sys.readFile("/proc/\(u)/task/\(u)/children")) ?? "").split(separator: " ").compactMap { pid_t($0) }
            if let k = kids.first, ProcInfo.comm(pid: k) == "sleep" { return (fd, k) }
            usleep(10_000)
        }
        try? Sys.pidfdSendSignal(fd.raw, SIGKILL)
        _ = try? Sys.pidfdWait(fd.raw)
        throw ContainerError(.system, "unshare's child did not start")
    }
}
