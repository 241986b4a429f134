import CShim
import ContainerABI
import ContainerObject
import ContainerSystem
import ContainerWire
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// The C ABI of container.h. Every function returns -1 with errno set on
// failure, and keeps the message for container_last_error().

private let lastErrorKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { free($0) }
    return key
}()

/// The "ctrobjd is down" warning is printed once per process, whichever thread fails first.
private let warnedDaemonDown = Atomic(false)

@inline(__always)
private func fail(_ e: Error) -> Int32 {
    let ce = (e as? ContainerError) ?? ContainerError(.system, "\(e)")
    if let old = pthread_getspecific(lastErrorKey) { free(old) }
    pthread_setspecific(lastErrorKey, strdup(ce.message))
    if ce.code == .daemonUnavailable && !warnedDaemonDown.exchange(true, ordering: .relaxed) {
        Sys.printError("libcontainerobject: \(ce.message)\n")
    }
    errno = ce.errno
    return -1
}

@inline(__always)
private func run(_ body: () throws -> Int32) -> Int32 {
    do { return try body() } catch { return fail(error) }
}

private func str(_ p: UnsafePointer<CChar>?) -> String? { p.map { String(cString: $0) } }

@_cdecl("container_last_error")
public func container_last_error() -> UnsafePointer<CChar>? {
    UnsafePointer(pthread_getspecific(lastErrorKey)?.assumingMemoryBound(to: CChar.self))
}

@_cdecl("container_create")
public func container_create(_ name: UnsafePointer<CChar>?, _ flags: UInt32) -> Int32 {
    run {
        guard let name = str(name) else { throw ContainerError(.invalidArgument, "container_create: name is NULL", errno: EFAULT) }
        return try ContainerCalls.create(name: name, flags: flags)
    }
}

@_cdecl("container_create_cgroup")
public func container_create_cgroup(_ name: UnsafePointer<CChar>?, _ flags: UInt32, _ path: UnsafePointer<CChar>?) -> Int32 {
    run {
        guard let name = str(name) else { throw ContainerError(.invalidArgument, "container_create_cgroup: name is NULL", errno: EFAULT) }
        guard let path = str(path) else { throw ContainerError(.invalidArgument, "container_create_cgroup: cgroup_path is NULL", errno: EFAULT) }
        return try ContainerCalls.create(name: name, flags: flags, cgroupPath: path)
    }
}

@_cdecl("container_open")
public func container_open(_ name: UnsafePointer<CChar>?, _ flags: UInt32) -> Int32 {
    run {
        guard let name = str(name) else { throw ContainerError(.invalidArgument, "container_open: name is NULL", errno: EFAULT) }
        return try ContainerCalls.open(name: name, flags: flags)
    }
}

@_cdecl("container_socket")
public func container_socket(_ fd: Int32, _ domain: Int32, _ type: Int32, _ proto: Int32) -> Int32 {
    run { try ContainerCalls.socket(fd, domain: domain, type: type, protocol: proto) }
}

@_cdecl("container_openat")
public func container_openat(_ fd: Int32, _ path: UnsafePointer<CChar>?, _ flags: Int32, _ mode: mode_t) -> Int32 {
    run { try ContainerCalls.openat(fd, str(path) ?? "", flags: flags, mode: mode) }
}

@_cdecl("container_mkdirat")
public func container_mkdirat(_ fd: Int32, _ path: UnsafePointer<CChar>?, _ mode: mode_t) -> Int32 {
    run { try ContainerCalls.mkdirat(fd, str(path) ?? "", mode: mode); return 0 }
}

@_cdecl("container_symlinkat")
public func container_symlinkat(_ target: UnsafePointer<CChar>?, _ fd: Int32, _ path: UnsafePointer<CChar>?) -> Int32 {
    run { try ContainerCalls.symlinkat(str(target) ?? "", fd, str(path) ?? ""); return 0 }
}

@_cdecl("container_unlinkat")
public func container_unlinkat(_ fd: Int32, _ path: UnsafePointer<CChar>?, _ flags: Int32) -> Int32 {
    run { try ContainerCalls.unlinkat(fd, str(path) ?? "", flags: flags); return 0 }
}

@_cdecl("container_fchownat")
public func container_fchownat(_ fd: Int32, _ path: UnsafePointer<CChar>?, _ uid: uid_t, _ gid: gid_t) -> Int32 {
    run { try ContainerCalls.fchownat(fd, str(path) ?? "", uid: uid, gid: gid); return 0 }
}

@_cdecl("container_mount")
public func container_mount(_ fd: Int32, _ source: UnsafePointer<CChar>?, _ target: UnsafePointer<CChar>?,
                            _ fstype: UnsafePointer<CChar>?, _ flags: UInt, _ data: UnsafePointer<CChar>?) -> Int32 {
    run {
        try ContainerCalls.mount(fd, source: str(source), target: str(target) ?? "", fstype: str(fstype), flags: flags, data: str(data))
        return 0
    }
}

@_cdecl("container_set_ns")
public func container_set_ns(_ fd: Int32, _ nstypes: UInt32, _ source: Int32) -> Int32 {
    run { try ContainerCalls.setNamespaces(fd, nstypes: Int32(bitPattern: nstypes), source: source); return 0 }
}

