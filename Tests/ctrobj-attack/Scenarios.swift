import CShim
import ContainerObject
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

// The attacks of issue 9, one function each. Each runs as whoever started
// the tool (the tests: a throwaway unprivileged user), reports every step on
// stdout (Report), and judges the steps whose refusal the contract states.

let userNS = ContainerFlags.newUserNS

/// The filesystem type of an fd's file ("cgroup", "cgroup2", "nsfs", ...):
/// its st_dev matched against /proc/self/mountinfo. (fstatfs is not in
/// Swift's Glibc module; CGROUP_SUPER_MAGIC and CGROUP2_SUPER_MAGIC are the
/// "cgroup" and "cgroup2" mounts.)
func filesystemType(_ fd: CInt) -> String {
    var st = stat()
    guard fstat(fd, &st) == 0 else { return "errno \(errno)" }
    let dev = UInt64(st.st_dev)
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff))
    let minor = (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff))
    let want = "\(major):\(minor)"
    for line in ((try? Sys.readFile("/proc/self/mountinfo")) ?? "").split(separator: "\n") {
        let f = line.split(separator: " ")
        guard f.count > 2, f[2] == want, let dash = f.firstIndex(of: "-"), dash + 1 < f.count else { continue }
        return String(f[dash + 1])
    }
    switch st.st_mode & S_IFMT {
    case S_IFSOCK: return "socket"
    default: return "dev \(want)"
    }
}

/// Wait until `$ATTACK_GO` exists (the test says "go on"), or `seconds`.
func waitForGo(seconds: Int) {
    let go = getenv("ATTACK_GO").map { String(cString: $0) }
    let deadline = Sys.monotonicNanos() + UInt64(seconds) * 1_000_000_000
    while Sys.monotonicNanos() < deadline {
        if let go, Sys.exists(go) { return }
        usleep(20_000)
    }
}

/// A fresh container of the caller's on connection `c`: its fd, or nil (reported).
func made(_ c: Raw, _ name: String, flags: UInt32 = userNS, step: String = "create") -> OwnedFD? {
    let o = c.create(name, flags: flags)
    Report.line(step, o.report + [("name", name)])
    return o.fds.first
}

/// A user's empty-root container with `source` bound (MS_BIND) at /d,
/// reported as step "bind"; nil when the bind was refused.
func boundContainer(_ name: String, _ source: String) throws -> Container? {
    let c = try Container.create(name, options: [.newUserNS, .newEmptyFSNS, .newPIDNS])
    do {
        try c.mkdir("/d")
        try c.mount(source: source, target: "/d", fstype: nil, flags: 4096)
        Report.line("bind", [("result", "ok"), ("errno", "0")])
        return c
    } catch let e as ContainerError {
        Report.line("bind", [("result", "error"), ("errno", "\(e.errno)"), ("message", e.message)])
        return nil
    }
}

/// Start the container's init (path, argv) and return what it printed.
func initOutput(_ c: Container, _ path: String, _ argv: [String]) throws -> String {
    var p: [CInt] = [-1, -1]
    guard pipe(&p) == 0 else { throw Usage() }
    let r = OwnedFD(p[0]), w = OwnedFD(p[1])
    _ = fcntl(r.raw, F_SETFD, FD_CLOEXEC)
    _ = fcntl(w.raw, F_SETFD, FD_CLOEXEC)
    let initP = try withExtendedLifetime(w) { try c.spawnInit(ProcessSpec(path, argv, stdio: (w.raw, w.raw, w.raw))) }
    w.close()
    let out = (try? Sys.readAll(r.raw)) ?? ""
    _ = try? initP.wait()
    return out
}

enum Scenarios {
    // MARK: finding 1: fork.commit with someone else's process

    /// commit-victim VICTIM_PID pidfd|nonpidfd
    static func commitVictim(_ args: [String]) throws {
        guard args.count == 2, let victim = pid_t(args[0]) else { throw Usage() }
        let c = try Raw.connect()
        guard let cfd = made(c, "adv-commit") else { return }
        let prep = c.call(Op.forkPrepare, ["mode": "init"], fds: [cfd.raw])
        Report.line("prepare", prep.report)
        var sent: OwnedFD?
        if args[1] == "pidfd" {
            let (p, e) = pidfd(of: victim)
            Report.line("victim-pidfd", [("result", p == nil ? "error" : "ok"), ("errno", "\(e)")])
            sent = p ?? devNull()
        } else {
            sent = devNull()
        }
        guard let sent else { throw Usage() }
        Report.expect("commit", c.call(Op.forkCommit, ["pid": "\(victim)"], fds: [cfd.raw, sent.raw]), [EINVAL, EPERM])
        let d = c.call(Op.destroy, fds: [cfd.raw])
        Report.line("destroy", d.report)
    }

    // MARK: finding 2: cgroup fds and cgroup.join

