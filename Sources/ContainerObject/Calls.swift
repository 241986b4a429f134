import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// The syscall side of the API on raw container fds: what both the Swift
/// `Container` type and the C ABI call. Each function is one request to
/// ctrobjd on this process's one connection to it (SharedConnection: opened
/// on first use, replaced after a fork or a ctrobjd restart), the container
/// fd passed with it as the capability.
public enum ContainerCalls {
    public static func call(_ m: Message, _ fds: [CInt] = []) throws -> (Message, [OwnedFD]) {
        try SharedConnection.request(m, fds: fds)
    }

    /// container_create: returns the new container fd (raw, owned by the caller).
    /// `cgroupPath`: the container's cgroup relative to each hierarchy's
    /// root instead of below ctrobjd's parent (root only; docs/api.md).
    public static func create(name: String, flags: UInt32, cgroupPath: String? = nil) throws -> CInt {
        var f = ["name": name, "flags": "\(flags)"]
        if let cgroupPath { f["cgroup"] = cgroupPath }
        let (_, fds) = try call(Message(Op.create, f))
        return try adopt(fds, cloexec: flags & ContainerFlags.fdCloexec != 0, action: "container_create")
    }

    public static func open(name: String, flags: UInt32) throws -> CInt {
        if flags & ~ContainerFlags.fdCloexec != 0 {
            throw ContainerError(.invalidArgument, "container \"\(name)\": container_open: only CONTAINER_FD_CLOEXEC is allowed")
        }
        let (_, fds) = try call(Message(Op.open, ["name": name]))
        return try adopt(fds, cloexec: flags & ContainerFlags.fdCloexec != 0, action: "container_open")
    }

    static func adopt(_ fds: [OwnedFD], cloexec: Bool, action: String) throws -> CInt {
        guard fds.count == 1 else { throw ContainerError(.protocolError, "\(action): ctrobjd sent \(fds.count) fds") }
        if !cloexec { try Sys.setCloexec(fds[0].raw, false) }
        return fds[0].take()
    }

    public static func status(_ fd: CInt) throws -> ContainerStatus {
        let (m, _) = try call(Message(Op.status), [fd])
        return ContainerStatus(fields: m.fields)
    }

    /// Every container the caller may see, page by page (a page of list
    /// holds what fits well under the socket's buffer; `next` asks for more).
    public static func list() throws -> [ContainerStatus] {
        var out: [ContainerStatus] = []
        var after: UInt64 = 0
        while true {
            let (m, _) = try call(Message(Op.list, ["after": "\(after)", "compact": "1"]))
            let n = max(0, min(m.int("count") ?? 0, 100_000))
            if n > 0 && m["0"] != nil {
                out.reserveCapacity(out.count + n)
                for i in 0..<n { if let line = m["\(i)"] { out.append(ContainerStatus(fields: ListEntry.decode(line))) } }
            } else {
                // Entries as one field per pair ("12.name"), as pages were before compact ones.
                var pages = [[String: String]](repeating: [:], count: n)
                for (k, v) in m.fields {
                    guard let dot = k.firstIndex(of: "."), let i = Int(k[..<dot]), i >= 0, i < pages.count else { continue }
                    pages[i][String(k[k.index(after: dot)...])] = v
                }
                out += pages.map { ContainerStatus(fields: $0) }
            }
            guard let next = m.uint64("next"), next > after else { return out }
            after = next
        }
    }

