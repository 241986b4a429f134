import CShim
import ContainerSystem
#if canImport(Glibc)
import Glibc
#endif

/// ctrobj-upcall key: what /sbin/request-key runs (through
/// /etc/request-key.d/ctrobj.conf) for every key request.
///
/// The requester is found through the `pid:` of the .request_key_auth key in
/// our session keyring, opened as a pidfd and checked again after reading its
/// namespaces. A host requester gets the host's request-key configuration minus
/// ours (`request-key -l` in <state>/request-key-host). A requester in a
/// container gets that container's own /sbin/request-key, run inside it as its
/// root, holding the authority (our session keyring), killed and the key
/// negated after the timeout.
public enum KeyHelper {
    public struct Request: Sendable {
        public var key: Int32, type: String, description: String, uid: String, gid: String
        public var threadKeyring: String, processKeyring: String, sessionKeyring: String
        public init(key: Int32, type: String, description: String, uid: String, gid: String,
                    threadKeyring: String, processKeyring: String, sessionKeyring: String) {
            self.key = key; self.type = type; self.description = description; self.uid = uid; self.gid = gid
            self.threadKeyring = threadKeyring; self.processKeyring = processKeyring; self.sessionKeyring = sessionKeyring
        }
        var requestKeyArgs: [String] {
            ["create", "\(key)", uid, gid, threadKeyring, processKeyring, sessionKeyring]
        }
    }

    static let keyctlNegate: Int32 = 13

    public static func run(stateDir: String, request: Request, timeoutSeconds: Int) -> Int32 {
        // Never recurse: a container that sees our configuration must not route again.
        if getenv("CTROBJ_UPCALL_DEPTH") != nil { return negate(request, "request-key loop") }
        guard let pid = requesterPid(target: request.key) else {
            CoreHelper.log("key \(request.key): no requester pid in the authority key; host configuration")
            return hostRequestKey(stateDir: stateDir, request)
        }
        guard let pidfd = try? Sys.pidfdOpen(pid) else {
            CoreHelper.log("key \(request.key): requester \(pid) is gone; host configuration")
            return hostRequestKey(stateDir: stateDir, request)
        }
        var facts = CoreFacts(pid: pid, uid: 0, gid: 0, signal: 0, time: Sys.realtimeSeconds(), dumpMode: 1,
                              comm: ProcInfo.comm(pid: pid) ?? "")
        facts.gather()
        // Still the same process (the pidfd pins it; the facts were read after).
        guard ccs_pidfd_pid(pidfd.raw) == pid else { return negate(request, "requester \(pid) went away") }
        if facts.isInCallersNamespaces() { return hostRequestKey(stateDir: stateDir, request) }
        var msg = Message("key", facts.fields)
        msg["key_type"] = request.type
        msg["key_desc"] = request.description
        let reply: Message, fds: [OwnedFD]
        do {
            let conn = try Connection.connect("\(stateDir)/upcall.sock")
            try conn.send(msg)
            (reply, fds) = try conn.receive(timeoutMs: 10_000)
        } catch {
            return negate(request, "ctrobjd did not answer: \(error)")
        }
        if reply.op == "fallthrough" {
            CoreHelper.log("key \(request.key): requester \(pid) is in no container of ctrobjd's; host configuration")
            return hostRequestKey(stateDir: stateDir, request)
        }
        guard reply.op == "ok", let plan = try? JoinPlan(fields: reply, fdCount: fds.count) else {
            return negate(request, "ctrobjd refused: \(reply["message"] ?? reply.op)")
        }
        return runInContainer(plan: plan, fds: fds, request: request, timeoutSeconds: timeoutSeconds,
                              container: reply["container"] ?? "?")
    }

    static func runInContainer(plan: JoinPlan, fds: [OwnedFD], request: Request, timeoutSeconds: Int, container: String) -> Int32 {
        var p = plan.cPlan(fds: fds)
        let argv = CStringArray(["/sbin/request-key"] + request.requestKeyArgs)
        let envp = CStringArray(["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "CTROBJ_UPCALL_DEPTH=1"])
        let path = strdup("/sbin/request-key")
        defer { free(path) }
        p.path = UnsafePointer(path)
        p.argv = UnsafePointer(argv.pointers)
        p.envp = UnsafePointer(envp.pointers)
        p.die_with_parent = 1
        var stage: CInt = 0
        let child = withExtendedLifetime((fds, argv, envp)) { ccs_join_fork(&p, &stage) }
        guard child > 0, let cfd = try? Sys.pidfdOpen(child) else {
            return negate(request, "container \"\(container)\": request-key did not start (step \(stage)): \(errnoDescription(errno))")
        }
        let deadline = Sys.monotonicNanos() + UInt64(timeoutSeconds) * 1_000_000_000
        while Sys.monotonicNanos() < deadline {
            if let status = try? Sys.pidfdWait(cfd.raw, nohang: true) {
                return status & 0x7f == 0 ? (status >> 8) & 0xff : 1
            }
            var pfd = pollfd(fd: cfd.raw, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, 50)
        }
        try? Sys.pidfdSendSignal(cfd.raw, SIGKILL)
        _ = try? Sys.pidfdWait(cfd.raw)
        return negate(request, "container \"\(container)\": request-key took longer than \(timeoutSeconds) s and was killed")
    }

    /// A negative key for 30 s: the requester gets an error at once, never a hang.
    static func negate(_ request: Request, _ why: String) -> Int32 {
        CoreHelper.log("key \(request.key) (\(request.type):\(request.description)) negated: \(why)")
        _ = ccs_keyctl(keyctlNegate, UInt(bitPattern: Int(request.key)), 30, UInt(UInt32(bitPattern: Int32(request.sessionKeyring) ?? 0)), 0)
        return 1
    }

    /// The host's own configuration, without ours.
    static func hostRequestKey(stateDir: String, _ request: Request) -> Int32 {
        let dir = "\(stateDir)/request-key-host"
        guard chdir(dir) == 0 else { return negate(request, "no \(dir)") }
        let argv = CStringArray(["/sbin/request-key", "-l"] + request.requestKeyArgs)
        let envp = CStringArray(["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
        execve("/sbin/request-key", argv.pointers, envp.pointers)
        return negate(request, "exec /sbin/request-key: \(errnoDescription(errno))")
    }

    /// The pid recorded in the authority key (.request_key_auth) for `key`:
    /// /proc/keys describes it as "key:<target> pid:<requester> ci:<len>",
    /// and lists it to us because our session keyring holds it.
    static func requesterPid(target key: Int32) -> pid_t? {
        let marker = "key:\(String(UInt32(bitPattern: key), radix: 16)) pid:"
        guard let text = try? Sys.readFile("/proc/keys") else { return nil }
        for line in text.split(separator: "\n") where line.contains(".request_") {
            guard let r = line.firstRange(of: marker) else { continue }
            return pid_t(line[r.upperBound...].prefix { $0.isNumber })
        }
        return nil
    }
}