    /// prepare-fds VICTIM_PID
    static func prepareFDs(_ args: [String]) throws {
        guard args.count == 1, let victim = pid_t(args[0]) else { throw Usage() }
        let c = try Raw.connect()
        guard let cfd = made(c, "adv-cgfds") else { return }
        let prep = c.call(Op.forkPrepare, ["mode": "init"], fds: [cfd.raw])
        Report.line("prepare", prep.report)
        var onCgroupFS = 0, written = 0
        for (i, f) in prep.fds.enumerated() {
            let type = filesystemType(f.raw)
            let isCgroup = type == "cgroup" || type == "cgroup2"
            var wrote = "-"
            if isCgroup {
                onCgroupFS += 1
                let text = "\(victim)\n"
                let n = text.withCString { write(f.raw, $0, strlen($0)) }
                wrote = n > 0 ? "ok" : "errno \(errno)"
                if n > 0 { written += 1 }
            }
            Report.line("fd.\(i)", [("fstype", type), ("cgroup", isCgroup ? "1" : "0"), ("write_victim", wrote)])
        }
        let held = onCgroupFS == 0 && written == 0
        if !held { Report.broke.append("cgroup-fds") }
        Report.line("cgroup-fds", [("count", "\(onCgroupFS)"), ("victim_written", "\(written)"), ("verdict", held ? "held" : "broke")])
        Report.line("abort", c.call(Op.forkAbort, fds: [cfd.raw]).report)

        // cgroup.join takes no fields and no fd but the container's.
        let (vp, _) = pidfd(of: victim)
        Report.expect("join-field-pid", c.call("cgroup.join", ["pid": "\(victim)"], fds: [cfd.raw]), [EINVAL])
        Report.expect("join-field-x", c.call("cgroup.join", ["x": "1"], fds: [cfd.raw]), [EINVAL])
        Report.expect("join-field-empty", c.call("cgroup.join", ["pidfd": ""], fds: [cfd.raw]), [EINVAL])
        if let vp {
            Report.expect("join-victim-pidfd", c.call("cgroup.join", [:], fds: [cfd.raw, vp.raw]), [EINVAL, EPROTO, EPERM])
        }
        Report.line("destroy", c.call(Op.destroy, fds: [cfd.raw]).report)
    }

    /// spawn-legit: the library's own way in still works for an unprivileged
    /// caller, and puts the caller's processes in the container's cgroup.
    static func spawnLegit(_ args: [String]) throws {
        let c = try Container.create("adv-legit", options: [.newUserNS, .newPIDNS])
        defer { try? c.destroy() }
        let st = try c.status()
        let layout = CgroupLayout.discover()
        func check(_ step: String, _ p: ContainerProcess) {
            var inAll = true
            var where_: [String] = []
            for h in layout.hierarchies {
                let procs = (try? Sys.readFile("\(h)/\(st.cgroup)/cgroup.procs")) ?? ""
                let member = procs.split(separator: "\n").contains { pid_t($0) == p.pid }
                if !member { inAll = false; where_.append(h) }
            }
            let own = ProcInfo.statusField(pid: p.pid, "Uid")?.first ?? "?"
            if !inAll { Report.broke.append(step) }
            Report.line(step, [("result", "ok"), ("pid", "\(p.pid)"), ("host_uid", own), ("in_container_cgroup", inAll ? "1" : "0"),
                               ("missing_from", where_.joined(separator: ",")), ("verdict", inAll ? "held" : "broke")])
        }
        do {
            let initP = try c.spawnInit(ProcessSpec("/bin/sleep", ["sleep", "30"]))
            check("init", initP)
            do {
                let e = try c.exec(ProcessSpec("/bin/sleep", ["sleep", "30"]))
                check("exec", e)
                try? e.signal(SIGKILL)
                _ = try? e.wait()
            } catch let e as ContainerError {
                Report.broke.append("exec")
                Report.line("exec", [("result", "error"), ("errno", "\(e.errno)"), ("message", e.message), ("verdict", "broke")])
            }
            try? initP.signal(SIGKILL)
            _ = try? initP.wait()
        } catch let e as ContainerError {
            Report.broke.append("init")
            Report.line("init", [("result", "error"), ("errno", "\(e.errno)"), ("message", e.message), ("verdict", "broke")])
        }
    }

    // MARK: finding 3: sockets

    /// socket FLAGS (decimal): AF_PACKET, AF_INET/SOCK_RAW and AF_INET/SOCK_STREAM
    /// in a container of the caller's with those flags. Reports each; judges
    /// nothing (the test knows which flags own a network namespace).
    static func sockets(_ args: [String]) throws {
        guard args.count == 1, let flags = UInt32(args[0]) else { throw Usage() }
        let c = try Raw.connect()
        guard let cfd = made(c, "adv-sock", flags: flags) else { return }
        socketSteps(c, cfd.raw)
        Report.line("destroy", c.call(Op.destroy, fds: [cfd.raw]).report)
    }

    /// socket-hostnet: the user's container takes the host's network
    /// namespace by setns (from /proc/self/ns/net, which the user is in);
    /// container_socket there is still made with the user's credentials.
    static func socketHostNet(_ args: [String]) throws {
        let c = try Raw.connect()
        guard let cfd = made(c, "adv-hostnet") else { return }
        let hostNet = try Sys.open("/proc/self/ns/net", O_RDONLY)
        Report.line("setns-hostnet", c.call(Op.setns, ["nstypes": "\(NamespaceKind.net.cloneFlag)"], fds: [cfd.raw, hostNet.raw]).report)
        socketSteps(c, cfd.raw)
        Report.line("destroy", c.call(Op.destroy, fds: [cfd.raw]).report)
    }

