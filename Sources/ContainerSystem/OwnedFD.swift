import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An owned file descriptor: closes in `deinit` unless `take()` handed it off.
///
/// A reference type rather than a `~Copyable` struct: container records keep
/// many of these in dictionaries and optional fields that the event loop
/// shares, which noncopyable types cannot yet live in (see docs/architecture.md).
///
/// Sendable: the number is held in an atomic, so `take()` and `close()` from
/// two threads give the fd to exactly one of them (the core route hands a
/// core stream to a worker thread, the core server a connection to one per
/// core); using the raw number while another thread closes it stays the
/// caller's bug, as with any fd.
public final class OwnedFD: CustomStringConvertible, Sendable {
    private let number: Atomic<CInt>

    public init(_ raw: CInt) {
        precondition(raw >= 0, "OwnedFD of a negative fd")
        number = Atomic(raw)
    }

    /// The fd, -1 once taken or closed.
    public var raw: CInt { number.load(ordering: .acquiring) }

    /// Hand the fd to someone else; this owner no longer closes it.
    public func take() -> CInt {
        number.exchange(-1, ordering: .acquiringAndReleasing)
    }

    /// Close now. EINTR counts as success (Linux always releases the fd).
    public func close() {
        let fd = number.exchange(-1, ordering: .acquiringAndReleasing)
        guard fd >= 0 else { return }
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
