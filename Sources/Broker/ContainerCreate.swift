import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// container_create, adopt, container_open and list: the requests that make
/// or find a container by name.
///
/// The order of create is what keeps it crash-consistent (Persistence.swift):
/// cgroup, namespaces, pins in c<id>/ns, and only then the record; a crash
/// before the record leaves a directory without one, which the next start
/// removes with its cgroup.
extension Broker {
    /// fds one create may open here for a while: namespaces (up to 8), its
    /// root, its cgroup.procs files (one per hierarchy, for one join), a
    /// daemon end, init's pidfd. Creates are refused while fewer than this
    /// many fds (and a reserve for connections and work) are left under
    /// RLIMIT_NOFILE. Between requests a container keeps only its daemon
    /// ends and init's pidfd (Broker.touchFDCache).
    static let fdsPerContainer = 24
    static let fdReserve = 64

    /// create. Root's holder runs here, on the loop (it is root's own
    /// process: nobody else can stop it). An unprivileged creator's holder
    /// becomes that user, who could stop it (SIGSTOP) and so hold the loop:
    /// its namespaces are made on a worker and the answer comes later.
    func createRequest(_ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        let pending = try startCreate(m, conn: conn)
        if let spare = pending.spare {
            return try withPrepare(m, conn, create(name: pending.name, flags: pending.flags, conn: conn, spare: spare))
        }
        if conn.uid == 0 {
            let made = Result { try makeNamespaces(pending, conn: conn) }
            return try withPrepare(m, conn, finishCreate(pending, made, conn: conn))
        }
        let config = self.config
        return answerLater(conn, { Result { try Creator(config: config).makeNamespaces(
            name: pending.name, flags: pending.flags, creatorUID: conn.uid, creatorGID: conn.gid, idBase: pending.idBase) } },
            then: { made in
                do {
                    return try self.withPrepare(m, conn, self.finishCreate(pending, made, conn: conn))
                } catch let e as ContainerError {
                    return Reply(Message.error(e))
                } catch {
                    return Reply(Message.error(ContainerError(.system, "\(error)")))
                }
            })
    }

    /// "prepare": create and fork.prepare in one request, for a caller that
    /// starts init right away (Container.run); the container fd comes
    /// first, the plan's fds after it.
    func withPrepare(_ m: Message, _ conn: ClientConnection, _ created: Reply) throws -> Reply {
        var reply = created
        if m["prepare"] == "1", let r = byName[m["name"] ?? ""], !conn.closed {
            let prepared = try forkPrepare(r, mode: "init", conn: conn)
            reply.message.fields.merge(prepared.message.fields) { a, _ in a }
            reply.fds += prepared.fds
        }
        return reply
    }

    /// Refuse a new container for a uid at its limit, or when ctrobjd is
    /// short of fds (the lowest free fd number says how many are in use).
    func admit(uid: uid_t, name: String, action: String) throws {
        let who = principal(uid)
        if uid != 0 && (containersPerUID[who] ?? 0) + (creatingPerUID[who] ?? 0) >= config.maxContainersPerUID {
            throw ContainerError(.busy,
                "container \"\(name)\": \(action): uid \(uid) has \(config.maxContainersPerUID) containers, its limit (ctrobjd --max-containers-per-uid)",
                errno: EDQUOT)
        }
        try requireFDHeadroom(name, action, Self.fdsPerContainer)
    }

