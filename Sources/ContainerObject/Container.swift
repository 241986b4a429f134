import CShim
import ContainerSystem
import ContainerWire
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

@_exported import struct ContainerSystem.ContainerError
@_exported import enum ContainerSystem.NamespaceKind
@_exported import enum ContainerWire.ContainerState
@_exported import func ContainerSystem.removeTree

/// container_create's flags.
public struct ContainerOptions: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let newFSNS = ContainerOptions(rawValue: ContainerFlags.newFSNS)
    public static let newEmptyFSNS = ContainerOptions(rawValue: ContainerFlags.newEmptyFSNS)
    public static let newCgroupNS = ContainerOptions(rawValue: ContainerFlags.newCgroupNS)
    public static let newUTSNS = ContainerOptions(rawValue: ContainerFlags.newUTSNS)
    public static let newIPCNS = ContainerOptions(rawValue: ContainerFlags.newIPCNS)
    public static let newUserNS = ContainerOptions(rawValue: ContainerFlags.newUserNS)
    public static let newPIDNS = ContainerOptions(rawValue: ContainerFlags.newPIDNS)
    public static let newNetNS = ContainerOptions(rawValue: ContainerFlags.newNetNS)
    public static let killOnClose = ContainerOptions(rawValue: ContainerFlags.killOnClose)
    public static let fdCloexec = ContainerOptions(rawValue: ContainerFlags.fdCloexec)
    public static let newTimeNS = ContainerOptions(rawValue: ContainerFlags.newTimeNS)

    /// Every namespace, an empty root, kill on close: a sealed sandbox.
    public static let isolated: ContainerOptions = [.newEmptyFSNS, .newCgroupNS, .newUTSNS, .newIPCNS, .newUserNS,
                                                    .newPIDNS, .newNetNS, .killOnClose, .fdCloexec]
}

/// A process started in a container: a child of the caller, held by pidfd.
public final class ContainerProcess {
    public let pid: pid_t
    public let pidfd: OwnedFD
    public private(set) var status: Int32?
    var gate: OwnedFD?

    /// Wrap a child the caller started itself.
    public static func adopt(pid: pid_t, pidfd: OwnedFD) -> ContainerProcess { ContainerProcess(pid: pid, pidfd: pidfd) }

    init(pid: pid_t, pidfd: OwnedFD, gate: OwnedFD? = nil) {
        self.pid = pid
        self.pidfd = pidfd
        self.gate = gate
    }

    /// Let a gated process go on to exec.
    public func release() throws {
        guard let g = gate else { return }
        gate = nil
        try Sys.write(g.raw, "x")
        g.close()
    }

    /// Wait for exit; returns the wait(2) status.
    @discardableResult
    public func wait() throws -> Int32 {
        if let status { return status }
        let s = try Sys.pidfdWait(pidfd.raw) ?? 0
        status = s
        return s
    }

    /// The exit code, or 128 + signal.
    public func waitExitCode() throws -> Int32 {
        let s = try wait()
        return s & 0x7f == 0 ? (s >> 8) & 0xff : 128 + (s & 0x7f)
    }

    public func signal(_ sig: Int32) throws { try Sys.pidfdSendSignal(pidfd.raw, sig) }
}

/// What to run: executable path (inside the container), arguments, environment, stdio.
public struct ProcessSpec {
    public var path: String
    public var arguments: [String]
    public var environment: [String]
    /// fds to become 0, 1, 2 (nil: inherit the caller's).
    public var stdio: (CInt, CInt, CInt)?
    /// Die with the calling thread (PR_SET_PDEATHSIG).
    public var dieWithParent: Bool
    /// Hold the process just before exec until `ContainerProcess.release()`,
    /// so the caller can finish setting up (mount proc once the pid ns exists).
    public var gated: Bool = false

    public init(_ path: String, _ arguments: [String] = [], environment: [String] = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                stdio: (CInt, CInt, CInt)? = nil, dieWithParent: Bool = false) {
        self.path = path
        self.arguments = arguments.isEmpty ? [path] : arguments
        self.environment = environment
        self.stdio = stdio
        self.dieWithParent = dieWithParent
    }
}

