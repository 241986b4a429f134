import CShim
#if canImport(Glibc)
import Glibc
#endif

/// Swift's one wrapper over each CShim call: retries EINTR, throws ContainerError.
public enum Sys {
    @inline(__always)
    static func retry(_ call: String, _ body: () -> CInt) throws -> CInt {
        while true {
            let r = body()
            if r >= 0 { return r }
            let e = errno
            if e == EINTR { continue }
            precondition(e != EBADF && e != EFAULT, "\(call): \(errnoDescription(e)): a bug, not a runtime error")
            throw ContainerError.sys(call, e)
        }
    }

    /// Like retry, but EBADF is an answer (the caller passed a bad fd), not a bug.
    @inline(__always)
    static func retryAllowingEBADF(_ call: String, _ body: () -> CInt) throws -> CInt {
        while true {
            let r = body()
            if r >= 0 { return r }
            let e = errno
            if e == EINTR { continue }
            throw ContainerError.sys(call, e)
        }
    }

    public static func open(_ path: String, _ flags: CInt, _ mode: mode_t = 0) throws -> OwnedFD {
        OwnedFD(try retryAllowingEBADF("open \(path)") { Glibc.open(path, flags | O_CLOEXEC, mode) })
    }

    public static func openat(_ dir: CInt, _ path: String, _ flags: CInt, _ mode: mode_t = 0) throws -> OwnedFD {
        OwnedFD(try retryAllowingEBADF("openat \(path)") { Glibc.openat(dir, path, flags | O_CLOEXEC, mode) })
    }

    public static let resolveInRoot = UInt64(CCS_RESOLVE_IN_ROOT)
    public static let resolveNoMagiclinks = UInt64(CCS_RESOLVE_NO_MAGICLINKS)
    public static let resolveNoSymlinks = UInt64(CCS_RESOLVE_NO_SYMLINKS)
    public static let resolveBeneath = UInt64(CCS_RESOLVE_BENEATH)

    public static func openat2(_ dir: CInt, _ path: String, _ flags: CInt, _ mode: mode_t = 0, resolve: UInt64) throws -> OwnedFD {
        OwnedFD(try retryAllowingEBADF("openat2 \(path)") { ccs_openat2(dir, path, flags, mode, resolve) })
    }

    public static func pidfdOpen(_ pid: pid_t) throws -> OwnedFD {
        OwnedFD(try retry("pidfd_open") { ccs_pidfd_open(pid, 0) })
    }

    /// A pidfd of any task, a thread included (PIDFD_THREAD where the kernel
    /// has it): the requester of a key may be a thread.
    public static func pidfdOpenTask(_ tid: pid_t) throws -> OwnedFD {
        OwnedFD(try retry("pidfd_open") { ccs_pidfd_open_task(tid) })
    }

    public static func pidfdSendSignal(_ pidfd: CInt, _ sig: CInt) throws {
        _ = try retryAllowingEBADF("pidfd_send_signal") { ccs_pidfd_send_signal(pidfd, sig) }
    }

    /// Reap a child through its pidfd; returns its wait status, or nil with WNOHANG if running.
    public static func pidfdWait(_ pidfd: CInt, nohang: Bool = false) throws -> CInt? {
        var status: CInt = 0
        let r = try retry("waitid") { ccs_pidfd_wait(pidfd, nohang ? WNOHANG : 0, &status) }
        return r == 1 ? status : nil
    }

    public static func waitpid(_ pid: pid_t) throws -> CInt {
        var status: CInt = 0
        _ = try retry("waitpid") { Glibc.waitpid(pid, &status, 0) }
        return status
    }

    public static func write(_ fd: CInt, _ text: String) throws {
        var bytes = Array(text.utf8)
        let n = bytes.count
        _ = try retryAllowingEBADF("write") { bytes.withUnsafeMutableBytes { ccs_write_all(fd, $0.baseAddress, n) } }
    }

    public static func writeFile(_ path: String, _ text: String) throws {
        let fd = try open(path, O_WRONLY)
        do { try write(fd.raw, text) } catch let e as ContainerError {
            throw ContainerError(e.code, "write \(path): \(errnoDescription(e.errno))", errno: e.errno, syscall: "write")
        }
    }

