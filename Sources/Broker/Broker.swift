import CShim
import ContainerSystem
import ContainerWire
import Dispatch
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// ctrobjd's core: it plays the kernel. It owns the container table, answers
/// requests on its socket, watches container fds (last close), init pidfds
/// (exit) and signals, and persists every change.
///
/// Confined to the event loop's thread: every stored property below is read
/// and written there only (no locks: EventLoop.swift). It is Sendable so that
/// work started on a worker (a core's stream, a spare's namespaces, a
/// handler's slow part) can carry it back with `loop.post`; such work must
/// not touch it before that.
public final class Broker: @unchecked Sendable {
    /// `cgroupParent` is final once start() has placed the cgroups.
    public internal(set) var config: BrokerConfig
    public internal(set) var cgroupPlacement: CgroupPlacement?
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
    /// Namespace inode and cgroup -> container, for upcalls (Attribution.swift).
    var attribution = AttributionIndex()
    var upcallListener: OwnedFD?
    var spoolInFlight: Set<String> = []
    /// Pre-made namespaces for root's next create, by flag set.
    var spares: [UInt32: Spare] = [:]
    var sparesInFlight: Set<UInt32> = []
    var reservedIDBases: Set<UInt32> = []
    /// Id blocks of the records (allocateIDBase), and where its search resumes.
    var idBasesInUse: Set<UInt32> = []
    var idBaseCursor = 0
    /// Cgroups of dead containers still waiting for their last member to go.
    var pendingCgroups: [(CgroupSet, String, UInt64)] = []
    var nextID: UInt64 = 1
    /// Container ids in order, for list's pages; emptied when the table changes.
    var listOrder: [UInt64] = []
    /// Containers whose namespace and root fds are open, least recently used
    /// first (touchFDCache): at most fdCacheContainers of them.
    var fdCache: [UInt64] = []
    /// Records per owner, for --max-containers-per-uid.
    var containersPerUID: [uid_t: Int] = [:]
    /// Names and per-uid counts of creates whose namespaces are being made on a worker.
    var creating: Set<String> = []
    var creatingPerUID: [uid_t: Int] = [:]
    var connections: [CInt: ClientConnection] = [:]
    /// Open client connections per uid, for --max-connections-per-uid.
    var connectionsPerUID: [uid_t: Int] = [:]
    /// Bytes of replies queued per uid, for --max-queued-bytes.
    var queuedBytesPerUID: [uid_t: Int] = [:]
    /// Where answerLater's work runs (Connections.swift).
    var workQueues: [uid_t: DispatchQueue] = [:]
    let sharedWorkQueues = (0..<8).map { DispatchQueue(label: "ctrobjd.work.shared.\($0)") }
    /// Open container fds (daemon ends) per principal, for --max-container-fds-per-uid.
    var endsPerPrincipal: [uid_t: Int] = [:]
    /// accept() ran out of fds: the listener is unwatched until the next tick.
    var acceptPaused = false
    var upcallAcceptPaused = false
    /// Crash points passed in the request being handled (fault injection).
    var crashPointsPassed = 0
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
        try placeCgroups()
        try persistence.prepare()
        restore()
        removeOrphans()
        try listenUpcalls()
        upcallHousekeeping()
        for r in byID.values { learnDevicePaths(r.grantedDevices) }
        updateUeventMonitor()
        // The client socket last: once it answers, everything else is up.
        try listen()
        let sig = try SignalWatch([SIGTERM, SIGINT, SIGHUP])
        signals = sig
        try loop.watch(sig.fd.raw) { [weak self] _ in
            guard let self else { return }
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
        loop.run(tickMs: 500) { [weak self] in
            guard let self else { return }
            // Housekeeping twice a second, not after every request.
            let now = Sys.monotonicNanos()
            guard now - lastTick >= 500_000_000 else { return }
            lastTick = now
            self.resumeAcceptIfPaused()
            self.dropStalledClients()
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
        for (_, c) in connections { closeConnection(c) }
        connections.removeAll()
        // Daemon ends close with the process: clients see POLLHUP. Records,
        // namespaces and cgroups stay for the next start.
    }

    // MARK: table

    func register(_ r: ContainerRecord) {
        if byID[r.id] !== r {
            containersPerUID[principal(r.owner), default: 0] += 1
            listOrder.removeAll()
        }
        if let b = r.idBase { idBasesInUse.insert(b) }
        byName[r.name] = r
        byID[r.id] = r
        attribution.add(r)
        for c in r.cookies { byCookie[c] = r }
        nextID = max(nextID, r.id + 1)
    }

    func unregister(_ r: ContainerRecord) {
        if byName[r.name] === r { byName.removeValue(forKey: r.name) }
        if byID[r.id] === r {
            byID.removeValue(forKey: r.id)
            containersPerUID[principal(r.owner), default: 1] -= 1
            if containersPerUID[principal(r.owner)] == 0 { containersPerUID.removeValue(forKey: principal(r.owner)) }
            listOrder.removeAll()
            if let b = r.idBase { idBasesInUse.remove(b) }
        }
        attribution.remove(r)
        for c in r.cookies where byCookie[c] === r { byCookie.removeValue(forKey: c) }
    }

    /// Whom the per-uid limits charge for a uid: the uids of one id block
    /// (a root-made container's user namespace, 65,536 of them) are one
    /// principal, the block's first id; any other uid is itself.
    func principal(_ uid: uid_t) -> uid_t {
        let base = UInt64(config.idRangeBase), size = UInt64(config.idRangeSize)
        guard size > 0, UInt64(uid) >= base else { return uid }
        let k = (UInt64(uid) - base) / size
        guard k < UInt64(config.idRangeCount) else { return uid }
        return uid_t(truncatingIfNeeded: base + k * size)
    }

    /// Give the container a namespace: pinned (before any record names
    /// it), indexed, and kept open. The pin it replaces goes once the next
    /// saved record no longer names it (Persistence.save).
    func setNamespace(_ r: ContainerRecord, _ kind: NamespaceKind, _ fd: OwnedFD, joined: Bool = false) throws {
        let pinName = try persistence.pin(directory: r.directoryName, kind, fd.raw)
        if let old = r.pins[kind], old != pinName { r.stalePins.append(old) }
        if let old = r.namespaceInodes[kind] { attribution.removeNamespace(old, of: r) }
        let ino = try Namespaces.inode(of: fd.raw)
        r.pins[kind] = pinName
        r.namespaces[kind] = fd
        r.namespaceInodes[kind] = ino
        touchFDCache(r)
        // A namespace joined from elsewhere is not the container's own:
        // whoever else lives in it keeps its upcalls.
        if joined { r.joinedKinds.insert(kind) } else { r.joinedKinds.remove(kind) }
        if !joined { attribution.addNamespace(kind, ino, of: r) }
        if kind == .net && !r.grantedDevices.isEmpty {
            forgetUeventTarget(r)
            updateUeventMonitor()
        }
    }

    /// The container's namespace of a kind as an fd, nil if it has none of
    /// its own. After a restart the pins are opened on first use, so a
    /// daemon with many recorded containers starts without an fd for each.
    func namespaceFD(_ r: ContainerRecord, _ kind: NamespaceKind) throws -> OwnedFD? {
        if let fd = r.namespaces[kind] {
            touchFDCache(r)
            return fd
        }
        guard let pinName = r.pins[kind] else { return nil }
        let fd: OwnedFD
        do {
            fd = try persistence.open(directory: r.directoryName, pinName)
        } catch let e as ContainerError {
            throw r.err(ContainerError.codeFor(e.errno), "its \(kind.rawValue) namespace", e.message, errno: e.errno)
        }
        guard (try? Namespaces.inode(of: fd.raw)) == r.namespaceInodes[kind] else {
            throw r.err(.system, "its \(kind.rawValue) namespace", "the pin \(pinName) holds another namespace", errno: ESTALE)
        }
        r.namespaces[kind] = fd
        touchFDCache(r)
        return fd
    }

    /// How many containers keep their namespace and root fds open between
    /// requests. Every other container costs ctrobjd no fd of its own but
    /// its daemon ends (one per open container fd) and a running init's
    /// pidfd; its namespaces are opened again from the pins (one openat
    /// each) and its root through its mount namespace when next needed.
    static let fdCacheContainers = 128

    /// `r` was just used: keep its fds, and close those of the container
    /// used longest ago when more than fdCacheContainers have them open.
    func touchFDCache(_ r: ContainerRecord) {
        if let last = fdCache.last, last == r.id { return }
        if let i = fdCache.lastIndex(of: r.id) { fdCache.remove(at: i) }
        fdCache.append(r.id)
        while fdCache.count > Self.fdCacheContainers {
            let old = fdCache.removeFirst()
            if let o = byID[old], o !== r {
                o.namespaces.removeAll()
                o.root = nil
            }
        }
    }

    /// The container's "/" (O_PATH): its mount namespace's root, or the host's.
    func rootFD(_ r: ContainerRecord) throws -> OwnedFD {
        // An adopted container's root is its runtime's business and may move
        // at any time (runc adopts at createRuntime, before its pivot_root,
        // when the namespace's root is still a copy of the host's): found
        // again for every use, never cached.
        if r.adopted, r.root == nil, let mnt = try namespaceFD(r, .mnt) {
            let root = ccs_open_root_of_mntns(mnt.raw)
            if root < 0 { throw r.err(ContainerError.codeFor(errno), "its root", "opening the root of its mount namespace: \(errnoDescription(errno))") }
            return OwnedFD(root)
        }
        if r.root == nil, let mnt = try namespaceFD(r, .mnt) {
            let root = ccs_open_root_of_mntns(mnt.raw)
            if root < 0 { throw r.err(ContainerError.codeFor(errno), "its root", "opening the root of its mount namespace: \(errnoDescription(errno))") }
            r.root = OwnedFD(root)
            touchFDCache(r)
        }
        if let root = r.root {
            touchFDCache(r)
            return try root.duplicate()
        }
        return try Sys.open("/", O_PATH | O_DIRECTORY)
    }

    /// fault injection: kill -9 ourselves at the configured crash point.
    func crashPoint(_ op: String) {
        guard let c = config.crashAt, c.op == op else { return }
        crashPointsPassed += 1
        if crashPointsPassed == c.point {
            logger.critical("crash-at \(op):\(c.point)")
            kill(getpid(), SIGKILL)
        }
    }

    /// A free id block for a root-created user namespace. The blocks of
    /// records are kept in `idBasesInUse` (register/unregister), and the
    /// search starts after the last block handed out: O(1) per create
    /// however many containers live, where a scan of every record made
    /// create slower as they accumulated.
    func allocateIDBase() throws -> UInt32 {
        let count = config.idRangeCount
        let sparesAndReserved = Set(spares.values.compactMap(\.idBase)).union(reservedIDBases)
        for step in 0..<count {
            let k = (idBaseCursor + step) % count
            let base = config.idRangeBase + UInt32(k) * config.idRangeSize
            if idBasesInUse.contains(base) || sparesAndReserved.contains(base) { continue }
            idBaseCursor = (k + 1) % count
            return base
        }
        throw ContainerError(.system, "container_create: all \(count) id ranges are in use (ctrobjd --id-count)", errno: ENOSPC)
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
    /// Each open container fd costs ctrobjd one fd (the daemon's end): a
    /// non-root principal may hold --max-container-fds-per-uid of them.
    func issueFD(_ r: ContainerRecord, for conn: ClientConnection) throws -> OwnedFD {
        if conn.uid != 0 && (endsPerPrincipal[conn.principal] ?? 0) >= config.maxContainerFDsPerUID {
            throw r.err(.busy, "container fd", "uid \(conn.uid) holds \(config.maxContainerFDsPerUID) container fds, its limit (ctrobjd --max-container-fds-per-uid)",
                        errno: EMFILE)
        }
        try requireFDHeadroom(r.name, "container fd")
        let (daemonEnd, clientEnd) = try Sys.seqpacketPair()
        let cookie = Sys.socketCookie(clientEnd.raw)
        r.ends[cookie] = daemonEnd
        r.endCharges[cookie] = conn.principal
        endsPerPrincipal[conn.principal, default: 0] += 1
        // Cookies of fds from before a restart cannot be seen to close: a
        // record keeps a bounded number of them (the oldest go first).
        if r.cookies.count >= ContainerRecord.maxCookies {
            for c in r.cookies.sorted().prefix(r.cookies.count - ContainerRecord.maxCookies + 1) where r.ends[c] == nil {
                r.cookies.remove(c)
                if byCookie[c] === r { byCookie.removeValue(forKey: c) }
            }
        }
        r.cookies.insert(cookie)
        byCookie[cookie] = r
        let hup = EPOLLHUP.rawValue | EPOLLRDHUP.rawValue | EPOLLIN.rawValue
        try loop.watch(daemonEnd.raw, events: hup) { [weak self, weak r] events in
            guard let self, let r else { return }
            if events & (EPOLLHUP.rawValue | EPOLLRDHUP.rawValue | EPOLLERR.rawValue) != 0 {
                self.endClosed(r, cookie)
            } else {
                _ = try? FDPassing.receive(daemonEnd.raw) // clients have nothing to say here
            }
        }
        return clientEnd // the caller saves the record (with the new cookie)
    }

    func uncharge(_ r: ContainerRecord, _ cookie: UInt64) {
        guard let who = r.endCharges.removeValue(forKey: cookie) else { return }
        endsPerPrincipal[who, default: 1] -= 1
        if endsPerPrincipal[who] == 0 { endsPerPrincipal.removeValue(forKey: who) }
    }

    /// Every reference to one client end is gone.
    func endClosed(_ r: ContainerRecord, _ cookie: UInt64) {
        if let end = r.ends.removeValue(forKey: cookie) {
            loop.unwatch(end.raw)
            end.close()
        }
        uncharge(r, cookie)
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
