import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// ctrobj-upcall core: the pipe helper the kernel runs for every core dump,
/// and what the core server (CoreServer) does for every connection.
///
///   core_pattern = |<ctrobj-upcall> core <state-dir> %P %u %g %s %t %d %e
///
/// The core is on stdin. A host process gets exactly what the previous
/// core_pattern gave it, done here without ctrobjd. A process in any other
/// namespace goes to ctrobjd (core pipe and pidfd passed over the upcall
/// socket); if ctrobjd is down, the core and its facts are spooled.
public enum CoreHelper {
    /// `pidfd`: the crashing task's, when the caller has one (socket mode);
    /// otherwise opened by pid, which is safe while the kernel waits for us.
    ///
    /// `inPlace`: a previous pipe helper replaces this process (the pipe
    /// helper's case); otherwise it is spawned (the core server's threads).
    public static func run(stateDir: String, facts inFacts: CoreFacts, coreFD: CInt = 0, pidfd given: Pidfd? = nil,
                           inPlace: Bool = true) -> Int32 {
        var facts = inFacts
        // Read only on the paths that need it (host, spool): a container's
        // core goes to ctrobjd without it.
        func conf() -> UpcallConfig {
            UpcallConfig.load(stateDir: stateDir)
                ?? UpcallConfig(spoolDir: "/var/lib/ctrobj/spool", previousCorePattern: "core", previousModprobe: nil, mode: "pipe")
        }
        // Safe by pid: the kernel keeps the dumping task until we exit.
        let pidfd = given ?? (try? Pidfd.open(facts.pid))
        // The cgroup and the pid inside are enough for ctrobjd to place a core
        // of one of its containers; the namespaces (is it the host's?) are
        // read only when ctrobjd says it is not one of them, or is down.
        facts.gatherCgroupAndPid()
        // What /proc said is the task's only if the pidfd still names it
        // (plain "@" mode does not keep the task for us).
        func taskStillThere() -> Bool {
            guard let pidfd, !pidfd.names(facts.pid) else { return true }
            log("core of pid \(facts.pid) (\(facts.comm)) dropped: the task was gone before it could be attributed")
            _ = try? Stream.copy(from: coreFD, to: nil)
            return false
        }
        guard taskStillThere() else { return 1 }
        func host() -> Int32 {
            facts.learnSignal(from: coreFD)
            return HostCore.handle(previous: conf().previousCorePattern, facts: facts, coreFD: coreFD, inPlace: inPlace)
        }
        do {
            let conn = try Connection.connect("\(stateDir)/upcall.sock")
            try withExtendedLifetime(pidfd?.fd) {
                try conn.send(Message(Op.Upcall.core, facts.fields), fds: [coreFD] + (pidfd.map { [$0.raw] } ?? []))
            }
            let (reply, _) = try conn.receive(timeoutMs: 600_000)
            // Not in a container of ctrobjd's: the host's (or another
            // runtime's) core, handled as before install.
            if reply.op == Op.Upcall.fallthrough { return host() }
            _ = try reply.checked()
            return 0
        } catch let e as ContainerError where e.code == .daemonUnavailable {
            // Without ctrobjd: a host process is handled here as before; any
            // other core waits in the spool.
            facts.process.readNamespaces()
            let isHost = Namespaces.areCallers(pid: facts.pid)
            guard taskStillThere() else { return 1 }
            if isHost { return host() }
            let spoolDir = conf().spoolDir
            do {
                let name = try Spool.store(dir: spoolDir, facts: facts, from: coreFD)
                log("ctrobjd is down: core of pid \(facts.pid) (\(facts.comm)) spooled as \(spoolDir)/\(name)")
                return 0
            } catch {
                log("core of pid \(facts.pid) lost: ctrobjd is down and spooling failed: \(error)")
                return 1
            }
        } catch {
            log("core of pid \(facts.pid): \(error)")
            return 1
        }
    }

    public static func log(_ s: String) {
        // The kernel gives a pipe helper no stderr; /dev/kmsg is where it can be read.
        if let fd = try? Sys.open("/dev/kmsg", O_WRONLY) { try? Sys.write(fd.raw, "ctrobj-upcall: \(s)\n") }
    }
}