    /// host-namespaces: the user's container (empty root, default core
    /// policy "file") takes every host namespace a setns allows, from the
    /// user's own /proc/self/ns files. Left in place: the test then crashes
    /// a root process on the host and looks where its core went.
    /// host-namespaces file|handler: with "handler", a core handler of the
    /// user's own (/h: copies stdin to /stolen) is set as the core policy.
    static func hostNamespaces(_ args: [String]) throws {
        let c = try Raw.connect()
        guard let cfd = made(c, "adv-hostns", flags: userNS | ContainerFlags.newEmptyFSNS) else { return }
        for kind in [NamespaceKind.pid, .net, .uts, .ipc, .cgroup, .time] {
            guard let ns = try? Sys.open("/proc/self/ns/\(kind.rawValue)", O_RDONLY) else { continue }
            Report.line("setns-\(kind.rawValue)", c.call(Op.setns, ["nstypes": "\(kind.cloneFlag)"], fds: [cfd.raw, ns.raw]).report)
        }
        let st = c.call(Op.status, fds: [cfd.raw])
        Report.line("status", st.report + (st.message?.fields.filter { $0.key.hasPrefix("ns.") }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) } ?? []))
        // A core handler of the user's own, inside: it keeps whatever core it is given.
        let box = Container(adopting: cfd)
        guard args.first == "handler" else { return }
        do {
            try box.copyIn(hostPath: "/bin/busybox", to: "/busybox")
            try box.writeFile("/h", "#!/busybox sh\n/busybox cat > /stolen\n", mode: 0o755)
            try box.setPolicy(core: "handler:/h")
            Report.line("handler", [("result", "ok"), ("errno", "0")])
        } catch let e as ContainerError {
            Report.line("handler", [("result", "error"), ("errno", "\(e.errno)"), ("message", e.message)])
        }
    }

    static func socketSteps(_ c: Raw, _ cfd: CInt) {
        let ethPAll = Int(UInt16(0x0003).bigEndian)
        Report.line("packet", c.call(Op.socket, ["domain": "\(AF_PACKET)", "type": "\(SOCK_RAW.rawValue)", "protocol": "\(ethPAll)"], fds: [cfd]).report)
        Report.line("raw", c.call(Op.socket, ["domain": "\(AF_INET)", "type": "\(SOCK_RAW.rawValue)", "protocol": "\(IPPROTO_ICMP)"], fds: [cfd]).report)
        let stream = c.call(Op.socket, ["domain": "\(AF_INET)", "type": "\(SOCK_STREAM.rawValue)", "protocol": "0"], fds: [cfd])
        var bound = "-"
        if let s = stream.fds.first {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
            let r = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s.raw, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            bound = r == 0 && listen(s.raw, 1) == 0 ? "ok" : "errno \(errno)"
        }
        Report.line("stream", stream.report + [("bind_listen_loopback", bound)])
    }

    // MARK: finding 4: numbers

    /// number WHICH: one out-of-range number in one request.
    static func number(_ args: [String]) throws {
        guard args.count == 1 else { throw Usage() }
        let c = try Raw.connect()
        if args[0] == "create-flags" {
            Report.expect("attack", c.call(Op.create, ["name": "adv-num", "flags": "\(UInt64(1) << 40)"]), [EINVAL])
            return
        }
        guard let cfd = made(c, "adv-num") else { return }
        let (me, _) = pidfd(of: getpid())
        let big62 = "\(Int64(1) << 62)"
        let o: Outcome
        switch args[0] {
        case "limit-cpu": o = c.call(Op.limit, ["which": "3", "value": big62], fds: [cfd.raw])
        case "limit-memory": o = c.call(Op.limit, ["which": "1", "value": big62], fds: [cfd.raw])
        case "limit-pids": o = c.call(Op.limit, ["which": "2", "value": big62], fds: [cfd.raw])
        case "limit-huge": o = c.call(Op.limit, ["which": "3", "value": "99999999999999999999999"], fds: [cfd.raw])
        case "socket-domain": o = c.call(Op.socket, ["domain": "\((Int64(1) << 32) + 1)", "type": "1", "protocol": "0"], fds: [cfd.raw])
        case "socket-type": o = c.call(Op.socket, ["domain": "2", "type": "\((Int64(1) << 32) + 1)", "protocol": "0"], fds: [cfd.raw])
        case "socket-protocol": o = c.call(Op.socket, ["domain": "2", "type": "1", "protocol": "\((Int64(1) << 32) + 1)"], fds: [cfd.raw])
        case "commit-pid":
            Report.line("prepare", c.call(Op.forkPrepare, ["mode": "init"], fds: [cfd.raw]).report)
            guard let me else { throw Usage() }
            o = c.call(Op.forkCommit, ["pid": "\(Int64(1) << 32)"], fds: [cfd.raw, me.raw])
        case "commit-pid-negative":
            Report.line("prepare", c.call(Op.forkPrepare, ["mode": "init"], fds: [cfd.raw]).report)
            guard let me else { throw Usage() }
            o = c.call(Op.forkCommit, ["pid": "-1"], fds: [cfd.raw, me.raw])
        case "kill-signal": o = c.call(Op.kill, ["signal": "\(Int64(1) << 40)"], fds: [cfd.raw])
        case "setns-nstypes":
            guard let me else { throw Usage() }
            o = c.call(Op.setns, ["nstypes": "\(Int64(1) << 40)"], fds: [cfd.raw, me.raw])
        default: throw Usage()
        }
        Report.expect("attack", o, [EINVAL])
    }

    // MARK: finding 5: exhaustion

    /// create-many MAX [HOLD_S EXTRA_CONNECTIONS]: create until refused (or MAX),
    /// keeping every container fd; then, with HOLD_S, open EXTRA_CONNECTIONS
    /// more connections, report "saturated" and hold everything until
    /// $ATTACK_GO exists or HOLD_S seconds pass.
    static func createMany(_ args: [String]) throws {
        guard let max = Int(args.first ?? "") else { throw Usage() }
        let hold = args.count > 1 ? Int(args[1]) ?? 0 : 0
        let extra = args.count > 2 ? Int(args[2]) ?? 0 : 0
        let c = try Raw.connect()
        var kept: [OwnedFD] = []
        var last = Outcome.timeout
        var firstRefusal: Outcome?
        for i in 0..<max {
            last = c.create("adv-many-\(i)", flags: userNS)
            guard case .ok(_, let fds) = last else { firstRefusal = last; break }
            kept += fds
        }
        Report.line("create-many", [("created", "\(kept.count)")] + (firstRefusal ?? last).report)
        // The connection still answers after the refusal.
        Report.line("list-after", c.call(Op.list, timeoutMs: 5000).report)
        guard hold > 0 else { return }
        var conns: [OwnedFD] = []
        for _ in 0..<extra {
            if let r = try? Raw.connect() { conns.append(r.fd) }
        }
        Report.line("saturated", [("extra_connections", "\(conns.count)"), ("container_fds", "\(kept.count)")])
        waitForGo(seconds: hold)
        withExtendedLifetime((kept, conns)) {}
    }

    /// create-recycle MAX: create until refused, destroy one, create again.
    static func createRecycle(_ args: [String]) throws {
        guard let max = Int(args.first ?? "") else { throw Usage() }
        let c = try Raw.connect()
        var kept: [OwnedFD] = []
        var refusal: Outcome?
        for i in 0..<max {
            let o = c.create("adv-many-\(i)", flags: userNS)
            guard case .ok(_, let fds) = o else { refusal = o; break }
            kept += fds
        }
        Report.line("create-many", [("created", "\(kept.count)")] + (refusal ?? .ok(Message.ok(), [])).report)
        guard let first = kept.first else { return }
        Report.expect("destroy-one", c.call(Op.destroy, fds: [first.raw]), [0])
        Report.expect("create-again", c.create("adv-many-again", flags: userNS), [0])
        Report.expect("create-over-again", c.create("adv-many-over", flags: userNS), [EDQUOT])
    }

    /// connections N: open N connections at once and see which are served.
    static func connections(_ args: [String]) throws {
        guard args.count == 1, let n = Int(args[0]) else { throw Usage() }
        var conns: [Raw] = []
        for i in 0..<n {
            do {
                let r = try Raw.connect()
                conns.append(r)
                // A refused connection gets one error message unasked.
                let early = r.receive(timeoutMs: 300)
                if case .timeout = early {
                    Report.line("conn.\(i)", r.call(Op.list, timeoutMs: 5000).report)
                } else {
                    Report.line("conn.\(i)", early.report + [("unasked", "1")])
                }
            } catch let e as ContainerError {
                Report.line("conn.\(i)", [("result", "connect-failed"), ("errno", "\(e.errno)"), ("message", e.message)])
            }
        }
        withExtendedLifetime(conns) {}
    }

    /// join-setuid: a connection whose peer (the process that connected)
    /// then execs a setuid-root program (su, waiting for a password with
    /// euid 0) asks cgroup.join for the user's container. Reports su's pid
    /// and holds until $ATTACK_GO.
    static func joinSetuid(_ args: [String]) throws {
        let c = try Raw.connect()
        guard let cfd = made(c, "adv-suid") else { return }
        Report.line("prepare", c.call(Op.forkPrepare, ["mode": "init"], fds: [cfd.raw]).report)
        var pair: [CInt] = [-1, -1]
        guard socketpair(AF_UNIX, CInt(SOCK_SEQPACKET.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else { throw Usage() }
        let mine = OwnedFD(pair[0]), theirs = OwnedFD(pair[1])
        var stdinPipe: [CInt] = [-1, -1]
        guard pipe(&stdinPipe) == 0 else { throw Usage() }
        let pipeRead = OwnedFD(stdinPipe[0]), pipeWrite = OwnedFD(stdinPipe[1])
        _ = fcntl(pipeRead.raw, F_SETFD, FD_CLOEXEC)
        _ = fcntl(pipeWrite.raw, F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipeRead.raw, 0)
        posix_spawn_file_actions_adddup2(&actions, theirs.raw, 3)
        // su's "Password:" prompt must not land in this report.
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv = CStringArray([CommandLine.arguments[0], "suid-peer"])
        let envp = CStringArray(currentEnvironment())
        var helper: pid_t = 0
        let rc = posix_spawn(&helper, CommandLine.arguments[0], &actions, nil, argv.pointers, envp.pointers)
        guard rc == 0 else { throw ContainerError.sys("posix_spawn", rc) }
        theirs.close()
        pipeRead.close()
        // The helper's connection to ctrobjd, made by the helper (its peer).
        guard ccs_wait_readable(mine.raw, 10_000) == 0, let (_, got) = try FDPassing.receive(mine.raw, maxFDs: 1),
              let peerConn = got.first else {
            Report.line("join-setuid", [("result", "setup-failed")])
            return
        }
        // Wait until the helper runs su with euid 0.
        var euid = "?"
        for _ in 0..<500 {
            euid = ProcInfo.statusField(pid: helper, "Uid")?.dropFirst().first ?? "?"
            if euid == "0" && ProcInfo.comm(pid: helper) == "su" { break }
            usleep(10_000)
        }
        Report.line("peer", [("pid", "\(helper)"), ("euid", euid), ("comm", ProcInfo.comm(pid: helper) ?? "?")])
        let join = Raw(fd: peerConn).call("cgroup.join", fds: [cfd.raw])
        Report.expect("join-setuid", join, [EPERM])
        // setns takes a pidfd only of a process whose uids are all the caller's.
        let (suFD, _) = pidfd(of: helper)
        let other = try Raw.connect()
        if let otherFD = made(other, "adv-suid-ns", step: "create-ns"), let suFD {
            Report.expect("setns-setuid", other.call(Op.setns, ["nstypes": "\(NamespaceKind.net.cloneFlag)"], fds: [otherFD.raw, suFD.raw]), [EPERM])
        }
        Report.line("ready", [("su_pid", "\(helper)")])
        waitForGo(seconds: 30)
        withExtendedLifetime(pipeWrite) {}
    }

    /// suid-peer (internal, for join-setuid): connect to ctrobjd, hand the
    /// connection to fd 3's other end, exec su (stdin: a pipe never written).
    static func suidPeer(_ args: [String]) throws {
        let c = try Raw.connect()
        _ = ccs_set_cloexec(c.fd.raw, 0)
        let e = ccs_send_with_fds(3, "c", 1, [c.fd.raw], 1)
        if e < 0 { throw ContainerError.sys("sendmsg") }
        close(3)
        let argv = CStringArray(["/usr/bin/su", "root", "-c", "true"])
        execv("/usr/bin/su", argv.pointers)
        throw ContainerError.sys("execv su")
    }

    // MARK: finding 6: a client that never reads

    /// flood COUNT HOLD_S [CONNECTIONS]: send COUNT list requests on each of
    /// CONNECTIONS connections (default 1) without reading (after making 4
    /// containers so each answer is big), report "flooded", hold HOLD_S
    /// seconds (or until $ATTACK_GO), then read each: was it dropped?
    /// Reports drain.N per connection and drain with how many were dropped.
    static func flood(_ args: [String]) throws {
        guard args.count >= 2, let count = Int(args[0]), let hold = Int(args[1]) else { throw Usage() }
        let n = args.count > 2 ? Int(args[2]) ?? 1 : 1
        let setup = try Raw.connect()
        var kept: [OwnedFD] = []
        for i in 0..<4 {
            if let f = made(setup, "adv-flood-\(i)-" + String(repeating: "x", count: 10), step: "create.\(i)") { kept.append(f) }
        }
        let conns = try (0..<n).map { _ in try Raw.connect() }
        let request = Message(Op.list).encoded()
        var sent = [Int](repeating: 0, count: n)
        var sendErr = [Int32](repeating: 0, count: n)
        let deadline = Sys.monotonicNanos() + 5_000_000_000
        var busy = true
        while busy && Sys.monotonicNanos() < deadline {
            busy = false
            var blocked = true
            for (i, c) in conns.enumerated() where sent[i] < count && sendErr[i] == 0 {
                busy = true
                let e = c.sendBytes(request, dontWait: true)
                if e == 0 { sent[i] += 1; blocked = false } else if e != EAGAIN { sendErr[i] = e }
            }
            if busy && blocked { usleep(1000) }
        }
        Report.line("flooded", [("sent", "\(sent.reduce(0, +))"), ("connections", "\(n)"),
                                ("send_errno", sendErr.map(String.init).joined(separator: ","))])
        waitForGo(seconds: hold)
        var dropped = 0
        for (i, c) in conns.enumerated() {
            var replies = 0
            var end = Outcome.timeout
            while replies < 1_000_000 {
                let o = c.receive(timeoutMs: 2000)
                if case .ok = o { replies += 1; continue }
                end = o
                break
            }
            var gone = false
            if case .hangup = end { gone = true }
            if gone { dropped += 1 }
            Report.line("drain.\(i)", [("replies", "\(replies)"), ("sent", "\(sent[i])"), ("dropped", gone ? "1" : "0")] + end.report)
        }
        if dropped == 0 { Report.broke.append("dropped") }
        Report.line("drain", [("dropped", "\(dropped)"), ("of", "\(n)"), ("verdict", dropped > 0 ? "held" : "broke")])
        withExtendedLifetime(kept) {}
    }

    /// lib-list: Container.list() through the library (CTROBJ_TIMEOUT_MS applies).
    static func libList(_ args: [String]) throws {
        let start = Sys.monotonicNanos()
        do {
            let all = try Container.list()
            Report.line("lib-list", [("result", "ok"), ("errno", "0"), ("count", "\(all.count)"),
                                     ("elapsed_ms", "\((Sys.monotonicNanos() - start) / 1_000_000)")])
        } catch let e as ContainerError {
            Report.line("lib-list", [("result", "error"), ("errno", "\(e.errno)"), ("code", e.code.rawValue), ("message", e.message),
                                     ("elapsed_ms", "\((Sys.monotonicNanos() - start) / 1_000_000)")])
        }
    }

    // MARK: finding 8: unbounded fields

    static func policyBig(_ args: [String]) throws {
        let c = try Raw.connect()
        guard let cfd = made(c, "adv-policy") else { return }
        let huge = "handler:/" + String(repeating: "a", count: 213_000 - 9)
        Report.expect("core-213000", c.call(Op.policy, ["core": huge], fds: [cfd.raw]), [EINVAL, E2BIG, EMSGSIZE])
        let over = "handler:/" + String(repeating: "b", count: 4097 - 9)
        Report.expect("core-4097", c.call(Op.policy, ["core": over], fds: [cfd.raw]), [EINVAL, E2BIG, EMSGSIZE])
        Report.expect("status-after", c.call(Op.status, fds: [cfd.raw]), [0])
        Report.expect("list-after", c.call(Op.list), [0])
    }

    /// bounds: whole-request, field and field-count bounds; the connection is kept.
    static func bounds(_ args: [String]) throws {
        let c = try Raw.connect()
        Report.expect("request-70000", c.call(Op.list, ["after": String(repeating: "0", count: 70_000)]), [E2BIG, EMSGSIZE])
        Report.expect("list-after-request", c.call(Op.list), [0])
        Report.expect("field-5000", c.call(Op.list, ["after": String(repeating: "0", count: 5000)]), [E2BIG, EMSGSIZE, EINVAL])
        Report.expect("list-after-field", c.call(Op.list), [0])
        var many: [String: String] = [:]
        for i in 0..<65 { many["f\(i)"] = "1" }
        Report.expect("fields-65", c.call(Op.list, many), [E2BIG, EMSGSIZE, EINVAL])
        Report.expect("list-after-fields", c.call(Op.list), [0])
        let unknown = c.call(Op.list, ["bogus": "1"])
        Report.expect("unknown-field", unknown, [EINVAL])
        if case .error(_, let m) = unknown, !m.contains("bogus") {
            Report.broke.append("unknown-field-named")
            Report.line("unknown-field-named", [("message", m), ("verdict", "broke")])
        }
        Report.expect("list-after-unknown", c.call(Op.list), [0])
    }

    // MARK: finding 9: a bind mount for root's path call

    /// bind-victim HOSTFILE: a container of the caller's with an empty root,
    /// the host file bound at /v (opened O_PATH by the caller). Left in place.
    static func bindVictim(_ args: [String]) throws {
        guard args.count == 1 else { throw Usage() }
        let c = try Container.create("adv-bind", options: [.newUserNS, .newEmptyFSNS])
        do {
            try c.writeFile("/v", "")
            Report.line("target", [("result", "ok"), ("errno", "0")])
            try c.mount(source: args[0], target: "/v", fstype: nil, flags: 4096)
            Report.line("bind", [("result", "ok"), ("errno", "0")])
        } catch let e as ContainerError {
            Report.line("bind", [("result", "error"), ("errno", "\(e.errno)"), ("message", e.message)])
        }
    }

    /// bind-dir HOSTDIR: a container of the caller's with an empty root, the
    /// host directory bound at /d. Left in place for root's path calls.
    static func bindDir(_ args: [String]) throws {
        guard args.count == 1 else { throw Usage() }
        let c = try Container.create("adv-binddir", options: [.newUserNS, .newEmptyFSNS])
        do {
            try c.mkdir("/d")
            try c.mount(source: args[0], target: "/d", fstype: nil, flags: 4096 | 16384)
            Report.line("bind", [("result", "ok"), ("errno", "0")])
        } catch let e as ContainerError {
            Report.line("bind", [("result", "error"), ("errno", "\(e.errno)"), ("message", e.message)])
        }
    }

    /// bind-peel HOSTDIR: bind HOSTDIR (whose sub/ has a mount over it)
    /// without MS_REC into an empty-root container, then read sub/secret
    /// directly and from the container's root after `umount -l` of sub.
    static func bindPeel(_ args: [String]) throws {
        guard args.count == 1 else { throw Usage() }
        guard let c = try boundContainer("adv-peel", args[0]) else { return }
        do {
            let text = try c.readFile("/d/sub/secret")
            Report.line("read-direct", [("result", "ok"), ("content", text)])
        } catch let e as ContainerError {
            Report.line("read-direct", [("result", "error"), ("errno", "\(e.errno)")])
        }
        try c.copyIn(hostPath: "/bin/busybox", to: "/busybox")
        let out = try initOutput(c, "/busybox", ["busybox", "sh", "-c", "/busybox umount -l /d/sub; echo umount=$?; /busybox cat /d/sub/secret"])
        Report.line("peel", [("output", out)])
        try? c.destroy()
    }

    /// bind-remount HOSTDIR PROGRAM: bind HOSTDIR (a read-only, nodev,
    /// noexec mount on the host) into the user's own container, then run
    /// PROGRAM there as its root: it remounts /d read-write (MS_REMOUNT |
    /// MS_BIND) and writes through it. The kernel locks those flags in a user
    /// namespace's copy of the host's mounts; ctrobjd's bind must carry them.
    static func bindRemount(_ args: [String]) throws {
        guard args.count == 2 else { throw Usage() }
        guard let c = try boundContainer("adv-remount", args[0]) else { return }
        try c.copyIn(hostPath: args[1], to: "/remount")
        Report.line("remount", [("output", try initOutput(c, "/remount", ["remount", "/d"]))])
        try? c.destroy()
    }

    /// open-many N: create a container and open it by name N times,
    /// holding every fd: the per-uid bound on container fds must stop it.
    static func openMany(_ args: [String]) throws {
        guard args.count == 1, let n = Int(args[0]) else { throw Usage() }
        let c = try Raw.connect()
        guard let first = made(c, "adv-open-\(getpid())") else { return }
        var held = [first]
        var firstError: Outcome?
        for _ in 0..<n {
            let o = c.call(Op.open, ["name": "adv-open-\(getpid())"])
            if let fd = o.fds.first { held.append(fd) } else if firstError == nil { firstError = o }
        }
        Report.line("open-many", [("held", "\(held.count)")] + (firstError?.report ?? [("errno", "0")]))
        held.removeAll()
        usleep(200_000) // the daemon sees the closes
        let again = c.call(Op.open, ["name": "adv-open-\(getpid())"])
        Report.line("open-after-close", again.report)
    }

    /// setns-pidfd PID: share PID's network namespace into the user's
    /// container through a pidfd. PID runs as the user's uid but is not
    /// dumpable (root that dropped to it without exec): the kernel would not
    /// let the user open /proc/PID/ns/net, and neither may ctrobjd for it.
    static func setnsPidfd(_ args: [String]) throws {
        guard args.count == 1, let pid = pid_t(args[0]) else { throw Usage() }
        let own = open("/proc/\(pid)/ns/net", O_RDONLY | O_CLOEXEC)
        Report.line("own-open", [("result", own >= 0 ? "ok" : "error"), ("errno", "\(own >= 0 ? 0 : errno)")])
        if own >= 0 { close(own) }
        let c = try Raw.connect()
        guard let cfd = made(c, "adv-setns-\(getpid())") else { return }
        let (pfd, e) = pidfd(of: pid)
        guard let pfd else { Report.line("pidfd", [("result", "error"), ("errno", "\(e)")]); return }
        _ = Report.expect("setns-nondumpable", c.call(Op.setns, ["nstypes": "\(NamespaceKind.net.cloneFlag)"], fds: [cfd.raw, pfd.raw]),
                          [EACCES, EPERM])
    }

    // MARK: finding 10 and the rest of the wire

    /// names: control bytes refused; a legal odd name kept (for `ctrobj ls`).
    static func names(_ args: [String]) throws {
        let c = try Raw.connect()
        for (step, name) in [("name-newline", "a\nb"), ("name-esc", "a\u{1b}[2Jb"), ("name-del", "a\u{7f}b"), ("name-cr", "a\rb"),
                             ("name-tab", "a\tb"), ("name-bell", "\u{07}x")] {
            Report.expect(step, c.create(name, flags: userNS), [EINVAL])
        }
        let odd = c.create("sp ace é", flags: userNS)
        Report.expect("name-odd", odd, [0])
        withExtendedLifetime(odd.fds) {}
    }

    /// prepare-two: fork.prepare A then B on one connection; A is free again.
    static func prepareTwo(_ args: [String]) throws {
        let c1 = try Raw.connect(), c2 = try Raw.connect()
        guard let a = made(c1, "adv-a", step: "create-a"), let b = made(c1, "adv-b", step: "create-b") else { return }
        Report.expect("prepare-a", c1.call(Op.forkPrepare, ["mode": "init"], fds: [a.raw]), [0])
        Report.expect("prepare-b", c1.call(Op.forkPrepare, ["mode": "init"], fds: [b.raw]), [0])
        Report.expect("prepare-a-again", c2.call(Op.forkPrepare, ["mode": "init"], fds: [a.raw]), [0])
        Report.expect("prepare-b-other", c2.call(Op.forkPrepare, ["mode": "init"], fds: [b.raw]), [EBUSY])
    }

    /// wire-junk: empty, fd-stuffed and unknown messages get an error reply
    /// and the connection keeps answering. Each case on a connection of its
    /// own (STEP, then list-after-STEP on the same connection), so one
    /// dropped connection does not hide the other cases.
    static func wireJunk(_ args: [String]) throws {
        let setup = try Raw.connect()
        guard let cfd = made(setup, args.first ?? "adv-junk") else { return }
        let nulls = (0..<40).compactMap { _ in devNull() }
        let cases: [(String, [UInt8], [CInt], Set<Int32>)] = [
            ("empty-datagram", [], [], [EPROTO]),
            ("empty-op", Array("\n".utf8), [], [EPROTO]),
            ("fds-33", Message(Op.list).encoded(), nulls.prefix(33).map(\.raw), [EPROTO]),
            ("fds-9", Message(Op.status).encoded(), [cfd.raw] + nulls.prefix(8).map(\.raw), [EPROTO]),
            ("status-extra-fd", Message(Op.status).encoded(), [cfd.raw, nulls[0].raw], [EPROTO]),
            ("list-fd", Message(Op.list).encoded(), [nulls[0].raw], [EPROTO]),
            ("unknown-op", Message("frobnicate").encoded(), [], [EOPNOTSUPP]),
            ("unknown-op-fd", Message("frobnicate").encoded(), [cfd.raw], [EOPNOTSUPP]),
            ("garbage", [0xff, 0xfe, 0x0a, 0x3d, 0x3d, 0x0a], [], [EPROTO, EOPNOTSUPP, EINVAL]),
        ]
        for (step, bytes, fds, allowed) in cases {
            let c = try Raw.connect()
            Report.expect(step, c.callBytes(bytes, fds: fds), allowed)
            Report.expect("list-after-\(step)", c.call(Op.list), [0])
        }
    }

    // MARK: rights

    /// rights ROOT_CONTAINER_NAME VICTIM_PID UPCALL_SOCKET: what a user may not do to root's
    /// container, to root's processes, or as root.
    static func rights(_ args: [String]) throws {
        guard args.count == 3, let victim = pid_t(args[1]) else { throw Usage() }
        do {
            _ = try Raw.connect(args[2])
            Report.broke.append("connect-upcall")
            Report.line("connect-upcall", [("result", "ok"), ("errno", "0"), ("verdict", "broke")])
        } catch let e as ContainerError {
            Report.line("connect-upcall", [("result", "error"), ("errno", "\(e.errno)"), ("verdict", "held")])
        }
        let c = try Raw.connect()
        Report.expect("open-roots", c.call(Op.open, ["name": args[0]]), [EPERM, ENOENT])
        let list = c.call(Op.list)
        let leaked = list.message.map { m in m.fields.contains { $0.key.hasSuffix(".name") && $0.value == args[0] } } ?? false
        if leaked { Report.broke.append("list-shows-roots") }
        Report.line("list-shows-roots", list.report + [("leaked", leaked ? "1" : "0"), ("verdict", leaked ? "broke" : "held")])
        let null = devNull()
        Report.expect("destroy-not-a-container", c.call(Op.destroy, fds: null.map { [$0.raw] } ?? []), [EBADF, EINVAL, EPROTO])
        Report.expect("destroy-no-fd", c.call(Op.destroy), [EBADF, EINVAL, EPROTO])
        let (me, _) = pidfd(of: getpid())
        Report.expect("adopt-as-user", c.call(Op.adopt, ["name": "adv-adopt"], fds: me.map { [$0.raw] } ?? []), [EPERM])
        guard let cfd = made(c, "adv-rights") else { return }
        let (vp, _) = pidfd(of: victim)
        if let vp {
            Report.expect("setns-root-pidfd", c.call(Op.setns, ["nstypes": "\(NamespaceKind.net.cloneFlag)"], fds: [cfd.raw, vp.raw]), [EPERM])
        }
        if let netns = try? Sys.open("/proc/\(victim)/ns/net", O_RDONLY) {
            Report.line("victim-netns-open", [("result", "ok")])
            withExtendedLifetime(netns) {}
        }
        Report.line("destroy", c.call(Op.destroy, fds: [cfd.raw]).report)
    }

    /// fd-holder: fd 3 is a container of root's (without a user namespace)
    /// given to this user; what holding it must not allow.
    static func fdHolder(_ args: [String]) throws {
        let cfd: CInt = 3
        guard fcntl(cfd, F_GETFD) >= 0 else { throw Usage() }
        let c = try Raw.connect()
        Report.expect("status", c.call(Op.status, fds: [cfd]), [0])
        Report.expect("policy", c.call(Op.policy, ["core": "drop"], fds: [cfd]), [EPERM])
        Report.expect("destroy", c.call(Op.destroy, fds: [cfd]), [EPERM])
        Report.expect("packet", c.call(Op.socket, ["domain": "\(AF_PACKET)", "type": "\(SOCK_RAW.rawValue)", "protocol": "\(Int(UInt16(3).bigEndian))"], fds: [cfd]), [EPERM])
        Report.expect("raw", c.call(Op.socket, ["domain": "\(AF_INET)", "type": "\(SOCK_RAW.rawValue)", "protocol": "\(IPPROTO_ICMP)"], fds: [cfd]), [EPERM])
        Report.expect("mount-tmpfs", c.call(Op.mount, ["source": "none", "target": "/mnt", "fstype": "tmpfs", "flags": "0"], fds: [cfd]), [EPERM])
        if let own = try? Sys.open("/tmp", O_PATH | O_DIRECTORY) {
            Report.expect("mount-bind", c.call(Op.mount, ["source": "/tmp", "target": "/mnt", "flags": "\(4096 | 16384)"], fds: [cfd, own.raw]), [EPERM, EACCES])
        }
        Report.expect("limit", c.call(Op.limit, ["which": "2", "value": "1"], fds: [cfd]), [0, EPERM])
        // fd 4: root's container with a network namespace of its own (owned
        // by the host's user namespace: no CAP_NET_RAW there for the user).
        if fcntl(4, F_GETFD) >= 0 {
            Report.expect("netns-packet", c.call(Op.socket, ["domain": "\(AF_PACKET)", "type": "\(SOCK_RAW.rawValue)", "protocol": "\(Int(UInt16(3).bigEndian))"], fds: [4]), [EPERM])
            Report.expect("netns-raw", c.call(Op.socket, ["domain": "\(AF_INET)", "type": "\(SOCK_RAW.rawValue)", "protocol": "\(IPPROTO_ICMP)"], fds: [4]), [EPERM])
            Report.expect("netns-stream", c.call(Op.socket, ["domain": "\(AF_INET)", "type": "\(SOCK_STREAM.rawValue)", "protocol": "0"], fds: [4]), [0])
        }
    }
}

extension Scenarios {
    /// cgroup-path PATH...: create with each PATH as the container's
    /// cgroup (create's `cgroup` field), raw and through the library. Root's
    /// only: EPERM (EINVAL when the path's shape is refused first).
    static func cgroupPath(_ args: [String]) throws {
        guard !args.isEmpty else { throw Usage() }
        let c = try Raw.connect()
        for (i, path) in args.enumerated() {
            Report.expect("raw-\(i)", c.call(Op.create, ["name": "adv-cg-\(i)", "flags": "\(ContainerFlags.newUserNS)", "cgroup": path]),
                          [EPERM, EINVAL])
            do {
                let fd = try ContainerCalls.create(name: "adv-cg-lib-\(i)", flags: ContainerFlags.newUserNS | ContainerFlags.fdCloexec,
                                                   cgroupPath: path)
                close(fd)
                Report.broke.append("lib-\(i)")
                Report.line("lib-\(i)", [("result", "ok"), ("errno", "0"), ("verdict", "broke")])
            } catch let e as ContainerError {
                let held = e.errno == EPERM || e.errno == EINVAL
                if !held { Report.broke.append("lib-\(i)") }
                Report.line("lib-\(i)", [("result", "error"), ("errno", "\(e.errno)"), ("message", e.message), ("verdict", held ? "held" : "broke")])
            }
        }
        // Without the field the same user still creates (the refusal is the field's).
        Report.expect("plain", c.call(Op.create, ["name": "adv-cg-plain", "flags": "\(ContainerFlags.newUserNS)"]), [0])
    }
}

struct Usage: Error {}
