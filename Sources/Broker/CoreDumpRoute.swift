import CShim
import ContainerSystem
import ContainerWire
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Where a container's cores go (its record's "core" policy):
///   file (default)  /var/lib/ctrobj/cores/core.<comm>.<pid inside>.<time>
///                   inside the container's root, owned by its root, mode 0600
///   handler:/PATH   PATH runs inside the container as its root, in its cgroup,
///                   core on stdin, arguments as the container sees them:
///                   PID UID GID SIGNAL TIME COMM (a per-container core_pattern pipe)
///   drop            read and discarded
extension Broker {
    /// `early`: answer "ok accepted" as soon as the core is ours to deliver,
    /// so the helper can exit and drop its copy of the core stream; the
    /// kernel then waits for our close alone. Delivery errors after that
    /// are only logged. Without it (spooled cores) the reply says how the
    /// delivery ended.
    /// `r`: the container attribution found (nil: the host's).
    func routeCore(_ facts: CoreFacts, to r: ContainerRecord?, core: OwnedFD, early: Bool = false, reply: @escaping @Sendable (Message) -> Void) {
        let accepted = { if early { reply(.ok(["accepted": "1"])) } }
        let finished: @Sendable (Message) -> Void = { m in if !early { reply(m) } }
        guard let r else {
            logger.info("core of pid \(facts.pid) (\(facts.comm)): in no container of ours; host handling")
            reply(Message(Op.Upcall.fallthrough))
            return
        }
        if r.corePolicy == "drop" {
            logger.info("container \"\(r.name)\": core of pid \(facts.nsPid) (\(facts.comm)) dropped by policy")
            defer { accepted() }
            runNow {
                _ = try? Stream.copy(from: core.raw, to: nil)
                core.close()
                finished(.ok(["dropped": "1"]))
            }
            return
        }
        if r.corePolicy.hasPrefix("handler:") {
            // Its arguments name the signal; socket mode may not have it yet.
            var facts = facts
            facts.learnSignal(from: core.raw, timeoutMs: 200)
            runCoreHandler(r, facts, core: core, early: early, reply: reply)
            return
        }
        guard let root = try? rootFD(r) else {
            reply(.error(ContainerError(.dead, "container \"\(r.name)\": core: it has no root any more")))
            return
        }
        let fsid = r.rootHostID, fsgid = r.rootHostGID
        let name = r.name
        let file = "core.\(sanitize(facts.comm)).\(facts.nsPid == 0 ? facts.pid : facts.nsPid).\(facts.time)"
        let logger = self.logger
        let stateDir = config.stateDir, defaultSpool = config.spoolDir
        // The worker first, the answer to the helper while it starts.
        defer { accepted() }
        runNow {
            let out: OwnedFD, path: String
            do {
                (out, path) = try openCoreFile(root: root, fsid: fsid, fsgid: fsgid, file: file)
            } catch {
                // Nothing read yet: a live core that cannot go inside (a
                // read-only or full root) is kept on the host, root's only,
                // rather than lost. A spooled one stays in the spool.
                let spoolDir = UpcallConfig.load(stateDir: stateDir)?.spoolDir ?? defaultSpool
                if early, let kept = try? Spool.store(dir: spoolDir, facts: facts, from: core.raw) {
                    rename("\(spoolDir)/\(kept).meta", "\(spoolDir)/\(kept).undeliverable")
                    logger.error("container \"\(name)\": core of pid \(facts.nsPid) cannot be written inside (\(error)); kept on the host as \(spoolDir)/\(kept).core")
                } else {
                    logger.error("container \"\(name)\": core of pid \(facts.nsPid) not delivered: \(error)")
                    _ = try? Stream.copy(from: core.raw, to: nil)
                }
                finished(.error((error as? ContainerError) ?? ContainerError(.system, "\(error)")))
                return
            }
            do {
                let bytes = try Stream.copy(from: core.raw, to: out.raw)
                // Closing the stream is what lets the kernel reap the task:
                // before the log line, not after.
                out.close()
                core.close()
                logger.info("container \"\(name)\": core of pid \(facts.nsPid) (\(facts.comm), signal \(facts.signal)) written to \(path) inside, \(bytes) bytes")
                finished(.ok(["path": path, "bytes": "\(bytes)"]))
            } catch {
                logger.error("container \"\(name)\": core of pid \(facts.nsPid) cut short at \(path) inside: \(error)")
                _ = try? Stream.copy(from: core.raw, to: nil)
                finished(.error((error as? ContainerError) ?? ContainerError(.system, "\(error)")))
            }
        }
    }

