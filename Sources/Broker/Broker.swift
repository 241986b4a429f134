import CShim
import ContainerSystem
import ContainerWire
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// ctrobjd's core: it plays the kernel. It owns the container table, answers
/// requests on its socket, watches container fds (last close), init pidfds
/// (exit) and signals, and persists every change.
public final class Broker {
    public let config: BrokerConfig
    let logger: Logger
    let loop: EventLoop
    let persistence: Persistence
    var listener: OwnedFD?
    var lock: OwnedFD?
    var signals: SignalWatch?

    // The table and its indexes.
    var byName: [String: ContainerRecord] = [:]
    var byID: [UInt64: ContainerRecord] = [:]
    var byCookie: [UInt64: ContainerRecord] = [:]
    /// Attribution: namespace inode -> container, for the upcall broker.
    var byNamespace: [UInt64: ContainerRecord] = [:]
    /// Attribution: cgroup path below the hierarchies ("ctrobj/c5") -> container.
    var byCgroup: [String: ContainerRecord] = [:]
    var upcallListener: OwnedFD?
    var spoolInFlight: Set<String> = []
    /// Pre-made namespaces for root's next create, by flag set.
    var spares: [UInt32: Spare] = [:]
    var sparesInFlight: Set<UInt32> = []
    var reservedIDBases: Set<UInt32> = []
    /// Cgroups of dead containers still waiting for their last member to go.
    var pendingCgroups: [(CgroupSet, String, UInt64)] = []
    var nextID: UInt64 = 1
    var connections: [CInt: ClientConnection] = [:]
    var ownNamespaceInodes: [NamespaceKind: UInt64?] = [:]
    /// upcall.conf as last read, with the stat that says whether it changed
    /// (read per key request and per housekeeping tick: KeyRoute.swift).
    var upcallConfigCache: (key: [Int], config: UpcallConfig?)?
    /// Granted devices' uevents into containers (UeventForwarding.swift).
    let uevents = UeventForwarding()

    public init(config: BrokerConfig, logger: Logger) throws {
        self.config = config
        self.logger = logger
        self.loop = try EventLoop()
        self.persistence = Persistence(config: config)
    }

    // MARK: start and stop

