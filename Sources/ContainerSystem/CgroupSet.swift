import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One container's cgroup: a directory in every hierarchy the layout uses.
/// Limits, statistics, freezing and killing pick v2 or v1 per controller.
public final class CgroupSet: Sendable {
    public let layout: CgroupLayout
    /// Relative path below each hierarchy's mount, e.g. "ctrobj/web".
    public let relativePath: String
    /// For a cgroup at a requested path (CgroupRequest): per hierarchy
    /// mount, how many trailing components of `relativePath` ctrobjd made
    /// (the leaf counts one). Empty for ctrobjd's own cgroups below its
    /// parent, whose leaf alone is removed.
    public var made: [String: Int] {
        get { marks.withLock { $0.made } }
        set { marks.withLock { $0.made = newValue } }
    }
    /// Removed by `remove()`: from then on nothing here reads, writes or
    /// signals through the path, which someone else may make again (a
    /// requested path is not ctrobjd's alone).
    public var removed: Bool {
        get { marks.withLock { $0.removed } }
        set { marks.withLock { $0.removed = newValue } }
    }
    private let marks: Mutex<(made: [String: Int], removed: Bool)>

    public init(layout: CgroupLayout, relativePath: String, made: [String: Int] = [:]) {
        self.layout = layout
        self.relativePath = relativePath
        self.marks = Mutex((made: made, removed: false))
    }

    public var directories: [String] { layout.hierarchies.map { "\($0)/\(relativePath)" } }

    func dir(_ mount: String) -> String { "\(mount)/\(relativePath)" }

    /// Make the directories (and the parent, configured like cpuset needs).
    public func create() throws {
        for mount in layout.hierarchies {
            var path = mount
            for part in relativePath.split(separator: "/") {
                path += "/\(part)"
                try Sys.mkdir(path)
            }
        }
    }

    /// cgroup.procs of each directory, opened for writing: a child writes "0"
    /// to join. Opened here so that the opener's rights are the ones checked.
    public func procsFiles() throws -> [OwnedFD] {
        try directories.map { try Sys.open("\($0)/cgroup.procs", O_WRONLY) }
    }

    /// The cgroup2 directory's inode, which is the kernel's cgroup id.
    public var v2ID: UInt64? {
        guard let v2 = layout.v2Mount else { return nil }
        var st = stat()
        if stat(dir(v2), &st) < 0 { return nil }
        return UInt64(st.st_ino)
    }

    // MARK: limits

    public enum Limit: Int, Sendable { case memory = 1, pids = 2, cpu = 3 }

    /// value < 0 removes the limit. cpu is in thousandths of a CPU.
    public func setLimit(_ limit: Limit, _ value: Int64) throws {
        if removed { throw ContainerError(.dead, "cgroup \(relativePath) was removed", errno: ESRCH) }
        switch limit {
        case .memory:
            switch layout.source(of: "memory") {
            case .v2: try Sys.writeFile("\(dir(layout.v2Mount!))/memory.max", value < 0 ? "max" : "\(value)")
            case .v1(let m): try Sys.writeFile("\(dir(m))/memory.limit_in_bytes", value < 0 ? "-1" : "\(value)")
            case .none: throw unsupported("memory")
            }
        case .pids:
            switch layout.source(of: "pids") {
            case .v2: try Sys.writeFile("\(dir(layout.v2Mount!))/pids.max", value < 0 ? "max" : "\(value)")
            case .v1(let m): try Sys.writeFile("\(dir(m))/pids.max", value < 0 ? "max" : "\(value)")
            case .none: throw unsupported("pids")
            }
        case .cpu:
            let period: Int64 = 100_000
            let quota = value < 0 ? -1 : max(1000, value * period / 1000)
            switch layout.source(of: "cpu") {
            case .v2: try Sys.writeFile("\(dir(layout.v2Mount!))/cpu.max", quota < 0 ? "max \(period)" : "\(quota) \(period)")
            case .v1(let m):
                try Sys.writeFile("\(dir(m))/cpu.cfs_period_us", "\(period)")
                try Sys.writeFile("\(dir(m))/cpu.cfs_quota_us", "\(quota)")
            case .none: throw unsupported("cpu")
            }
        }
    }

    func unsupported(_ c: String) -> ContainerError {
        ContainerError(.invalidArgument, "the \(c) controller is mounted neither in cgroup v2 nor v1 on this machine", errno: EOPNOTSUPP)
    }

    public struct Stats: Sendable, Equatable {
        public init(memoryBytes: UInt64 = 0, pids: UInt64 = 0, cpuUsageNanos: UInt64 = 0, anonMemoryBytes: UInt64 = 0) {
            self.memoryBytes = memoryBytes
            self.pids = pids
            self.cpuUsageNanos = cpuUsageNanos
            self.anonMemoryBytes = anonMemoryBytes
        }
        public var memoryBytes: UInt64 = 0
        /// Anonymous memory (memory.stat: "anon" in v2, "total_rss" in v1),
        /// what the processes themselves hold, page cache aside.
        public var anonMemoryBytes: UInt64 = 0
        public var pids: UInt64 = 0
        public var cpuUsageNanos: UInt64 = 0
    }

    func readNumber(_ path: String) -> UInt64? {
        guard let s = try? Sys.readFile(path) else { return nil }
        return UInt64(s.trimmingSuffixNewline())
    }

    /// One "key value" line of a stat file (memory.stat, cpu.stat).
    func statField(_ path: String, _ key: String) -> UInt64? {
        guard let text = try? Sys.readFile(path) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(key + " ") {
            return UInt64(line.dropFirst(key.count + 1))
        }
        return nil
    }

