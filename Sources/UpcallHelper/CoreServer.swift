import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// The core server: core_pattern's socket mode.
///
///   core_pattern = @@<state>/core.sock   (request protocol, 6.17+)
///   core_pattern = @<state>/core.sock    (6.16: the core, no request)
///
/// `ctrobj-upcall serve <state>` listens there, outside ctrobjd, so that a
/// crash while ctrobjd restarts still finds a listener (a pipe helper spools in
/// that case; so does this server). The kernel connects from the crashing
/// task (SO_PEERPIDFD names it), with the request protocol asks what to do, and
/// with COREDUMP_WAIT keeps the task until we close. Every connection is
/// handled on a thread of its own, which does what the pipe helper does
/// (CoreHelper.run) with the socket as the core stream.
extension CoreServer {
    /// PIDFD_COREDUMPED and PIDFD_COREDUMP_ROOT in pidfd_info.coredump_mask.
    static let coredumped: UInt32 = 1, dumpRoot: UInt32 = 8

    /// Run the server; never returns. `readyFD` (fd 3 when started by
    /// `start`) gets one byte once the socket listens.
    public static func serve(stateDir: String, readyFD: CInt?) -> Never {
        // The server must not dump into itself (the kernel's advice), and
        // previous pipe helpers it spawns for host crashes are reaped by the
        // kernel.
        Sys.setNondumpable()
        signal(SIGCHLD, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        let path = socketPath(stateDir: stateDir)
        let listener: OwnedFD
        do {
            // Only the kernel connects: its lookup ignores the mode, root's
            // processes are the only others that can.
            listener = try Sys.listenUnix(path, type: SOCK_STREAM, mode: 0o600, backlog: 4096)
        } catch {
            CoreHelper.log("core server for \(stateDir) could not start: \(error)")
            exit(1)
        }
        warmUp(stateDir: stateDir)
        // The pid file says "ready": written once the warm-up is done.
        do {
            try Sys.writeFileAtomically(pidPath(stateDir: stateDir), "\(getpid())\n", mode: 0o644)
        } catch {
            CoreHelper.log("core server for \(stateDir) could not write its pid file: \(error)")
            exit(1)
        }
        if let readyFD {
            _ = try? Sys.write(readyFD, "R")
            close(readyFD)
        }
        while true {
            let c: CInt
            do { c = try Sys.accept(listener.raw).take() } catch {
                let e = (error as? ContainerError)?.errno ?? 0
                if e == ECONNABORTED { continue }
                if Sys.isOutOfResources(e) {
                    usleep(10_000)
                    continue
                }
                CoreHelper.log("core server for \(stateDir): accept: \(errnoDescription(e)); exiting")
                exit(1)
            }
            // One thread per connection: a fork per core cost more than the
            // rest of the server's work. A previous pipe helper (host
            // crashes) is spawned, not exec'd in place.
            if !startThread(connection: c, stateDir: stateDir) {
                // No thread to spare: handle it here rather than lose it.
                _ = handle(connection: c, stateDir: stateDir)
                close(c)
            }
        }
    }

    static func startThread(connection c: CInt, stateDir: String) -> Bool {
        startDetachedThread {
            _ = CoreServer.handle(connection: c, stateDir: stateDir)
            close(c)
        }
    }

    /// Run once what every connection runs, before the first one: the
    /// runtime's lazily made state (string tables, metadata) is not built on
    /// a core's path.
    static func warmUp(stateDir: String) {
        var facts = CoreFacts(pid: getpid(), uid: 0, gid: 0, signal: 0, time: Sys.realtimeSeconds(), dumpMode: 1,
                              comm: ProcInfo.comm(pid: getpid()) ?? "")
        facts.gather()
        _ = Namespaces.areCallers(pid: facts.pid)
        _ = UpcallConfig.load(stateDir: stateDir)
        _ = try? CoreFacts(fields: Message.decode(Message(Op.Upcall.core, facts.fields).encoded()))
    }

    /// One kernel connection: answer the request, learn who crashed from
    /// the pidfd, then route the core as the pipe helper would.
    static func handle(connection c: CInt, stateDir: String) -> Int32 {
        let plain = ccs_coredump_first_bytes_are_elf(c)
        if plain < 0 {
            CoreHelper.log("core socket: nothing readable from the kernel: \(errnoDescription(errno))")
            return 1
        }
        if plain == 0 {
            let r = ccs_coredump_handshake(c)
            if r != 0 {
                CoreHelper.log("core socket: request protocol failed (\(r < -1 ? "kernel mark \(-r - 1)" : errnoDescription(errno)))")
                return 1
            }
        }
        guard let pidfd = Pidfd.ofPeer(c) else {
            CoreHelper.log("core socket: no peer pidfd: \(errnoDescription(errno))")
            return 1
        }
        let info: ccs_core_info
        do { info = try pidfd.info() } catch {
            CoreHelper.log("core socket: \(error)")
            return 1
        }
        // Only a task the kernel is dumping: anything else (a root process
        // that connected by hand) is refused.
        guard info.coredump_mask & coredumped != 0 else {
            CoreHelper.log("core socket: peer pid \(info.pid) is not dumping core; refused")
            return 1
        }
        // The signal: from the pidfd where the kernel says (6.19+), else read
        // from the core's first note only when someone needs it (a host
        // fall-through, a container's handler): not on every core's path.
        let facts = CoreFacts(pid: info.pid, uid: info.uid, gid: info.gid, signal: info.signal, time: Sys.realtimeSeconds(),
                              dumpMode: info.coredump_mask & dumpRoot != 0 ? 2 : 1,
                              comm: ProcInfo.comm(pid: info.pid) ?? "")
        return CoreHelper.run(stateDir: stateDir, facts: facts, coreFD: c, pidfd: pidfd, inPlace: false)
    }
}