/// A container object: the owner of one container fd. Sendable: its one
/// mutable field, the cached way in, is under a Mutex.
public final class Container: Sendable {
    public let fd: OwnedFD

    public init(adopting fd: OwnedFD) { self.fd = fd }

    /// container_create.
    public static func create(_ name: String, options: ContainerOptions) throws -> Container {
        Container(adopting: OwnedFD(try ContainerCalls.create(name: name, flags: options.rawValue | ContainerFlags.fdCloexec)))
    }

    /// container_create with the container's cgroup at `cgroupPath`,
    /// relative to each cgroup hierarchy's root ("/libpod_parent/libpod-1"),
    /// instead of below ctrobjd's parent. Root only; the directory must not
    /// exist yet: ctrobjd makes it (and missing parents) and removes what
    /// it made when the container goes (docs/api.md, docs/security.md).
    public static func create(_ name: String, options: ContainerOptions, cgroupPath: String) throws -> Container {
        Container(adopting: OwnedFD(try ContainerCalls.create(name: name, flags: options.rawValue | ContainerFlags.fdCloexec,
                                                              cgroupPath: cgroupPath)))
    }

    /// Create a container and start its init in one go: one request fewer
    /// than create + spawnInit (the init plan comes with create's answer).
    public static func run(_ name: String, options: ContainerOptions, _ spec: ProcessSpec) throws -> (Container, ContainerProcess) {
        let flags = options.rawValue | ContainerFlags.fdCloexec
        let (m, fds) = try ContainerCalls.call(Message(Op.create, ["name": name, "flags": "\(flags)", "prepare": "1"]))
        guard let first = fds.first else { throw ContainerError(.protocolError, "create: no container fd") }
        let c = Container(adopting: first)
        let planFDs = Array(fds.dropFirst())
        let plan = try JoinPlan(fields: m, fdCount: planFDs.count)
        let process = try c.spawn(spec, prepared: PreparedJoin(containerFD: c.fd.raw, plan: plan, fds: planFDs))
        return (c, process)
    }

    /// Open an existing container by name (its owner or root).
    public static func open(_ name: String) throws -> Container {
        Container(adopting: OwnedFD(try ContainerCalls.open(name: name, flags: ContainerFlags.fdCloexec)))
    }

    public static func list() throws -> [ContainerStatus] { try ContainerCalls.list() }

    /// Register a running process of another runtime (unshare(1), crun) as a
    /// container: its own namespaces, its root, the process as init. ctrobjd
    /// routes its upcalls, but never kills it or removes its cgroup.
    public static func adopt(_ name: String, pid: pid_t) throws -> Container {
        let pidfd = try Sys.pidfdOpen(pid)
        let (_, fds) = try ContainerCalls.call(Message(Op.adopt, ["name": name]), [pidfd.raw])
        guard let fd = fds.first else { throw ContainerError(.protocolError, "adopt: no container fd") }
        return Container(adopting: fd)
    }

    public func status() throws -> ContainerStatus { try ContainerCalls.status(fd.raw) }

    /// Start the container's init (fork_into_container + exec, all in C).
    public func spawnInit(_ spec: ProcessSpec) throws -> ContainerProcess {
        try spawn(spec, enter: false)
    }

    /// Run another process inside the running container (its namespaces,
    /// cgroup and pid namespace, as its root).
    public func exec(_ spec: ProcessSpec) throws -> ContainerProcess {
        try spawn(spec, enter: true)
    }

    /// What entering this running container takes, kept after the first exec
    /// (its namespaces and cgroup do not change while init lives), so later
    /// execs make no request to ctrobjd.
    private let enterCache = Mutex<(JoinPlan, [OwnedFD])?>(nil)

    func joinPlan(enter: Bool) throws -> (JoinPlan, [OwnedFD], PreparedJoin?, cached: Bool) {
        if enter, let c = enterCache.withLock({ $0 }) { return (c.0, c.1, nil, true) }
        let prepared = try ContainerCalls.prepareJoin(fd.raw, enter: enter)
        if enter {
            enterCache.withLock { $0 = (prepared.plan, prepared.fds) }
            return (prepared.plan, prepared.fds, nil, false)
        }
        return (prepared.plan, prepared.fds, prepared, false)
    }

