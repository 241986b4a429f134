// ctrobj-bench: container-object performance against a raw C reference,
// unshare(1)/nsenter(1) and crun, measured side by side in one run.
//
//   ctrobj-bench [--daemon PATH] [--reference DIR] [--rounds N] [--enter-rounds N]
//                [--containers N] [--output FILE] [--no-crun] [--keep-log]
//                [--daemon-b PATH --daemon-b-label TEXT]
//                [--upcalls | --upcalls-only] [--upcall-helper PATH]
//                [--core-rounds N] [--key-rounds N] [--startup-runs N]
//                [--scale N [--scale-rounds N] [--cli PATH] [--cabi PATH]]
//
// --scale N runs only the node-scale group (Scale.swift): N live containers,
// measured at 0, 1,000 and N (about 2 minutes for 10,000).
//
// --upcalls adds the upcall group (Upcalls.swift: core dumps, key requests,
// helper startup) after the other scenarios; --upcalls-only runs just that
// group. It changes core_pattern, core_pipe_limit and /etc/request-key.d for
// the length of the run and puts them back byte for byte, so it is not in
// the default run. `--core-rounds 0 --startup-runs 0` leaves just the key
// scenario (the other tables then say n/a; pass `--output` a scratch file).
//
// Every scenario interleaves its variants (A, B, C, D, A, B, ...; each round
// starts one variant later) and reports medians and p90s; ratios are against
// the raw C reference measured in the same rounds. Nothing here asserts a
// time: the report says whether each target is met.
import CShim
import ContainerObject
import ContainerSystem
#if canImport(Glibc)
import Glibc
#endif

// MARK: arguments

struct Options {
    var daemon = executableDirectory() + "/ctrobjd"
    var reference = "Benchmarks/reference"
    var rounds = 60
    var enterRounds = 80
    var containers = 1000
    var output: String?
    var crun = true
    var keepLog = false
    /// A second ctrobjd (e.g. with a proposed fix) measured as an extra row.
    var daemonB: String?
    var daemonBLabel = "daemon B"
    /// The upcall group: nil (not run), "also" or "only".
    var upcalls: String?
    var upcall = UpcallOptions()
    /// The node-scale group (Scale.swift): run alone when count > 0.
    var scale = ScaleOptions()

    static func parse(_ args: [String]) throws -> Options {
        var o = Options()
        var i = 1
        func value() throws -> String {
            i += 1
            guard i < args.count else { throw BenchError("\(args[i - 1]) needs a value") }
            return args[i]
        }
        while i < args.count {
            switch args[i] {
            case "--daemon": o.daemon = try value()
            case "--reference": o.reference = try value()
            case "--rounds": o.rounds = Int(try value()) ?? o.rounds
            case "--enter-rounds": o.enterRounds = Int(try value()) ?? o.enterRounds
            case "--containers": o.containers = Int(try value()) ?? o.containers
            case "--output": o.output = try value()
            case "--no-crun": o.crun = false
            case "--keep-log": o.keepLog = true
            case "--daemon-b": o.daemonB = try value()
            case "--daemon-b-label": o.daemonBLabel = try value()
            case "--upcalls": o.upcalls = "also"
            case "--upcalls-only": o.upcalls = "only"
            case "--upcall-helper": o.upcall.helper = try value()
            case "--core-rounds": o.upcall.coreRounds = Int(try value()) ?? o.upcall.coreRounds
            case "--key-rounds": o.upcall.keyRounds = Int(try value()) ?? o.upcall.keyRounds
            case "--startup-runs": o.upcall.startupRuns = Int(try value()) ?? o.upcall.startupRuns
            case "--scale": o.scale.count = Int(try value()) ?? 0
            case "--scale-rounds": o.scale.rounds = Int(try value()) ?? o.scale.rounds
            case "--cli": o.scale.cli = try value()
            case "--cabi": o.scale.cabi = try value()
            case "-h", "--help":
                print("usage: ctrobj-bench [--daemon PATH] [--reference DIR] [--rounds N] [--enter-rounds N] [--containers N] [--output FILE] [--no-crun] [--keep-log] [--daemon-b PATH --daemon-b-label TEXT] [--upcalls | --upcalls-only] [--upcall-helper PATH] [--core-rounds N] [--key-rounds N] [--startup-runs N] [--scale N [--scale-rounds N] [--cli PATH] [--cabi PATH]]")
                exit(0)
            default: throw BenchError("unknown argument \(args[i])")
            }
            i += 1
        }
        return o
    }
}

