import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// What one request got back, as the attack reports it.
///
/// | result  | meaning                                               |
/// |---------|-------------------------------------------------------|
/// | ok      | an "ok" reply (fds: how many came with it)            |
/// | error   | an "error" reply: errno and message are ctrobjd's     |
/// | hangup  | ctrobjd closed the connection (errno 0: EOF, or the recv/send errno) |
/// | timeout | no answer within the wait                             |
enum Outcome {
    case ok(Message, [OwnedFD])
    case error(Int32, String)
    case hangup(Int32)
    case timeout

    var errno: Int32 {
        switch self {
        case .ok: return 0
        case .error(let e, _): return e
        case .hangup(let e): return e
        case .timeout: return ETIMEDOUT
        }
    }

    var isOK: Bool { if case .ok = self { return true } else { return false } }

    var fds: [OwnedFD] { if case .ok(_, let f) = self { return f } else { return [] } }

    var message: Message? { if case .ok(let m, _) = self { return m } else { return nil } }

    var report: [(String, String)] {
        switch self {
        case .ok(_, let fds): return [("result", "ok"), ("errno", "0"), ("fds", "\(fds.count)")]
        case .error(let e, let m): return [("result", "error"), ("errno", "\(e)"), ("message", m)]
        case .hangup(let e): return [("result", "hangup"), ("errno", "\(e)")]
        case .timeout: return [("result", "timeout"), ("errno", "\(ETIMEDOUT)")]
        }
    }
}

/// The report: one line per step, tab-separated `key=value` pairs, the
/// first always `step=NAME`. Values have tabs and newlines replaced by
/// spaces and control bytes by `?`, so one line stays one line.
enum Report {
    nonisolated(unsafe) static var broke: [String] = []

    static func line(_ step: String, _ pairs: [(String, String)]) {
        var s = "step=\(step)"
        for (k, v) in pairs { s += "\t\(k)=\(clean(v))" }
        print(s)
        fflush(nil)
    }

    /// A step whose outcome is judged: `held` when its errno is one the
    /// contract allows (0 for success), `broke` otherwise.
    @discardableResult
    static func expect(_ step: String, _ o: Outcome, _ allowed: Set<Int32>) -> Outcome {
        let held = allowed.contains(o.errno)
        if !held { broke.append(step) }
        line(step, o.report + [("expect", allowed.sorted().map(String.init).joined(separator: ",")), ("verdict", held ? "held" : "broke")])
        return o
    }

    static func clean(_ v: String) -> String {
        String(decoding: v.utf8.prefix(400).map { $0 == 9 || $0 == 10 || $0 == 13 ? 32 : ($0 < 32 || $0 == 127 ? UInt8(ascii: "?") : $0) },
               as: UTF8.self)
    }
}

/// A connection to ctrobjd spoken raw: any bytes, any fds, any number.
final class Raw {
    let fd: OwnedFD

    init(fd: OwnedFD) { self.fd = fd }

    static var socketPath: String { DaemonAddress.socketPath() }

    static func connect(_ path: String = socketPath) throws -> Raw {
        let s = socket(AF_UNIX, CInt(SOCK_SEQPACKET.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        if s < 0 { throw ContainerError.sys("socket") }
        let fd = OwnedFD(s)
        // A big send buffer (the kernel caps it at wmem_max), so that
        // oversized requests reach ctrobjd instead of failing here with EMSGSIZE.
        var size: CInt = 1 << 20
        _ = setsockopt(fd.raw, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<CInt>.size))
        var addr = try Sys.unixAddress(path)
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd.raw, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if r < 0 { throw ContainerError.sys("connect \(path)") }
        return Raw(fd: fd)
    }

    /// sendmsg with any number of fds (the library's sender caps them at 32).
    /// Returns 0 or the errno.
    func sendBytes(_ bytes: [UInt8], fds: [CInt] = [], dontWait: Bool = false) -> Int32 {
        let header = MemoryLayout<cmsghdr>.size
        let data = fds.count * MemoryLayout<CInt>.size
        let space = fds.isEmpty ? 0 : header + ((data + 7) & ~7)
        let control = UnsafeMutableRawPointer.allocate(byteCount: max(space, 8), alignment: 8)
        defer { control.deallocate() }
        control.initializeMemory(as: UInt8.self, repeating: 0, count: max(space, 8))
        if !fds.isEmpty {
            let h = control.assumingMemoryBound(to: cmsghdr.self)
            h.pointee.cmsg_len = header + data
            h.pointee.cmsg_level = SOL_SOCKET
            h.pointee.cmsg_type = CInt(SCM_RIGHTS)
            for (i, f) in fds.enumerated() { control.storeBytes(of: f, toByteOffset: header + i * 4, as: CInt.self) }
        }
        var buffer = bytes.isEmpty ? [UInt8](repeating: 0, count: 1) : bytes
        let n: Int = buffer.withUnsafeMutableBytes { b in
            var iov = iovec(iov_base: b.baseAddress, iov_len: bytes.count)
            return withUnsafeMutablePointer(to: &iov) { iovp in
                var msg = msghdr()
                msg.msg_iov = iovp
                msg.msg_iovlen = 1
                if !fds.isEmpty {
                    msg.msg_control = control
                    msg.msg_controllen = space
                }
                var r: Int
                repeat { r = sendmsg(fd.raw, &msg, Int32(MSG_NOSIGNAL) | (dontWait ? Int32(MSG_DONTWAIT) : 0)) } while r < 0 && Glibc.errno == EINTR
                return r
            }
        }
        _ = buffer.count
        return n < 0 ? Glibc.errno : 0
    }

    func send(_ m: Message, fds: [CInt] = []) -> Int32 { sendBytes(m.encoded(), fds: fds) }

    /// One reply, or what happened instead.
    func receive(timeoutMs: Int32 = 10_000) -> Outcome {
        if ccs_wait_readable(fd.raw, timeoutMs) < 0 {
            return Glibc.errno == ETIMEDOUT ? .timeout : .hangup(Glibc.errno)
        }
        do {
            guard let (bytes, fds) = try FDPassing.receive(fd.raw, maxFDs: 64) else { return .hangup(0) }
            guard let m = try? Message.decode(bytes) else { return .error(EPROTO, "undecodable reply of \(bytes.count) bytes") }
            if m.op == "error" { return .error(Int32(m["errno"] ?? "") ?? EIO, m["message"] ?? "") }
            return .ok(m, fds)
        } catch let e as ContainerError {
            return .hangup(e.errno)
        } catch {
            return .hangup(EIO)
        }
    }

    func call(_ op: String, _ fields: [String: String] = [:], fds: [CInt] = [], timeoutMs: Int32 = 10_000) -> Outcome {
        callBytes(Message(op, fields).encoded(), fds: fds, timeoutMs: timeoutMs)
    }

    func callBytes(_ bytes: [UInt8], fds: [CInt] = [], timeoutMs: Int32 = 10_000) -> Outcome {
        let e = sendBytes(bytes, fds: fds)
        if e != 0 { return .hangup(e) }
        return receive(timeoutMs: timeoutMs)
    }

    /// create; the container fd comes with an ok.
    func create(_ name: String, flags: UInt32) -> Outcome {
        call(Op.create, ["name": name, "flags": "\(flags)"])
    }
}

/// fds for stuffing messages.
func devNull() -> OwnedFD? { try? Sys.open("/dev/null", O_RDONLY | O_CLOEXEC) }

func pidfd(of pid: pid_t) -> (OwnedFD?, Int32) {
    let f = ccs_pidfd_open(pid, 0)
    if f < 0 { return (nil, errno) }
    return (OwnedFD(f), 0)
}
