import CShim
#if canImport(Glibc)
import Glibc
#endif

/// SOCK_SEQPACKET messages with fds attached (SCM_RIGHTS).
public enum FDPassing {
    public static let maxMessage = 256 * 1024

    public static func send(_ sock: CInt, _ bytes: [UInt8], fds: [CInt] = []) throws {
        let n = bytes.withUnsafeBytes { buf in
            fds.withUnsafeBufferPointer { f in
                ccs_send_with_fds(sock, buf.baseAddress, buf.count, f.baseAddress, CInt(f.count))
            }
        }
        if n < 0 { throw ContainerError.sys("sendmsg") }
    }

    /// One message, or nil at EOF. Received fds are CLOEXEC; more than
    /// `maxFDs` are closed.
    /// `peekedSize`: the datagram's size when the caller has peeked it already.
    public static func receive(_ sock: CInt, maxFDs: Int = 16, peekedSize: Int? = nil) throws -> (bytes: [UInt8], fds: [OwnedFD])? {
        // The datagram's size first (MSG_PEEK|MSG_TRUNC), so the buffer is
        // just that big: no 256 KiB allocation and zero-fill per message.
        var size = peekedSize ?? Int(ccs_peek_size(sock))
        if size < 0 { throw ContainerError.sys("recv") }
        size = min(max(size, 1), maxMessage)
        var fds = [CInt](repeating: -1, count: max(maxFDs, 1))
        var nfds: CInt = 0
        var n = 0
        let buf = [UInt8](unsafeUninitializedCapacity: size) { b, count in
            n = fds.withUnsafeMutableBufferPointer { f in
                ccs_recv_with_fds(sock, b.baseAddress, b.count, f.baseAddress, CInt(maxFDs), &nfds)
            }
            count = max(n, 0)
        }
        if n < 0 { throw ContainerError.sys("recvmsg") }
        let owned = (0..<Int(nfds)).map { OwnedFD(fds[$0]) }
        if n == 0 && owned.isEmpty { return nil }
        return (buf, owned)
    }

    /// Wait until readable; throws a timeout error after `ms` milliseconds.
    public static func waitReadable(_ fd: CInt, timeoutMs: Int32) throws {
        if ccs_wait_readable(fd, timeoutMs) < 0 { throw ContainerError.sys("poll") }
    }
}
