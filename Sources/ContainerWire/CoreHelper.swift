import CShim
import ContainerSystem
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
    public static func run(stateDir: String, facts inFacts: CoreFacts, coreFD: CInt = 0, pidfd given: OwnedFD? = nil,
                           inPlace: Bool = true) -> Int32 {
        var facts = inFacts
        // Read only on the paths that need it (host, spool): a container's
        // core goes to ctrobjd without it.
        func conf() -> UpcallConfig {
            UpcallConfig.load(stateDir: stateDir)
                ?? UpcallConfig(spoolDir: "/var/lib/ctrobj/spool", previousCorePattern: "core", previousModprobe: nil, mode: "pipe")
        }
        // Safe by pid: the kernel keeps the dumping task until we exit.
        let pidfd = given ?? (try? Sys.pidfdOpen(facts.pid))
        // The cgroup and the pid inside are enough for ctrobjd to place a core
        // of one of its containers; the namespaces (is it the host's?) are
        // read only when ctrobjd says it is not one of them, or is down.
        facts.gatherCgroupAndPid()
        // What /proc said is the task's only if the pidfd still names it
        // (plain "@" mode does not keep the task for us).
        func taskStillThere() -> Bool {
            guard let pidfd, ccs_pidfd_pid(pidfd.raw) != facts.pid else { return true }
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
            try withExtendedLifetime(pidfd) {
                try conn.send(Message("core", facts.fields), fds: [coreFD] + (pidfd.map { [$0.raw] } ?? []))
            }
            let (reply, _) = try conn.receive(timeoutMs: 600_000)
            // Not in a container of ctrobjd's: the host's (or another
            // runtime's) core, handled as before install.
            if reply.op == "fallthrough" { return host() }
            _ = try reply.checked()
            return 0
        } catch let e as ContainerError where e.code == .daemonUnavailable {
            // Without ctrobjd: a host process is handled here as before; any
            // other core waits in the spool.
            facts.gatherNamespaces()
            guard taskStillThere() else { return 1 }
            if facts.isInCallersNamespaces() { return host() }
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

/// What the kernel would have done with a host process's core under the
/// core_pattern that was in place before `ctrobj install`.
public enum HostCore {
    public static func handle(previous: String, facts: CoreFacts, coreFD: CInt, inPlace: Bool = true) -> Int32 {
        let pattern = previous.trimmingSuffixNewline()
        if pattern.hasPrefix("|") {
            // The previous helper with the expanded arguments and the core on
            // its stdin: in place of this process, or spawned beside it (it
            // holds the stream, so the kernel waits for it as before).
            let args = expand(String(pattern.dropFirst()), facts: facts, forPipe: true)
            guard let path = args.first else { return 1 }
            let argv = CStringArray(args)
            let envp = CStringArray(["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
            if !inPlace {
                if spawn(path, argv, envp, stdin: coreFD) { return 0 }
                CoreHelper.log("previous core helper \(path) could not run: \(errnoDescription(errno))")
                _ = try? Stream.copy(from: coreFD, to: nil)
                return 1
            }
            execve(path, argv.pointers, envp.pointers)
            CoreHelper.log("previous core helper \(path) could not run: \(errnoDescription(errno))")
            return 1
        }
        if pattern.hasPrefix("@") {
            CoreHelper.log("previous core_pattern \(pattern) is a socket; host core of pid \(facts.pid) dropped")
            _ = try? Stream.copy(from: coreFD, to: nil)
            return 1
        }
        // A file pattern: the kernel honours RLIMIT_CORE for files, and the
        // file is made with the dumping task's fsuid, relative to its cwd.
        let limit = coreLimit(pid: facts.pid)
        guard limit > 1 else {
            _ = try? Stream.copy(from: coreFD, to: nil)
            return 0
        }
        var name = expand(pattern, facts: facts, forPipe: false).joined()
        if !pattern.contains("%p"), (try? Sys.readFile("/proc/sys/kernel/core_uses_pid"))?.hasPrefix("1") == true {
            name += ".\(facts.pid)"
        }
        let path = name.hasPrefix("/") ? name : "/proc/\(facts.pid)/cwd/\(name)"
        var oldU: uid_t = 0, oldG: gid_t = 0
        let fsuid = facts.dumpMode == 2 ? 0 : facts.uid
        let fsgid = facts.dumpMode == 2 ? 0 : facts.gid
        ccs_swap_fsids(fsuid, fsgid, &oldU, &oldG)
        let out = try? Sys.open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600)
        var u: uid_t = 0, g: gid_t = 0
        ccs_swap_fsids(oldU, oldG, &u, &g)
        guard let out else {
            _ = try? Stream.copy(from: coreFD, to: nil)
            return 1
        }
        _ = try? Stream.copy(from: coreFD, to: out.raw, limit: limit)
        return 0
    }

    /// posix_spawn with `stdin` as fd 0 and default signal handling (the core
    /// server ignores SIGCHLD and SIGPIPE; a helper must not inherit that).
    static func spawn(_ path: String, _ argv: CStringArray, _ envp: CStringArray, stdin: CInt) -> Bool {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGCHLD)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attr, argv.pointers, envp.pointers)
        if rc != 0 { errno = rc }
        return rc == 0
    }

    /// Soft RLIMIT_CORE of the process, from /proc/PID/limits.
    static func coreLimit(pid: pid_t) -> UInt64 {
        guard let text = try? Sys.readFile("/proc/\(pid)/limits") else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("Max core file size") {
            let cols = line.dropFirst("Max core file size".count).split(separator: " ")
            guard let soft = cols.first else { return 0 }
            return soft == "unlimited" ? .max : UInt64(soft) ?? 0
        }
        return 0
    }

    /// Expand core_pattern specifiers. For a pipe the result is split into
    /// arguments at spaces of the pattern, as the kernel does.
    public static func expand(_ pattern: String, facts: CoreFacts, forPipe: Bool) -> [String] {
        var args: [String] = [""]
        var it = pattern.makeIterator()
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, 255)
        while let c = it.next() {
            if c == " " && forPipe {
                if !args[args.count - 1].isEmpty { args.append("") }
                continue
            }
            guard c == "%" else { args[args.count - 1].append(c); continue }
            guard let s = it.next() else { break }
            let v: String
            switch s {
            case "%": v = "%"
            case "p", "i": v = "\(facts.nsPid == 0 ? facts.pid : facts.nsPid)"
            case "P", "I": v = "\(facts.pid)"
            case "u": v = "\(facts.uid)"
            case "g": v = "\(facts.gid)"
            case "d": v = "\(facts.dumpMode)"
            case "s": v = "\(facts.signal)"
            case "t": v = "\(facts.time)"
            case "h": v = String(cString: host)
            case "e": v = facts.comm
            case "c": v = "\(coreLimit(pid: facts.pid))"
            default: v = ""
            }
            args[args.count - 1] += v
        }
        if args.last == "" && args.count > 1 { args.removeLast() }
        return args
    }
}