// MARK: interrupt

nonisolated(unsafe) var interrupted: sig_atomic_t = 0
signal(SIGINT) { _ in interrupted = 1 }
signal(SIGTERM) { _ in interrupted = 1 }
signal(SIGHUP) { _ in interrupted = 1 }

func log(_ s: String) {
    Sys.printError("ctrobj-bench: \(s)\n")
}

// MARK: interleaving

struct Variant {
    let label: String
    let run: (Int) throws -> UInt64
}

/// `rounds` rounds of every variant, after `warmup` unrecorded ones; none
/// at all when `rounds` is 0 (`--core-rounds 0` skips the core scenario).
func interleave(_ title: String, _ variants: [Variant], rounds: Int, warmup: Int = 3) -> [(String, Samples)] {
    var samples = variants.map { ($0.label, Samples()) }
    guard rounds > 0 else { return samples }
    var seq = 0
    for round in -warmup..<rounds {
        if interrupted != 0 { break }
        for k in 0..<variants.count {
            let i = (k + max(round, 0)) % variants.count
            seq += 1
            do {
                let t = try variants[i].run(seq)
                if round >= 0 { samples[i].1.add(t) }
            } catch {
                samples[i].1.failures += 1
                if samples[i].1.failures <= 2 { log("\(title): \(variants[i].label): \(error)") }
            }
        }
    }
    return samples
}

func timed(_ body: () throws -> Void) rethrows -> UInt64 {
    let t0 = now()
    try body()
    return now() - t0
}

func timedCommand(_ c: Command) throws -> UInt64 {
    let t0 = now()
    let s = c.run()
    let t = now() - t0
    if s != 0 {
        throw BenchError("\(c.label) exited with wait status \(s): \(((try? Sys.readFile(c.log)) ?? "").prefix(300))")
    }
    return t
}

func vmRSSKiB(_ pid: pid_t) -> (rss: Int, hwm: Int) {
    var rss = 0, hwm = 0
    for line in ((try? Sys.readFile("/proc/\(pid)/status")) ?? "").split(separator: "\n") {
        let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard parts.count >= 2 else { continue }
        if parts[0] == "VmRSS:" { rss = Int(parts[1]) ?? 0 }
        if parts[0] == "VmHWM:" { hwm = Int(parts[1]) ?? 0 }
    }
    return (rss, hwm)
}

// MARK: flags

let CLONE_NEWNS_: UInt64 = 0x0002_0000, CLONE_NEWCGROUP_: UInt64 = 0x0200_0000, CLONE_NEWUTS_: UInt64 = 0x0400_0000
let CLONE_NEWIPC_: UInt64 = 0x0800_0000, CLONE_NEWUSER_: UInt64 = 0x1000_0000, CLONE_NEWPID_: UInt64 = 0x2000_0000
let CLONE_NEWNET_: UInt64 = 0x4000_0000

/// The realistic set: pid, uts, ipc, net, cgroup, mount (+ user).
func libraryOptions(userNS: Bool) -> ContainerOptions {
    var o: ContainerOptions = [.newPIDNS, .newUTSNS, .newIPCNS, .newNetNS, .newCgroupNS, .newFSNS, .killOnClose]
    if userNS { o.insert(.newUserNS) }
    return o
}

func cloneFlags(userNS: Bool) -> UInt64 {
    CLONE_NEWPID_ | CLONE_NEWUTS_ | CLONE_NEWIPC_ | CLONE_NEWNET_ | CLONE_NEWCGROUP_ | CLONE_NEWNS_ | (userNS ? CLONE_NEWUSER_ : 0)
}


// MARK: main

