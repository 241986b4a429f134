import CShim
import ContainerSystem
import ContainerWire
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// The client socket: every local user may connect (mode 0666), so nothing
/// one client does may stall the loop for the others.
///
/// | event                                   | what ctrobjd does                                        |
/// |-----------------------------------------|----------------------------------------------------------|
/// | accept, uid over --max-connections-per-uid | one "error" message (EUSERS), then close             |
/// | accept fails with EMFILE/ENFILE          | stop watching the listener until the next tick (no spin) |
/// | a request (one per connection per turn of the loop) | RequestRules.check, handler, reply           |
/// | a handler that must wait (a holder made as an unprivileged creator, a mount, a freeze) | the wait runs on a worker; the connection reads nothing more until its answer is sent |
/// | empty datagram                           | error reply EPROTO; the connection stays                 |
/// | over RequestRules.maxBytes or too many fds | fds closed, error reply; the connection stays          |
/// | reply would block                        | queued, EPOLLOUT watched; no more requests read until it drains |
/// | a uid's queued replies over --max-queued-bytes (root: per connection), or not moving for 5 s | dropped |
/// | EOF / RDHUP / error                      | connection closed (a fork.prepare reservation is released) |
extension Broker {
    func listen() throws {
        // Anyone may connect; every request checks the caller's rights.
        let fd = try Sys.listenUnix(config.socketPath, type: SOCK_SEQPACKET, mode: 0o666, nonblocking: true)
        listener = fd
        try watchListener()
    }

    func watchListener() throws {
        guard let l = listener else { return }
        try loop.watch(l.raw) { [weak self] _ in self?.acceptAll() }
        acceptPaused = false
    }

    /// Re-arm accept after a pause (called from the housekeeping tick).
    func resumeAcceptIfPaused() {
        if acceptPaused { try? watchListener() }
        if upcallAcceptPaused { try? watchUpcallListener() }
    }

