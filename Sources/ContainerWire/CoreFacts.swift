import CShim
import ContainerSystem
#if canImport(Glibc)
import Glibc
#endif

/// What the core helper learns about a crashing process while the kernel
/// keeps it pinned (core_pipe_limit > 0: the task is not reaped until the
/// helper exits). Sent to ctrobjd as the fields of a "core" message, and
/// written beside a spooled core.
public struct CoreFacts: Sendable, Equatable {
    /// The crashing process: its pid in the host's pid namespace (%P), and
    /// its cgroup and namespaces once read (what attribution takes).
    public var process: ProcessIdentity
    public var pid: pid_t {
        get { process.pid }
        set { process.pid = newValue }
    }
    public var uid: uid_t            // %u, host view
    public var gid: gid_t            // %g
    public var signal: Int32         // %s
    public var time: Int             // %t
    public var dumpMode: Int32       // %d: 1 dumpable, 2 suid_dumpable "root only"
    public var comm: String          // %e
    /// Its pid as its own pid namespace sees it (last NSpid field).
    public var nsPid: pid_t = 0

    public init(pid: pid_t, uid: uid_t, gid: gid_t, signal: Int32, time: Int, dumpMode: Int32, comm: String) {
        self.process = ProcessIdentity(pid: pid)
        self.uid = uid
        self.gid = gid
        self.signal = signal
        self.time = time
        self.dumpMode = dumpMode
        self.comm = comm
    }

    /// The pipe helper's arguments, as core_pattern gives them:
    ///   core   STATE %P %u %g %s %t %d %e...
    ///   corefd STATE %F %P %u %g %s %t %d %e...   (%F: the fd number of a pidfd)
    /// nil if they do not parse.
    public static func pipeArguments(_ a: [String]) -> (state: String, facts: CoreFacts, pidfdNumber: CInt?)? {
        guard a.count >= 2 else { return nil }
        let withFD = a[0] == "corefd"
        guard a[0] == "core" || withFD else { return nil }
        let at = withFD ? 3 : 2
        guard a.count >= at + 7, let pid = pid_t(a[at]), let uid = uid_t(a[at + 1]), let gid = gid_t(a[at + 2]),
              let sig = Int32(a[at + 3]), let time = Int(a[at + 4]), let mode = Int32(a[at + 5]) else { return nil }
        var fdNumber: CInt?
        if withFD {
            guard let n = CInt(a[2]) else { return nil }
            fdNumber = n
        }
        let facts = CoreFacts(pid: pid, uid: uid, gid: gid, signal: sig, time: time, dumpMode: mode,
                              comm: a[(at + 6)...].joined(separator: " "))
        return (a[1], facts, fdNumber)
    }

    /// Read the namespace inodes, cgroup and NSpid of `pid` from /proc.
    public mutating func gather(procRoot: String = "/proc") {
        process.readNamespaces(procRoot: procRoot)
        gatherCgroupAndPid(procRoot: procRoot)
    }

    /// The cgroup v2 path and the pid as its own pid namespace sees it
    /// (enough for ctrobjd to place a core of one of its containers).
    /// Parsed as bytes: this runs for every core.
    public mutating func gatherCgroupAndPid(procRoot: String = "/proc") {
        process.readCgroup(procRoot: procRoot)
        if let bytes = try? Sys.readBytes("\(procRoot)/\(pid)/status"),
           let line = ProcInfo.line(in: bytes, startingWith: Array("NSpid:".utf8)),
           let last = line.split(whereSeparator: { $0 == 0x20 || $0 == 0x09 }).last,
           let v = pid_t(String(decoding: last, as: UTF8.self)) {
            nsPid = v
        }
    }

    public var cgroupKey: String { process.cgroupKey }

    /// Socket mode on a kernel whose pidfd does not name the signal: read it
    /// from the core's NT_PRSTATUS note, leaving the stream whole.
    public mutating func learnSignal(from core: CInt, timeoutMs: Int32 = 2000) {
        if signal == 0 { signal = ccs_core_signal_peek(core, timeoutMs) }
    }

    public var fields: [String: String] {
        var f: [String: String] = [
            "pid": "\(pid)", "uid": "\(uid)", "gid": "\(gid)", "signal": "\(signal)", "time": "\(time)",
            "dump_mode": "\(dumpMode)", "comm": comm, "cgroup": process.cgroup, "ns_pid": "\(nsPid)",
        ]
        for (k, v) in process.namespaces { f["ns.\(k.rawValue)"] = "\(v)" }
        return f
    }

    public init(fields m: Message) throws {
        func n<T: FixedWidthInteger>(_ key: String, _: T.Type) throws -> T? {
            guard let text = m[key] else { return nil }
            guard let v = T(text) else { throw ContainerError(.protocolError, "core: field \(key) out of range") }
            return v
        }
        guard let pid = try n("pid", pid_t.self), let uid = try n("uid", uid_t.self), let gid = try n("gid", gid_t.self) else {
            throw ContainerError(.protocolError, "core: pid, uid and gid are required")
        }
        self.init(pid: pid, uid: uid, gid: gid, signal: try n("signal", Int32.self) ?? 0,
                  time: try n("time", Int.self) ?? 0, dumpMode: try n("dump_mode", Int32.self) ?? 1, comm: m["comm"] ?? "")
        process.cgroup = m["cgroup"] ?? ""
        nsPid = try n("ns_pid", pid_t.self) ?? 0
        for (k, v) in m.fields where k.hasPrefix("ns.") {
            if let kind = NamespaceKind(rawValue: String(k.dropFirst(3))) { process.namespaces[kind] = UInt64(v) }
        }
    }
}