    /// Write a file atomically: a temporary beside it, then rename. With
    /// `durable`, fsync first, so the content survives a power loss too.
    public static func writeFileAtomically(_ path: String, _ text: String, mode: mode_t = 0o600, durable: Bool = false) throws {
        let tmp = path + ".tmp"
        let fd = try open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode)
        try write(fd.raw, text)
        if durable { _ = fsync(fd.raw) }
        fd.close()
        if rename(tmp, path) < 0 { throw ContainerError.sys("rename \(path)") }
    }

    public static func readFile(_ path: String, limit: Int = 1 << 20) throws -> String {
        let fd = try open(path, O_RDONLY)
        return try readAll(fd.raw, limit: limit)
    }

    public static func readAll(_ fd: CInt, limit: Int = 1 << 20) throws -> String {
        String(decoding: try readAllBytes(fd, limit: limit), as: UTF8.self)
    }

    public static func readBytes(_ path: String, limit: Int = 1 << 20) throws -> [UInt8] {
        let fd = try open(path, O_RDONLY)
        return try readAllBytes(fd.raw, limit: limit)
    }

    /// Everything up to EOF (at most `limit` bytes).
    public static func readAllBytes(_ fd: CInt, limit: Int = 1 << 20) throws -> [UInt8] {
        // Through a 4 KiB stack buffer: most files read here (/proc, configs)
        // are small, and a cold process (the upcall helper) would otherwise
        // fault in and zero a fresh 64 KiB heap buffer for each.
        var out = [UInt8]()
        try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 4096) { buf in
            while out.count < limit {
                let n = Glibc.read(fd, buf.baseAddress, min(buf.count, limit - out.count))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw ContainerError.sys("read")
                }
                if n == 0 { break }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: buf[0..<n]))
            }
        }
        return out
    }

    /// The target of a symbolic link (or what /proc/self/fd/N names).
    public static func readLink(_ path: String) throws -> String {
        var buf = [CChar](repeating: 0, count: 4097)
        let n = readlink(path, &buf, buf.count - 1)
        if n < 0 { throw ContainerError.sys("readlink \(path)") }
        guard n < buf.count - 1 else { throw ContainerError(.invalidArgument, "readlink \(path): target too long", errno: ENAMETOOLONG) }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func mkdir(_ path: String, _ mode: mode_t = 0o755, existOK: Bool = true) throws {
        if Glibc.mkdir(path, mode) < 0 {
            let e = errno
            if e == EEXIST && existOK { return }
            throw ContainerError.sys("mkdir \(path)", e)
        }
    }

    /// mkdir -p
    public static func mkdirs(_ path: String, _ mode: mode_t = 0o755) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            try mkdir(current, mode)
        }
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    public static func listDirectory(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafePointer(to: ent.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    public static func seqpacketPair() throws -> (OwnedFD, OwnedFD) {
        var fds: [CInt] = [-1, -1]
        _ = try retry("socketpair") { ccs_seqpacket_pair(&fds) }
        return (OwnedFD(fds[0]), OwnedFD(fds[1]))
    }

    /// posix_spawn `path` with /dev/null on `nullFDs` (the rest inherited),
    /// then waitpid: (pid, wait status).
    public static func spawnAndWait(_ path: String, _ argv: CStringArray, _ env: CStringArray, nullFDs: [CInt]) throws -> (pid_t, CInt) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for fd in nullFDs { posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0) }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, argv.pointers, env.pointers)
        if rc != 0 { throw ContainerError.sys("posix_spawn \(path)", rc) }
        var status: CInt = 0
        while Glibc.waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return (pid, status)
    }

    /// The sockaddr_un of a filesystem socket path.
    public static func unixAddress(_ path: String) throws -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw ContainerError(.invalidArgument, "socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in bytes.enumerated() { p[i] = b } }
        return addr
    }

    /// A listening AF_UNIX socket bound at path (an old one is replaced),
    /// chmod'ed to mode before it listens.
    public static func listenUnix(_ path: String, type: __socket_type, mode: mode_t, backlog: CInt = 128,
                                  nonblocking: Bool = false) throws -> OwnedFD {
        let flags = CInt(SOCK_CLOEXEC.rawValue) | (nonblocking ? CInt(SOCK_NONBLOCK.rawValue) : 0)
        let s = socket(AF_UNIX, CInt(type.rawValue) | flags, 0)
        if s < 0 { throw ContainerError.sys("socket") }
        let fd = OwnedFD(s)
        var addr = try unixAddress(path)
        unlink(path)
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd.raw, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if r < 0 { throw ContainerError.sys("bind \(path)") }
        if chmod(path, mode) < 0 { throw ContainerError.sys("chmod \(path)") }
        if Glibc.listen(fd.raw, backlog) < 0 { throw ContainerError.sys("listen \(path)") }
        return fd
    }

    public static func socketCookie(_ fd: CInt) -> UInt64 { ccs_socket_cookie(fd) }

    /// Whether the peer of a connected unix socket is gone (every reference
    /// to it closed); nil when the kernel cannot say (no sock_diag for unix).
    public static func unixPeerGone(_ fd: CInt) -> Bool? {
        switch ccs_unix_peer_gone(fd) {
        case 1: return true
        case 0: return false
        default: return nil
        }
    }

    public static func peerCred(_ fd: CInt) throws -> (pid: pid_t, uid: uid_t, gid: gid_t) {
        var pid: pid_t = 0, uid: uid_t = 0, gid: gid_t = 0
        _ = try retry("getsockopt SO_PEERCRED") { ccs_peer_cred(fd, &pid, &uid, &gid) }
        return (pid, uid, gid)
    }

    public static func isCloexec(_ fd: CInt) -> Bool { ccs_get_cloexec(fd) == 1 }

    public static func setCloexec(_ fd: CInt, _ on: Bool) throws {
        _ = try retryAllowingEBADF("fcntl F_SETFD") { ccs_set_cloexec(fd, on ? 1 : 0) }
    }

    public static func monotonicNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    public static func realtimeSeconds() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int(ts.tv_sec)
    }
}