    /// Refuse work that needs fds when fewer than `need` and a reserve are
    /// left under RLIMIT_NOFILE (the lowest free fd number says how many
    /// are in use).
    func requireFDHeadroom(_ name: String, _ action: String, _ need: Int = 1) throws {
        var lim = rlimit()
        _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim)
        let probe = dup(0)
        if probe >= 0 { close(probe) }
        if probe < 0 || UInt64(probe) + UInt64(need + Self.fdReserve) > UInt64(lim.rlim_cur) {
            throw ContainerError(.system,
                "container \"\(RequestRules.escaped(name))\": \(action): ctrobjd is near its file descriptor limit (\(lim.rlim_cur)); destroy containers or raise it",
                errno: EMFILE)
        }
    }

    /// What create decided before the namespaces are made; its name and
    /// its place under the owner's limit are held until it finishes.
    struct PendingCreate: Sendable {
        let id: UInt64
        let name: String
        let flags: UInt32
        let idBase: UInt32?
        let cgroup: CgroupSet
        var spare: Spare?
    }

    func startCreate(_ m: Message, conn: ClientConnection) throws -> PendingCreate {
        let name = m["name"] ?? ""
        guard let flags = m.uint64("flags").flatMap({ UInt32(exactly: $0) }) else {
            throw ContainerError(.invalidArgument, "container_create: flags missing")
        }
        try Creator.validate(name: name, flags: flags)
        if byName[name] != nil || creating.contains(name) {
            throw ContainerError(.exists, "container \"\(name)\": container_create: the name is taken")
        }
        if conn.uid != 0 && flags & ContainerFlags.newUserNS == 0 {
            throw ContainerError(.permission,
                "container \"\(name)\": container_create: uid \(conn.uid) is not root: an unprivileged caller must ask for CONTAINER_NEW_USER_NS")
        }
        let requestedCgroup = try requestedCgroupPath(m, conn: conn, name: name)
        try admit(uid: conn.uid, name: name, action: "container_create")
        if conn.uid == 0, requestedCgroup == nil, let spare = takeSpare(flags: flags) {
            return PendingCreate(id: spare.id, name: name, flags: flags, idBase: spare.idBase, cgroup: spare.cgroup, spare: spare)
        }
        let id = nextID
        nextID += 1
        let idBase: UInt32? = (conn.uid == 0 && flags & ContainerFlags.newUserNS != 0) ? try allocateIDBase() : nil
        let cgroup: CgroupSet
        if let requestedCgroup {
            cgroup = try makeRequestedCgroup(requestedCgroup, id: id, name: name)
        } else {
            cgroup = CgroupSet(layout: config.cgroupLayout, relativePath: "\(config.cgroupParent)/c\(id)")
        }
        do {
            if requestedCgroup == nil { try cgroup.create() }
        } catch let e as ContainerError {
            try? cgroup.remove(timeoutMs: 0)
            throw ContainerError(e.code, "container \"\(name)\": container_create: cgroup: \(e.message)", errno: e.errno)
        }
        crashPoint("create")
        creating.insert(name)
        creatingPerUID[principal(conn.uid), default: 0] += 1
        if let idBase { reservedIDBases.insert(idBase) }
        return PendingCreate(id: id, name: name, flags: flags, idBase: idBase, cgroup: cgroup, spare: nil)
    }

    func makeNamespaces(_ p: PendingCreate, conn: ClientConnection) throws -> Creator.Made {
        try Creator(config: config).makeNamespaces(name: p.name, flags: p.flags, creatorUID: conn.uid, creatorGID: conn.gid, idBase: p.idBase)
    }

    /// The rest of create, on the loop: pins, then the record, then the fd.
    func finishCreate(_ p: PendingCreate, _ made: Result<Creator.Made, Error>, conn: ClientConnection) throws -> Reply {
        creating.remove(p.name)
        creatingPerUID[principal(conn.uid), default: 1] -= 1
        if creatingPerUID[principal(conn.uid)] == 0 { creatingPerUID.removeValue(forKey: principal(conn.uid)) }
        if let b = p.idBase { reservedIDBases.remove(b) }
        let r = ContainerRecord(id: p.id, name: p.name, flags: p.flags, owner: conn.uid, ownerGid: conn.gid,
                                createdAt: Sys.realtimeSeconds(), cgroup: p.cgroup)
        r.idBase = p.idBase
        do {
            let made = try made.get()
            crashPoint("create")
            try persistence.makeDirectory(r.directoryName)
            for (kind, fd) in made.namespaces { try setNamespace(r, kind, fd) }
            r.root = made.root
            crashPoint("create")
            return try finishCreate(r, conn: conn)
        } catch {
            discardUnfinished(r, removeCgroup: true)
            throw error
        }
    }

    /// create from a spare: everything but the record is made already.
    func create(name: String, flags: UInt32, conn: ClientConnection, spare s: Spare) throws -> Reply {
        let r = ContainerRecord(id: s.id, name: name, flags: flags, owner: conn.uid, ownerGid: conn.gid,
                                createdAt: Sys.realtimeSeconds(), cgroup: s.cgroup)
        r.idBase = s.idBase
        for (kind, fd) in s.namespaces {
            r.namespaces[kind] = fd
            r.namespaceInodes[kind] = try Namespaces.inode(of: fd.raw)
        }
        r.pins = s.pins
        r.root = s.root
        touchFDCache(r)
        crashPoint("create")
        do {
            return try finishCreate(r, conn: conn)
        } catch {
            discardUnfinished(r, removeCgroup: true)
            throw error
        }
    }

    func finishCreate(_ r: ContainerRecord, conn: ClientConnection) throws -> Reply {
        register(r)
        let fd = try issueFD(r, for: conn)
        try persistence.save(r)
        crashPoint("create")
        if conn.uid == 0 { scheduleSpare(flags: r.flags) }
        logger.info("container \"\(RequestRules.escaped(r.name))\" (id \(r.id)) created, flags \(ContainerFlags.describe(r.flags)), owner uid \(conn.uid)")
        return Reply(.ok(["id": "\(r.id)"]), [fd])
    }

    /// ctrobj adopt: a running process of another runtime (unshare(1), crun)
    /// becomes a container: the namespaces it does not share with ctrobjd,
    /// its root, and its pidfd as the init. Root only.
    func adopt(_ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        let name = m["name"] ?? ""
        try Creator.validate(name: name, flags: 0)
        guard conn.uid == 0 else { throw ContainerError(.permission, "container \"\(name)\": adopt: only root may adopt processes") }
        if byName[name] != nil || creating.contains(name) { throw ContainerError(.exists, "container \"\(name)\": adopt: the name is taken") }
        guard let pidfd = fds.first.map(Pidfd.init) else { throw ContainerError(.invalidArgument, "container \"\(name)\": adopt: no pidfd") }
        try admit(uid: conn.uid, name: name, action: "adopt")
        guard let pid = pidfd.pid else { throw ContainerError(.invalidArgument, "container \"\(name)\": adopt: the fd is not a pidfd of a live process") }
        var found: [NamespaceKind: OwnedFD] = [:]
        for kind in NamespaceKind.allCases {
            guard let fd = try? Sys.open("/proc/\(pid)/ns/\(kind.rawValue)", O_RDONLY),
                  let ino = try? Namespaces.inode(of: fd.raw), !isOwnNamespace(kind, ino) else { continue }
            found[kind] = fd
        }
        // Below the v2 root, without its leading "/" (as CgroupSet keeps it).
        let cgroupPath = String((ProcInfo.cgroupV2Path(pid: pid) ?? "").dropFirst())
        let rootUID = (try? Sys.readFile("/proc/\(pid)/uid_map"))?.split(whereSeparator: { $0 == " " || $0 == "\n" })
        let startTime = ProcInfo.startTime(pid: pid) ?? 0
        // Everything above was read while the pidfd pinned the process: check it still is that process.
        guard pidfd.names(pid) else { throw ContainerError(.dead, "container \"\(name)\": adopt: the process exited meanwhile") }
        guard !found.isEmpty else {
            throw ContainerError(.invalidArgument, "container \"\(name)\": adopt: process \(pid) shares every namespace with the host")
        }
        // A process whose own mount (else pid) namespace is already a
        // container's is that container: a second record would only shadow
        // it (an OCI hook run for a container that ctrobj-oci made).
        if let kind = [NamespaceKind.mnt, .pid].first(where: { found[$0] != nil }), let fd = found[kind],
           let ino = try? Namespaces.inode(of: fd.raw), let other = attribution.byNamespace[ino], other.state != .exited {
            throw ContainerError(.exists, "container \"\(name)\": adopt: process \(pid) is already in container \"\(RequestRules.escaped(other.name))\" (its \(kind.rawValue) namespace)")
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
        if found[.user] != nil, let words = rootUID, words.count >= 3, words[0] == "0" {
            r.adoptedRootUID = UInt32(words[1])
            r.adoptedIDCount = UInt32(words[2])
        }
        // Its root is found through its mount namespace when first needed
        // (rootFD), as for every record after the fd cache or a restart let
        // it go: not /proc/PID/root now, which before the runtime's
        // pivot_root (an OCI createRuntime hook adopts then) is the host's.
        r.root = nil
        r.initPid = pid
        r.initStartTime = startTime
        r.state = .running
        do {
            try persistence.makeDirectory(r.directoryName)
            for (k, fd) in found { try setNamespace(r, k, fd) }
            crashPoint("adopt")
            r.initPidfd = pidfd
            register(r)
            try loop.watch(r.initPidfd!.raw) { [weak self, weak r] _ in if let self, let r { self.initExited(r) } }
            try persistence.save(r)
            crashPoint("adopt")
            let fd = try issueFD(r, for: conn)
            try persistence.save(r)
            crashPoint("adopt")
            logger.info("container \"\(RequestRules.escaped(name))\" (id \(id)) adopted from pid \(pid): \(ContainerFlags.describe(flags))")
            return Reply(.ok(["id": "\(id)"]), [fd])
        } catch {
            discardUnfinished(r, removeCgroup: false)
            throw error
        }
    }

    func openByName(_ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        let name = m["name"] ?? ""
        guard let r = byName[name] else {
            throw ContainerError(.notFound, "container \"\(RequestRules.escaped(name))\": container_open: no such container")
        }
        if conn.uid != 0 && conn.uid != r.owner {
            throw r.err(.permission, "container_open", "owned by uid \(r.owner); uid \(conn.uid) may not open it")
        }
        let fd = try issueFD(r, for: conn)
        try? persistence.save(r)
        return Reply(.ok(["id": "\(r.id)"]), [fd])
    }

    /// One page of the caller's containers (root sees all), in id order,
    /// after the id `after`; `next` is set when more remain. A page stays
    /// well under the socket's buffer whatever the fields hold.
    func list(_ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        let after = m.uint64("after") ?? 0
        let compact = m["compact"] == "1"
        let budget = RequestRules.maxBytes / 2
        var f: [String: String] = [:]
        var n = 0, bytes = 0
        var last = after
        if listOrder.isEmpty { listOrder = byID.keys.sorted() }
        for id in listOrder[listOrder.partitionPoint { $0 <= after }...] {
            guard let r = byID[id], conn.uid == 0 || conn.uid == r.owner else { continue }
            refreshExitStatus(r)
            if compact {
                let line = ListEntry.encode(r.statusPairs)
                let size = line.utf8.count + 8
                if n > 0 && bytes + size > budget {
                    f["next"] = "\(last)"
                    break
                }
                f["\(n)"] = line
                n += 1
                bytes += size
                last = id
                continue
            }
            let entry = r.statusFields
            let size = entry.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count + 8 }
            if n > 0 && bytes + size > budget {
                f["next"] = "\(last)"
                break
            }
            for (k, v) in entry { f["\(n).\(k)"] = v }
            n += 1
            bytes += size
            last = id
        }
        f["count"] = "\(n)"
        return Reply(.ok(f))
    }
}

extension Array where Element == UInt64 {
    /// The index of the first element for which `belowOrAt` is false (the
    /// array is sorted, and `belowOrAt` true for a prefix).
    func partitionPoint(_ belowOrAt: (UInt64) -> Bool) -> Int {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if belowOrAt(self[mid]) { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