func main() throws -> Int32 {
    let o = try Options.parse(CommandLine.arguments)
    guard geteuid() == 0 else { throw BenchError("run as root: containers need namespaces and cgroups") }
    let me = getpid()
    let name = "ctrobj-bench-\(me)"
    let work = "/tmp/\(name)-work"
    try Sys.mkdirs(work, 0o755)
    let cmdLog = "\(work)/command.log"
    let layout = CgroupLayout.discover()
    let refParent = "\(name)-ref"
    let crunParent = "\(name)-crun"
    var cleanups: [() -> Void] = []
    defer {
        for c in cleanups.reversed() { c() }
        removeTree(work)
    }

    if o.scale.count > 0 {
        log("node scale: \(o.scale.count) containers")
        let out = try scaleSection(o, name: name, work: work)
        print(out)
        if let path = o.output { try writeResults(out, to: path, section: "scale") }
        return 0
    }

    if o.upcalls == "only" {
        log("starting a private ctrobjd (\(o.daemon)) as \(name)")
        let daemon = try PrivateDaemon(binary: o.daemon, name: name, logLevel: o.keepLog ? "debug" : "warning")
        cleanups.append { daemon.stop(keepLog: o.keepLog) }
        try upcallSection(o, daemon: daemon, name: name, work: work)
        return interrupted != 0 ? 130 : 0
    }

    log("compiling the raw C reference from \(o.reference)")
    let ref = try Reference(sourceDir: o.reference, workDir: work)
    try ref.setup(hierarchies: layout.hierarchies, parent: refParent)
    cleanups.append { ref.teardown() }

    log("starting a private ctrobjd (\(o.daemon)) as \(name)")
    let daemon = try PrivateDaemon(binary: o.daemon, name: name, logLevel: o.keepLog ? "debug" : "warning")
    cleanups.append { daemon.stop(keepLog: o.keepLog) }
    guard let dpidfd = daemon.pidfd else { throw BenchError("private ctrobjd has no pidfd") }
    let daemonPid = ccs_pidfd_pid(dpidfd.raw)
    var daemonB: PrivateDaemon?
    if let b = o.daemonB {
        log("starting a second private ctrobjd (\(b)) as \(name)-b")
        let d = try PrivateDaemon(binary: b, name: "\(name)-b", logLevel: o.keepLog ? "debug" : "warning")
        cleanups.append { d.stop(keepLog: o.keepLog) }
        daemonB = d
    }
    let loadBefore = ((try? Sys.readFile("/proc/loadavg")) ?? "?").split(separator: " ").prefix(3).joined(separator: " ")

    // Preflight: one create + spawnInit + destroy, so that a daemon that
    // cannot do its job fails the run here with its reason, not mid-table.
    for (label, d) in [("ctrobjd", daemon)] + (daemonB.map { [(o.daemonBLabel, $0)] } ?? []) {
        do {
            var probe = LibraryRuns()
            _ = try d.with { try probe.createFork(libraryOptions(userNS: false), name: "preflight", recordSteps: false) }
        } catch {
            throw BenchError("\(label) (\(d.binary)) fails create + spawnInit + destroy: \(error); see docs/benchmarks.md, \"Known problems\"")
        }
    }

    var crun: Crun?
    var crunVersion = "crun not measured"
    if o.crun && Crun.available {
        let c = try Crun(workDir: work, cgroupParent: crunParent)
        crun = c
        let v = Command("crun", [Crun.binary, "--version"], log: "\(work)/crun-version")
        try v.check()
        crunVersion = ((try? Sys.readFile(v.log)) ?? "crun").split(separator: "\n").first.map(String.init) ?? "crun"
        cleanups.append {
            // crun removes its leaf cgroups; the parent is ours in every v1 hierarchy.
            for h in Sys.listDirectory("/sys/fs/cgroup") { rmdir("/sys/fs/cgroup/\(h)/\(crunParent)") }
        }
    } else if o.crun {
        log("crun or /bin/busybox missing: crun rows skipped (apt-get install -y crun busybox-static)")
    }

    var tables: [Table] = []
    var lib = LibraryRuns()
    var notes: [String] = []
    let wrapper = Command("wrapper", Crun.wrapperOnly, log: cmdLog)

    // MARK: create + fork_into_container + wait + close
    for userNS in [false, true] {
        if interrupted != 0 { break }
        let tag = userNS ? "with NEW_USER_NS" : "without NEW_USER_NS"
        log("create+fork \(tag): \(o.rounds) interleaved rounds")
        let options = libraryOptions(userNS: userNS)
        let flags = cloneFlags(userNS: userNS)
        var unshareArgs = ["/usr/bin/unshare", "--pid", "--uts", "--ipc", "--net", "--mount", "--cgroup", "--fork"]
        if userNS { unshareArgs += ["--user", "--map-root-user"] }
        let unshare = Command("unshare", unshareArgs + ["/bin/true"], log: cmdLog)
        var variants = [
            Variant(label: "library: create + fork_into_container + wait + close") { seq in
                try daemon.with { try lib.createFork(options, name: "cf\(userNS ? "u" : "n")\(seq)", recordSteps: !userNS) }
            },
        ]
        if let daemonB {
            var libB = LibraryRuns()
            variants.append(Variant(label: "library, \(o.daemonBLabel)") { seq in
                try daemonB.with { try libB.createFork(options, name: "cfb\(userNS ? "u" : "n")\(seq)", recordSteps: false) }
            })
        }
        variants += [
            Variant(label: "raw C reference (clone3 into fresh cgroups)") { seq in
                try timed { try ref.createFork(flags: flags, path: "/bin/true", seq: seq) }
            },
            Variant(label: "unshare(1) (\(userNS ? "-U " : "")-pumni --cgroup -f; no cgroup dirs)") { _ in try timedCommand(unshare) },
        ]
        if let crun {
            let bundle = try crun.bundle(userNS ? "run-user" : "run", args: ["/bin/true"], userNS: userNS)
            let id = "\(name)-run"
            let run = Command("crun run", Crun.wrapped("\(Crun.binary) run --bundle \(bundle) \(id)"), log: cmdLog)
            variants.append(Variant(label: "crun run (in the unshare -m + tmpfs wrapper)") { _ in try timedCommand(run) })
            variants.append(Variant(label: "the wrapper alone (unshare -m sh -c 'mount tmpfs && exec /bin/true')") { _ in try timedCommand(wrapper) })
        }
        let rows = interleave("create+fork", variants, rounds: o.rounds)
        tables.append(Table(title: "create + fork /bin/true + wait + close, \(tag)", rows: rows, reference: rows[daemonB == nil ? 1 : 2].0))
    }

    // MARK: entering a running container
    var roundTrips = Samples()
    for userNS in [false, true] {
        if interrupted != 0 { break }
        let tag = userNS ? "with NEW_USER_NS" : "without NEW_USER_NS"
        log("enter \(tag): \(o.enterRounds) interleaved rounds")
        let options = libraryOptions(userNS: userNS)
        let flags = cloneFlags(userNS: userNS)
        let (target, targetInit) = try daemon.with { try LibraryRuns.startTarget(options, name: "enter-\(userNS ? "u" : "n")") }
        defer {
            target.close() // KILL_ON_CLOSE kills the sleeping init
            _ = try? targetInit.wait()
        }
        let initPid = try ref.enterStart(flags: flags)
        defer { ref.enterStop() }
        var nsenterArgs = ["/usr/bin/nsenter", "-t", "\(initPid)", "--pid", "--uts", "--ipc", "--net", "--mount", "--cgroup"]
        if userNS { nsenterArgs.append("--user") }
        let nsenter = Command("nsenter", nsenterArgs + ["/bin/true"], log: cmdLog)
        var variants = [
            Variant(label: "library: exec /bin/true + wait") { _ in try daemon.with { try LibraryRuns.enter(target) } },
        ]
        var targetB: (Container, ContainerProcess)?
        if let daemonB {
            let t = try daemonB.with { try LibraryRuns.startTarget(options, name: "enter-\(userNS ? "u" : "n")") }
            targetB = t
            variants.append(Variant(label: "library, \(o.daemonBLabel)") { _ in try daemonB.with { try LibraryRuns.enter(t.0) } })
        }
        defer {
            if let t = targetB {
                t.0.close()
                _ = try? t.1.wait()
            }
        }
        variants += [
            Variant(label: "raw C reference (setns(pidfd) + fork + exec)") { _ in try timed { try ref.enterOnce(path: "/bin/true") } },
            Variant(label: "nsenter(1) (all of init's namespaces; no cgroup join)") { _ in try timedCommand(nsenter) },
        ]
        var crunID: String?
        if let crun {
            let bundle = try crun.bundle(userNS ? "sleep-user" : "sleep", args: ["/bin/sleep", "100000"], userNS: userNS, proc: true)
            let id = "\(name)-enter-\(userNS ? "u" : "n")"
            try Command("crun run -d", Crun.wrapped("\(Crun.binary) run --detach --bundle \(bundle) \(id)"), log: cmdLog).check()
            crunID = id
            let exec = Command("crun exec", Crun.wrapped("\(Crun.binary) exec \(id) /bin/true"), log: cmdLog)
            variants.append(Variant(label: "crun exec (in the unshare -m + tmpfs wrapper)") { _ in try timedCommand(exec) })
            variants.append(Variant(label: "the wrapper alone") { _ in try timedCommand(wrapper) })
        }
        if !userNS {
            variants.append(Variant(label: "(breakdown) one library round trip to ctrobjd: status()") { _ in
                try daemon.with { try LibraryRuns.roundTrip(target) }
            })
        }
        var rows = interleave("enter", variants, rounds: o.enterRounds)
        if let crunID {
            _ = Command("crun delete", Crun.wrapped("\(Crun.binary) delete --force \(crunID)"), log: cmdLog).run()
        }
        if let i = rows.firstIndex(where: { $0.0.hasPrefix("(breakdown)") }) { roundTrips = rows.remove(at: i).1 }
        tables.append(Table(title: "enter a running container: /bin/true + wait, \(tag)", rows: rows, reference: rows[daemonB == nil ? 1 : 2].0))
    }

    // MARK: ctrobjd memory with N live containers
    var memory = ""
    if interrupted == 0 {
        log("memory: \(o.containers) live containers (NEW_UTS_NS|NEW_IPC_NS, no init)")
        let before = vmRSSKiB(daemonPid)
        var live: [Container] = []
        var createTimes = Samples()
        do {
            try daemon.with {
                for i in 0..<o.containers {
                    if interrupted != 0 { break }
                    let t0 = now()
                    live.append(try Container.create("m\(i)", options: [.newUTSNS, .newIPCNS]))
                    createTimes.add(now() - t0)
                }
            }
        } catch {
            log("memory: create failed after \(live.count) containers: \(error)")
            notes.append("memory: create failed after \(live.count) containers: \(error)")
        }
        let full = vmRSSKiB(daemonPid)
        let t0 = now()
        try? daemon.with { for c in live { try c.destroy(); c.close() } }
        let destroyNs = now() - t0
        let destroyed = live.count
        live.removeAll()
        let after = vmRSSKiB(daemonPid)
        let first = Samples(values: Array(createTimes.values.prefix(100)))
        let last = Samples(values: Array(createTimes.values.suffix(100)))
        let mib = Double(full.rss) / 1024
        memory = """
        | ctrobjd VmRSS | KiB | MiB |
        |---|---:|---:|
        | before (after the timing scenarios) | \(before.rss) | \(fixed(Double(before.rss) / 1024, 1)) |
        | with \(destroyed) live containers | \(full.rss) | \(fixed(mib, 1)) |
        | after destroying them | \(after.rss) | \(fixed(Double(after.rss) / 1024, 1)) |
        | peak (VmHWM) over the whole run | \(max(full.hwm, after.hwm)) | \(fixed(Double(max(full.hwm, after.hwm)) / 1024, 1)) |

        Creating them: median \(ms(createTimes.median)) ms each (first 100: \(ms(first.median)) ms, last 100: \(ms(last.median)) ms);
        destroying all \(destroyed): \(ms(Double(destroyNs))) ms.

        **Target: VmRSS under 64 MiB with \(o.containers) live containers: \(destroyed == o.containers && mib < 64 ? "met" : "NOT met") (\(fixed(mib, 1)) MiB\(destroyed == o.containers ? "" : ", only \(destroyed) made")).**
        """
    }

    // MARK: report
    let loadAfter = ((try? Sys.readFile("/proc/loadavg")) ?? "?").split(separator: " ").prefix(3).joined(separator: " ")
    var out = "Measured \(isoDate()) on \(machineDescription(crunVersion: crunVersion)).\n"
    out += "ctrobjd: `\(o.daemon)`\(o.daemonB.map { "; \(o.daemonBLabel): `\($0)`" } ?? ""). Load average before/after: \(loadBefore) / \(loadAfter) (the machine is shared).\n"
    out += "Rounds: \(o.rounds) per create scenario, \(o.enterRounds) per enter scenario, after 3 warm-up rounds; times in ms.\n\n"
    for t in tables {
        out += "### \(t.title)\n\n" + t.markdown() + "\n" + verdict(t) + "\n\n"
        if t.title.hasPrefix("create") && t.title.contains("without"), !lib.steps.isEmpty {
            out += "Library steps (same rounds, medians): "
            out += LibraryRuns.stepNames.map { "\($0) \(ms(lib.steps[$0]?.median ?? .nan))" }.joined(separator: ", ") + " ms.\n\n"
        }
        if t.title.hasPrefix("enter") && t.title.contains("without"), !roundTrips.values.isEmpty {
            out += "One library request/reply to ctrobjd (status(), same rounds): median \(ms(roundTrips.median)) ms, p90 \(ms(roundTrips.p90)) ms.\n\n"
        }
    }
    if !memory.isEmpty { out += "### ctrobjd memory\n\n" + memory + "\n" }
    for n in notes { out += "\nNote: \(n)\n" }
    print(out)
    if let path = o.output {
        try writeResults(out, to: path)
        log("results written to \(path)")
    }
    if o.upcalls != nil && interrupted == 0 {
        try upcallSection(o, daemon: daemon, name: name, work: work)
    }
    return interrupted != 0 ? 130 : 0
}

