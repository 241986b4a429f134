import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// fork_into_container and entering a running container: the join plan
/// (fork.prepare), the cgroup join of a non-root caller's child
/// (cgroup.join), and the init's registration (fork.commit).
///
/// A non-root caller is never given cgroup.procs fds: ctrobjd opened them,
/// so the kernel would let whoever holds them move any process (root's
/// included) into the container, where container_kill would reach it. Its
/// child asks ctrobjd instead, and ctrobjd moves that child only: the
/// process at the other end of the asking connection (SO_PEERPIDFD).
extension Broker {
    func forkPrepareRequest(_ r: ContainerRecord, _ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        try forkPrepare(r, mode: m["mode"] ?? "init", conn: conn)
    }

    func forkPrepare(_ r: ContainerRecord, mode: String, conn: ClientConnection) throws -> Reply {
        let enter = mode == "enter"
        if enter {
            guard r.state == .running else {
                throw r.err(.dead, "exec", r.state == .created ? "no init is running yet" : "its init has exited")
            }
        } else {
            if r.state != .created || (r.forkingConnection != nil && r.forkingConnection != ObjectIdentifier(conn)) {
                throw r.err(.busy, "fork_into_container", "init already started")
            }
        }
        let (plan, fds) = try joinPlan(r, enter: enter, cgroupFDs: conn.uid == 0)
        if !enter {
            // One reservation per connection: a new prepare gives up the last.
            if let old = conn.forking, old !== r, old.forkingConnection == ObjectIdentifier(conn) {
                old.forkingConnection = nil
            }
            r.forkingConnection = ObjectIdentifier(conn)
            conn.forking = r
        }
        return Reply(.ok(plan.fields), fds)
    }

    /// What joining the container takes: its namespaces (user first), its
    /// pid namespace (joined, or new for a first init), and its cgroup:
    /// cgroup.procs fds for root (the kernel's upcall helpers, root
    /// callers), a cgroup.join request for everyone else.
    func joinPlan(_ r: ContainerRecord, enter: Bool, cgroupFDs: Bool = true) throws -> (JoinPlan, [OwnedFD]) {
        var fds: [OwnedFD] = []
        func add(_ fd: OwnedFD) throws -> Int {
            fds.append(try fd.duplicate())
            return fds.count - 1
        }
        let userIndex = try namespaceFD(r, .user).map(add)
        var items: [(NamespaceKind, Int)] = []
        for kind in [NamespaceKind.mnt, .uts, .ipc, .net, .cgroup, .time] {
            if let fd = try namespaceFD(r, kind) { items.append((kind, try add(fd))) }
        }
        var pidns = JoinPlan.PidNS.none
        if let p = try namespaceFD(r, .pid) {
            pidns = .join(try add(p))
        } else if !enter && r.flags & ContainerFlags.newPIDNS != 0 {
            pidns = .new
        } else if enter && r.flags & ContainerFlags.newPIDNS != 0 {
            throw r.err(.system, "exec", "its pid namespace is not pinned")
        }
        var cg: [Int] = []
        var dir: Int?
        if cgroupFDs, let v2 = config.cgroupLayout.v2Mount, config.cgroupLayout.hierarchies == [v2] {
            // Pure v2: the joiner is born in the cgroup (CLONE_INTO_CGROUP).
            fds.append(try Sys.open("\(v2)/\(r.cgroup.relativePath)", O_PATH | O_DIRECTORY))
            dir = fds.count - 1
        } else if cgroupFDs {
            for f in try r.procsFilesForJoin() {
                fds.append(f)
                cg.append(fds.count - 1)
            }
        }
        let newCgroupNS = !enter && r.pins[.cgroup] == nil && r.flags & ContainerFlags.newCgroupNS != 0
        return (JoinPlan(userns: userIndex, namespaces: items, pidns: pidns, cgroups: cg, becomeRoot: userIndex != nil,
                         newCgroupNS: newCgroupNS, cgroupJoinRequest: !cgroupFDs, cgroupDir: dir), fds)
    }