    public func stats() -> Stats {
        var s = Stats()
        switch layout.source(of: "memory") {
        case .v2:
            s.memoryBytes = readNumber("\(dir(layout.v2Mount!))/memory.current") ?? 0
            s.anonMemoryBytes = statField("\(dir(layout.v2Mount!))/memory.stat", "anon") ?? 0
        case .v1(let m):
            s.memoryBytes = readNumber("\(dir(m))/memory.usage_in_bytes") ?? 0
            s.anonMemoryBytes = statField("\(dir(m))/memory.stat", "total_rss") ?? 0
        case .none: break
        }
        switch layout.source(of: "pids") {
        case .v2: s.pids = readNumber("\(dir(layout.v2Mount!))/pids.current") ?? 0
        case .v1(let m): s.pids = readNumber("\(dir(m))/pids.current") ?? 0
        case .none: s.pids = UInt64(members().count)
        }
        if case .v1(let m) = layout.source(of: "cpuacct") {
            s.cpuUsageNanos = readNumber("\(dir(m))/cpuacct.usage") ?? 0
        } else if let v2 = layout.v2Mount, let usec = statField("\(dir(v2))/cpu.stat", "usage_usec") {
            s.cpuUsageNanos = usec &* 1000
        }
        return s
    }

    // MARK: members, freeze, kill

    /// Every pid in the container's cgroup (v2 if mounted, else the first v1).
    public func members() -> [pid_t] {
        if removed { return [] }
        guard let first = directories.first, let text = try? Sys.readFile("\(first)/cgroup.procs") else { return [] }
        return text.split(separator: "\n").compactMap { pid_t($0) }
    }

    /// Freeze or thaw, and wait (up to `timeoutMs`) until the kernel reports
    /// every task there: freezing is asynchronous in both versions.
    public func setFrozen(_ frozen: Bool, timeoutMs: Int = 2000) throws {
        if removed { throw ContainerError(.dead, "cgroup \(relativePath) was removed", errno: ESRCH) }
        if let v2 = layout.v2Mount {
            try Sys.writeFile("\(dir(v2))/cgroup.freeze", frozen ? "1" : "0")
        } else if case .v1(let m) = layout.source(of: "freezer") {
            try Sys.writeFile("\(dir(m))/freezer.state", frozen ? "FROZEN" : "THAWED")
        } else {
            throw unsupported("freezer")
        }
        try waitFrozen(frozen, timeoutMs: timeoutMs)
    }

    /// Wait until the kernel reports every task frozen (or thawed).
    public func waitFrozen(_ frozen: Bool, timeoutMs: Int) throws {
        let done: () -> Bool
        if let v2 = layout.v2Mount {
            done = { [self] in
                ((try? Sys.readFile("\(dir(v2))/cgroup.events")) ?? "").contains(frozen ? "frozen 1" : "frozen 0")
            }
        } else if case .v1(let m) = layout.source(of: "freezer") {
            done = { [self] in
                ((try? Sys.readFile("\(dir(m))/freezer.state")) ?? "").hasPrefix(frozen ? "FROZEN" : "THAWED")
            }
        } else {
            throw unsupported("freezer")
        }
        let deadline = Sys.monotonicNanos() + UInt64(timeoutMs) * 1_000_000
        while !done() {
            if Sys.monotonicNanos() >= deadline {
                throw ContainerError(.timeout, "cgroup \(relativePath) did not become \(frozen ? "frozen" : "thawed") within \(timeoutMs) ms")
            }
            usleep(1000)
        }
    }

    public var isFrozen: Bool {
        if let v2 = layout.v2Mount, let t = try? Sys.readFile("\(dir(v2))/cgroup.freeze") {
            return t.hasPrefix("1")
        }
        if case .v1(let m) = layout.source(of: "freezer"), let t = try? Sys.readFile("\(dir(m))/freezer.state") {
            return t.hasPrefix("FROZEN")
        }
        return false
    }

    /// Signal every member through a pidfd (never a bare kill(pid)).
    public func signalAll(_ sig: CInt) {
        for pid in members() {
            guard let fd = try? Sys.pidfdOpen(pid) else { continue }
            try? Sys.pidfdSendSignal(fd.raw, sig)
        }
    }

    /// SIGKILL everything, thawing first so that frozen tasks can die.
    public func killAll() {
        if removed { return }
        if let v2 = layout.v2Mount, (try? Sys.writeFile("\(dir(v2))/cgroup.kill", "1")) != nil {
            // cgroup.kill also reaches frozen tasks.
        } else {
            signalAll(SIGKILL)
        }
        // Thawed without waiting: the killed tasks go as they thaw.
        if isFrozen { try? setFrozen(false, timeoutMs: 0) }
    }

    /// Remove the directories; waits up to `timeoutMs` for killed members to go.
    /// The parents ctrobjd made for a requested path (`made`) go right
    /// after their leaf, in the same call, each only if empty (rmdir); a
    /// leaf that was already gone takes no parent with it, so a parent
    /// made again by someone else after ours went is never touched.
    public func remove(timeoutMs: Int = 2000) throws {
        if removed { return }
        let deadline = Sys.monotonicNanos() + UInt64(timeoutMs) * 1_000_000
        for mount in layout.hierarchies {
            let d = dir(mount)
            var removedNow = true
            while rmdir(d) < 0 {
                let e = errno
                if e == ENOENT { removedNow = false; break }
                if e == EBUSY && Sys.monotonicNanos() < deadline {
                    usleep(2000)
                    continue
                }
                throw ContainerError.sys("rmdir \(d)", e)
            }
            guard removedNow, let k = made[mount], k > 1 else { continue }
            var parts = relativePath.split(separator: "/")
            for _ in 1..<min(k, parts.count) {
                parts.removeLast()
                if rmdir(mount + parts.map { "/\($0)" }.joined()) < 0 { break }
            }
        }
        removed = true
    }
}