    func acceptAll() {
        guard let l = listener else { return }
        while true {
            let fd: OwnedFD
            do { fd = try Sys.accept(l.raw) } catch {
                let e = (error as? ContainerError)?.errno ?? 0
                if Sys.isOutOfResources(e) {
                    // Out of fds: the pending connection stays in the backlog.
                    // Retrying now would spin; try again at the next tick.
                    loop.unwatch(l.raw)
                    acceptPaused = true
                    logger.warning("accept: \(errnoDescription(e)); not accepting for a moment")
                }
                return
            }
            let c = fd.raw
            _ = fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK)
            guard let cred = try? Sys.peerCred(c) else { continue }
            let who = principal(cred.uid)
            if cred.uid != 0 && (connectionsPerUID[who] ?? 0) >= config.maxConnectionsPerUID {
                let e = ContainerError(.busy, "uid \(cred.uid) has \(config.maxConnectionsPerUID) connections open to ctrobjd (--max-connections-per-uid)",
                                       errno: EUSERS)
                _ = try? FDPassing.send(c, Message.error(e).encoded())
                logger.notice("refused a connection from pid \(cred.pid) uid \(cred.uid): \(config.maxConnectionsPerUID) open already")
                continue
            }
            let conn = ClientConnection(fd: fd, pid: cred.pid, uid: cred.uid, gid: cred.gid)
            connections[c] = conn
            conn.counted = true
            conn.interest = ClientConnection.readEvents
            conn.principal = who
            connectionsPerUID[who, default: 0] += 1
            do {
                try loop.watch(c, events: ClientConnection.readEvents) { [weak self, weak conn] events in
                    guard let self, let conn else { return }
                    self.ready(conn, events)
                }
            } catch {
                closeConnection(conn)
            }
        }
    }

    func closeConnection(_ conn: ClientConnection) {
        guard !conn.closed else { return }
        conn.closed = true
        loop.unwatch(conn.fd.raw)
        connections.removeValue(forKey: conn.fd.raw)
        if conn.counted {
            connectionsPerUID[conn.principal, default: 1] -= 1
            if connectionsPerUID[conn.principal] == 0 { connectionsPerUID.removeValue(forKey: conn.principal) }
        }
        if let r = conn.forking {
            if r.forkingConnection == ObjectIdentifier(conn) { r.forkingConnection = nil }
            conn.forking = nil
        }
        unqueue(conn.principal, conn.queuedBytes)
        conn.queuedBytes = 0
        conn.output.removeAll()
        conn.fd.close()
    }

    func unqueue(_ uid: uid_t, _ n: Int) {
        guard n > 0 else { return }
        queuedBytesPerUID[uid, default: n] -= n
        if queuedBytesPerUID[uid] == 0 { queuedBytesPerUID.removeValue(forKey: uid) }
    }

    func ready(_ conn: ClientConnection, _ events: UInt32) {
        if events & EPOLLOUT.rawValue != 0 { flush(conn) }
        if conn.closed { return }
        if events & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLRDHUP.rawValue | EPOLLERR.rawValue) != 0 {
            // One request per connection per turn of the loop: every ready
            // client is served in turn, none can hold the loop.
            guard !conn.closed, !conn.waiting, conn.output.isEmpty else {
                if events & (EPOLLHUP.rawValue | EPOLLRDHUP.rawValue | EPOLLERR.rawValue) != 0 && ccs_peer_hung_up(conn.fd.raw) != 0 {
                    closeConnection(conn)
                }
                return
            }
            guard let (msg, fds) = receiveRequest(conn, events) else { return }
            let reply = answer(msg, fds: fds, conn: conn)
            if reply.later {
                conn.waiting = true
                updateInterest(conn)
                return
            }
            send(reply, to: conn)
        }
    }

    /// What to wait for on a connection: its hang-up always; requests unless
    /// an answer is pending (worker) or queued (socket full); writability
    /// while one is queued. Never readable-and-ignored, which would spin.
    func updateInterest(_ conn: ClientConnection) {
        guard !conn.closed else { return }
        var events = EPOLLRDHUP.rawValue
        if conn.blockedSince != nil { events |= EPOLLOUT.rawValue } else if !conn.waiting { events |= EPOLLIN.rawValue }
        guard events != conn.interest else { return }
        conn.interest = events
        try? loop.watch(conn.fd.raw, events: events) { [weak self, weak conn] events in
            guard let self, let conn else { return }
            self.ready(conn, events)
        }
    }

    /// One serial queue per principal (a few shared ones past 256): what
    /// one user's work waits on holds up that user's later work only.
    func workQueue(for who: uid_t) -> DispatchQueue {
        if let q = workQueues[who] { return q }
        if workQueues.count >= 256 { return sharedWorkQueues[Int(who % 8)] }
        let q = DispatchQueue(label: "ctrobjd.work.\(who)")
        workQueues[who] = q
        return q
    }

    /// Answer later: `work` runs on a worker thread (it must not touch the
    /// table), `finish` on the loop thread with its result, whatever became
    /// of the connection meanwhile; its reply is sent if the client is
    /// still there. The connection reads no further request until then.
    func answerLater<T: Sendable>(_ conn: ClientConnection, _ work: @escaping @Sendable () -> T, then finish: @escaping @Sendable (T) -> Reply) -> Reply {
        let loop = self.loop
        workQueue(for: conn.principal).async {
            let value = work()
            loop.post { [weak self] in
                guard let self else { return }
                let reply = finish(value)
                conn.waiting = false
                guard !conn.closed else { return }
                self.updateInterest(conn)
                self.send(reply, to: conn)
            }
        }
        return Reply.later
    }

    /// One request, or nil when there is nothing more to read now (the
    /// connection may have been closed). A malformed datagram is answered
    /// here and reported as nil-and-continue through the error reply.
    func receiveRequest(_ conn: ClientConnection, _ events: UInt32) -> (Result<Message, ContainerError>, [OwnedFD])? {
        let size = ccs_peek_size(conn.fd.raw)
        if size < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK { return nil }
            closeConnection(conn)
            return nil
        }
        if size == 0 {
            // EOF, or an empty datagram: only a peer that has not hung up can have sent one.
            if ccs_peer_hung_up(conn.fd.raw) != 0 {
                closeConnection(conn)
                return nil
            }
            _ = ccs_discard_datagram(conn.fd.raw)
            return (.failure(ContainerError(.protocolError, "empty message", errno: EPROTO)), [])
        }
        if size > RequestRules.maxBytes {
            // Taken off unread; any fds with it are closed.
            _ = ccs_discard_datagram(conn.fd.raw)
            return (.failure(ContainerError(.invalidArgument, "request of \(size) bytes, at most \(RequestRules.maxBytes)", errno: EMSGSIZE)), [])
        }
        do {
            guard let (bytes, fds) = try FDPassing.receive(conn.fd.raw, maxFDs: RequestRules.maxFDs + 1, peekedSize: size) else {
                closeConnection(conn)
                return nil
            }
            if fds.count > RequestRules.maxFDs {
                return (.failure(ContainerError(.protocolError, "more than \(RequestRules.maxFDs) fds in one request", errno: EPROTO)), [])
            }
            do {
                return (.success(try Message.decode(bytes)), fds)
            } catch let e as ContainerError {
                return (.failure(ContainerError(e.code, e.message, errno: EPROTO)), [])
            }
        } catch let e as ContainerError where e.errno == EMSGSIZE {
            // MSG_CTRUNC: more fds than fit; the kernel closed those it could not pass, we closed the rest.
            return (.failure(ContainerError(.protocolError, "more than \(RequestRules.maxFDs) fds in one request", errno: EPROTO)), [])
        } catch let e as ContainerError where e.errno == EAGAIN || e.errno == EWOULDBLOCK {
            return nil
        } catch {
            closeConnection(conn)
            return nil
        }
    }

    func answer(_ msg: Result<Message, ContainerError>, fds: [OwnedFD], conn: ClientConnection) -> Reply {
        do {
            let m = try msg.get()
            try RequestRules.check(m, fdCount: fds.count)
            return try handle(m, fds: fds, conn: conn)
        } catch let e as ContainerError {
            logger.debug("refused \((try? msg.get())?.op ?? "a malformed request") from pid \(conn.pid) uid \(conn.uid): \(RequestRules.escaped(e.message))")
            return Reply(Message.error(e))
        } catch {
            return Reply(Message.error(ContainerError(.system, "\(error)")))
        }
    }

    /// Send now if the socket takes it, else queue behind what is queued.
    func send(_ reply: Reply, to conn: ClientConnection) {
        var bytes = reply.message.encoded()
        var fds = reply.fds
        if bytes.count > RequestRules.maxBytes * 4 {
            // A reply is bounded by construction (list is paged); never send a giant one.
            logger.error("reply to \(reply.message.op) of \(bytes.count) bytes not sent")
            bytes = Message.error(ContainerError(.system, "reply too large", errno: EMSGSIZE)).encoded()
            fds = []
        }
        conn.output.append((bytes, fds))
        conn.queuedBytes += bytes.count
        queuedBytesPerUID[conn.principal, default: 0] += bytes.count
        flush(conn)
        // Root's bound is per connection; anyone else's covers all its connections.
        let queued = conn.uid == 0 ? conn.queuedBytes : queuedBytesPerUID[conn.principal] ?? 0
        if !conn.closed && queued > config.maxQueuedBytes {
            logger.notice("dropped pid \(conn.pid) uid \(conn.uid): \(queued) bytes of replies unread (--max-queued-bytes)")
            closeConnection(conn)
        }
    }

    func flush(_ conn: ClientConnection) {
        while let (bytes, fds) = conn.output.first {
            do {
                // The reply's fds must stay open until sendmsg has passed them.
                try withExtendedLifetime(fds) {
                    try FDPassing.send(conn.fd.raw, bytes, fds: fds.map(\.raw))
                }
            } catch let e as ContainerError where e.errno == EAGAIN || e.errno == EWOULDBLOCK {
                if conn.blockedSince == nil {
                    // Writable is all we wait for now: its pending requests stay unread.
                    conn.blockedSince = Sys.monotonicNanos()
                    updateInterest(conn)
                }
                return
            } catch {
                closeConnection(conn)
                return
            }
            conn.output.removeFirst()
            conn.queuedBytes -= bytes.count
            unqueue(conn.principal, bytes.count)
            if conn.blockedSince != nil { conn.blockedSince = Sys.monotonicNanos() }
        }
        if conn.blockedSince != nil {
            // Drained: requests that arrived meanwhile are read from the next turn on.
            conn.blockedSince = nil
            updateInterest(conn)
        }
    }

    /// Drop clients whose queued replies have not moved for a while.
    func dropStalledClients() {
        let now = Sys.monotonicNanos()
        for conn in Array(connections.values) {
            guard let since = conn.blockedSince, now - since > config.stalledClientMs * 1_000_000 else { continue }
            logger.notice("dropped pid \(conn.pid) uid \(conn.uid): its replies have not been read for \(config.stalledClientMs) ms")
            closeConnection(conn)
        }
    }
}