    /// cgroup.join: move the asking process itself into the container's
    /// cgroups. A non-root caller's process must already be in the
    /// container's user namespace (a setuid-root program it might exec
    /// there gains nothing: its owner is not mapped) and run only as the
    /// caller's uid. The process is pinned by ptrace for the move, so that
    /// its pid cannot pass to a stranger between the check and the writes.
    func cgroupJoin(_ r: ContainerRecord, _ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        guard r.state == .running || (r.state == .created && r.forkingConnection != nil) else {
            throw r.err(.dead, "cgroup.join", r.state == .created ? "no init is being started" : "its init has exited")
        }
        guard !r.adopted else { throw r.err(.invalidArgument, "cgroup.join", "an adopted container's cgroup is another runtime's") }
        var userns: UInt64 = 0
        if conn.uid != 0 {
            guard let ino = r.namespaceInodes[.user], r.pins[.user] != nil else {
                throw r.err(.permission, "cgroup.join", "uid \(conn.uid) may join only a container with a user namespace")
            }
            userns = ino
        }
        guard let peer = Pidfd.ofPeer(conn.fd.raw) else {
            throw r.err(.system, "cgroup.join", "SO_PEERPIDFD: \(errnoDescription(errno))", errno: errno)
        }
        guard let pid = peer.pid else { throw r.err(.dead, "cgroup.join", "the asking process has exited", errno: ESRCH) }
        if conn.uid != 0 {
            guard ProcInfo.runsOnlyAs(pid: pid, conn.uid) else {
                throw r.err(.permission, "cgroup.join", "the asking process does not run only as uid \(conn.uid)")
            }
        }
        let files = try r.procsFilesForJoin()
        let raws = files.map(\.raw)
        let rc = withExtendedLifetime(files) {
            raws.withUnsafeBufferPointer { ccs_cgroup_move_pinned(pid, peer.raw, $0.baseAddress, CInt($0.count), userns) }
        }
        if rc < 0 {
            let e = errno
            let why: String
            switch e {
            case EPERM: why = "the asking process is not in the container's user namespace, or cannot be pinned (traced already?)"
            case ESRCH: why = "the asking process exited"
            default: why = errnoDescription(e)
            }
            throw r.err(ContainerError.codeFor(e), "cgroup.join", why, errno: e)
        }
        return Reply(.ok())
    }

    /// fork.commit: the caller's new init, checked before it is believed: a
    /// live pidfd of the named pid, in the container's cgroup, and pid 1 of
    /// its own pid namespace when the container has one.
    func forkAbort(_ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        if let r = conn.forking, r.forkingConnection == ObjectIdentifier(conn) {
            r.forkingConnection = nil
        }
        conn.forking = nil
        return Reply(.ok())
    }

