import CShim
import ContainerSystem
#if canImport(Glibc)
import Glibc
#endif

/// Where the core server (core_pattern's socket mode; UpcallHelper's
/// CoreServer.serve, run as `ctrobj-upcall serve <state>`) listens and
/// says it is ready: what the installer writes into core_pattern and
/// ctrobjd supervises.
public enum CoreServer {
    public static func socketPath(stateDir: String) -> String { "\(stateDir)/core.sock" }
    public static func pidPath(stateDir: String) -> String { "\(stateDir)/core-server.pid" }
}

/// Start, find and stop the core server of a state directory.
public enum CoreServerControl {
    /// The running server's pid, checked: a live process whose command line
    /// is `… serve <stateDir>`.
    public static func running(stateDir: String) -> (pid: pid_t, pidfd: OwnedFD)? {
        guard let text = try? Sys.readFile(CoreServer.pidPath(stateDir: stateDir)),
              let pid = pid_t(text.trimmingSuffixNewline()), pid > 0,
              let pidfd = try? Pidfd.open(pid) else { return nil }
        let args = ProcInfo.cmdline(pid: pid)
        guard args.count >= 3, args[1] == "serve", args[2] == stateDir, pidfd.names(pid) else { return nil }
        return (pid, pidfd.fd)
    }

    /// Start `<helper> serve <stateDir>` as a detached daemon unless one runs;
    /// returns once it listens.
    @discardableResult
    public static func start(stateDir: String, helper: String) throws -> pid_t {
        if let r = running(stateDir: stateDir) { return r.pid }
        let (readEnd, writeEnd) = try Sys.pipe()
        let argv = CStringArray([helper, "serve", stateDir])
        let pid = ccs_spawn_detached(helper, argv.pointers, writeEnd.raw)
        writeEnd.close()
        guard pid > 0 else { throw ContainerError.sys("start the core server \(helper)") }
        var pfd = pollfd(fd: readEnd.raw, events: Int16(POLLIN), revents: 0)
        var byte: UInt8 = 0
        guard poll(&pfd, 1, 5000) == 1, read(readEnd.raw, &byte, 1) == 1 else {
            if let pidfd = try? Pidfd.open(pid) { try? pidfd.sendSignal(SIGKILL) }
            throw ContainerError(.system, "the core server \(helper) did not start listening on \(CoreServer.socketPath(stateDir: stateDir)) (see the kernel log)")
        }
        return pid
    }

    /// Stop the server (SIGTERM, then SIGKILL after 2 s) and remove its files.
    /// Connections it already forked off finish on their own.
    public static func stop(stateDir: String) {
        if let (_, pidfd) = running(stateDir: stateDir) {
            let server = Pidfd(pidfd)
            try? server.sendSignal(SIGTERM)
            if !Sys.isReadable(server.raw, timeoutMs: 2000) { try? server.sendSignal(SIGKILL) }
        }
        unlink(CoreServer.socketPath(stateDir: stateDir))
        unlink(CoreServer.pidPath(stateDir: stateDir))
    }
}
