import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// ctrobj-upcall key: what /sbin/request-key runs (through
/// /etc/request-key.d/ctrobj.conf) for every key request.
///
/// The requester is found through the `pid:` of the .request_key_auth key in
/// our session keyring and opened as a pidfd. A host requester (every
/// namespace ours) gets the host's request-key configuration minus ours
/// (`request-key -l` in <state>/request-key-host), without asking ctrobjd. Any
/// other requester's pidfd goes to ctrobjd, which reads its namespaces and
/// cgroup, checks the pidfd still names it, and answers with the container's
/// join plan (or "fallthrough": the host configuration). The container's own
/// /sbin/request-key then runs inside it as its root, holding the authority
/// (our session keyring), killed and the key negated after the timeout.
///
/// This runs once per key request, in a process the kernel has just started,
/// so it is written for a cold start: bytes and fixed buffers rather than
/// String searching, no /proc file read that the decision does not need,
/// one fork (we join the pid namespace ourselves, so the child is born in it).
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

    public static func run(stateDir: String, request: Request) -> Int32 {
        // Never recurse: a container that sees our configuration must not route again.
        if getenv("CTROBJ_UPCALL_DEPTH") != nil { return negate(request, "request-key loop") }
        guard let pid = requesterPid(target: request.key) else {
            CoreHelper.log("key \(request.key): no requester pid in the authority key; host configuration")
            return hostRequestKey(stateDir: stateDir, request)
        }
        // The requester may be a thread. A task we cannot open is not known to
        // be the host's: never the host's configuration for it.
        let pidfd: Pidfd
        do {
            pidfd = try Pidfd.openTask(pid)
        } catch {
            return negate(request, "the requester \(pid) cannot be opened: \(error)")
        }
        let host = Namespaces.areCallers(pid: pid)
        // Still the same process (the pidfd pins it; the namespaces were read after).
        guard pidfd.names(pid) else { return negate(request, "requester \(pid) went away") }
        if host { return hostRequestKey(stateDir: stateDir, request) }
        let msg = Message(Op.Upcall.key, ["pid": "\(pid)", "key_type": request.type, "key_desc": request.description])
        let reply: Message, fds: [OwnedFD]
        do {
            let conn = try Connection.connect("\(stateDir)/upcall.sock")
            try withExtendedLifetime(pidfd.fd) { try conn.send(msg, fds: [pidfd.raw]) }
            (reply, fds) = try conn.receive(timeoutMs: 10_000)
        } catch {
            return negate(request, "ctrobjd did not answer: \(error)")
        }
        if reply.op == Op.Upcall.fallthrough {
            CoreHelper.log("key \(request.key): requester \(pid) is in no container of ctrobjd's; host configuration")
            return hostRequestKey(stateDir: stateDir, request)
        }
        guard reply.op == Op.ok, let plan = try? JoinPlan(fields: reply, fdCount: fds.count) else {
            return negate(request, "ctrobjd refused: \(reply["message"] ?? reply.op)")
        }
        // The timeout (upcall.conf key_timeout) comes with the answer: ctrobjd
        // reads the file warm, which is cheaper than parsing it here, cold.
        return runInContainer(plan: plan, fds: fds, request: request, timeoutSeconds: reply.int("key_timeout") ?? 10,
                              container: reply["container"] ?? "?")
    }

    static func runInContainer(plan: JoinPlan, fds: [OwnedFD], request: Request, timeoutSeconds: Int, container: String) -> Int32 {
        var p = plan.cPlan(fds: fds)
        // We only wait from here on: join the container's pid namespace for
        // our children ourselves, so the one child we fork is born in it (no
        // intermediate process to fork and reap).
        if case .join(let i) = plan.pidns {
            do { try Sys.setns(fds[i].raw, .pid) } catch {
                return negate(request, "container \"\(container)\": join its pid namespace: \(errnoDescription((error as? ContainerError)?.errno ?? 0))")
            }
            p.pidns_mode = 0
            p.pidns_fd = -1
        }
        let argv = CStringArray(["/sbin/request-key"] + request.requestKeyArgs)
        let envp = CStringArray(["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "CTROBJ_UPCALL_DEPTH=1"])
        let path = strdup("/sbin/request-key")
        defer { free(path) }
        p.path = UnsafePointer(path)
        p.argv = UnsafePointer(argv.pointers)
        p.envp = UnsafePointer(envp.pointers)
        p.die_with_parent = 1
        p.new_pgrp = 1
        var stage: CInt = 0
        let child = withExtendedLifetime((fds, argv, envp)) { ccs_join_fork(&p, &stage) }
        guard child > 0, let cfd = try? Pidfd.open(child) else {
            return negate(request, "container \"\(container)\": request-key did not start (step \(stage)): \(errnoDescription(errno))")
        }
        if let status = cfd.waitOrKillGroup(pid: child, timeoutSeconds: timeoutSeconds) {
            return status & 0x7f == 0 ? (status >> 8) & 0xff : 1
        }
        return negate(request, "container \"\(container)\": request-key took longer than \(timeoutSeconds) s and was killed, with its process group")
    }

    /// A negative key for 30 s: the requester gets an error at once, never a hang.
    static func negate(_ request: Request, _ why: String) -> Int32 {
        CoreHelper.log("key \(request.key) (\(request.type):\(request.description)) negated: \(why)")
        Sys.negateKey(request.key, timeoutSeconds: 30, keyring: Int32(request.sessionKeyring) ?? 0)
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
    /// /proc/keys describes it as "key:<target> pid:<requester> ci:<len>"
    /// (type column ".request_"), and lists it to us because our session
    /// keyring holds it. Scanned as bytes.
    static func requesterPid(target key: Int32) -> pid_t? {
        let fd = open("/proc/keys", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var text: [UInt8] = []
        text.reserveCapacity(8192)
        let chunk = 8192
        while text.count < 1 << 22 {
            let old = text.count
            text.append(contentsOf: repeatElement(0, count: chunk))
            let n = text.withUnsafeMutableBytes { read(fd, $0.baseAddress! + old, chunk) }
            if n < 0 && errno == EINTR { text.removeLast(chunk); continue }
            text.removeLast(chunk - max(n, 0))
            if n <= 0 { break }
        }
        let marker = Array("key:".utf8) + hexDigits(UInt32(bitPattern: key)) + Array(" pid:".utf8)
        // Only the authority key's own line: its type column (the 8th, 9
        // characters wide) is ".request_" and its description starts with
        // the marker. A key the requester made can have any description,
        // never that type.
        let want = Array(".request_ ".utf8) + marker
        let space = UInt8(ascii: " ")
        return text.withUnsafeBufferPointer { b -> pid_t? in
            var start = 0
            while start < b.count {
                var end = start
                while end < b.count && b[end] != UInt8(ascii: "\n") { end += 1 }
                var c = start
                for _ in 0..<7 {
                    while c < end && b[c] == space { c += 1 }
                    while c < end && b[c] != space { c += 1 }
                }
                while c < end && b[c] == space { c += 1 }
                if end - c >= want.count && b[c..<(c + want.count)].elementsEqual(want) {
                    let m = c + 10
                    var v: Int32 = 0, i = m + marker.count, digits = 0
                    while i < end, b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9"), digits < 9 {
                        v = v * 10 + Int32(b[i] - UInt8(ascii: "0"))
                        i += 1
                        digits += 1
                    }
                    return digits > 0 ? v : nil
                }
                start = end + 1
            }
            return nil
        }
    }

    /// Lower-case hex, as the kernel prints a key serial ("%x").
    static func hexDigits(_ v: UInt32) -> [UInt8] {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        var x = v
        repeat {
            out.append(digits[Int(x & 0xf)])
            x >>= 4
        } while x != 0
        return out.reversed()
    }
}
