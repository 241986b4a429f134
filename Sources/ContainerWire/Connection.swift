import ContainerSystem
#if canImport(Glibc)
import Glibc
#endif

/// Where ctrobjd listens: $CTROBJ_SOCKET, else $CTROBJ_STATE_DIR/ctrobjd.sock,
/// else /run/ctrobj/ctrobjd.sock.
public enum DaemonAddress {
    public static let defaultStateDir = "/run/ctrobj"

    /// A per-task override of the socket (tests run one daemon each).
    @TaskLocal public static var override: String?

    public static func stateDir(_ env: [String: String] = environment()) -> String {
        env["CTROBJ_STATE_DIR"] ?? defaultStateDir
    }

    public static func socketPath(_ env: [String: String] = environment()) -> String {
        override ?? env["CTROBJ_SOCKET"] ?? "\(stateDir(env))/ctrobjd.sock"
    }

    public static func environment() -> [String: String] {
        var out: [String: String] = [:]
        for key in ["CTROBJ_SOCKET", "CTROBJ_STATE_DIR"] {
            if let v = getenv(key) { out[key] = String(cString: v) }
        }
        return out
    }
}

/// One connection to ctrobjd (SOCK_SEQPACKET). Requests are synchronous.
public final class Connection: Sendable {
    public let fd: OwnedFD
    public let path: String

    init(fd: OwnedFD, path: String) {
        self.fd = fd
        self.path = path
    }

    /// How long a request may wait for its answer: $CTROBJ_TIMEOUT_MS, else 30 s.
    public static let defaultTimeoutMs: Int32 = {
        if let v = getenv("CTROBJ_TIMEOUT_MS"), let ms = Int32(String(cString: v)), ms > 0 { return ms }
        return 30_000
    }()

    public static func connect(_ path: String = DaemonAddress.socketPath()) throws -> Connection {
        let s = socket(AF_UNIX, CInt(SOCK_SEQPACKET.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        if s < 0 { throw ContainerError.sys("socket") }
        let fd = OwnedFD(s)
        var addr = try Sys.unixAddress(path)
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd.raw, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if r < 0 {
            let e = errno
            if e == ENOENT || e == ECONNREFUSED || e == EACCES {
                throw ContainerError(.daemonUnavailable,
                    "ctrobjd is not running (no daemon at \(path): \(errnoDescription(e))); start it as root with `ctrobjd &` (or `ctrobjd --state-dir DIR` and CTROBJ_STATE_DIR=DIR for a private one)",
                    errno: EHOSTDOWN, syscall: "connect")
            }
            throw ContainerError.sys("connect \(path)", e)
        }
        return Connection(fd: fd, path: path)
    }

    public func send(_ msg: Message, fds: [CInt] = []) throws {
        do {
            try FDPassing.send(fd.raw, msg.encoded(), fds: fds)
        } catch let e as ContainerError where e.errno == EPIPE || e.errno == ECONNRESET {
            throw ContainerError(.daemonUnavailable, "ctrobjd closed the connection during \(msg.op)", errno: EHOSTDOWN)
        }
    }

    public func receive(timeoutMs: Int32 = Connection.defaultTimeoutMs) throws -> (Message, [OwnedFD]) {
        if timeoutMs >= 0 {
            do { try FDPassing.waitReadable(fd.raw, timeoutMs: timeoutMs) } catch let e as ContainerError where e.errno == ETIMEDOUT {
                throw ContainerError(.timeout, "ctrobjd did not answer within \(timeoutMs) ms", errno: ETIMEDOUT)
            }
        }
        let got: (bytes: [UInt8], fds: [OwnedFD])?
        do {
            got = try FDPassing.receive(fd.raw, maxFDs: 64)
        } catch let e as ContainerError where e.errno == ECONNRESET {
            // ctrobjd went away with our request unread (killed and restarted).
            throw ContainerError(.daemonUnavailable, "ctrobjd closed the connection without reading the request", errno: EHOSTDOWN)
        }
        guard let (bytes, fds) = got else {
            throw ContainerError(.daemonUnavailable, "ctrobjd hung up without answering", errno: EHOSTDOWN)
        }
        return (try Message.decode(bytes), fds)
    }

    /// Send a request and wait for its reply; an "error" reply is thrown.
    public func call(_ msg: Message, fds: [CInt] = []) throws -> (Message, [OwnedFD]) {
        try send(msg, fds: fds)
        let (reply, replyFDs) = try receive()
        return (try reply.checked(), replyFDs)
    }
}