    func spawn(_ spec: ProcessSpec, enter: Bool) throws -> ContainerProcess {
        do {
            return try spawnOnce(spec, enter: enter)
        } catch let e as ContainerError where enter && enterCache.withLock({ $0 != nil }) {
            // A cached way in goes stale when init dies: ask ctrobjd again, once.
            enterCache.withLock { $0 = nil }
            _ = e
            return try spawnOnce(spec, enter: enter)
        }
    }

    func spawnOnce(_ spec: ProcessSpec, enter: Bool) throws -> ContainerProcess {
        let (joinPlan, fds, prepared, _) = try joinPlan(enter: enter)
        return try spawn(spec, plan: joinPlan, fds: fds, prepared: prepared, enter: enter)
    }

    /// Start init with a plan that came with create's answer.
    func spawn(_ spec: ProcessSpec, prepared: PreparedJoin) throws -> ContainerProcess {
        try spawn(spec, plan: prepared.plan, fds: prepared.fds, prepared: prepared, enter: false)
    }

    func spawn(_ spec: ProcessSpec, plan joinPlan: JoinPlan, fds: [OwnedFD], prepared: PreparedJoin?, enter: Bool) throws -> ContainerProcess {
        var plan = joinPlan.cPlan(fds: fds, containerFD: fd.raw)
        let argv = CStringArray(spec.arguments)
        let envp = CStringArray(spec.environment)
        let path = strdup(spec.path)
        defer { free(path) }
        plan.path = UnsafePointer(path)
        plan.argv = UnsafePointer(argv.pointers)
        plan.envp = UnsafePointer(envp.pointers)
        if let s = spec.stdio { plan.stdio = s }
        plan.die_with_parent = spec.dieWithParent ? 1 : 0
        var gateRead: OwnedFD?, gateWrite: OwnedFD?
        if spec.gated {
            let (r, w) = try Sys.pipe()
            gateRead = r
            gateWrite = w
            plan.gate_fd = r.raw
        }
        var stage: CInt = 0
        let pid = withExtendedLifetime((fds, prepared, argv, envp, gateRead)) { ccs_join_fork(&plan, &stage) }
        if pid < 0 {
            let e = errno
            if prepared != nil { ContainerCalls.abort(fd.raw) }
            let name = (try? status().name) ?? "?"
            throw ContainerError(ContainerError.codeFor(e),
                "container \"\(name)\": \(enter ? "exec" : "fork_into_container") \(spec.path): \(childStageName(stage)): \(errnoDescription(e))",
                errno: e)
        }
        gateRead?.close()
        guard let prepared else {
            return ContainerProcess(pid: pid, pidfd: try Sys.pidfdOpen(pid), gate: gateWrite)
        }
        do {
            return ContainerProcess(pid: pid, pidfd: try ContainerCalls.commit(prepared, pid: pid), gate: gateWrite)
        } catch {
            if let p = try? Sys.pidfdOpen(pid) {
                try? Sys.pidfdSendSignal(p.raw, SIGKILL)
                _ = try? Sys.pidfdWait(p.raw)
            }
            throw error
        }
    }

    public func socket(domain: Int32, type: Int32, protocol proto: Int32 = 0) throws -> OwnedFD {
        OwnedFD(try ContainerCalls.socket(fd.raw, domain: domain, type: type | CInt(SOCK_CLOEXEC.rawValue), protocol: proto))
    }

    // MARK: populating the root

    public func openFile(_ path: String, flags: Int32, mode: mode_t = 0o644) throws -> OwnedFD {
        OwnedFD(try ContainerCalls.openat(fd.raw, path, flags: flags | O_CLOEXEC, mode: mode))
    }

    public func mkdir(_ path: String, mode: mode_t = 0o755) throws { try ContainerCalls.mkdirat(fd.raw, path, mode: mode) }

    /// mkdir -p inside the container.
    public func mkdirs(_ path: String, mode: mode_t = 0o755) throws {
        var current = ""
        for part in path.split(separator: "/") {
            current += "/" + part
            do { try mkdir(current, mode: mode) } catch let e as ContainerError where e.errno == EEXIST {}
        }
    }

