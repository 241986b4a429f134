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
        let fd = try Sys.listenUnix(path, type: SOCK_SEQPACKET, mode: 0o600, nonblocking: true)
        upcallListener = fd
        try watchUpcallListener()
    }

    func watchUpcallListener() throws {
        guard let fd = upcallListener else { return }
        upcallAcceptPaused = false
        try loop.watch(fd.raw) { [weak self] _ in
            guard let self else { return }
            while true {
                let c: OwnedFD
                do { c = try Sys.accept(fd.raw) } catch {
                    if Sys.isOutOfResources((error as? ContainerError)?.errno ?? 0) {
                        // As for the client socket: no spinning at the fd limit.
                        self.loop.unwatch(fd.raw)
                        self.upcallAcceptPaused = true
                    }
                    return
                }
                self.acceptUpcall(c)
            }
        }
    }

    func acceptUpcall(_ fd: OwnedFD) {
        guard let cred = try? Sys.peerCred(fd.raw) else { return }
        var trusted = cred.uid == 0
        if trusted {
            // The peer must be outside every container: our own user, mount and pid namespaces.
            let pidfd = Pidfd.ofPeer(fd.raw)
            if !Namespaces.areCallers(pid: cred.pid, kinds: [.user, .mnt, .pid]) { trusted = false }
            if let pidfd, !pidfd.names(cred.pid) { trusted = false }
        }
        guard trusted else {
            logger.warning("upcall socket: refused peer pid \(cred.pid) uid \(cred.uid): only root outside every container may use it")
            return
        }
        let conn = ClientConnection(fd: fd, pid: cred.pid, uid: cred.uid, gid: cred.gid)
        // The helper sends its request right after connecting: serve it now
        // if it is there, rather than after another turn of the loop.
        if Sys.isReadable(fd.raw) {
            upcallReadable(conn, watched: false)
            return
        }
        connections[fd.raw] = conn
        do {
            try loop.watch(fd.raw) { [weak self] _ in self?.upcallReadable(conn) }
        } catch {
            connections.removeValue(forKey: fd.raw)
        }
    }

    func upcallReadable(_ conn: ClientConnection, watched: Bool = true) {
        guard let got = try? FDPassing.receive(conn.fd.raw, maxFDs: 2), let msg = try? Message.decode(got.bytes) else {
            if watched { closeConnection(conn) }
            return
        }
        // The connection now belongs to the request: it is answered when the
        // work is done, possibly on a worker thread.
        if watched {
            loop.unwatch(conn.fd.raw)
            connections.removeValue(forKey: conn.fd.raw)
        }
        switch msg.op {
        case Op.Upcall.core:
            guard let core = got.fds.first, var facts = try? CoreFacts(fields: msg) else {
                reply(conn.fd, .error(ContainerError(.invalidArgument, "core: facts and the core pipe are required")))
                return
            }
            // The C pipe helper sends only what the kernel told it: the cgroup
            // and the pid inside are read here, the namespaces only when the
            // cgroup does not place the core (Attribution.swift). Either way
            // from the task the pidfd names, checked after reading (without
            // %F the pidfd is opened by pid: the kernel keeps the task while
            // the helper holds the pipe, waiting for this answer).
            guard let pidfd = got.fds.count > 1 ? Pidfd(got.fds[1]) : try? Pidfd.open(facts.pid) else {
                reply(conn.fd, .error(ContainerError(.dead, "core of pid \(facts.pid): the task is gone")))
                return
            }
            if msg["cgroup"] == nil { facts.gatherCgroupAndPid() }
            let found: ContainerRecord?
            switch attributeLive(&facts.process, pidfd: pidfd) {
            case .gone:
                reply(conn.fd, .error(ContainerError(.dead, "core of pid \(facts.pid): the task is gone")))
                return
            case .host: found = nil
            case .container(let r): found = r
            }
            routeCore(facts, to: found, core: core, early: true, reply: { [fd = conn.fd] m in reply(fd, m) })
        case Op.Upcall.key:
            // KeyRoute.swift: the requester's pidfd in, the way into its container out.
            let (answer, fds) = routeKey(msg, pidfd: got.fds.first.map(Pidfd.init))
            withExtendedLifetime(fds) {
                _ = try? FDPassing.send(conn.fd.raw, answer.encoded(), fds: fds.map(\.raw))
            }
            conn.fd.close()
        case Op.Upcall.modprobe:
            let module = msg["module"] ?? ""
            let name = msg["container"] ?? ""
            guard let r = container(namedByKernel: name) else {
                logger.warning("modprobe \(module) for container \"\(name)\": no such container here: denied")
                reply(conn.fd, Message(Op.Upcall.deny, ["reason": "no container \"\(name)\" in ctrobjd"]))
                return
            }
            let allowed = r.allowedModules.contains(module)
            logger.notice("modprobe \(module) for container \"\(name)\": \(allowed ? "allowed" : "denied (not in its allow-list)")")
            reply(conn.fd, Message(allowed ? Op.Upcall.allow : Op.Upcall.deny, ["reason": allowed ? "in the allow-list" : "not in the allow-list"]))
        default:
            reply(conn.fd, .error(ContainerError(.invalidArgument, "unknown upcall \"\(msg.op)\"", errno: EOPNOTSUPP)))
        }
    }
}

func reply(_ fd: OwnedFD, _ m: Message) {
    try? FDPassing.send(fd.raw, m.encoded())
    fd.close()
}