    func forkCommit(_ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        guard let r = conn.forking, r.forkingConnection == ObjectIdentifier(conn) else {
            throw ContainerError(.invalidArgument, "fork.commit without fork.prepare")
        }
        conn.forking = nil
        r.forkingConnection = nil
        // The pidfd comes last (a container fd may come first).
        guard let pidfdFD = fds.last, let pid = m.int("pid").flatMap({ pid_t(exactly: $0) }) else {
            throw r.err(.invalidArgument, "fork_into_container", "commit without the init's pidfd")
        }
        if fds.count == 2 {
            guard (try? record(for: fds.first, action: "fork.commit")) === r else {
                throw r.err(.invalidArgument, "fork_into_container", "the container fd is not this container's")
            }
        }
        let pidfd = Pidfd(pidfdFD)
        // A pidfd whose process has already exited (a short init; the
        // commit is posted, and the caller may have reaped it since): its
        // cgroup and pid namespace can no longer be read, and nothing is left
        // to act on. The container's start happened and ended. (Whoever
        // fakes this only ends the start of a container it holds.)
        func endedAlready() -> Reply {
            r.initPid = pid
            r.initPidfd = pidfd
            r.state = .running
            initExited(r)
            return Reply(.ok())
        }
        /// Exited, or exiting (its cgroup and namespaces already read back as left).
        func exited() -> Bool { pidfd.hasExited || ProcInfo.isExiting(pid: pid) }
        switch pidfd.task {
        case .gone: return endedAlready()
        case .notAPidfd: throw r.err(.invalidArgument, "fork_into_container", "the fd is not a pidfd")
        case .alive(let seen) where seen != pid:
            throw r.err(.invalidArgument, "fork_into_container", "pidfd is of pid \(seen), not \(pid)")
        case .alive: break
        }
        guard ProcInfo.isInCgroup(pid: pid, r.cgroup) else {
            if exited() { return endedAlready() }
            let seenCgroups = ((try? Sys.readFile("/proc/\(pid)/cgroup")) ?? "").split(separator: "\n").joined(separator: " ")
            throw r.err(.permission, "fork_into_container", "process \(pid) is not in the container's cgroup (its cgroups: \(seenCgroups))")
        }
        if r.flags & ContainerFlags.newPIDNS != 0 && r.pins[.pid] == nil {
            guard ProcInfo.innermostPid(pid: pid) == 1 else {
                if exited() { return endedAlready() }
                throw r.err(.permission, "fork_into_container", "process \(pid) is not pid 1 of a new pid namespace")
            }
        }
        // The namespaces born with init, opened through /proc and trusted
        // once the pidfd shows the process still alive afterwards.
        var born: [(NamespaceKind, OwnedFD)] = []
        for (kind, flag) in [(NamespaceKind.pid, ContainerFlags.newPIDNS), (.cgroup, ContainerFlags.newCgroupNS)]
            where r.pins[kind] == nil && r.flags & flag != 0 {
            guard let fd = try? Sys.open("/proc/\(pid)/ns/\(kind.rawValue)", O_RDONLY) else {
                if exited() { return endedAlready() }
                throw r.err(.dead, "fork_into_container", "process \(pid): its \(kind.rawValue) namespace cannot be opened")
            }
            born.append((kind, fd))
        }
        guard pidfd.names(pid), ProcInfo.isInCgroup(pid: pid, r.cgroup) else {
            if exited() { return endedAlready() }
            throw r.err(.dead, "fork_into_container", "process \(pid) left the container's cgroup while it was registered")
        }
        let startTime = ProcInfo.startTime(pid: pid) ?? 0
        crashPoint("fork")
        for (kind, fd) in born { try setNamespace(r, kind, fd) }
        crashPoint("fork")
        r.initPid = pid
        r.initStartTime = startTime
        r.initPidfd = pidfd
        r.state = .running
        try loop.watch(pidfd.raw) { [weak self, weak r] _ in if let self, let r { self.initExited(r) } }
        try persistence.save(r)
        crashPoint("fork")
        logger.info("container \"\(RequestRules.escaped(r.name))\": init is pid \(pid)")
        return Reply(.ok())
    }
}

extension Broker {
    /// What an upcall's program (a key request's request-key, a core
    /// handler) may hold in r: no more than its init — init's capability
    /// bounding set (root's exec gets exactly it) and its no_new_privs, read
    /// through /proc while init's pidfd still names it. An init under a
    /// seccomp filter is refused: ctrobjd cannot hand the same filter to the
    /// program, and without it the program could do what no process of the
    /// container can.
    func upcallPrivilege(_ r: ContainerRecord) throws -> JoinPlan.PrivilegeLimit {
        guard let pidfd = r.initPidfd, r.initPid > 0, pidfd.names(r.initPid),
              let status = ProcInfo.statusFields(pid: r.initPid, ["CapBnd", "NoNewPrivs", "Seccomp"]), pidfd.names(r.initPid) else {
            throw r.err(.dead, "upcall", "its init is not running")
        }
        guard let bounding = status["CapBnd"]?.first.flatMap({ UInt64($0, radix: 16) }) else {
            throw r.err(.system, "upcall", "no CapBnd in /proc/\(r.initPid)/status")
        }
        let noNewPrivs = status["NoNewPrivs"]?.first == "1"
        let seccomp = status["Seccomp"]?.first ?? "0"
        guard seccomp == "0" else {
            throw r.err(.permission, "upcall", "its init runs under a seccomp filter (mode \(seccomp)), which ctrobjd cannot give the upcall's program")
        }
        return JoinPlan.PrivilegeLimit(capBounding: bounding, noNewPrivs: noNewPrivs)
    }
}