/// The upcall group, printed and written between its own markers.
func upcallSection(_ o: Options, daemon: PrivateDaemon, name: String, work: String) throws {
    let loadBefore = ((try? Sys.readFile("/proc/loadavg")) ?? "?").split(separator: " ").prefix(3).joined(separator: " ")
    let body = try runUpcalls(o.upcall, daemon: daemon, name: name, work: work, referenceDir: o.reference)
    let loadAfter = ((try? Sys.readFile("/proc/loadavg")) ?? "?").split(separator: " ").prefix(3).joined(separator: " ")
    var out = "Measured \(isoDate()) on \(machineDescription(crunVersion: "crun not used")).\n"
    out += "ctrobjd: `\(o.daemon)`, helper: `\(o.upcall.helper ?? executableDirectory() + "/ctrobj-upcall")`. "
    out += "Load average before/after: \(loadBefore) / \(loadAfter) (the machine is shared).\n"
    out += "Rounds: \(o.upcall.coreRounds) per core size, \(o.upcall.keyRounds) key requests per variant, \(o.upcall.startupRuns) startup runs; times in ms.\n\n"
    out += body
    print(out)
    if interrupted != 0 {
        log("interrupted: upcall results not written")
        return
    }
    if let path = o.output {
        try writeResults(out, to: path, section: "upcalls")
        log("upcall results written to \(path)")
    }
}

