import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

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
        let fsuid = facts.dumpMode == 2 ? 0 : facts.uid
        let fsgid = facts.dumpMode == 2 ? 0 : facts.gid
        let out = Sys.withFSIDs(uid: fsuid, gid: fsgid) { try? Sys.open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600) }
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

