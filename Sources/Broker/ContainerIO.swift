import CShim
import ContainerSystem
import ContainerWire
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// What a container fd reaches from outside: sockets in its network
/// namespace, its root directory, mounts into it, namespaces shared into it.
/// Each acts with no more authority than the caller has (docs/security.md):
/// sockets are made with the caller's credentials, filesystems are mounted
/// as the container's root inside its user namespace, and a non-root caller
/// may mount only into a container whose user namespace it owns.
extension Broker {
    /// container_socket: made in the container's network namespace (or, if
    /// it has none of its own, in ctrobjd's, the host's) by a thread that
    /// carries the caller's uid and gid: a raw or packet socket needs the
    /// caller's own CAP_NET_RAW over that namespace, as socket(2) would.
    func socketIn(_ r: ContainerRecord, _ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        try requireAlive(r, "container_socket")
        guard let domain = m.int("domain").flatMap({ CInt(exactly: $0) }),
              let type = m.int("type").flatMap({ CInt(exactly: $0) }),
              let proto = m.int("protocol").flatMap({ CInt(exactly: $0) }) else {
            throw r.err(.invalidArgument, "container_socket", "domain, type and protocol must be 32-bit integers")
        }
        let net = try namespaceFD(r, .net)
        let asRoot = conn.uid == 0
        let s = ccs_socket_as(net?.raw ?? -1, asRoot ? -1 : Int64(conn.uid), Int64(conn.gid), domain, type, proto)
        if s < 0 {
            let e = errno
            throw r.err(ContainerError.codeFor(e), "container_socket", errnoDescription(e), errno: e)
        }
        return Reply(.ok(), [OwnedFD(s)])
    }

    func rootRequest(_ r: ContainerRecord, _ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        try requireAlive(r, "container_openat")
        // A root caller acts on the container's files as the container's
        // root: with a user namespace that is a host id of its own, whose
        // map the library checks chown against (ContainerCalls).
        var f: [String: String] = [:]
        if r.pins[.user] != nil {
            f["fsuid"] = "\(r.rootHostID)"
            f["fsgid"] = "\(r.rootHostGID)"
            f["idcount"] = "\(r.idCount(config))"
        }
        return Reply(.ok(f), [try rootFD(r)])
    }

    func mountIn(_ r: ContainerRecord, _ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        try requireAlive(r, "container_mount")
        guard let mnt = try namespaceFD(r, .mnt) else {
            throw r.err(.invalidArgument, "container_mount", "it has no mount namespace of its own; mounting would change the host")
        }
        // A non-root caller mounts only where it could itself: in a mount
        // namespace owned by a user namespace it created.
        let ownsUserNS = r.pins[.user] != nil && r.owner == conn.uid && r.idBase == nil && !r.adopted
        guard conn.uid == 0 || ownsUserNS else {
            throw r.err(.permission, "container_mount",
                        "uid \(conn.uid) may mount only into a container whose user namespace it owns")
        }
        let target = m["target"] ?? ""
        guard target.hasPrefix("/") else { throw r.err(.invalidArgument, "container_mount", "target must be an absolute path inside the container") }
        guard let flags = m.uint64("flags").flatMap({ UInt(exactly: $0) }) ?? (m["flags"] == nil ? 0 : nil) else {
            throw r.err(.invalidArgument, "container_mount", "flags out of range")
        }
        let msBind = UInt(CCS_MS_BIND), msRec = UInt(CCS_MS_REC)
        if flags & msBind != 0 {
            guard fds.count > 1 else { throw r.err(.invalidArgument, "container_mount", "a bind mount needs its source") }
            let source = fds[1]
            if conn.uid != 0 {
                // Made as the owner could make it: its own copy of the host's
                // mounts (flags and submounts locked by the kernel, so they
                // cannot be remounted or peeled off inside), cloned there.
                let path = try Sys.readLink("/proc/self/fd/\(source.raw)")
                guard path.hasPrefix("/") else {
                    throw r.err(.invalidArgument, "container_mount", "the source is not reachable by a path (\(RequestRules.escaped(path)))")
                }
                let (user, mntFD, src) = (try namespaceFD(r, .user)?.duplicate(), try mnt.duplicate(), try source.duplicate())
                guard let user else { throw r.err(.permission, "container_mount", "no user namespace") }
                let (uid, gid) = (conn.uid, conn.gid)
                return answerLater(conn, { () -> (CInt, CInt, Int32) in
                    var stage: CInt = 0
                    let rc = ccs_bind_as_owner(uid, gid, user.raw, mntFD.raw, path, src.raw, target, &stage)
                    return (rc, stage, errno)
                }, then: { self.mountReply(r, target, $0) })
            }
            let recursive = flags & msRec != 0
            let tree = ccs_open_tree(source.raw, "", UInt32(CCS_OPEN_TREE_CLONE) | UInt32(CCS_AT_EMPTY_PATH)
                                                  | (recursive ? UInt32(CCS_AT_RECURSIVE) : 0))
            if tree < 0 {
                let e = errno
                throw r.err(ContainerError.codeFor(e), "container_mount", "open_tree \(RequestRules.escaped(m["source"] ?? "")): \(errnoDescription(e))", errno: e)
            }
            let treeFD = OwnedFD(tree)
            let mntFD = try mnt.duplicate()
            return answerLater(conn, { () -> (CInt, CInt, Int32) in
                var stage: CInt = 0
                let rc = ccs_mount_in_container(-1, mntFD.raw, -1, treeFD.raw, nil, target, nil, 0, nil, &stage)
                return (rc, stage, errno)
            }, then: { self.mountReply(r, target, $0) })
        } else {
            let fstype = m["fstype"] ?? ""
            guard !fstype.isEmpty else { throw r.err(.invalidArgument, "container_mount", "fstype is required unless MS_BIND") }
            var pidns: CInt = -1
            if fstype == "proc" && r.flags & ContainerFlags.newPIDNS != 0 {
                guard let p = try namespaceFD(r, .pid) else {
                    throw r.err(.invalidArgument, "container_mount", "proc shows a pid namespace, and this one is born with init: start init first")
                }
                pidns = p.raw
            }
            let data = m["data"] ?? ""
            let source = m["source"] ?? fstype
            // The fds the child needs, kept open until it is done.
            let userFD = try namespaceFD(r, .user)?.duplicate()
            let mntFD = try mnt.duplicate()
            let pidFD = pidns >= 0 ? try namespaceFD(r, .pid)?.duplicate() : nil
            return answerLater(conn, { () -> (CInt, CInt, Int32) in
                var stage: CInt = 0
                let rc = ccs_mount_in_container(userFD?.raw ?? -1, mntFD.raw, pidFD?.raw ?? -1, -1,
                                                source, target, fstype, flags, data.isEmpty ? nil : data, &stage)
                return (rc, stage, errno)
            }, then: { self.mountReply(r, target, $0) })
        }
    }

