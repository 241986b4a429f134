#if canImport(Glibc)
import Glibc
#endif

/// An owned file descriptor: closes in `deinit` unless `take()` handed it off.
///
/// A reference type rather than a `~Copyable` struct: container records keep
/// many of these in dictionaries and optional fields that the event loop
/// shares, which noncopyable types cannot yet live in (see docs/architecture.md).
public final class OwnedFD: CustomStringConvertible {
    public private(set) var raw: CInt

    public init(_ raw: CInt) {
        precondition(raw >= 0, "OwnedFD of a negative fd")
        self.raw = raw
    }

    /// Hand the fd to someone else; this owner no longer closes it.
    public func take() -> CInt {
        let fd = raw
        raw = -1
        return fd
    }

    /// Close now. EINTR counts as success (Linux always releases the fd).
    public func close() {
        guard raw >= 0 else { return }
        let fd = raw
        raw = -1
        if Glibc.close(fd) < 0 && errno == EBADF {
            preconditionFailure("close(\(fd)): EBADF: fd ownership bug")
        }
    }

    public var isOpen: Bool { raw >= 0 }

    /// A new owner of a CLOEXEC duplicate.
    public func duplicate() throws -> OwnedFD {
        let fd = fcntl(raw, F_DUPFD_CLOEXEC, 3)
        if fd < 0 { throw ContainerError.sys("dup") }
        return OwnedFD(fd)
    }

    public var description: String { "fd \(raw)" }

    deinit { close() }
}
