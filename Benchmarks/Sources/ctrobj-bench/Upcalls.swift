import CShim
import ContainerObject
import ContainerSystem
import UpcallInstall
#if canImport(Glibc)
import Glibc
#endif

// The upcall group (`--upcalls`, `--upcalls-only`): the broker against the
// plain kernel mechanism it replaces, measured side by side in one run.
//
//   core     crash inside a container → whole core inside it through the broker
//            (socket mode and pipe mode), against the same crash with a plain
//            `|corecopy DIR %P` pipe helper writing a host file
//   key      request_key round trip from inside a container through the broker,
//            against stock /sbin/request-key with a host rule
//   startup  exec + exit of ctrobj-upcall (usage, exit 2) against `return 2;` in C
//
// Global state touched, and how it is put back (every path, signals included):
//   /proc/sys/kernel/core_pattern, core_pipe_limit   saved first (KernelSettings),
//       restored by a defer and by the signal handler in guard.c (SIGINT, SIGTERM,
//       SIGHUP and the fatal ones; SIGPIPE is ignored meanwhile, so a closed
//       stdout cannot kill the harness before it cleans up)
//   /etc/request-key.d/ctrobj.conf        UpcallInstaller install/uninstall
//   /etc/request-key.d/ctrobj-bench.conf  the reference rule, only for the key scenario
// The run refuses to start if either file exists or the broker is installed
// for any state directory (someone else's run or test is using them).

struct UpcallOptions {
    var coreRounds = 40
    var keyRounds = 60
    var startupRuns = 400
    var helper: String?
}

/// The static C programs of Benchmarks/reference, built into the work directory.
struct UpcallPrograms {
    let crasher, corecopy, sleeper, exit2, keyreq, rkchain: String

    init(sourceDir: String, workDir: String) throws {
        func build(_ name: String, cc: String = "/usr/bin/cc") throws -> String {
            let out = "\(workDir)/\(name)"
            try Command("cc \(name)", [cc, "-O2", "-Wall", "-static", "-o", out, "\(sourceDir)/\(name).c"],
                        log: "\(workDir)/cc-\(name).log").check()
            return out
        }
        crasher = try build("crasher")
        corecopy = try build("corecopy")
        sleeper = try build("sleeper")
        exit2 = try build("exit2")
        keyreq = try build("keyreq")
        // Built as the broker's C helpers are (scripts/build-c-helpers.sh).
        rkchain = try build("rkchain", cc: Sys.exists("/usr/bin/musl-gcc") ? "/usr/bin/musl-gcc" : "/usr/bin/cc")
    }
}

/// guard.c, loaded with dlopen: restores core_pattern/core_pipe_limit and
/// removes the registered files on SIGINT/SIGTERM, then chains to the
/// harness's own handler.
final class KernelStateGuard {
    typealias Arm = @convention(c) (UnsafePointer<CChar>?, Int, UnsafePointer<CChar>?, Int) -> CInt
    typealias Path = @convention(c) (UnsafePointer<CChar>?) -> CInt
    typealias Void0 = @convention(c) () -> Void
    let arm: Arm, unlinkFn: Path, rmdirFn: Path, restoreFn: Void0, disarmFn: Void0

    init(sourceDir: String, workDir: String, saved: KernelSettings) throws {
        let lib = try LoadedCLibrary(name: "guard", sources: ["\(sourceDir)/guard.c"], workDir: workDir)
        arm = try lib.sym("guard_arm", Arm.self)
        unlinkFn = try lib.sym("guard_unlink", Path.self)
        rmdirFn = try lib.sym("guard_rmdir", Path.self)
        restoreFn = try lib.sym("guard_restore", Void0.self)
        disarmFn = try lib.sym("guard_disarm", Void0.self)
        let p = Array(saved.corePattern.utf8).map { CChar(bitPattern: $0) }
        let l = Array(saved.corePipeLimit.utf8).map { CChar(bitPattern: $0) }
        if arm(p, p.count, l, l.count) < 0 { throw BenchError("guard_arm: saved settings too long") }
    }

    func unlinkOnSignal(_ path: String) { _ = unlinkFn(path) }
    func rmdirOnSignal(_ path: String) { _ = rmdirFn(path) }
    func restoreAndDisarm() {
        restoreFn()
        disarmFn()
    }
}

