import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// The upcall socket, <state>/upcall.sock: where ctrobj-upcall (run by the
/// kernel) hands over cores. Only root peers in the daemon's own namespaces
/// (the kernel's helpers run there) are served; anything else is refused and
/// logged.
///
/// | op   | fields          | fds                      | reply                          |
/// |------|-----------------|--------------------------|--------------------------------|
/// | core | CoreFacts       | core pipe, pidfd (opt.)  | ok (path) / fallthrough / error |
/// | key  | pid (the requester), key_type, key_desc | the requester's pidfd | ok + JoinPlan fields and fds / fallthrough (KeyRoute.swift) |
/// | modprobe | container, module | - | allow / deny (reason) |
extension Broker {
    func listenUpcalls() throws {
        let path = "\(config.stateDir)/upcall.sock"
        let fd = try bindSeqpacket(path, mode: 0o600)
        upcallListener = fd
        try loop.watch(fd.raw) { [unowned self] _ in
            while true {
                let c = ccs_accept(fd.raw)
                if c < 0 { return }
                self.acceptUpcall(OwnedFD(c))
            }
        }
    }

    func acceptUpcall(_ fd: OwnedFD) {
        guard let cred = try? Sys.peerCred(fd.raw) else { return }
        var trusted = cred.uid == 0
        if trusted {
            // The peer must be outside every container: our own user, mount and pid namespaces.
            let pidfd = ccs_peer_pidfd(fd.raw)
            let owned = pidfd >= 0 ? OwnedFD(pidfd) : nil
            let me = getpid()
            for kind in [NamespaceKind.user, .mnt, .pid] {
                if Namespaces.inode(pid: cred.pid, kind: kind) != Namespaces.inode(pid: me, kind: kind) { trusted = false }
            }
            if let owned, ccs_pidfd_pid(owned.raw) != cred.pid { trusted = false }
        }
        guard trusted else {
            logger.warning("upcall socket: refused peer pid \(cred.pid) uid \(cred.uid): only root outside every container may use it")
            return
        }
        let conn = ClientConnection(fd: fd, pid: cred.pid, uid: cred.uid, gid: cred.gid)
        connections[fd.raw] = conn
        do {
            try loop.watch(fd.raw) { [unowned self] _ in self.upcallReadable(conn) }
        } catch {
            connections.removeValue(forKey: fd.raw)
        }
    }

    func upcallReadable(_ conn: ClientConnection) {
        guard let got = try? FDPassing.receive(conn.fd.raw, maxFDs: 2), let msg = try? Message.decode(got.bytes) else {
            closeConnection(conn)
            return
        }
        // The connection now belongs to the request: it is answered when the
        // work is done, possibly on a worker thread.
        loop.unwatch(conn.fd.raw)
        connections.removeValue(forKey: conn.fd.raw)
        switch msg.op {
        case "core":
            guard let core = got.fds.first, let facts = try? CoreFacts(fields: msg) else {
                reply(conn.fd, .error(ContainerError(.invalidArgument, "core: facts and the core pipe are required")))
                return
            }
            routeCore(facts, core: core, reply: { [fd = conn.fd] m in reply(fd, m) })
        case "key":
            // KeyRoute.swift: the requester's pidfd in, the way into its container out.
            let (answer, fds) = routeKey(msg, pidfd: got.fds.first)
            withExtendedLifetime(fds) {
                _ = try? FDPassing.send(conn.fd.raw, answer.encoded(), fds: fds.map(\.raw))
            }
            conn.fd.close()
        case "modprobe":
            let module = msg["module"] ?? ""
            let name = msg["container"] ?? ""
            guard let r = byName[name] else {
                logger.warning("modprobe \(module) for container \"\(name)\": no such container here: denied")
                reply(conn.fd, Message("deny", ["reason": "no container \"\(name)\" in ctrobjd"]))
                return
            }
            let allowed = r.allowedModules.contains(module)
            logger.notice("modprobe \(module) for container \"\(name)\": \(allowed ? "allowed" : "denied (not in its allow-list)")")
            reply(conn.fd, Message(allowed ? "allow" : "deny", ["reason": allowed ? "in the allow-list" : "not in the allow-list"]))
        default:
            reply(conn.fd, .error(ContainerError(.invalidArgument, "unknown upcall \"\(msg.op)\"", errno: EOPNOTSUPP)))
        }
    }
}

func reply(_ fd: OwnedFD, _ m: Message) {
    try? FDPassing.send(fd.raw, m.encoded())
    fd.close()
}

extension Broker {
    /// A listening SEQPACKET socket at path (an old one is replaced).
    func bindSeqpacket(_ path: String, mode: mode_t) throws -> OwnedFD {
        let s = socket(AF_UNIX, CInt(SOCK_SEQPACKET.rawValue) | CInt(SOCK_CLOEXEC.rawValue) | CInt(SOCK_NONBLOCK.rawValue), 0)
        if s < 0 { throw ContainerError.sys("socket") }
        let fd = OwnedFD(s)
        unlink(path)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw ContainerError(.invalidArgument, "socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in bytes.enumerated() { p[i] = b } }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd.raw, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if r < 0 { throw ContainerError.sys("bind \(path)") }
        chmod(path, mode)
        if Glibc.listen(fd.raw, 128) < 0 { throw ContainerError.sys("listen") }
        return fd
    }
}
