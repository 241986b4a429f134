import ContainerSystem
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One connection to ctrobjd per process, reused by every request: no
/// connect/accept per call. Requests are serialised by a lock (ctrobjd
/// answers each in well under a millisecond). A child after fork() never
/// uses its parent's connection: it is keyed by pid and socket path. A
/// connection that broke (ctrobjd restarted) is replaced once, transparently.
public enum SharedConnection {
    struct State {
        var conn: Connection?
        var pid: pid_t = 0
        var path = ""
        /// Requests sent without waiting whose answers are still to be read.
        var unanswered = 0
    }
    static let shared = Mutex(State())

    /// The fd of the current process's connection, if any (a forked child
    /// closes it so that it never keeps the parent's requests alive).
    public static var currentFD: CInt {
        shared.withLock { state in state.pid == getpid() ? (state.conn?.fd.raw ?? -1) : -1 }
    }

    public static func request(_ msg: Message, fds: [CInt] = [], path: String = DaemonAddress.socketPath()) throws -> (Message, [OwnedFD]) {
        try shared.withLock { state in try locked(&state, msg, fds: fds, path: path, wait: true) }
    }

    /// Send without waiting for the answer (fork.commit: ctrobjd handles the
    /// messages of one connection in order, so whatever this process asks
    /// next is answered after it). The answer is read, and dropped, before
    /// the next request's.
    public static func post(_ msg: Message, fds: [CInt] = [], path: String = DaemonAddress.socketPath()) throws {
        _ = try shared.withLock { state in try locked(&state, msg, fds: fds, path: path, wait: false) }
    }

    static func locked(_ state: inout State, _ msg: Message, fds: [CInt], path: String, wait: Bool) throws -> (Message, [OwnedFD]) {
        let me = getpid()
        if state.pid != me || state.path != path {
            if state.pid == me { state.conn = nil } else if let c = state.conn { _ = c.fd.take() } // a parent's: not ours to close
            state.conn = nil
            state.unanswered = 0
        }
        for attempt in 0..<2 {
            let conn: Connection
            if let c = state.conn {
                conn = c
            } else {
                conn = try Connection.connect(path)
                state.conn = conn
                state.pid = me
                state.path = path
            }
            do {
                while state.unanswered > 0 {
                    _ = try conn.receive()
                    state.unanswered -= 1
                }
                if !wait {
                    try conn.send(msg, fds: fds)
                    state.unanswered += 1
                    return (Message.ok(), [])
                }
                return try conn.call(msg, fds: fds)
            } catch let e as ContainerError where e.code == .daemonUnavailable && attempt == 0 {
                state.conn = nil // ctrobjd went away since: one new connection
                state.unanswered = 0
                continue
            } catch let e as ContainerError where e.code == .timeout {
                // A late answer would be read as the next request's: start afresh.
                state.conn = nil
                state.unanswered = 0
                throw e
            }
        }
        throw ContainerError(.daemonUnavailable, "ctrobjd is not answering at \(path)", errno: EHOSTDOWN)
    }
}