/// One wait(2) status as text.
func waitStatusText(_ s: Int32) -> String {
    s & 0x7f == 0 ? "exit \((s >> 8) & 0xff)" : "signal \(s & 0x7f)\(s & 0x80 != 0 ? " (core dumped)" : "")"
}

/// posix_spawn + waitpid, timed from before the spawn to waitpid returning;
/// stdin/stdout from/to /dev/null, stderr inherited. Returns (ns, pid, status).
func spawnAndWait(_ argv: CStringArray, _ env: CStringArray, path: String) throws -> (UInt64, pid_t, Int32) {
    let t0 = now()
    let (pid, status) = try Sys.spawnAndWait(path, argv, env, nullFDs: [0, 1])
    return (now() - t0, pid, status)
}

/// A pipe, both ends CLOEXEC: (read, write).
func cloexecPipe() throws -> (OwnedFD, OwnedFD) {
    var p: [CInt] = [-1, -1]
    if ccs_pipe_cloexec(&p) < 0 { throw BenchError("pipe2: \(errnoText(errno))") }
    return (OwnedFD(p[0]), OwnedFD(p[1]))
}

/// posix_spawn + waitpid like spawnAndWait, with stdout to a pipe that is
/// read after waitpid (the programs print one short line). Returns (ns, stdout, status).
func spawnCapturing(_ argv: CStringArray, _ env: CStringArray, path: String) throws -> (UInt64, String, Int32) {
    let (r, w) = try cloexecPipe()
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, w.raw, 1)
    var pid: pid_t = 0
    let t0 = now()
    let rc = posix_spawn(&pid, path, &actions, nil, argv.pointers, env.pointers)
    if rc != 0 { throw BenchError("posix_spawn \(path): \(errnoText(rc))") }
    w.close()
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let t = now() - t0
    return (t, (try? Sys.readAll(r.raw, limit: 4096)) ?? "", status)
}

/// The nanoseconds keyreq printed for its request_key(2) call.
func keyreqCallTime(_ out: String, _ desc: String) throws -> UInt64 {
    guard let v = UInt64(out.trimmingSuffixNewline()) else { throw BenchError("keyreq \(desc): no call time on stdout (\"\(out)\")") }
    return v
}

func fileSize(_ path: String) -> Int64? {
    var st = stat()
    return stat(path, &st) == 0 ? Int64(st.st_size) : nil
}

let requestKeyConfDir = KernelSettings.requestKeyDir
let benchRuleFile = "\(KernelSettings.requestKeyDir)/ctrobj-bench.conf"
let brokerRuleFile = "\(KernelSettings.requestKeyDir)/ctrobj.conf"