    /// Upcall housekeeping (at start and twice a second): deliver spooled
    /// cores and supervise the core server, upcall.conf read once for both.
    func upcallHousekeeping() {
        let conf = currentUpcallConfig()
        drainSpool(dir: conf?.spoolDir ?? config.spoolDir)
        if let conf { superviseCoreServer(conf) }
    }

    /// In socket mode the kernel's cores go to the core server: if it is
    /// gone while core_pattern still names its socket, start it again (a
    /// crash in between finds no listener and its core is lost; the kernel
    /// logs that).
    func superviseCoreServer(_ conf: UpcallConfig) {
        guard conf.mode.hasPrefix("socket") else { return }
        let sock = CoreServer.socketPath(stateDir: config.stateDir)
        guard let pattern = try? Sys.readFile(KernelSettings.corePatternPath).trimmingSuffixNewline(),
              pattern == "@" + sock || pattern == "@@" + sock else { return }
        guard CoreServerControl.running(stateDir: config.stateDir) == nil else { return }
        do {
            let pid = try CoreServerControl.start(stateDir: config.stateDir, helper: "\(config.stateDir)/upcall")
            logger.warning("core server for \(sock) was not running; started it again (pid \(pid))")
        } catch {
            logger.error("core server for \(sock) is not running and could not be started: \(error)")
        }
    }

    /// Deliver what the helper spooled while ctrobjd was down.
    func drainSpool(dir: String) {
        for (name, facts) in Spool.pending(dir: dir) where !spoolInFlight.contains(name) {
            guard let core = try? Sys.open("\(dir)/\(name).core", O_RDONLY) else { continue }
            spoolInFlight.insert(name)
            let loop = self.loop
            routeCore(facts, to: attribute(facts.process), core: core) { [weak self] m in
                let done = m.op == Op.ok
                if done { Spool.remove(dir: dir, name: name) }
                let broker = self
                loop.post { broker?.spoolDelivered(name, dir: dir, reply: m) }
            }
        }
    }
}

let coreDirectory = ["var", "lib", "ctrobj", "cores"]

/// Core work off the event loop, started at once: the kernel is waiting on
/// it (a thread of its own; the shared pool if none can be made).
func runNow(_ job: @escaping @Sendable () -> Void) {
    if !startDetachedThread(job) { DispatchQueue.global().async(execute: job) }
}

