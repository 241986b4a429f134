import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// A key request from a process that is not the host's (ctrobj-upcall key,
/// docs/upcalls.md "Key requests"). The helper holds the key's authority, so
/// it runs the container's own request-key itself; ctrobjd says which
/// container the requester is in and hands over the way in.
///
/// | in (helper → ctrobjd)                          | out                                          |
/// |------------------------------------------------|----------------------------------------------|
/// | key: pid, key_type, key_desc + requester pidfd | ok: JoinPlan fields, container, key_timeout + the plan's fds |
/// |                                                | fallthrough: in no container of ours          |
/// |                                                | error: no pidfd, or the requester went away   |
///
/// The helper waits for this answer while a requester sleeps in
/// request_key(2), so it is cheap: attributeLive (Attribution.swift) reads
/// the requester's cgroup (one /proc read), and its namespace inodes only
/// when the cgroup names no container.
extension Broker {
    func routeKey(_ msg: Message, pidfd: Pidfd?) -> (Message, [OwnedFD]) {
        guard let pidfd, let pid = msg["pid"].flatMap({ pid_t($0) }), pid > 0, pidfd.names(pid) else {
            return (.error(ContainerError(.invalidArgument, "key: the requester's pid and pidfd are required")), [])
        }
        var who = ProcessIdentity(pid: pid)
        let r: ContainerRecord
        switch attributeLive(&who, pidfd: pidfd) {
        case .gone: return (.error(ContainerError(.notFound, "key: requester \(pid) went away")), [])
        case .host: return (Message(Op.Upcall.fallthrough), [])
        case .container(let found): r = found
        }
        do {
            let (plan, fds) = try joinPlan(r, enter: true)
            if logger.logLevel <= .info {
                let inside = ProcInfo.statusField(pid: pid, "NSpid")?.last ?? "?"
                logger.info("container \"\(r.name)\": key \(msg["key_type"] ?? "?"):\(msg["key_desc"] ?? "?") requested by pid \(inside): its own request-key answers")
            }
            var f = plan.fields
            f["container"] = r.name
            // How long its request-key may take (upcall.conf, which `ctrobj
            // install` wrote into our state directory for the helper).
            f["key_timeout"] = "\(currentUpcallConfig()?.keyTimeoutSeconds ?? 10)"
            return (.ok(f), fds)
        } catch {
            return (.error((error as? ContainerError) ?? ContainerError(.system, "\(error)")), [])
        }
    }

    /// upcall.conf, read again only when its inode, size or mtime changed
    /// (`ctrobj install` replaces it atomically): a stat per key request
    /// instead of a read and a parse.
    func currentUpcallConfig() -> UpcallConfig? {
        let path = UpcallConfig.path(stateDir: config.stateDir)
        var st = stat()
        guard stat(path, &st) == 0 else {
            upcallConfigCache = nil
            return nil
        }
        let key = [Int(st.st_ino), Int(st.st_size), st.st_mtim.tv_sec, st.st_mtim.tv_nsec]
        if let cached = upcallConfigCache, cached.key == key { return cached.config }
        let conf = UpcallConfig.load(stateDir: config.stateDir)
        upcallConfigCache = (key, conf)
        return conf
    }
}