    /// Take the lock, restore the table from disk, and listen.
    public func start() throws {
        signal(SIGPIPE, SIG_IGN)
        // Every container holds a few fds here (namespaces, its root, the
        // daemon ends): lift the soft limit to the hard one.
        var lim = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim)
        }
        try Sys.mkdirs(config.stateDir, 0o755)
        let lockFD = try Sys.open(config.lockPath, O_RDWR | O_CREAT, 0o600)
        if flock(lockFD.raw, LOCK_EX | LOCK_NB) < 0 {
            throw ContainerError(.busy, "another ctrobjd already serves \(config.stateDir) (\(config.lockPath) is locked)")
        }
        lock = lockFD
        try persistence.prepare()
        restore()
        removeOrphans()
        try listen()
        try listenUpcalls()
        upcallHousekeeping()
        for r in byID.values { learnDevicePaths(r.grantedDevices) }
        updateUeventMonitor()
        let sig = try SignalWatch([SIGTERM, SIGINT, SIGHUP])
        signals = sig
        try loop.watch(sig.fd.raw) { [unowned self] _ in
            for s in sig.drain() where s == SIGTERM || s == SIGINT {
                self.logger.info("signal \(s): shutting down; containers keep running")
                self.loop.stop()
            }
        }
        logger.info("ctrobjd listening on \(config.socketPath) with \(byID.count) container(s)")
    }

    /// Serve until SIGTERM/SIGINT or stop().
    public func run() {
        var lastTick: UInt64 = 0
        loop.run(tickMs: 500) { [unowned self] in
            // Housekeeping twice a second, not after every request.
            let now = Sys.monotonicNanos()
            guard now - lastTick >= 500_000_000 else { return }
            lastTick = now
            self.retryPendingExitStatus()
            self.retryPendingCgroups()
            self.upcallHousekeeping()
        }
        shutdown()
    }

    public func stop() { loop.stop() }

    func shutdown() {
        discardSpares()
        if let u = upcallListener {
            loop.unwatch(u.raw)
            u.close()
            unlink("\(config.stateDir)/upcall.sock")
        }
        if let l = listener {
            loop.unwatch(l.raw)
            l.close()
            unlink(config.socketPath)
        }
        for (_, c) in connections { c.fd.close() }
        connections.removeAll()
        // Daemon ends close with the process: clients see POLLHUP. Records,
        // namespaces and cgroups stay for the next start.
    }

    func listen() throws {
        // Anyone may connect; every request checks the caller's rights.
        let fd = try Sys.listenUnix(config.socketPath, type: SOCK_SEQPACKET, mode: 0o666, nonblocking: true)
        listener = fd
        try loop.watch(fd.raw) { [unowned self] _ in self.acceptAll() }
    }

    func acceptAll() {
        guard let l = listener else { return }
        while true {
            let c = ccs_accept(l.raw)
            if c < 0 { return }
            let fd = OwnedFD(c)
            guard let cred = try? Sys.peerCred(c) else { continue }
            let conn = ClientConnection(fd: fd, pid: cred.pid, uid: cred.uid, gid: cred.gid)
            connections[c] = conn
            do {
                try loop.watch(c) { [unowned self] _ in self.readable(conn) }
            } catch {
                connections.removeValue(forKey: c)
            }
        }
    }

    func closeConnection(_ conn: ClientConnection) {
        loop.unwatch(conn.fd.raw)
        connections.removeValue(forKey: conn.fd.raw)
        if let r = conn.forking {
            r.forkingConnection = nil
            conn.forking = nil
        }
        conn.fd.close()
    }

    func readable(_ conn: ClientConnection) {
        let got: (bytes: [UInt8], fds: [OwnedFD])?
        do {
            got = try FDPassing.receive(conn.fd.raw, maxFDs: 4)
        } catch {
            closeConnection(conn)
            return
        }
        guard let (bytes, fds) = got else {
            closeConnection(conn)
            return
        }
        let reply: Reply
        do {
            let msg = try Message.decode(bytes)
            reply = try handle(msg, fds: fds, conn: conn)
        } catch let e as ContainerError {
            reply = Reply(Message.error(e))
        } catch {
            reply = Reply(Message.error(ContainerError(.system, "\(error)")))
        }
        do {
            // The reply's fds must stay open until sendmsg has passed them.
            try withExtendedLifetime(reply.fds) {
                try FDPassing.send(conn.fd.raw, reply.message.encoded(), fds: reply.fds.map(\.raw))
            }
        } catch {
            closeConnection(conn)
        }
    }

    // MARK: table

    func register(_ r: ContainerRecord) {
        byName[r.name] = r
        byID[r.id] = r
        // An adopted container's cgroup may hold host processes too: it is
        // attributed by its namespaces only.
        if !r.adopted && !r.cgroup.relativePath.isEmpty { byCgroup[r.cgroup.relativePath] = r }
        for c in r.cookies { byCookie[c] = r }
        for (_, ino) in r.namespaceInodes { byNamespace[ino] = r }
        nextID = max(nextID, r.id + 1)
    }

    func unregister(_ r: ContainerRecord) {
        if byName[r.name] === r { byName.removeValue(forKey: r.name) }
        byID.removeValue(forKey: r.id)
        if byCgroup[r.cgroup.relativePath] === r { byCgroup.removeValue(forKey: r.cgroup.relativePath) }
        for c in r.cookies where byCookie[c] === r { byCookie.removeValue(forKey: c) }
        for (_, ino) in r.namespaceInodes where byNamespace[ino] === r { byNamespace.removeValue(forKey: ino) }
    }

    func setNamespace(_ r: ContainerRecord, _ kind: NamespaceKind, _ fd: OwnedFD) throws {
        if let old = r.namespaceInodes[kind], byNamespace[old] === r { byNamespace.removeValue(forKey: old) }
        let ino = try Namespaces.inode(of: fd.raw)
        r.namespaces[kind] = fd
        r.namespaceInodes[kind] = ino
        // A shared namespace (a pod's net) attributes to its first owner.
        if byNamespace[ino] == nil { byNamespace[ino] = r }
        try persistence.pin(r, kind, fd.raw)
        if kind == .net && !r.grantedDevices.isEmpty {
            forgetUeventTarget(r)
            updateUeventMonitor()
        }
    }

    func allocateIDBase() throws -> UInt32 {
        let used = Set(byID.values.compactMap(\.idBase) + spares.values.compactMap(\.idBase)).union(reservedIDBases)
        for k in 0..<config.idRangeCount {
            let base = config.idRangeBase + UInt32(k) * config.idRangeSize
            if !used.contains(base) { return base }
        }
        throw ContainerError(.system, "container_create: all \(config.idRangeCount) id ranges are in use", errno: ENOSPC)
    }

    /// Resolve a container fd presented by a client.
    func record(for fd: OwnedFD?, action: String) throws -> ContainerRecord {
        guard let fd else { throw ContainerError(.invalidArgument, "\(action): no container fd passed", errno: EBADF) }
        var st = stat()
        guard fstat(fd.raw, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK else {
            throw ContainerError(.invalidArgument, "\(action): fd is not a container fd", errno: EBADF)
        }
        let cookie = Sys.socketCookie(fd.raw)
        guard cookie != 0, let r = byCookie[cookie] else {
            throw ContainerError(.invalidArgument, "\(action): fd is not a container fd (or its container was destroyed)", errno: EBADF)
        }
        return r
    }

    /// Hand out a new container fd: one end of a fresh SEQPACKET pair.
    func issueFD(_ r: ContainerRecord) throws -> OwnedFD {
        let (daemonEnd, clientEnd) = try Sys.seqpacketPair()
        let cookie = Sys.socketCookie(clientEnd.raw)
        r.ends[cookie] = daemonEnd
        r.cookies.insert(cookie)
        byCookie[cookie] = r
        let hup = EPOLLHUP.rawValue | EPOLLRDHUP.rawValue | EPOLLIN.rawValue
        try loop.watch(daemonEnd.raw, events: hup) { [unowned self, unowned r] events in
            if events & (EPOLLHUP.rawValue | EPOLLRDHUP.rawValue | EPOLLERR.rawValue) != 0 {
                self.endClosed(r, cookie)
            } else {
                _ = try? FDPassing.receive(daemonEnd.raw) // clients have nothing to say here
            }
        }
        return clientEnd // the caller saves the record (with the new cookie)
    }

    /// Every reference to one client end is gone.
    func endClosed(_ r: ContainerRecord, _ cookie: UInt64) {
        if let end = r.ends.removeValue(forKey: cookie) {
            loop.unwatch(end.raw)
            end.close()
        }
        r.cookies.remove(cookie)
        if byCookie[cookie] === r { byCookie.removeValue(forKey: cookie) }
        if r.killOnClose && r.ends.isEmpty && byID[r.id] === r {
            logger.info("container \"\(r.name)\": last fd closed: CONTAINER_KILL_ON_CLOSE destroys it")
            destroy(r)
        } else {
            try? persistence.save(r)
        }
    }
}

final class ClientConnection {
    let fd: OwnedFD
    let pid: pid_t
    let uid: uid_t
    let gid: gid_t
    var forking: ContainerRecord?

    init(fd: OwnedFD, pid: pid_t, uid: uid_t, gid: gid_t) {
        self.fd = fd
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }
}

struct Reply {
    var message: Message
    var fds: [OwnedFD]
    init(_ message: Message, _ fds: [OwnedFD] = []) {
        self.message = message
        self.fds = fds
    }
}