/// Confined to the loop thread like the Broker (Sendable only to be carried
/// back there through `loop.post`).
final class ClientConnection: @unchecked Sendable {
    static let readEvents = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
    let fd: OwnedFD
    let pid: pid_t
    let uid: uid_t
    let gid: gid_t
    /// Whom the per-uid limits charge (Broker.principal).
    var principal: uid_t
    var forking: ContainerRecord?
    /// Replies not yet taken by the socket, oldest first.
    var output: [(bytes: [UInt8], fds: [OwnedFD])] = []
    var queuedBytes = 0
    /// When the socket last refused or took queued output, while some waits.
    var blockedSince: UInt64?
    /// Counted against its uid's connection limit (client socket only).
    var counted = false
    /// An answer is being worked out off the loop thread (answerLater).
    var waiting = false
    /// The epoll events the connection is watched for now.
    var interest: UInt32 = 0
    var closed = false

    init(fd: OwnedFD, pid: pid_t, uid: uid_t, gid: gid_t) {
        self.fd = fd
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.principal = uid
    }
}

struct Reply {
    var message: Message
    var fds: [OwnedFD]
    /// Not an answer: the handler answers later (Broker.answerLater).
    var later = false
    init(_ message: Message, _ fds: [OwnedFD] = []) {
        self.message = message
        self.fds = fds
    }

    static var later: Reply {
        var r = Reply(Message("later"))
        r.later = true
        return r
    }
}
