import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

extension Broker {
    func handle(_ m: Message, fds: [OwnedFD], conn: ClientConnection) throws -> Reply {
        switch m.op {
        case Op.create:
            var reply = try create(m, conn: conn)
            // "prepare": create and fork.prepare in one request, for a caller
            // that starts init right away (Container.run); the container fd
            // comes first, the plan's fds after it.
            if m["prepare"] == "1", let r = byName[m["name"] ?? ""] {
                let prepared = try forkPrepare(r, mode: "init", conn: conn)
                reply.message.fields.merge(prepared.message.fields) { a, _ in a }
                reply.fds += prepared.fds
            }
            return reply
        case Op.open: return try openByName(m, conn: conn)
        case Op.list: return list(conn: conn)
        case Op.adopt: return try adopt(m, pidfd: fds.first, conn: conn)
        case Op.forkCommit: return try forkCommit(m, fds: fds, conn: conn)
        case Op.forkAbort:
            if let r = conn.forking, r.forkingConnection == ObjectIdentifier(conn) {
                r.forkingConnection = nil
                conn.forking = nil
            }
            return Reply(.ok())
        default: break
        }
        let r = try record(for: fds.first, action: m.op)
        switch m.op {
        case Op.status:
            refreshExitStatus(r)
            return Reply(.ok(r.statusFields))
        case Op.forkPrepare: return try forkPrepare(r, mode: m["mode"] ?? "init", conn: conn)
        case Op.socket: return try socketIn(r, m)
        case Op.root:
            try requireAlive(r, "container_openat")
            // A root caller acts on the container's files as the container's
            // root: a user-ns-owned filesystem has no host root to write as.
            var f: [String: String] = [:]
            if r.namespaces[.user] != nil {
                f["fsuid"] = "\(r.rootHostID)"
                f["fsgid"] = "\(r.rootHostID)"
            }
            return Reply(.ok(f), [try rootFD(r)])
        case Op.mount: return try mountIn(r, m, source: fds.count > 1 ? fds[1] : nil)
        case Op.setns: return try shareNamespaces(r, m, source: fds.count > 1 ? fds[1] : nil, conn: conn)
        case Op.limit:
            try requireAlive(r, "container_set_limit")
            guard let which = m.int("which"), let limit = CgroupSet.Limit(rawValue: which), let value = m.int64("value") else {
                throw r.err(.invalidArgument, "container_set_limit", "unknown limit \(m["which"] ?? "?")")
            }
            do { try r.cgroup.setLimit(limit, value) } catch let e as ContainerError {
                throw r.err(ContainerError.codeFor(e.errno), "container_set_limit", e.message, errno: e.errno)
            }
            return Reply(.ok())
        case Op.stats:
            let s = r.cgroup.stats()
            return Reply(.ok(["memory": "\(s.memoryBytes)", "pids": "\(s.pids)", "cpu": "\(s.cpuUsageNanos)"]))
        case Op.freeze, Op.thaw:
            let action = m.op == Op.freeze ? "container_freeze" : "container_thaw"
            try requireAlive(r, action)
            do { try r.cgroup.setFrozen(m.op == Op.freeze) } catch let e as ContainerError {
                throw r.err(ContainerError.codeFor(e.errno), action, e.message, errno: e.errno)
            }
            return Reply(.ok())
        case Op.kill:
            try requireAlive(r, "container_kill")
            guard let sig = m.int("signal"), sig > 0, sig < 65 else {
                throw r.err(.invalidArgument, "container_kill", "invalid signal \(m["signal"] ?? "?")")
            }
            r.cgroup.signalAll(CInt(sig))
            return Reply(.ok())
        case Op.policy:
            if conn.uid != 0 && conn.uid != r.owner {
                throw r.err(.permission, "policy", "only its owner (uid \(r.owner)) or root may set its upcall policy")
            }
            if let core = m["core"] {
                guard ["file", "drop"].contains(core) || (core.hasPrefix("handler:/") && core.count > 9) else {
                    throw r.err(.invalidArgument, "policy", "core policy must be file, drop or handler:/absolute/path/inside")
                }
                r.corePolicy = core
            }
            if let modules = m["modules"] {
                // Loading a module changes the host kernel: only root may allow it.
                guard conn.uid == 0 else {
                    throw r.err(.permission, "policy", "only root may allow a container to load modules")
                }
                let list = modules.split(separator: ",").map(String.init)
                guard list.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isLetter || $0.isNumber || "-_".contains($0) } }) else {
                    throw r.err(.invalidArgument, "policy", "module names are letters, digits, '-' and '_'")
                }
                r.allowedModules = list
            }
            if let devices = m["devices"] {
                // A grant shows host device events to the container: only root may give one.
                guard conn.uid == 0 else {
                    throw r.err(.permission, "policy", "only root may grant a container a host device's uevents")
                }
                let list = devices.split(separator: ",").map(String.init)
                guard list.allSatisfy(UeventForwarding.validDeviceName) else {
                    throw r.err(.invalidArgument, "policy",
                                "device names are kernel names (DEVNAME below /dev, or an interface): letters, digits, '-_.:+@' and '/'")
                }
                r.grantedDevices = list
                forgetUeventTarget(r)
                learnDevicePaths(list)
            }
            try persistence.save(r)
            if m["devices"] != nil { updateUeventMonitor() }
            return Reply(.ok(["core": r.corePolicy, "modules": r.allowedModules.joined(separator: ","),
                              "devices": r.grantedDevices.joined(separator: ",")]))
        case Op.destroy:
            if conn.uid != 0 && conn.uid != r.owner {
                throw r.err(.permission, "container_destroy", "only its owner (uid \(r.owner)) or root may destroy it")
            }
            destroy(r)
            return Reply(.ok())
        default:
            throw ContainerError(.invalidArgument, "unknown request \"\(m.op)\"", errno: EOPNOTSUPP)
        }
    }

    func requireAlive(_ r: ContainerRecord, _ action: String) throws {
        if r.state == .exited { throw r.err(.dead, action, "its init has exited") }
    }

    // MARK: create, open, list

    func create(_ m: Message, conn: ClientConnection) throws -> Reply {
        let name = m["name"] ?? ""
        guard let flagsInt = m.uint64("flags"), flagsInt <= UInt64(UInt32.max) else {
            throw ContainerError(.invalidArgument, "container_create: flags missing")
        }
        let flags = UInt32(flagsInt)
        try Creator.validate(name: name, flags: flags)
        if byName[name] != nil {
            throw ContainerError(.exists, "container \"\(name)\": container_create: the name is taken")
        }
        if conn.uid != 0 && flags & ContainerFlags.newUserNS == 0 {
            throw ContainerError(.permission,
                "container \"\(name)\": container_create: uid \(conn.uid) is not root: an unprivileged caller must ask for CONTAINER_NEW_USER_NS")
        }
        if conn.uid == 0, let spare = takeSpare(flags: flags) {
            return try create(name: name, flags: flags, conn: conn, spare: spare)
        }
        let id = nextID
        nextID += 1
        let idBase: UInt32? = (conn.uid == 0 && flags & ContainerFlags.newUserNS != 0) ? try allocateIDBase() : nil
        let cgroup = CgroupSet(layout: config.cgroupLayout, relativePath: "\(config.cgroupParent)/c\(id)")
        do {
            try cgroup.create()
        } catch let e as ContainerError {
            try? cgroup.remove(timeoutMs: 0)
            throw ContainerError(e.code, "container \"\(name)\": container_create: cgroup: \(e.message)", errno: e.errno)
        }
        let r = ContainerRecord(id: id, name: name, flags: flags, owner: conn.uid, ownerGid: conn.gid,
                                createdAt: Sys.realtimeSeconds(), cgroup: cgroup)
        r.idBase = idBase
        do {
            let made = try Creator(config: config).makeNamespaces(
                name: name, flags: flags, creatorUID: conn.uid, creatorGID: conn.gid, idBase: idBase)
            try persistence.save(r)
            for (kind, fd) in made.namespaces { try setNamespace(r, kind, fd) }
            r.root = made.root
            return try finishCreate(r, conn: conn)
        } catch {
            unregister(r)
            persistence.remove(r)
            try? cgroup.remove(timeoutMs: 0)
            throw error
        }
    }

    /// create from a spare: everything but the record is made already.
    func create(name: String, flags: UInt32, conn: ClientConnection, spare s: Spare) throws -> Reply {
        let r = ContainerRecord(id: s.id, name: name, flags: flags, owner: conn.uid, ownerGid: conn.gid,
                                createdAt: Sys.realtimeSeconds(), cgroup: s.cgroup)
        r.idBase = s.idBase
        for (kind, fd) in s.namespaces {
            let ino = try Namespaces.inode(of: fd.raw)
            r.namespaces[kind] = fd
            r.namespaceInodes[kind] = ino
            if byNamespace[ino] == nil { byNamespace[ino] = r }
        }
        r.root = s.root
        do {
            return try finishCreate(r, conn: conn)
        } catch {
            unregister(r)
            persistence.remove(r)
            try? s.cgroup.remove(timeoutMs: 0)
            throw error
        }
    }

    func finishCreate(_ r: ContainerRecord, conn: ClientConnection) throws -> Reply {
        register(r)
        let fd = try issueFD(r)
        try persistence.save(r)
        if conn.uid == 0 { scheduleSpare(flags: r.flags) }
        logger.info("container \"\(r.name)\" (id \(r.id)) created, flags \(ContainerFlags.describe(r.flags)), owner uid \(conn.uid)")
        return Reply(.ok(["id": "\(r.id)"]), [fd])
    }

    /// ctrobj adopt: a running process of another runtime (unshare(1), crun)
    /// becomes a container: the namespaces it does not share with ctrobjd,
    /// its root, and its pidfd as the init. Root only.
    func adopt(_ m: Message, pidfd: OwnedFD?, conn: ClientConnection) throws -> Reply {
        let name = m["name"] ?? ""
        try Creator.validate(name: name, flags: 0)
        guard conn.uid == 0 else { throw ContainerError(.permission, "container \"\(name)\": adopt: only root may adopt processes") }
        if byName[name] != nil { throw ContainerError(.exists, "container \"\(name)\": adopt: the name is taken") }
        guard let pidfd else { throw ContainerError(.invalidArgument, "container \"\(name)\": adopt: no pidfd") }
        let pid = ccs_pidfd_pid(pidfd.raw)
        guard pid > 0 else { throw ContainerError(.dead, "container \"\(name)\": adopt: the process has exited") }
        let me = getpid()
        var found: [NamespaceKind: OwnedFD] = [:]
        for kind in NamespaceKind.allCases {
            guard let fd = try? Sys.open("/proc/\(pid)/ns/\(kind.rawValue)", O_RDONLY),
                  let ino = try? Namespaces.inode(of: fd.raw), ino != Namespaces.inode(pid: me, kind: kind) else { continue }
            found[kind] = fd
        }
        let root = try Sys.open("/proc/\(pid)/root", O_PATH | O_DIRECTORY)
        var cgroupPath = ""
        for line in ((try? Sys.readFile("/proc/\(pid)/cgroup")) ?? "").split(separator: "\n") where line.hasPrefix("0::") {
            cgroupPath = String(line.dropFirst(4))
        }
        let rootUID = (try? Sys.readFile("/proc/\(pid)/uid_map"))?.split(whereSeparator: { $0 == " " || $0 == "\n" })
        let startTime = ProcInfo.startTime(pid: pid) ?? 0
        // Everything above was read while the pidfd pinned the process: check it still is that process.
        guard ccs_pidfd_pid(pidfd.raw) == pid else { throw ContainerError(.dead, "container \"\(name)\": adopt: the process exited meanwhile") }
        guard !found.isEmpty else {
            throw ContainerError(.invalidArgument, "container \"\(name)\": adopt: process \(pid) shares every namespace with the host")
        }
        var flags: UInt32 = 0
        let flagOf: [NamespaceKind: UInt32] = [.mnt: ContainerFlags.newFSNS, .cgroup: ContainerFlags.newCgroupNS, .uts: ContainerFlags.newUTSNS,
                                               .ipc: ContainerFlags.newIPCNS, .user: ContainerFlags.newUserNS, .pid: ContainerFlags.newPIDNS,
                                               .net: ContainerFlags.newNetNS, .time: ContainerFlags.newTimeNS]
        for k in found.keys { flags |= flagOf[k] ?? 0 }
        let id = nextID
        nextID += 1
        let r = ContainerRecord(id: id, name: name, flags: flags, owner: 0, ownerGid: 0, createdAt: Sys.realtimeSeconds(),
                                cgroup: CgroupSet(layout: config.cgroupLayout, relativePath: cgroupPath))
        r.adopted = true
        if found[.user] != nil, let words = rootUID, words.count >= 2, words[0] == "0" { r.adoptedRootUID = UInt32(words[1]) }
        r.root = found[.mnt] != nil ? root : nil
        r.initPid = pid
        r.initStartTime = startTime
        r.state = .running
        do {
            try persistence.save(r)
            for (k, fd) in found { try setNamespace(r, k, fd) }
            r.initPidfd = pidfd
            register(r)
            try loop.watch(pidfd.raw) { [unowned self, unowned r] _ in self.initExited(r) }
            try persistence.save(r)
            let fd = try issueFD(r)
            try persistence.save(r)
            logger.info("container \"\(name)\" (id \(id)) adopted from pid \(pid): \(ContainerFlags.describe(flags))")
            return Reply(.ok(["id": "\(id)"]), [fd])
        } catch {
            unregister(r)
            persistence.remove(r)
            throw error
        }
    }

    func openByName(_ m: Message, conn: ClientConnection) throws -> Reply {
        let name = m["name"] ?? ""
        guard let r = byName[name] else {
            throw ContainerError(.notFound, "container \"\(name)\": container_open: no such container")
        }
        if conn.uid != 0 && conn.uid != r.owner {
            throw r.err(.permission, "container_open", "owned by uid \(r.owner); uid \(conn.uid) may not open it")
        }
        let fd = try issueFD(r)
        try? persistence.save(r)
        return Reply(.ok(["id": "\(r.id)"]), [fd])
    }

    func list(conn: ClientConnection) -> Reply {
        var f: [String: String] = [:]
        var n = 0
        for r in byID.values.sorted(by: { $0.id < $1.id }) where conn.uid == 0 || conn.uid == r.owner {
            refreshExitStatus(r)
            for (k, v) in r.statusFields { f["\(n).\(k)"] = v }
            n += 1
        }
        f["count"] = "\(n)"
        return Reply(.ok(f))
    }

    // MARK: fork_into_container and entering

    func forkPrepare(_ r: ContainerRecord, mode: String, conn: ClientConnection) throws -> Reply {
        let enter = mode == "enter"
        if enter {
            guard r.state == .running else {
                throw r.err(.dead, "exec", r.state == .created ? "no init is running yet" : "its init has exited")
            }
        } else {
            if r.state != .created || r.forkingConnection != nil {
                throw r.err(.busy, "fork_into_container", "init already started")
            }
        }
        let (plan, fds) = try joinPlan(r, enter: enter)
        if !enter {
            r.forkingConnection = ObjectIdentifier(conn)
            conn.forking = r
        }
        return Reply(.ok(plan.fields), fds)
    }

    /// What joining the container takes: its namespaces (user first), its
    /// pid namespace (joined, or new for a first init), its cgroup.procs files.
    func joinPlan(_ r: ContainerRecord, enter: Bool) throws -> (JoinPlan, [OwnedFD]) {
        var fds: [OwnedFD] = []
        func add(_ fd: OwnedFD) throws -> Int {
            fds.append(try fd.duplicate())
            return fds.count - 1
        }
        let userIndex = try r.namespaces[.user].map(add)
        var items: [(NamespaceKind, Int)] = []
        for kind in [NamespaceKind.mnt, .uts, .ipc, .net, .cgroup, .time] {
            if let fd = r.namespaces[kind] { items.append((kind, try add(fd))) }
        }
        var pidns = JoinPlan.PidNS.none
        if let p = r.namespaces[.pid] {
            pidns = .join(try add(p))
        } else if !enter && r.flags & ContainerFlags.newPIDNS != 0 {
            pidns = .new
        }
        var cg: [Int] = []
        for f in try r.procsFilesForJoin() {
            fds.append(f)
            cg.append(fds.count - 1)
        }
        let newCgroupNS = !enter && r.namespaces[.cgroup] == nil && r.flags & ContainerFlags.newCgroupNS != 0
        return (JoinPlan(userns: userIndex, namespaces: items, pidns: pidns, cgroups: cg, becomeRoot: userIndex != nil,
                         newCgroupNS: newCgroupNS), fds)
    }

    func forkCommit(_ m: Message, fds: [OwnedFD], conn: ClientConnection) throws -> Reply {
        guard let r = conn.forking, r.forkingConnection == ObjectIdentifier(conn) else {
            throw ContainerError(.invalidArgument, "fork.commit without fork.prepare")
        }
        conn.forking = nil
        r.forkingConnection = nil
        // The pidfd comes last (a container fd may come first).
        guard let pidfd = fds.last, let pid = m.int("pid") else {
            throw r.err(.invalidArgument, "fork_into_container", "commit without the init's pidfd")
        }
        let seen = ccs_pidfd_pid(pidfd.raw)
        guard seen == pid_t(pid) || seen == -1 else {
            throw r.err(.invalidArgument, "fork_into_container", "pidfd is of pid \(seen), not \(pid)")
        }
        r.initPid = pid_t(pid)
        r.initStartTime = ProcInfo.startTime(pid: r.initPid) ?? 0
        // The namespaces born with init: opened through /proc, trusted once
        // the pidfd shows the process still alive afterwards.
        for (kind, flag) in [(NamespaceKind.pid, ContainerFlags.newPIDNS), (.cgroup, ContainerFlags.newCgroupNS)]
            where r.namespaces[kind] == nil && r.flags & flag != 0 {
            if let ns = try? Sys.open("/proc/\(pid)/ns/\(kind.rawValue)", O_RDONLY), ccs_pidfd_pid(pidfd.raw) == pid_t(pid) {
                try? setNamespace(r, kind, ns)
            }
        }
        r.initPidfd = pidfd
        r.state = .running
        try loop.watch(pidfd.raw) { [unowned self, unowned r] _ in self.initExited(r) }
        try? persistence.save(r)
        logger.info("container \"\(r.name)\": init is pid \(pid)")
        return Reply(.ok())
    }

    // MARK: sockets, root, mounts, shared namespaces

    func socketIn(_ r: ContainerRecord, _ m: Message) throws -> Reply {
        try requireAlive(r, "container_socket")
        guard let domain = m.int("domain"), let type = m.int("type"), let proto = m.int("protocol") else {
            throw r.err(.invalidArgument, "container_socket", "domain, type and protocol are required")
        }
        let s: CInt
        if let net = r.namespaces[.net] {
            s = ccs_socket_in_netns(net.raw, CInt(domain), CInt(type), CInt(proto))
        } else {
            s = socket(CInt(domain), CInt(type) | CInt(SOCK_CLOEXEC.rawValue), CInt(proto))
        }
        if s < 0 {
            let e = errno
            throw r.err(ContainerError.codeFor(e), "container_socket", errnoDescription(e), errno: e)
        }
        return Reply(.ok(), [OwnedFD(s)])
    }

    func rootFD(_ r: ContainerRecord) throws -> OwnedFD {
        if let root = r.root { return try root.duplicate() }
        return try Sys.open("/", O_PATH | O_DIRECTORY)
    }

    func mountIn(_ r: ContainerRecord, _ m: Message, source: OwnedFD?) throws -> Reply {
        try requireAlive(r, "container_mount")
        guard let mnt = r.namespaces[.mnt] else {
            throw r.err(.invalidArgument, "container_mount", "it has no mount namespace of its own; mounting would change the host")
        }
        let target = m["target"] ?? ""
        guard target.hasPrefix("/") else { throw r.err(.invalidArgument, "container_mount", "target must be an absolute path inside the container") }
        let flags = UInt(m["flags"] ?? "0") ?? 0
        let msBind: UInt = 4096, msRec: UInt = 16384
        var stage: CInt = 0
        let rc: CInt
        if flags & msBind != 0 {
            guard let source else { throw r.err(.invalidArgument, "container_mount", "a bind mount needs its source") }
            let openTreeClone: UInt32 = 1, atRecursive: UInt32 = 0x8000, atEmptyPath: UInt32 = 0x1000
            let tree = ccs_open_tree(source.raw, "", openTreeClone | atEmptyPath | (flags & msRec != 0 ? atRecursive : 0))
            if tree < 0 {
                let e = errno
                throw r.err(ContainerError.codeFor(e), "container_mount", "open_tree \(m["source"] ?? ""): \(errnoDescription(e))", errno: e)
            }
            let treeFD = OwnedFD(tree)
            rc = ccs_mount_in_container(-1, mnt.raw, -1, treeFD.raw, nil, target, nil, 0, nil, &stage)
        } else {
            let fstype = m["fstype"] ?? ""
            guard !fstype.isEmpty else { throw r.err(.invalidArgument, "container_mount", "fstype is required unless MS_BIND") }
            var pidns: CInt = -1
            if fstype == "proc" && r.flags & ContainerFlags.newPIDNS != 0 {
                guard let p = r.namespaces[.pid] else {
                    throw r.err(.invalidArgument, "container_mount", "proc shows a pid namespace, and this one is born with init: start init first")
                }
                pidns = p.raw
            }
            let data = m["data"] ?? ""
            rc = ccs_mount_in_container(r.namespaces[.user]?.raw ?? -1, mnt.raw, pidns, -1,
                                        m["source"] ?? fstype, target, fstype, flags, data.isEmpty ? nil : data, &stage)
        }
        if rc < 0 {
            let e = errno
            throw r.err(ContainerError.codeFor(e), "container_mount", "\(target): \(stageName(stage)): \(errnoDescription(e))", errno: e)
        }
        return Reply(.ok())
    }

    func shareNamespaces(_ r: ContainerRecord, _ m: Message, source: OwnedFD?, conn: ClientConnection) throws -> Reply {
        guard r.state == .created, r.forkingConnection == nil else {
            throw r.err(.busy, "container_set_ns", "init already started; namespaces are fixed")
        }
        guard let source else { throw r.err(.invalidArgument, "container_set_ns", "no source fd") }
        let mask = Int32(truncatingIfNeeded: m.int("nstypes") ?? 0)
        let kinds = NamespaceKind.kinds(inMask: mask)
        let allowed: Set<NamespaceKind> = [.net, .ipc, .uts, .pid, .cgroup, .time]
        guard !kinds.isEmpty, kinds.allSatisfy(allowed.contains),
              mask & ~kinds.reduce(0, { $0 | $1.cloneFlag }) == 0 else {
            throw r.err(.invalidArgument, "container_set_ns",
                        "nstypes must be CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWPID, CLONE_NEWCGROUP or CLONE_NEWTIME")
        }
        var found: [(NamespaceKind, OwnedFD)] = []
        var st = stat()
        _ = fstat(source.raw, &st)
        if (st.st_mode & S_IFMT) == S_IFSOCK, let other = byCookie[Sys.socketCookie(source.raw)] {
            for k in kinds {
                guard let fd = other.namespaces[k] else {
                    throw r.err(.invalidArgument, "container_set_ns", "container \"\(other.name)\" has no \(k.rawValue) namespace of its own")
                }
                found.append((k, try fd.duplicate()))
            }
        } else if let kind = Namespaces.kind(of: source.raw) {
            guard kinds == [kind] else {
                throw r.err(.invalidArgument, "container_set_ns", "the fd is a \(kind.rawValue) namespace; nstypes must name exactly that")
            }
            found.append((kind, try source.duplicate()))
        } else {
            let pid = ccs_pidfd_pid(source.raw)
            guard pid > 0 else {
                throw r.err(.invalidArgument, "container_set_ns", "source is neither a container fd, a live pidfd nor a namespace fd")
            }
            if conn.uid != 0 {
                let uid = ProcInfo.statusField(pid: pid, "Uid")?.first.flatMap { uid_t($0) }
                guard uid == conn.uid else {
                    throw r.err(.permission, "container_set_ns", "process \(pid) belongs to another user")
                }
            }
            for k in kinds {
                let fd = try Sys.open("/proc/\(pid)/ns/\(k.rawValue)", O_RDONLY)
                found.append((k, fd))
            }
            guard ccs_pidfd_pid(source.raw) == pid else {
                throw r.err(.dead, "container_set_ns", "process \(pid) exited while its namespaces were opened")
            }
        }
        for (k, fd) in found { try setNamespace(r, k, fd) }
        try persistence.save(r)
        return Reply(.ok())
    }
}