/// Runs the three upcall scenarios; returns the markdown for the upcall
/// results section. Every change to global state is undone before it returns.
func runUpcalls(_ uo: UpcallOptions, daemon: PrivateDaemon, name: String, work: String, referenceDir: String) throws -> String {
    // Absolute: the installer links <state>/upcall to it, and the kernel runs that link.
    let given = uo.helper ?? executableDirectory() + "/ctrobj-upcall"
    guard let resolved = realpath(given, nil) else { throw BenchError("upcalls: no ctrobj-upcall at \(given) (swift build -c release --scratch-path .build-bench --product ctrobj-upcall)") }
    let helper = String(cString: resolved)
    free(resolved)
    guard Sys.exists(helper) else { throw BenchError("upcalls: no ctrobj-upcall at \(helper) (swift build -c release --scratch-path .build-bench --product ctrobj-upcall)") }
    guard Sys.exists("/bin/keyctl"), Sys.exists("/sbin/request-key") else { throw BenchError("upcalls: needs keyutils (/bin/keyctl, /sbin/request-key)") }

    // MARK: save, refuse if busy, guard
    let saved = try KernelSettings.read()
    let rkdExisted = Sys.exists(requestKeyConfDir)
    let rkdBefore = Sys.listDirectory(requestKeyConfDir).sorted()
    if saved.corePattern.contains("ctrobj") || Sys.exists(brokerRuleFile) || Sys.exists(benchRuleFile) {
        throw BenchError("upcalls: the broker or a benchmark rule is installed already (core_pattern \(saved.corePattern.trimmingSuffixNewline()), \(rkdBefore)); not touching it. Is the test suite (its upcall suites) running?")
    }
    let programs = try UpcallPrograms(sourceDir: referenceDir, workDir: work)
    let guardian = try KernelStateGuard(sourceDir: referenceDir, workDir: work, saved: saved)
    let oldPipe = signal(SIGPIPE, SIG_IGN)
    defer { signal(SIGPIPE, oldPipe) }
    guardian.unlinkOnSignal(brokerRuleFile)
    guardian.unlinkOnSignal(benchRuleFile)
    if !rkdExisted { guardian.rmdirOnSignal(requestKeyConfDir) }
    let installer = UpcallInstaller(stateDir: daemon.stateDir, helper: helper, spoolDir: "\(daemon.stateDir)-spool")
    let coreDir = "/dev/shm/\(name)-cores"
    defer {
        if installer.isInstalled { _ = try? installer.uninstall() }
        unlink(benchRuleFile)
        if !rkdExisted { rmdir(requestKeyConfDir) }
        try? saved.restore()
        guardian.restoreAndDisarm()
        removeTree(coreDir)
        removeTree("\(daemon.stateDir)-spool")
        let after = try? KernelSettings.read()
        let rkdAfter = Sys.listDirectory(requestKeyConfDir).sorted()
        if after != saved || rkdAfter != rkdBefore || Sys.exists(requestKeyConfDir) != rkdExisted {
            log("upcalls: WARNING: kernel state differs after restore: core_pattern \(after?.corePattern ?? "?") limit \(after?.corePipeLimit ?? "?") request-key.d \(rkdAfter)")
        } else {
            log("upcalls: core_pattern, core_pipe_limit and \(requestKeyConfDir) restored byte for byte")
        }
    }

    var out = ""
    let env = CStringArray(["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])

    // MARK: core dumps
    // Every variant crashes the same static program inside the same kind of
    // container, started the same way (exec into the container + waitpid), so
    // the only difference is what takes the core: the broker in socket mode,
    // the broker in pipe mode, or a plain pipe helper writing a host file.
    try Sys.mkdir(coreDir, 0o700)
    let refPattern = "|\(programs.corecopy) \(coreDir) %P"
    if saved.corePipeLimit.trimmingSuffixNewline() == "0" { try Sys.writeFile(KernelSettings.corePipeLimitPath, "64") }
    guard KernelSettings.tryCorePattern(refPattern) else { throw BenchError("upcalls: the kernel did not take core_pattern \(refPattern)") }
    let report = try installer.install()
    let socketPattern: String? = report.mode.hasPrefix("socket") ? report.corePattern : nil
    let pipePattern = installer.corePattern(.pipe, pidfd: report.socketModeSupported)
    let pipeLimit = (try? Sys.readFile(KernelSettings.corePipeLimitPath))?.trimmingSuffixNewline() ?? "?"
    /// An empty-root container with the static crasher, whose init is the static sleeper.
    func crashContainer(_ name: String, policy: String?) throws -> (Container, ContainerProcess) {
        try daemon.with {
            let c = try Container.create(name, options: [.newEmptyFSNS, .newPIDNS, .newUserNS, .killOnClose])
            try c.mkdirs("/bin")
            try c.copyIn(hostPath: programs.crasher, to: "/bin/crasher")
            try c.copyIn(hostPath: programs.sleeper, to: "/bin/sleeper")
            if let policy { try c.setPolicy(core: policy) }
            return (c, try c.spawnInit(ProcessSpec("/bin/sleeper", ["sleeper"])))
        }
    }
    let (crashC, crashInit) = try crashContainer("crash", policy: nil)
    defer { crashC.close() }
    defer { try? crashInit.signal(SIGKILL); _ = try? crashInit.wait() }
    let (dropC, dropInit) = try crashContainer("crash-drop", policy: "drop")
    defer { dropC.close() }
    defer { try? dropInit.signal(SIGKILL); _ = try? dropInit.wait() }

    func setPattern(_ p: String) throws {
        // After SIGINT/SIGTERM the guard has put core_pattern back: leave it so.
        guard interrupted == 0 else { throw BenchError("interrupted") }
        try Sys.writeFile(KernelSettings.corePatternPath, p)
    }
    /// The cores the broker left inside the container.
    func coresInside() -> [String] {
        guard let fd = try? daemon.with({ try crashC.openFile("/var/lib/ctrobj/cores", flags: O_RDONLY | O_DIRECTORY) }) else { return [] }
        // Kept open until the listing is done (an optimised build frees it after its last use).
        return withExtendedLifetime(fd) { Sys.listDirectory("/proc/self/fd/\(fd.raw)").filter { $0.hasPrefix("core.") } }
    }
    /// Crash inside `c` and time it to waitpid (the kernel waits for the handler).
    func crashInside(_ c: Container, _ mib: Int) throws -> UInt64 {
        let t0 = now()
        let p = try daemon.with { try c.exec(ProcessSpec("/bin/crasher", ["crasher", "\(mib)"])) }
        let s = try p.wait()
        let t = now() - t0
        guard s & 0x7f == SIGSEGV, s & 0x80 != 0 else { throw BenchError("crasher inside: \(waitStatusText(s)), not a core dump") }
        return t
    }
    /// Through the broker: the one core inside the container, whole at waitpid.
    func brokerCrash(_ pattern: String, _ mib: Int) throws -> UInt64 {
        let want = Int64(mib) << 20
        try setPattern(pattern)
        for f in coresInside() { try? daemon.with { try crashC.unlink("/var/lib/ctrobj/cores/\(f)") } }
        let t = try crashInside(crashC, mib)
        let found = coresInside()
        guard found.count == 1 else { throw BenchError("cores inside after waitpid: \(found)") }
        let path = "/var/lib/ctrobj/cores/\(found[0])"
        let f = try daemon.with { try crashC.openFile(path, flags: O_RDONLY) }
        var st = stat()
        let rc = withExtendedLifetime(f) { fstat(f.raw, &st) }
        try daemon.with { try crashC.unlink(path) }
        guard rc == 0 else { throw BenchError("fstat \(path) inside: \(errnoText(errno))") }
        guard Int64(st.st_size) >= want else { throw BenchError("core inside is \(st.st_size) bytes at waitpid, less than \(want)") }
        return t
    }

    let socketLabel = "library, socket mode (`\(socketPattern?.prefix(2) == "@@" ? "@@" : "@")`): crash inside a container → core inside it"
    let pipeLabel = "library, pipe mode (`|\(pipePattern.hasPrefix("|" + installer.pipeLink) ? "ctrobj-upcall-pipe" : "ctrobj-upcall")`): crash inside a container → core inside it"
    let refLabel = "reference: the same crash inside the same kind of container, plain pipe helper (`corecopy DIR %P`) writes a host file"
    var coreTables: [Table] = []
    for mib in [1, 64] {
        if interrupted != 0 { break }
        log("upcalls: core dumps of \(mib) MiB: \(uo.coreRounds) interleaved rounds")
        let want = Int64(mib) << 20
        var variants: [Variant] = []
        if let socketPattern {
            variants.append(Variant(label: socketLabel) { _ in try brokerCrash(socketPattern, mib) })
        }
        variants.append(Variant(label: pipeLabel) { _ in try brokerCrash(pipePattern, mib) })
        variants.append(Variant(label: refLabel) { _ in
            try setPattern(refPattern)
            for f in Sys.listDirectory(coreDir) { unlink("\(coreDir)/\(f)") }
            let t = try crashInside(crashC, mib)
            let files = Sys.listDirectory(coreDir)
            guard files.count == 1 else { throw BenchError("reference cores after waitpid: \(files)") }
            let size = fileSize("\(coreDir)/\(files[0])")
            unlink("\(coreDir)/\(files[0])")
            guard let size, size >= want else { throw BenchError("reference core is \(size.map { "\($0)" } ?? "missing") bytes at waitpid, less than \(want)") }
            return t
        })
        variants.append(Variant(label: "(breakdown) library, \(socketPattern == nil ? "pipe" : "socket") mode, policy `drop`: ctrobjd reads the core and discards it") { _ in
            try setPattern(socketPattern ?? pipePattern)
            return try crashInside(dropC, mib)
        })
        variants.append(Variant(label: "(breakdown) exec the crasher inside, touch, exit 0 (no dump)") { _ in
            let t0 = now()
            let p = try daemon.with { try crashC.exec(ProcessSpec("/bin/crasher", ["crasher", "\(mib)", "exit"])) }
            let s = try p.wait()
            let t = now() - t0
            guard s == 0 else { throw BenchError("crasher exit inside: \(waitStatusText(s))") }
            return t
        })
        let rows = interleave("core \(mib) MiB", variants, rounds: uo.coreRounds)
        coreTables.append(Table(title: "crash → complete core, \(mib) MiB", rows: rows, reference: refLabel))
    }
    try installer.uninstall()
    try saved.restore()

    out += "### Core dumps: crash → complete core (socket and pipe mode)\n\n"
    out += "Broker installed in mode `\(report.mode)`; socket pattern `\(socketPattern ?? "none (this kernel has no socket mode)")`, "
    out += "pipe pattern `\(pipePattern)`, reference pattern `\(refPattern)`; core_pipe_limit \(pipeLimit) during the run. "
    out += "Every variant crashes the same static program inside a container, started by exec into it, timed to waitpid "
    out += "(the kernel keeps the task until the handler is done: core_pipe_limit for pipes, COREDUMP_WAIT for `@@`).\n\n"
    for t in coreTables {
        out += "#### \(t.title)\n\n" + t.markdown(refHeader: "× reference") + "\n"
        for label in [socketLabel, pipeLabel] where t.sample(label) != nil {
            out += ratioVerdict(t, row: label, target: 1.2)
        }
        if let ref = t.sample(refLabel)?.median, let exit0 = t.rows.last?.1.median {
            out += "- dump path alone (crash − exit-0 medians): reference \(ms(ref - exit0)) ms"
            for label in [socketLabel, pipeLabel] { if let v = t.sample(label)?.median { out += ", \(label.hasPrefix("library, socket") ? "socket" : "pipe") \(ms(v - exit0)) ms" } }
            out += "\n"
        }
        out += "\n"
    }

    // MARK: key requests
    if interrupted == 0 {
        log("upcalls: key requests: \(uo.keyRounds) rounds per variant, in blocks with and without the broker")
        if !rkdExisted { try Sys.mkdirs(requestKeyConfDir, 0o755) }
        // The floor (rkchain.c): a second request-key reading floorDir's configuration.
        let floorDir = "\(work)/floor"
        try Sys.mkdirs("\(floorDir)/request-key.d", 0o755)
        try Sys.writeFileAtomically("\(floorDir)/request-key.conf", "create user benchfloor:* * /bin/keyctl instantiate %k floor %S\n", mode: 0o644)
        try Sys.writeFileAtomically(benchRuleFile, "# ctrobj-bench reference rules; removed when the run ends\n"
            + "create user benchref:* * /bin/keyctl instantiate %k ref %S\n"
            + "create user benchfloor:* * \(programs.rkchain) \(floorDir) %k %u %g %T %P %S\n", mode: 0o644)
        let confPath = "\(work)/request-key.conf"
        try Sys.writeFileAtomically(confPath, "create user benchlib:* * /bin/keyctl instantiate %k lib %S\n", mode: 0o644)
        let keyC = try daemon.with { () throws -> Container in
            let c = try Container.create("keys", options: [.newFSNS, .newUserNS, .newPIDNS, .killOnClose])
            try c.bindMount(hostPath: confPath, target: "/etc/request-key.conf", recursive: false)
            try c.mount(source: "tmpfs", target: requestKeyConfDir, fstype: "tmpfs")
            return c
        }
        defer { keyC.close() }
        let keyInit = try daemon.with { try keyC.spawnInit(ProcessSpec(programs.sleeper, ["sleeper"])) }
        defer { try? keyInit.signal(SIGKILL); _ = try? keyInit.wait() }
        let me = getpid()
        /// A host request_key of `desc` expecting `payload`: (the call, the whole process).
        func hostRequest(_ desc: String, _ payload: String) throws -> (UInt64, UInt64) {
            let argv = CStringArray(["keyreq", "user", desc, "x", payload])
            let (t, out, s) = try spawnCapturing(argv, env, path: programs.keyreq)
            guard s == 0 else { throw BenchError("host keyreq \(desc): \(waitStatusText(s))") }
            return (try keyreqCallTime(out, desc), t)
        }
        /// The same inside the key container: exec there (the library), stdout to a pipe.
        func containerRequest(_ seq: Int) throws -> (UInt64, UInt64) {
            let desc = "benchlib:\(me):\(seq)"
            let (r, w) = try cloexecPipe()
            let t0 = now()
            let p = try withExtendedLifetime(w) {
                try daemon.with {
                    try keyC.exec(ProcessSpec(programs.keyreq, ["keyreq", "user", desc, "x", "lib"], stdio: (-1, w.raw, -1)))
                }
            }
            w.close()
            let s = try p.wait()
            let t = now() - t0
            let out = (try? Sys.readAll(r.raw, limit: 4096)) ?? ""
            guard s == 0 else { throw BenchError("keyreq inside \(desc): \(waitStatusText(s))") }
            return (try keyreqCallTime(out, desc), t)
        }
        let libLabel = "library: request_key inside a container → broker → the container's request-key → keyctl instantiate"
        let refLabel = "reference: host request_key → stock /sbin/request-key → request-key.d rule → keyctl instantiate (no broker)"
        let debugStock = "(breakdown) host `debug:*` request, /etc/request-key.conf's sh-script rule, no broker"
        let debugFall = "(breakdown) the same with the broker installed (host fall-through: helper → `request-key -l`)"
        let floorLabel = "(breakdown) the design's floor, no broker: host request-key → a static program that only execs a second request-key (rkchain.c) → keyctl instantiate"
        // Label, needs the broker, run.
        let variants: [(String, Bool, (Int) throws -> (UInt64, UInt64))] = [
            (libLabel, true, { try containerRequest($0) }),
            (refLabel, false, { try hostRequest("benchref:\(me):\($0)", "ref") }),
            (floorLabel, false, { try hostRequest("benchfloor:\(me):\($0)", "floor") }),
            (debugStock, false, { try hostRequest("debug:ctrobj-bench:\(me):\($0)", "Debug x") }),
            (debugFall, true, { try hostRequest("debug:ctrobj-bench:\(me):\($0)", "Debug x") }),
        ]
        // The request_key(2) call as keyreq times it, and the whole process.
        var samples = variants.map { _ in Samples() }
        var wholeSamples = variants.map { _ in Samples() }
        var seq = 0
        let blocks = max(1, min(uo.keyRounds, 4))
        let perBlock = (uo.keyRounds + blocks - 1) / blocks
        // A host request for a request-key.d rule, with the broker installed:
        // the fall-through must still answer it (checked once per block).
        var dropInChecks: [String] = []
        /// perBlock interleaved rounds (after one unrecorded) of the variants with or without the broker.
        func phase(broker: Bool, block: Int) {
            let idx = variants.indices.filter { variants[$0].1 == broker }
            for round in -1..<perBlock {
                for k in idx.indices {
                    if interrupted != 0 { return }
                    let i = idx[(k + max(round, 0) + block) % idx.count]
                    seq += 1
                    do {
                        let (call, whole) = try variants[i].2(seq)
                        if round >= 0 {
                            samples[i].add(call)
                            wholeSamples[i].add(whole)
                        }
                    } catch {
                        samples[i].failures += 1
                        if samples[i].failures <= 2 { log("keys: \(variants[i].0): \(error)") }
                    }
                }
            }
        }
        for b in 0..<blocks {
            if interrupted != 0 { break }
            let withBroker = {
                _ = try installer.install()
                defer { _ = try? installer.uninstall(); try? saved.restore() }
                seq += 1
                do {
                    _ = try hostRequest("benchref:\(me):\(seq)", "ref")
                    dropInChecks.append("ok")
                } catch {
                    dropInChecks.append("\(error)")
                }
                phase(broker: true, block: b)
            }
            if b % 2 == 0 {
                phase(broker: false, block: b)
                try withBroker()
            } else {
                try withBroker()
                phase(broker: false, block: b)
            }
        }
        unlink(benchRuleFile)
        let keyTable = Table(title: "request_key(2) call, timed by keyreq (user key, fresh description each time)",
                             rows: variants.indices.map { (variants[$0].0, samples[$0]) }, reference: refLabel)
        let wholeTable = Table(title: "the whole keyreq process: spawn (host) / exec into the container (library) → waitpid",
                               rows: variants.indices.map { (variants[$0].0, wholeSamples[$0]) }, reference: refLabel)
        out += "### Key requests: request_key round trip\n\n"
        out += "\(blocks) blocks of \(perBlock) runs per variant, alternating between the broker not installed (reference, stock `debug:*`) "
        out += "and installed (library, fall-through `debug:*`), the variants interleaved inside each block after one unrecorded round. "
        out += "Every request is `keyreq` (a static C program: new session keyring, request_key(2), read and check the payload), "
        out += "which times its own request_key(2) call (CLOCK_MONOTONIC around it) and prints it: that is the round trip compared. "
        out += "The second table times the whole process from spawn (host) or exec into the container (library) to waitpid, "
        out += "which adds starting keyreq and, for the library, entering the container.\n\n"
        out += keyTable.markdown(refHeader: "× reference") + "\n" + ratioVerdict(keyTable, target: 1.5) + "\n"
        out += wholeTable.markdown(refHeader: "× reference") + "\n"
        out += "- whole process, library / reference = \(fixed(wholeTable.rows[0].1.median / wholeTable.rows[1].1.median, 2)) (secondary; not the target's measure)\n"
        let ok = dropInChecks.filter { $0 == "ok" }.count
        out += "- host request for the `/etc/request-key.d/ctrobj-bench.conf` rule (benchref:*) with the broker installed: "
        out += "\(ok) of \(dropInChecks.count) answered\(ok == dropInChecks.count ? "" : "; first failure: \(dropInChecks.first { $0 != "ok" } ?? "")")\n\n"
    }

    // MARK: helper startup
    if interrupted == 0 {
        log("upcalls: ctrobj-upcall startup: \(uo.startupRuns) interleaved runs")
        let upcall = Command("ctrobj-upcall", [helper], log: "/dev/null")
        let exit2 = Command("exit2", [programs.exit2], log: "/dev/null")
        func expect2(_ c: Command) throws -> UInt64 {
            let t0 = now()
            let s = c.run()
            let t = now() - t0
            guard s == 0x200 else { throw BenchError("\(c.label): \(waitStatusText(s)), expected exit 2") }
            return t
        }
        var variants = [
            Variant(label: "ctrobj-upcall (no arguments: usage, exit 2)") { _ in try expect2(upcall) },
            Variant(label: "static C `int main(){return 2;}` (glibc, cc -static)") { _ in try expect2(exit2) },
        ]
        // The per-upcall C helpers as built beside the helper (musl, scripts/build-c-helpers.sh):
        // with fewer than two arguments each exits 2 at once.
        let dir = String(helper[..<(helper.lastIndex(of: "/") ?? helper.startIndex)])
        for name in ["ctrobj-upcall-key", "ctrobj-upcall-pipe"] where Sys.exists("\(dir)/\(name)") {
            let c = Command(name, ["\(dir)/\(name)"], log: "/dev/null")
            variants.append(Variant(label: "\(name) (the C helper as built, no arguments: exit 2)") { _ in try expect2(c) })
        }
        let rows = interleave("startup", variants, rounds: uo.startupRuns, warmup: 10)
        let t = Table(title: "exec + exit (posix_spawn + waitpid)", rows: rows, reference: rows[1].0)
        out += "### Helper startup: exec + exit\n\n" + t.markdown(refHeader: "× C") + "\n"
        out += "- ctrobj-upcall costs \(ms(t.rows[0].1.median - t.rows[1].1.median)) ms more than a static C program to start and exit "
        out += "(\(fixed(t.rows[0].1.median / t.rows[1].1.median, 2))×); no target was set.\n"
    }
    return out
}

/// "library / reference ≤ target" for one row (the first by default) against the reference row.
func ratioVerdict(_ t: Table, row: String? = nil, target: Double) -> String {
    guard let lib = (row.flatMap { t.sample($0) } ?? t.rows.first?.1)?.median, let ref = t.sample(t.reference)?.median,
          !lib.isNaN, !ref.isNaN else {
        return "- no verdict: a variant has no successful runs\n"
    }
    let name = row.map { "\($0.split(separator: ":").first ?? "library")" } ?? "library"
    return "- \(name) / reference = \(fixed(lib / ref, 2)) (target ≤ \(fixed(target, 1))): **\(lib / ref <= target ? "met" : "NOT met")**\n"
}