    public func symlink(_ target: String, at path: String) throws { try ContainerCalls.symlinkat(target, fd.raw, path) }

    public func unlink(_ path: String, directory: Bool = false) throws {
        try ContainerCalls.unlinkat(fd.raw, path, flags: directory ? AT_REMOVEDIR : 0)
    }

    public func chown(_ path: String, uid: uid_t, gid: gid_t) throws { try ContainerCalls.fchownat(fd.raw, path, uid: uid, gid: gid) }

    public func writeFile(_ path: String, _ contents: String, mode: mode_t = 0o644) throws {
        let f = try openFile(path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
        try Sys.write(f.raw, contents)
    }

    public func readFile(_ path: String) throws -> String {
        let f = try openFile(path, flags: O_RDONLY)
        return try Sys.readAll(f.raw)
    }

    /// Copy a host file into the container (binaries for an empty root).
    public func copyIn(hostPath: String, to path: String, mode: mode_t = 0o755) throws {
        let src = try Sys.open(hostPath, O_RDONLY)
        let dst = try openFile(path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
        var st = stat()
        _ = fstat(src.raw, &st)
        var left = Int(st.st_size)
        while left > 0 {
            let n = sendfile(dst.raw, src.raw, nil, left)
            if n < 0 {
                if errno == EINTR { continue }
                throw ContainerError.sys("sendfile \(hostPath)")
            }
            if n == 0 { break }
            left -= n
        }
    }

    public func mount(source: String?, target: String, fstype: String?, flags: UInt = 0, data: String? = nil) throws {
        try ContainerCalls.mount(fd.raw, source: source, target: target, fstype: fstype, flags: flags, data: data)
    }

    /// Bind a host path (opened with the caller's rights) into the container.
    public func bindMount(hostPath: String, target: String, recursive: Bool = true) throws {
        try mount(source: hostPath, target: target, fstype: nil, flags: 4096 | (recursive ? 16384 : 0))
    }

    // MARK: namespaces, limits, lifecycle

    /// Share namespaces with another container (a pod's net, ipc, uts).
    public func shareNamespaces(_ kinds: [NamespaceKind], with other: Container) throws {
        try ContainerCalls.setNamespaces(fd.raw, nstypes: kinds.reduce(0) { $0 | $1.cloneFlag }, source: other.fd.raw)
    }

    /// Take namespaces from a running process (a pidfd).
    public func shareNamespaces(_ kinds: [NamespaceKind], withProcess pidfd: CInt) throws {
        try ContainerCalls.setNamespaces(fd.raw, nstypes: kinds.reduce(0) { $0 | $1.cloneFlag }, source: pidfd)
    }

    public func setLimit(_ limit: CgroupSet.Limit, _ value: Int64) throws {
        try ContainerCalls.simple(fd.raw, Op.limit, ["which": "\(limit.rawValue)", "value": "\(value)"])
    }

    public func stats() throws -> CgroupSet.Stats { try ContainerCalls.stats(fd.raw) }
    public func freeze() throws { try ContainerCalls.simple(fd.raw, Op.freeze) }
    public func thaw() throws { try ContainerCalls.simple(fd.raw, Op.thaw) }
    public func kill(_ signal: Int32 = SIGKILL) throws { try ContainerCalls.simple(fd.raw, Op.kill, ["signal": "\(signal)"]) }
    public func destroy() throws { try ContainerCalls.simple(fd.raw, Op.destroy) }

    /// Upcall policy: where cores go ("file" or "drop"), which modules a
    /// request from this container may load, and which host devices' uevents
    /// are forwarded into its network namespace (kernel names: "loop3",
    /// "veth1"; root only; an empty list revokes every grant).
    public func setPolicy(core: String? = nil, modules: [String]? = nil, devices: [String]? = nil) throws {
        var f: [String: String] = [:]
        if let core { f["core"] = core }
        if let modules { f["modules"] = modules.joined(separator: ",") }
        if let devices { f["devices"] = devices.joined(separator: ",") }
        try ContainerCalls.simple(fd.raw, Op.policy, f)
    }

    /// Close this reference (with CONTAINER_KILL_ON_CLOSE, the last one destroys).
    public func close() { fd.close() }
}
