import CShim
import ContainerSystem
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A single-threaded epoll loop. Every container-table change happens on
/// this thread, so the table needs no locks: the daemon is a state machine
/// driven by fds becoming ready (connections, container fds, init pidfds,
/// signals).
///
/// Sendable only for `post`, the one method other threads call: its queue
/// is under a Mutex. Everything else (watch, unwatch, run, the handlers)
/// belongs to the loop thread.
public final class EventLoop: @unchecked Sendable {
    public typealias Handler = (UInt32) -> Void
    let epfd: OwnedFD
    var handlers: [CInt: Handler] = [:]
    public private(set) var running = true

    /// Work handed to the loop thread from other threads (post()).
    let wake: OwnedFD
    let posted = Mutex<[@Sendable () -> Void]>([])

    public init() throws {
        let fd = epoll_create1(CInt(EPOLL_CLOEXEC))
        if fd < 0 { throw ContainerError.sys("epoll_create1") }
        epfd = OwnedFD(fd)
        let e = eventfd(0, CInt(EFD_CLOEXEC | EFD_NONBLOCK))
        if e < 0 { throw ContainerError.sys("eventfd") }
        wake = OwnedFD(e)
        try watch(wake.raw) { [weak self] _ in self?.runPosted() }
    }

    /// Run `work` on the loop thread soon; callable from any thread.
    public func post(_ work: @escaping @Sendable () -> Void) {
        posted.withLock { $0.append(work) }
        var one: UInt64 = 1
        _ = write(wake.raw, &one, 8)
    }

    func runPosted() {
        var n: UInt64 = 0
        _ = read(wake.raw, &n, 8)
        let work = posted.withLock { queue in
            let all = queue
            queue.removeAll()
            return all
        }
        for w in work { w() }
    }

    /// Watch fd for `events` (EPOLLIN by default); the handler gets the ready mask.
    public func watch(_ fd: CInt, events: UInt32 = EPOLLIN.rawValue, _ handler: @escaping Handler) throws {
        var ev = epoll_event()
        ev.events = events
        ev.data.fd = fd
        // The table and epoll can disagree when an fd was closed without
        // unwatch (epoll drops it by itself) and its number came back: try
        // the other operation before giving up.
        let op = handlers[fd] == nil ? EPOLL_CTL_ADD : EPOLL_CTL_MOD
        if epoll_ctl(epfd.raw, op, fd, &ev) < 0 {
            let e = errno
            let other = op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD
            guard e == EEXIST || e == ENOENT, epoll_ctl(epfd.raw, other, fd, &ev) == 0 else {
                handlers.removeValue(forKey: fd)
                throw ContainerError.sys("epoll_ctl", e)
            }
        }
        handlers[fd] = handler
    }

    public func unwatch(_ fd: CInt) {
        guard handlers.removeValue(forKey: fd) != nil else { return }
        _ = epoll_ctl(epfd.raw, EPOLL_CTL_DEL, fd, nil)
    }

    public func stop() { running = false }

    /// Run until stop(). `tick` runs at least every `tickMs`.
    public func run(tickMs: Int32 = 1000, tick: () -> Void = {}) {
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        while running {
            let n = epoll_wait(epfd.raw, &events, 64, tickMs)
            if n < 0 {
                if errno == EINTR { continue }
                preconditionFailure("epoll_wait: \(errnoDescription(errno))")
            }
            for i in 0..<Int(n) {
                let fd = events[i].data.fd
                // A handler may unwatch another fd of this batch.
                guard let h = handlers[fd] else { continue }
                h(events[i].events)
                if !running { break }
            }
            tick()
        }
    }
}

/// SIGTERM/SIGINT/SIGHUP as an fd for the loop.
public final class SignalWatch {
    public let fd: OwnedFD

    public init(_ signals: [CInt]) throws {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let f = signalfd(-1, &set, CInt(SFD_CLOEXEC | SFD_NONBLOCK))
        if f < 0 { throw ContainerError.sys("signalfd") }
        fd = OwnedFD(f)
    }

    /// The signals that arrived.
    public func drain() -> [CInt] {
        var out: [CInt] = []
        var info = signalfd_siginfo()
        while read(fd.raw, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
            out.append(CInt(info.ssi_signo))
        }
        return out
    }
}
