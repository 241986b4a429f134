import ContainerSystem
#if canImport(Glibc)
import Glibc
#endif

/// One connection to ctrobjd per process, reused by every request: no
/// connect/accept per call. Requests are serialised by a lock (ctrobjd
/// answers each in well under a millisecond). A child after fork() never
/// uses its parent's connection: it is keyed by pid and socket path. A
/// connection that broke (ctrobjd restarted) is replaced once, transparently.
public enum SharedConnection {
    final class State {
        var mutex = pthread_mutex_t()
        var conn: Connection?
        var pid: pid_t = 0
        var path = ""
        init() { pthread_mutex_init(&mutex, nil) }
    }
    static let state = State()

    /// The fd of the current process's connection, if any (a forked child
    /// closes it so that it never keeps the parent's requests alive).
    public static var currentFD: CInt {
        pthread_mutex_lock(&state.mutex)
        defer { pthread_mutex_unlock(&state.mutex) }
        return state.pid == getpid() ? (state.conn?.fd.raw ?? -1) : -1
    }

    public static func request(_ msg: Message, fds: [CInt] = [], path: String = DaemonAddress.socketPath()) throws -> (Message, [OwnedFD]) {
        pthread_mutex_lock(&state.mutex)
        defer { pthread_mutex_unlock(&state.mutex) }
        let me = getpid()
        if state.pid != me || state.path != path {
            if state.pid == me { state.conn = nil } else if let c = state.conn { _ = c.fd.take() } // a parent's: not ours to close
            state.conn = nil
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
                return try conn.call(msg, fds: fds)
            } catch let e as ContainerError where e.code == .daemonUnavailable && attempt == 0 {
                state.conn = nil // ctrobjd went away since: one new connection
                continue
            }
        }
        throw ContainerError(.daemonUnavailable, "ctrobjd is not answering at \(path)", errno: EHOSTDOWN)
    }
}