    public static func socket(_ fd: CInt, domain: CInt, type: CInt, protocol proto: CInt) throws -> CInt {
        let cloexec = type & CInt(SOCK_CLOEXEC.rawValue) != 0
        let nonblock = type & CInt(SOCK_NONBLOCK.rawValue) != 0
        let (_, fds) = try call(Message(Op.socket, ["domain": "\(domain)", "type": "\(type & ~CInt(SOCK_CLOEXEC.rawValue))", "protocol": "\(proto)"]), [fd])
        let s = try adopt(fds, cloexec: cloexec, action: "container_socket")
        if nonblock { _ = fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK) }
        return s
    }

    public static func simple(_ fd: CInt, _ op: String, _ fields: [String: String] = [:]) throws {
        _ = try call(Message(op, fields), [fd])
    }

    public static func stats(_ fd: CInt) throws -> CgroupSet.Stats {
        let (m, _) = try call(Message(Op.stats), [fd])
        return CgroupSet.Stats(memoryBytes: m.uint64("memory") ?? 0, pids: m.uint64("pids") ?? 0, cpuUsageNanos: m.uint64("cpu") ?? 0,
                               anonMemoryBytes: m.uint64("memory_anon") ?? 0)
    }

    public static func setNamespaces(_ fd: CInt, nstypes: Int32, source: CInt) throws {
        _ = try call(Message(Op.setns, ["nstypes": "\(nstypes)"]), [fd, source])
    }

    public static func mount(_ fd: CInt, source: String?, target: String, fstype: String?, flags: UInt, data: String?) throws {
        var fields: [String: String] = ["target": target, "flags": "\(flags)"]
        if let source { fields["source"] = source }
        if let fstype { fields["fstype"] = fstype }
        if let data { fields["data"] = data }
        let msBind: UInt = 4096
        if flags & msBind != 0 {
            guard let source else { throw ContainerError(.invalidArgument, "container_mount: a bind mount needs a source") }
            // The source is opened with the caller's own rights.
            let src = try Sys.open(source, O_PATH)
            _ = try withExtendedLifetime(src) { try call(Message(Op.mount, fields), [fd, src.raw]) }
        } else {
            _ = try call(Message(Op.mount, fields), [fd])
        }
    }

    // MARK: paths inside the container

    /// The container's root as an O_PATH directory fd.
    public static func root(_ fd: CInt) throws -> OwnedFD {
        try rootAndIDs(fd).0
    }

    static func rootAndIDs(_ fd: CInt) throws -> (OwnedFD, uid_t?, gid_t?) {
        let (m, fds) = try call(Message(Op.root), [fd])
        guard let r = fds.first else { throw ContainerError(.protocolError, "root: no fd") }
        return (r, m["fsuid"].flatMap { uid_t($0) }, m["fsgid"].flatMap { gid_t($0) })
    }

    /// Run a path operation below the container's root. A root caller acts as
    /// the container's root (fsuid/fsgid on this thread only), so files it makes
    /// belong to root inside and user-ns-owned filesystems accept them.
    static func inRoot<T>(_ fd: CInt, _ body: (OwnedFD) throws -> T) throws -> T {
        let (root, fsuid, fsgid) = try rootAndIDs(fd)
        guard geteuid() == 0, let fsuid, let fsgid else { return try body(root) }
        return try Sys.withFSIDs(uid: fsuid, gid: fsgid) { try body(root) }
    }

    static let resolveInRoot = Sys.resolveInRoot | Sys.resolveNoMagiclinks

    public static func openat(_ fd: CInt, _ path: String, flags: CInt, mode: mode_t) throws -> CInt {
        let f = try inRoot(fd) { try Sys.openat2($0.raw, path, flags, mode, resolve: resolveInRoot) }
        if flags & O_CLOEXEC == 0 { try Sys.setCloexec(f.raw, false) }
        return f.take()
    }

    /// Split "a/b/c/" into ("a/b", "c"); the parent resolves inside the root.
    static func parent(_ root: OwnedFD, _ path: String) throws -> (OwnedFD, String) {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        let parts = p.split(separator: "/", omittingEmptySubsequences: true)
        guard let last = parts.last else {
            throw ContainerError(.exists, "\(path): the container's root itself", errno: EEXIST)
        }
        let dir = parts.dropLast().joined(separator: "/")
        let d = try Sys.openat2(root.raw, dir.isEmpty ? "." : dir, O_PATH | O_DIRECTORY, 0, resolve: resolveInRoot)
        return (d, String(last))
    }

    public static func mkdirat(_ fd: CInt, _ path: String, mode: mode_t) throws {
        try inRoot(fd) { root in
            let (dir, base) = try parent(root, path)
            if Glibc.mkdirat(dir.raw, base, mode) < 0 { throw ContainerError.sys("mkdirat \(path)") }
        }
    }

    public static func symlinkat(_ target: String, _ fd: CInt, _ path: String) throws {
        try inRoot(fd) { root in
            let (dir, base) = try parent(root, path)
            if Glibc.symlinkat(target, dir.raw, base) < 0 { throw ContainerError.sys("symlinkat \(path)") }
        }
    }

    public static func unlinkat(_ fd: CInt, _ path: String, flags: CInt) throws {
        try inRoot(fd) { root in
            let (dir, base) = try parent(root, path)
            if Glibc.unlinkat(dir.raw, base, flags) < 0 { throw ContainerError.sys("unlinkat \(path)") }
        }
    }

    /// chown without following a final symlink (lchown semantics).
    ///
    /// chown needs CAP_CHOWN, which a changed fsuid drops: this one runs with
    /// the caller's own ids. So that a root caller acts as the container's
    /// root and no more (a file bind-mounted in from the host must not be
    /// given away through the container), it checks what the kernel checks
    /// for CAP_CHOWN inside a user namespace: the file's owner and group and
    /// the new ones must all be mapped into the container's.
    public static func fchownat(_ fd: CInt, _ path: String, uid: uid_t, gid: gid_t) throws {
        let (m, fds) = try call(Message(Op.root), [fd])
        guard let root = fds.first else { throw ContainerError(.protocolError, "root: no fd") }
        let f = try Sys.openat2(root.raw, path, O_PATH | O_NOFOLLOW, 0, resolve: resolveInRoot)
        if geteuid() == 0, let base = m.uint64("fsuid"), let gbase = m.uint64("fsgid"), let count = m.uint64("idcount") {
            var st = stat()
            if fstat(f.raw, &st) < 0 { throw ContainerError.sys("fstat \(path)") }
            func mapped(_ id: UInt32, _ first: UInt64) -> Bool { UInt64(id) >= first && UInt64(id) < first + count }
            let none = UInt32.max // chown's -1: leave as it is
            guard mapped(st.st_uid, base), mapped(st.st_gid, gbase),
                  uid == none || mapped(uid, base), gid == none || mapped(gid, gbase) else {
                throw ContainerError(.permission,
                    "fchownat \(path): the container's root may not: the file (host \(st.st_uid):\(st.st_gid)) or the new owner is not mapped into its user namespace",
                    errno: EPERM, syscall: "fchownat")
            }
        }
        if Glibc.fchownat(f.raw, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 { throw ContainerError.sys("fchownat \(path)") }
    }

    // MARK: joining

    /// Ask ctrobjd for what joining needs. For "init" this reserves the
    /// container until `commit` or `abort` (or until this process exits).
    public static func prepareJoin(_ fd: CInt, enter: Bool) throws -> PreparedJoin {
        let (m, fds) = try call(Message(Op.forkPrepare, ["mode": enter ? "enter" : "init"]), [fd])
        let plan = try JoinPlan(fields: m, fdCount: fds.count)
        return PreparedJoin(containerFD: fd, plan: plan, fds: fds)
    }

    public static func commit(_ prepared: PreparedJoin, pid: pid_t) throws -> OwnedFD {
        let pidfd = try Sys.pidfdOpen(pid) // our own child: cannot be a reused pid
        try withExtendedLifetime(pidfd) {
            try SharedConnection.post(Message(Op.forkCommit, ["pid": "\(pid)"]), fds: [prepared.containerFD, pidfd.raw])
        }
        return pidfd
    }

    /// Give the reservation back after a failed fork.
    public static func abort(_ containerFD: CInt) {
        _ = try? call(Message(Op.forkAbort), [containerFD])
    }
}

/// fds and plan from fork.prepare, turned into the C plan the child uses.
public final class PreparedJoin {
    public let containerFD: CInt
    public let plan: JoinPlan
    public let fds: [OwnedFD]

    init(containerFD: CInt, plan: JoinPlan, fds: [OwnedFD]) {
        self.containerFD = containerFD
        self.plan = plan
        self.fds = fds
    }

    /// The C plan; exec fields left empty (return like fork).
    public func cPlan() -> ccs_join_plan { plan.cPlan(fds: fds, containerFD: containerFD) }
}