/// Helpers for C string arrays handed to execve in a child.
public final class CStringArray {
    public let pointers: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    let count: Int

    public init(_ strings: [String]) {
        count = strings.count
        pointers = .allocate(capacity: strings.count + 1)
        for (i, s) in strings.enumerated() { pointers[i] = strdup(s) }
        pointers[strings.count] = nil
    }

    deinit {
        for i in 0..<count { free(pointers[i]) }
        pointers.deallocate()
    }
}

/// GNU-only flags that Swift's Glibc module does not import.
public let O_PATH: CInt = 0o10000000
public let AT_EMPTY_PATH: CInt = 0x1000

/// rm -rf that first detaches any mount inside (namespace bind mounts).
public func removeTree(_ path: String) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    if (st.st_mode & S_IFMT) == S_IFDIR {
        for e in Sys.listDirectory(path) { removeTree("\(path)/\(e)") }
        // ctrobjd binds <state>/containers onto itself where mounts are shared.
        if rmdir(path) < 0 && errno == EBUSY && umount2(path, Int32(MNT_DETACH)) == 0 { rmdir(path) }
    } else {
        _ = umount2(path, Int32(MNT_DETACH))
        unlink(path)
    }
}

extension Sys {
    /// accept4(SOCK_CLOEXEC); EINTR retried. The error's errno says why not
    /// (EAGAIN: nothing pending; `isOutOfResources`: try again later).
    public static func accept(_ listener: CInt) throws -> OwnedFD {
        OwnedFD(try retryAllowingEBADF("accept") { ccs_accept(listener) })
    }

    /// The errnos of accept (and socket calls like it) that mean "no fd or
    /// memory to spare now": retrying at once would spin.
    public static func isOutOfResources(_ e: CInt) -> Bool {
        e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM
    }

    /// pipe2(O_CLOEXEC).
    public static func pipe() throws -> (read: OwnedFD, write: OwnedFD) {
        var p: [CInt] = [-1, -1]
        _ = try retry("pipe2") { ccs_pipe_cloexec(&p) }
        return (OwnedFD(p[0]), OwnedFD(p[1]))
    }

    /// Whether `fd` is readable within `timeoutMs` (0: now).
    public static func isReadable(_ fd: CInt, timeoutMs: CInt = 0) -> Bool { ccs_wait_readable(fd, timeoutMs) == 0 }

    /// umount2(MNT_DETACH); errors ignored by the callers that want "gone".
    @discardableResult
    public static func umountDetach(_ path: String) -> Bool { ccs_umount_detach(path) == 0 }

    public static func setns(_ fd: CInt, _ kind: NamespaceKind) throws {
        _ = try retryAllowingEBADF("setns \(kind.rawValue)") { ccs_setns(fd, kind.cloneFlag) }
    }

    /// PR_SET_DUMPABLE 0: a process that must not dump into itself.
    public static func setNondumpable() { _ = ccs_set_nondumpable() }

    /// F_SETPIPE_SZ, best effort.
    public static func growPipe(_ fd: CInt, to size: CInt) { _ = ccs_grow_pipe(fd, size) }

    /// Run `body` with this thread's fsuid and fsgid set to `uid`/`gid`
    /// (files it makes are theirs, permission checks are theirs), then put
    /// them back.
    public static func withFSIDs<T>(uid: uid_t, gid: gid_t, _ body: () throws -> T) rethrows -> T {
        var oldU: uid_t = 0, oldG: gid_t = 0
        ccs_swap_fsids(uid, gid, &oldU, &oldG)
        defer {
            var u: uid_t = 0, g: gid_t = 0
            ccs_swap_fsids(oldU, oldG, &u, &g)
        }
        return try body()
    }

    /// KEYCTL_NEGATE: `key` fails requests with ENOKEY for `timeoutSeconds`,
    /// the negative key linked into `keyring` (0: none).
    public static func negateKey(_ key: Int32, timeoutSeconds: UInt, keyring: Int32) {
        _ = ccs_keyctl(CCS_KEYCTL_NEGATE, UInt(bitPattern: Int(key)), timeoutSeconds, UInt(UInt32(bitPattern: keyring)), 0)
    }
}

extension Sys {
    /// Write to fd 2, unbuffered (Glibc's `stderr` is a shared mutable
    /// global that Swift 6 will not let threads touch).
    public static func printError(_ s: String) { _ = try? write(2, s) }
}