/// The targets, judged on medians from the same interleaved rounds.
func verdict(_ t: Table) -> String {
    guard let lib = t.rows.first?.1.median, let ref = t.sample(t.reference)?.median else { return "" }
    var s = "- library / raw C = \(fixed(lib / ref, 2)) (target ≤ 1.25): **\(lib / ref <= 1.25 ? "met" : "NOT met")**\n"
    if let crun = t.rows.first(where: { $0.0.hasPrefix("crun") })?.1.median {
        let wrapper = t.rows.first(where: { $0.0.hasPrefix("the wrapper") })?.1.median ?? 0
        let net = crun - wrapper
        s += "- crun / library = \(fixed(crun / lib, 2)) as run (target ≥ 3): **\(crun / lib >= 3 ? "met" : "NOT met")**; "
        s += "without the hybrid-cgroup wrapper (crun − wrapper medians = \(ms(net)) ms): \(fixed(net / lib, 2)): **\(net / lib >= 3 ? "met" : "NOT met")**\n"
    }
    return s
}

func isoDate() -> String {
    var t = time(nil)
    var tmv = tm()
    gmtime_r(&t, &tmv)
    var buf = [CChar](repeating: 0, count: 32)
    strftime(&buf, buf.count, "%Y-%m-%d %H:%M UTC", &tmv)
    return String(cString: buf)
}

do {
    exit(try main())
} catch {
    log("\(error)")
    exit(1)
}