    /// A mount is made by a child inside the container, and a path there may
    /// be slow to resolve (a FUSE filesystem of the container's): the wait
    /// runs on a worker (answerLater), and the child is killed after
    /// CCS_MOUNT_TIMEOUT_MS.
    func mountReply(_ r: ContainerRecord, _ target: String, _ result: (CInt, CInt, Int32)) -> Reply {
        let (rc, stage, e) = result
        if rc >= 0 && target.split(separator: "/").allSatisfy({ $0 == "." }) {
            // A mount over "/" (an OCI runtime's rootfs) is the container's
            // root from now on (setns follows mounts stacked on the root):
            // the cached root fd still names the one below.
            r.root = nil
        }
        guard rc < 0 else { return Reply(.ok()) }
        return Reply(.error(r.err(ContainerError.codeFor(e), "container_mount",
                                  "\(RequestRules.escaped(target)): \(childStageName(stage)): \(errnoDescription(e))", errno: e)))
    }

    /// container_set_ns: namespaces of another container (by its fd), of a
    /// process (by pidfd: the caller's own unless root) or an nsfs fd.
    func shareNamespaces(_ r: ContainerRecord, _ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        try requireOwner(r, conn, "container_set_ns")
        guard r.state == .created, r.forkingConnection == nil else {
            throw r.err(.busy, "container_set_ns", "init already started; namespaces are fixed")
        }
        guard fds.count > 1 else { throw r.err(.invalidArgument, "container_set_ns", "no source fd") }
        let source = fds[1]
        guard let mask = m.int("nstypes").flatMap({ Int32(exactly: $0) }) else {
            throw r.err(.invalidArgument, "container_set_ns", "nstypes out of range")
        }
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
                guard let fd = try namespaceFD(other, k) else {
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
            let pidfd = Pidfd(source)
            guard let pid = pidfd.pid else {
                throw r.err(.invalidArgument, "container_set_ns", "source is neither a container fd, a live pidfd nor a namespace fd")
            }
            if conn.uid != 0 {
                guard ProcInfo.runsOnlyAs(pid: pid, conn.uid) else {
                    throw r.err(.permission, "container_set_ns", "process \(pid) belongs to another user")
                }
            }
            for k in kinds {
                // Opened as the caller (uid, gid, no capabilities) unless root:
                // the kernel's own check (ptrace access: same ids, dumpable)
                // decides, not ours alone.
                let path = "/proc/\(pid)/ns/\(k.rawValue)"
                let raw = conn.uid == 0 ? open(path, O_RDONLY | O_CLOEXEC) : ccs_open_as(conn.uid, conn.gid, path, O_RDONLY)
                if raw < 0 {
                    let e = errno
                    throw r.err(ContainerError.codeFor(e), "container_set_ns", "process \(pid)'s \(k.rawValue) namespace: \(errnoDescription(e))", errno: e)
                }
                found.append((k, OwnedFD(raw)))
            }
            guard pidfd.names(pid) else {
                throw r.err(.dead, "container_set_ns", "process \(pid) exited while its namespaces were opened")
            }
        }
        // All or nothing: on a failure the record is put back as it was and
        // the new pins go (the record on disk never named them).
        let before = (r.pins, r.namespaces, r.namespaceInodes, r.stalePins)
        do {
            for (k, fd) in found {
                try setNamespace(r, k, fd, joined: true)
                crashPoint("setns")
            }
            try persistence.save(r)
        } catch {
            let kept = Set(before.0.values)
            for (_, pinName) in r.pins where !kept.contains(pinName) { persistence.unpin(directory: r.directoryName, pinName) }
            for (_, ino) in r.namespaceInodes { attribution.removeNamespace(ino, of: r) }
            (r.pins, r.namespaces, r.namespaceInodes, r.stalePins) = before
            register(r)
            throw error
        }
        crashPoint("setns")
        return Reply(.ok())
    }
}