func sanitize(_ s: String) -> String {
    String(s.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" }.prefix(32))
}

/// Create a core file below the container's root as the container's root
/// (fsuid on this thread only): directories and file are its root's, nothing
/// follows a symlink the container planted. Returns the file and its path inside.
func openCoreFile(root: OwnedFD, fsid: UInt32, fsgid: UInt32, file: String) throws -> (OwnedFD, String) {
    try Sys.withFSIDs(uid: fsid, gid: fsgid) {
        let strict = Sys.resolveNoSymlinks | Sys.resolveBeneath | Sys.resolveNoMagiclinks
        let inside = "/" + (coreDirectory + [file]).joined(separator: "/")
        // Usually the directory is there: one lookup instead of one per level.
        if let dir = try? Sys.openat2(root.raw, coreDirectory.joined(separator: "/"), O_PATH | O_DIRECTORY, 0, resolve: strict) {
            return (try Sys.openat2(dir.raw, file, O_WRONLY | O_CREAT | O_EXCL, 0o600, resolve: strict), inside)
        }
        var dir = try root.duplicate()
        for part in coreDirectory {
            if mkdirat(dir.raw, part, 0o755) < 0 && errno != EEXIST { throw ContainerError.sys("mkdir /\(coreDirectory.joined(separator: "/"))") }
            dir = try Sys.openat2(dir.raw, part, O_PATH | O_DIRECTORY, 0, resolve: strict)
        }
        return (try Sys.openat2(dir.raw, file, O_WRONLY | O_CREAT | O_EXCL, 0o600, resolve: strict), inside)
    }
}

extension Broker {
    /// Back on the loop thread after a spooled core was handled.
    func spoolDelivered(_ name: String, dir: String, reply: Message) {
        spoolInFlight.remove(name)
        if reply.op == Op.ok {
            logger.info("spooled core \(name) delivered")
        } else {
            // Not ours (a host process, or a container since destroyed): keep
            // it, renamed so it is not retried forever.
            rename("\(dir)/\(name).meta", "\(dir)/\(name).undeliverable")
            logger.warning("spooled core \(name) could not be delivered (\(reply.op) \(reply["message"] ?? "")); kept in \(dir)")
        }
    }
}

/// How long a container's core handler may run.
let coreHandlerTimeoutSeconds = 300

extension Broker {
    /// The container's own core handler, inside it, with the core on stdin.
    func runCoreHandler(_ r: ContainerRecord, _ f: CoreFacts, core: OwnedFD, early: Bool, reply: @escaping @Sendable (Message) -> Void) {
        let finished: @Sendable (Message) -> Void = { m in if !early { reply(m) } }
        let path = String(r.corePolicy.dropFirst("handler:".count))
        let count = r.idCount(config)
        let inside = { (id: UInt32, base: UInt32) -> UInt32 in
            guard r.pins[.user] != nil, id >= base, UInt64(id) < UInt64(base) + UInt64(count) else { return id }
            return id - base
        }
        let args = [path, "\(f.nsPid == 0 ? f.pid : f.nsPid)", "\(inside(f.uid, r.rootHostID))", "\(inside(f.gid, r.rootHostGID))", "\(f.signal)", "\(f.time)", f.comm]
        let plan: JoinPlan, fds: [OwnedFD]
        do {
            (plan, fds) = try joinPlan(r, enter: true)
        } catch {
            reply(.error((error as? ContainerError) ?? ContainerError(.system, "\(error)")))
            return
        }
        let name = r.name
        let logger = self.logger
        if early { reply(.ok(["accepted": "1"])) }
        runNow {
            var p = plan.cPlan(fds: fds)
            let argv = CStringArray(args)
            let envp = CStringArray(["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
            let cpath = strdup(path)
            defer { free(cpath) }
            let devnull = open("/dev/null", O_WRONLY | O_CLOEXEC)
            defer { if devnull >= 0 { close(devnull) } }
            p.path = UnsafePointer(cpath)
            p.argv = UnsafePointer(argv.pointers)
            p.envp = UnsafePointer(envp.pointers)
            p.stdio = (core.raw, devnull, devnull)
            p.new_pgrp = 1
            var stage: CInt = 0
            // Everything the plan points into lives until the fork returned.
            let pid = withExtendedLifetime((fds, argv, envp, core)) { ccs_join_fork(&p, &stage) }
            guard pid > 0, let pidfd = try? Pidfd.open(pid) else {
                let e = errno
                logger.error("container \"\(name)\": core handler \(path) did not start (\(childStageName(stage))): \(errnoDescription(e))")
                _ = try? Stream.copy(from: core.raw, to: nil)
                finished(.error(ContainerError(.system, "core handler \(path) did not start: \(errnoDescription(e))", errno: e)))
                return
            }
            guard let status = pidfd.waitOrKillGroup(pid: pid, timeoutSeconds: coreHandlerTimeoutSeconds) else {
                logger.warning("container \"\(name)\": core handler \(path) killed after \(coreHandlerTimeoutSeconds) s, with its process group")
                finished(.error(ContainerError(.timeout, "core handler timed out")))
                return
            }
            logger.info("container \"\(name)\": core of pid \(args[1]) (\(f.comm)) handed to \(path) inside, wait status \(status)")
            finished(.ok(["handler": path, "status": "\(status)"]))
        }
    }
}