@_cdecl("container_set_limit")
public func container_set_limit(_ fd: Int32, _ which: Int32, _ value: Int64) -> Int32 {
    run { try ContainerCalls.simple(fd, Op.limit, ["which": "\(which)", "value": "\(value)"]); return 0 }
}

@_cdecl("container_get_stats")
public func container_get_stats(_ fd: Int32, _ out: UnsafeMutablePointer<container_stats>?) -> Int32 {
    run {
        guard let out else { throw ContainerError(.invalidArgument, "container_get_stats: NULL", errno: EFAULT) }
        let s = try ContainerCalls.stats(fd)
        out.pointee = container_stats(memory_bytes: s.memoryBytes, pids: s.pids, cpu_usage_ns: s.cpuUsageNanos)
        return 0
    }
}

@_cdecl("container_get_status")
public func container_get_status(_ fd: Int32, _ out: UnsafeMutablePointer<container_status>?) -> Int32 {
    run {
        guard let out else { throw ContainerError(.invalidArgument, "container_get_status: NULL", errno: EFAULT) }
        let s = try ContainerCalls.status(fd)
        var c = container_status()
        c.id = s.id
        c.flags = s.flags
        c.state = UInt32(s.state.rawValue)
        c.init_pid = s.initPid
        c.has_exit_status = s.exitStatus == nil ? 0 : 1
        c.exit_status = s.exitStatus ?? 0
        c.owner = s.owner
        withUnsafeMutableBytes(of: &c.name) { raw in
            let bytes = Array(s.name.utf8.prefix(raw.count - 1))
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        out.pointee = c
        return 0
    }
}

@_cdecl("container_freeze")
public func container_freeze(_ fd: Int32) -> Int32 { run { try ContainerCalls.simple(fd, Op.freeze); return 0 } }

@_cdecl("container_thaw")
public func container_thaw(_ fd: Int32) -> Int32 { run { try ContainerCalls.simple(fd, Op.thaw); return 0 } }

@_cdecl("container_kill")
public func container_kill(_ fd: Int32, _ sig: Int32) -> Int32 {
    run { try ContainerCalls.simple(fd, Op.kill, ["signal": "\(sig)"]); return 0 }
}

@_cdecl("container_destroy")
public func container_destroy(_ fd: Int32) -> Int32 { run { try ContainerCalls.simple(fd, Op.destroy); return 0 } }

// MARK: fork_into_container's Swift half

@_cdecl("ctrobj_abi_fork_prepare")
public func ctrobj_abi_fork_prepare(_ fd: Int32, _ f: UnsafeMutablePointer<ctrobj_abi_fork>) -> Int32 {
    run {
        let prepared = try ContainerCalls.prepareJoin(fd, enter: false)
        guard prepared.fds.count <= Int(CTROBJ_ABI_MAX_FDS) else {
            throw ContainerError(.protocolError, "fork_into_container: too many fds in the plan")
        }
        f.pointee.plan = prepared.cPlan()
        f.pointee.nfds = Int32(prepared.fds.count)
        withUnsafeMutableBytes(of: &f.pointee.fds) { raw in
            let a = raw.bindMemory(to: Int32.self)
            // The raw numbers in the plan stay valid: the fds are taken, not closed.
            for (i, o) in prepared.fds.enumerated() { a[i] = o.take() }
        }
        // Not ours to close: the child closes this number (the process's
        // shared connection) so that it never speaks on its parent's.
        f.pointee.conn = SharedConnection.currentFD
        f.pointee.container_fd = fd
        return 0
    }
}

private func closeAll(_ f: UnsafeMutablePointer<ctrobj_abi_fork>) {
    withUnsafeBytes(of: &f.pointee.fds) { raw in
        let a = raw.bindMemory(to: Int32.self)
        for i in 0..<Int(f.pointee.nfds) { Glibc.close(a[i]) }
    }
    f.pointee.nfds = 0
}

@_cdecl("ctrobj_abi_fork_commit")
public func ctrobj_abi_fork_commit(_ f: UnsafeMutablePointer<ctrobj_abi_fork>, _ pid: pid_t) -> pid_t {
    closeAll(f)
    return run {
        let pidfd = try Sys.pidfdOpen(pid)
        do {
            try SharedConnection.post(Message(Op.forkCommit, ["pid": "\(pid)"]), fds: [f.pointee.container_fd, pidfd.raw])
        } catch {
            // The kernel would not have made the child at all: take it back.
            try? Sys.pidfdSendSignal(pidfd.raw, SIGKILL)
            _ = try? Sys.pidfdWait(pidfd.raw)
            throw error
        }
        return pid
    }
}

@_cdecl("ctrobj_abi_fork_abort")
public func ctrobj_abi_fork_abort(_ f: UnsafeMutablePointer<ctrobj_abi_fork>, _ err: Int32, _ stage: Int32) {
    closeAll(f)
    ContainerCalls.abort(f.pointee.container_fd)
    _ = fail(ContainerError(ContainerError.codeFor(err), "fork_into_container: child failed at step \(stage): \(errnoDescription(err))", errno: err))
}
