import CShim
import ContainerObject
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// The scale group (`--scale N`, docs/benchmarks.md "Node scale"): one
/// private ctrobjd fills up to N live containers with the CLI's usual flags
/// (fs, uts, ipc, pid, net, cgroup, user) through the C ABI, and at 0, 1,000
/// and N live containers measures side by side what a node pays for them:
///
/// - the host: `unshare -m /bin/true` (every mount-namespace creation on the
///   host copies the host's mount table) and that table's size;
/// - ctrobjd: create through the C ABI (`container_create`, median of the 100
///   creates that follow the checkpoint; at N, of the last 100), exec into a
///   running container, attribution of an upcall (a key request's route
///   through `<state>/upcall.sock`, which looks the requester's container up
///   and answers with the way in), `ctrobj ls`, `ctrobj ls --json` and the
///   library's list of everything, VmRSS and open fds;
/// - at N: restart after kill -9 (until the socket answers, and until a list
///   of all N came back), opening and querying every container afterwards,
///   then destroying all of them, and what is left (records, cgroups, pins,
///   host mounts).
///
/// Nothing here asserts a time; the report says whether each target is met.
struct ScaleOptions {
    var count = 0
    var cli = executableDirectory() + "/ctrobj"
    var cabi = executableDirectory() + "/libcontainerobject.so"
    var rounds = 30
}

typealias CreateFn = @convention(c) (UnsafePointer<CChar>, UInt32) -> CInt

struct ScalePoint {
    var live = 0
    /// "0", "1000", "10000", or "0 (end)": after destroying them all, the
    /// same measurements again, for what the machine's load did meanwhile.
    var label = ""
    /// /proc/loadavg's 1-minute figure when measured (the machine is shared).
    var load = ""
    /// ctrobjd's loop thread CPU per create (the 100 creates after the point).
    var createCPU = Samples()
    /// The floor: the raw C reference's create + fork /bin/true + wait
    /// (Benchmarks/reference/create_fork.c: cgroup directories beside the
    /// containers', clone3 with the same namespaces), no ctrobjd.
    var rawCreate = Samples()
    var hostMounts = 0
    /// Host mount-table entries below ctrobjd's state directory.
    var daemonHostMounts = 0
    var unshare = Samples()
    var create = Samples()
    var exec = Samples()
    /// The floor for exec: the raw C reference entering its own running
    /// init (Benchmarks/reference/enter.c: v1 cgroup.procs writes,
    /// setns(pidfd) into the same namespaces, fork, exec /bin/true), no ctrobjd.
    var rawExec = Samples()
    /// CPU of one exec, the caller's thread plus every process it made and
    /// reaped (getrusage): what the load of other users of the machine does
    /// not inflate the way it inflates wall time.
    var execCPU = Samples()
    var rawExecCPU = Samples()
    var attribution = Samples()
    var ls = Samples()
    var lsJSON = Samples()
    var libList = Samples()
    /// CPU time, independent of what else the machine runs: the CLI's own
    /// (ls, ls --json) plus ctrobjd's loop thread during it; ctrobjd's loop
    /// thread per attribution.
    var lsCPU = Samples()
    var lsJSONCPU = Samples()
    var attributionCPU = Samples()
    var rssKiB = 0
    var fds = 0
    var pinNamespaceMounts = 0
}

/// usual CLI flags: NEW_FS|CGROUP|UTS|IPC|USER|PID|NET, FD_CLOEXEC
let scaleFlags: UInt32 = 0x001 | 0x004 | 0x008 | 0x010 | 0x020 | 0x040 | 0x080 | 0x200

func readLink(_ path: String) -> String? {
    var buf = [CChar](repeating: 0, count: 256)
    let n = readlink(path, &buf, buf.count - 1)
    guard n > 0 else { return nil }
    return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Entries of this process's (the host's) mount table at or below `dir`.
func mountsBelow(_ dir: String) -> Int {
    ((try? Sys.readFile("/proc/self/mountinfo")) ?? "").split(separator: "\n").filter { line in
        let f = line.split(separator: " ")
        return f.count > 4 && (f[4] == dir || f[4].hasPrefix(dir + "/"))
    }.count
}

/// CPU time of a thread so far, in ns (/proc/PID/task/TID/schedstat, first field).
func threadCPUNanos(_ pid: pid_t, _ tid: pid_t) -> UInt64 {
    let text = (try? Sys.readFile("/proc/\(pid)/task/\(tid)/schedstat")) ?? ""
    return text.split(separator: " ").first.flatMap { UInt64($0) } ?? 0
}

/// CPU used so far by the calling thread and by every child it reaped, in ns.
func selfAndChildrenCPUNanos() -> UInt64 {
    func ns(_ t: timeval) -> UInt64 { UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_usec) * 1000 }
    var me = rusage(), kids = rusage()
    _ = getrusage(1 /* RUSAGE_THREAD */, &me)
    _ = getrusage(RUSAGE_CHILDREN.rawValue, &kids)
    return ns(me.ru_utime) + ns(me.ru_stime) + ns(kids.ru_utime) + ns(kids.ru_stime)
}

/// (wall, CPU) of one run of body, CPU as selfAndChildrenCPUNanos counts it.
func timedWithCPU(_ body: () throws -> Void) rethrows -> (UInt64, UInt64) {
    let c0 = selfAndChildrenCPUNanos()
    let t = try timed(body)
    return (t, selfAndChildrenCPUNanos() - c0)
}

func countLines(_ path: String) -> Int {
    ((try? Sys.readBytes(path, limit: 1 << 28)) ?? []).reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
}

/// Mount-table lines of ctrobjd's pin namespace: the thread whose mount
/// namespace differs from the process's.
func pinNamespaceMounts(_ pid: pid_t) -> Int {
    let own = readLink("/proc/\(pid)/ns/mnt") ?? ""
    for t in Sys.listDirectory("/proc/\(pid)/task") {
        if let ns = readLink("/proc/\(pid)/task/\(t)/ns/mnt"), ns != own {
            return countLines("/proc/\(pid)/task/\(t)/mountinfo")
        }
    }
    return 0
}

func scaleSection(_ o: Options, name: String, work: String) throws -> String {
    let s = o.scale
    let n = s.count
    let daemon = try PrivateDaemon(binary: o.daemon, name: "\(name)-scale", logLevel: "warning")
    defer { daemon.stop(keepLog: o.keepLog) }
    let hostMountsBefore = countLines("/proc/self/mountinfo")
    setenv("CTROBJ_SOCKET", daemon.socket, 1)
    defer { unsetenv("CTROBJ_SOCKET") }
    guard let lib = dlopen(s.cabi, RTLD_NOW | RTLD_LOCAL), let sym = dlsym(lib, "container_create") else {
        throw BenchError("dlopen \(s.cabi): \(String(cString: dlerror()))")
    }
    let create = unsafeBitCast(sym, to: CreateFn.self)
    var daemonPid: pid_t { daemon.pidfd.map { ccs_pidfd_pid($0.raw) } ?? 0 }
    let env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "CTROBJ_SOCKET=\(daemon.socket)"]
    let ls = Command("ctrobj ls", [s.cli, "ls"], log: "\(work)/ls.out", env: env)
    let lsJSON = Command("ctrobj ls --json", [s.cli, "ls", "--json"], log: "\(work)/ls-json.out", env: env)
    let unshare = Command("unshare -m", ["/usr/bin/unshare", "-m", "/bin/true"], log: "\(work)/unshare.out")
    let ref = try Reference(sourceDir: o.reference, workDir: work)
    try ref.setup(hierarchies: CgroupLayout.discover().hierarchies, parent: daemon.cgroupParent)
    defer { ref.teardown() }
    var refSeq = 0

    // The container exec'd into and whose init asks for keys: made first.
    let opts: ContainerOptions = [.newPIDNS, .newUTSNS, .newIPCNS, .newNetNS, .newCgroupNS, .newFSNS, .newUserNS]
    let (target, initProc) = try LibraryRuns.startTarget(opts, name: "target")
    defer { try? target.destroy() }
    // The raw C reference's own running init, entered beside every exec.
    _ = try ref.enterStart(flags: cloneFlags(userNS: true))
    defer { ref.enterStop() }

    func attributeOnce() throws -> UInt64 {
        let t0 = now()
        let c = try Connection.connect("\(daemon.stateDir)/upcall.sock")
        let pidfd = try Sys.pidfdOpen(initProc.pid)
        try FDPassing.send(c.fd.raw, Message("key", ["pid": "\(initProc.pid)", "key_type": "user", "key_desc": "bench"]).encoded(),
                           fds: [pidfd.raw])
        guard let got = try FDPassing.receive(c.fd.raw, maxFDs: 16), let m = try? Message.decode(got.bytes) else {
            throw BenchError("attribution: no answer")
        }
        let t = now() - t0
        guard m.op == "ok", m["container"] == "target" else { throw BenchError("attribution: answer \(m.op) \(m.fields)") }
        return t
    }

    func measure(_ live: Int) throws -> ScalePoint {
        log("scale: measuring at \(live) live containers")
        var p = ScalePoint()
        p.live = live
        p.label = "\(live)"
        p.load = ((try? Sys.readFile("/proc/loadavg")) ?? "?").split(separator: " ").first.map(String.init) ?? "?"
        p.hostMounts = countLines("/proc/self/mountinfo")
        p.daemonHostMounts = mountsBelow(daemon.stateDir)
        for _ in 0..<s.rounds {
            p.unshare.add(try timedCommand(unshare))
            var (t, cpu) = try timedWithCPU { _ = try LibraryRuns.enter(target) }
            p.exec.add(t)
            p.execCPU.add(cpu)
            (t, cpu) = try timedWithCPU { try ref.enterOnce(path: "/bin/true") }
            p.rawExec.add(t)
            p.rawExecCPU.add(cpu)
            refSeq += 1
            let seq = refSeq
            p.rawCreate.add(try timed { try ref.createFork(flags: cloneFlags(userNS: true), path: "/bin/true", seq: seq) })
        }
        let dp = daemonPid
        for _ in 0..<(s.rounds * 4) {
            let c0 = threadCPUNanos(dp, dp)
            p.attribution.add(try attributeOnce())
            p.attributionCPU.add(threadCPUNanos(dp, dp) - c0)
        }
        for _ in 0..<max(3, s.rounds / 6) {
            var c0 = threadCPUNanos(dp, dp)
            p.ls.add(try timedCommand(ls))
            p.lsCPU.add(ls.lastCPUNanos + threadCPUNanos(dp, dp) - c0)
            c0 = threadCPUNanos(dp, dp)
            p.lsJSON.add(try timedCommand(lsJSON))
            p.lsJSONCPU.add(lsJSON.lastCPUNanos + threadCPUNanos(dp, dp) - c0)
            var all: [ContainerStatus] = []
            p.libList.add(try timed { all = try Container.list() })
            if all.count != live + 1 { throw BenchError("library list returned \(all.count) containers, \(live + 1) live") }
        }
        let lines = countLines(ls.log)
        if lines != live + 2 { throw BenchError("ctrobj ls printed \(lines) lines for \(live + 1) containers") }
        p.rssKiB = vmRSSKiB(daemonPid).rss
        p.fds = Sys.listDirectory("/proc/\(daemonPid)/fd").count
        p.pinNamespaceMounts = pinNamespaceMounts(daemonPid)
        return p
    }

    var creates: [UInt64] = []
    var createCPUs: [UInt64] = []
    var points: [ScalePoint] = []
    let checkpoints = Set([0, 1000, n].filter { $0 <= n })
    var failures = 0
    for i in 0..<n {
        if interrupted != 0 { throw BenchError("interrupted") }
        if checkpoints.contains(i) { points.append(try measure(i)) }
        let c0 = threadCPUNanos(daemonPid, daemonPid)
        let t0 = now()
        let fd = create("s\(i)", scaleFlags)
        let t = now() - t0
        createCPUs.append(threadCPUNanos(daemonPid, daemonPid) - c0)
        if fd < 0 {
            failures += 1
            throw BenchError("container_create s\(i): \(String(cString: strerror(errno)))")
        }
        close(fd)
        creates.append(t)
        if (i + 1) % 1000 == 0 { log("scale: \(i + 1) containers") }
    }
    points.append(try measure(n))
    // create latency per checkpoint: the 100 creates after it (at N: the last 100)
    for k in points.indices {
        let from = points[k].live == n ? max(0, n - 100) : points[k].live
        for t in creates[from..<min(n, from + 100)] { points[k].create.add(t) }
        for t in createCPUs[from..<min(n, from + 100)] { points[k].createCPU.add(t) }
    }

    // kill -9 and restart with N records
    log("scale: kill -9 and restart with \(n + 1) records")
    daemon.signal(SIGKILL)
    let r0 = now()
    try daemon.start()
    let serving = now() - r0
    let restartCPUms: Int = {
        let f = ((try? Sys.readFile("/proc/\(daemonPid)/stat")) ?? "").split(separator: ")").last?.split(separator: " ") ?? []
        // after "comm)": state is field 3, utime 14, stime 15 (1-based in proc(5))
        guard f.count > 13, let u = Int(f[11]), let st = Int(f[12]) else { return -1 }
        return (u + st) * 1000 / Int(sysconf(Int32(_SC_CLK_TCK)))
    }()
    var listed: [ContainerStatus] = []
    for _ in 0..<100 {
        if let l = try? Container.list(), l.count == n + 1 {
            listed = l
            break
        }
        usleep(2000)
    }
    let firstFullList = now() - r0
    guard listed.count == n + 1 else { throw BenchError("after restart the list has \(listed.count) of \(n + 1) containers") }
    let rssAfterRestart = vmRSSKiB(daemonPid).rss
    let fdsAfterRestart = Sys.listDirectory("/proc/\(daemonPid)/fd").count
    let usedAll = try timed {
        for i in 0..<n {
            let c = try Container.open("s\(i)")
            _ = try c.status()
            c.close()
        }
    }
    let execAfter = try LibraryRuns.enter(target)

    // destroy everything
    log("scale: destroying \(n) containers")
    let destroyAll = try timed {
        for i in 0..<n {
            let c = try Container.open("s\(i)")
            try c.destroy()
            c.close()
        }
    }
    // The baseline again, now that they are gone: 100 creates (destroyed
    // after), unshare, exec, attribution, lists.
    var end = try measure(0)
    end.label = "0 (end)"
    for i in 0..<100 {
        let c0 = threadCPUNanos(daemonPid, daemonPid)
        let t0 = now()
        let fd = create("e\(i)", scaleFlags)
        let t = now() - t0
        end.createCPU.add(threadCPUNanos(daemonPid, daemonPid) - c0)
        if fd < 0 { throw BenchError("container_create e\(i): \(String(cString: strerror(errno)))") }
        close(fd)
        end.create.add(t)
    }
    for i in 0..<100 {
        let c = try Container.open("e\(i)")
        try c.destroy()
        c.close()
    }
    points.append(end)
    try target.destroy()
    _ = try? initProc.wait()
    // A cgroup whose last member is still going is removed on a later
    // housekeeping tick (twice a second): give those a few seconds.
    // The spare made after the last create (Prewarm.swift) is no container:
    // its directory has no record. A moment for one still being made.
    _ = try? Container.list()
    usleep(500_000)
    let spareDirs = Sys.listDirectory("\(daemon.stateDir)/containers").filter { $0.hasPrefix("c") && !Sys.exists("\(daemon.stateDir)/containers/\($0)/record") }
    let spareCgroups = Set(spareDirs)
    let spareNamespaces = spareDirs.reduce(0) { $0 + Sys.listDirectory("\(daemon.stateDir)/containers/\($1)/ns").count }
    let layout = CgroupLayout.discover()
    func cgroupsLeft() -> [String] {
        layout.hierarchies.flatMap { h in Sys.listDirectory("\(h)/\(daemon.cgroupParent)").filter { $0.hasPrefix("c") && UInt64($0.dropFirst()) != nil && !spareCgroups.contains($0) }.map { "\(h)/\($0)" } }
    }
    let deadline = now() + 5_000_000_000
    while !cgroupsLeft().isEmpty && now() < deadline { usleep(100_000) }
    let leftCgroups = cgroupsLeft()
    let recordsLeft = Sys.listDirectory("\(daemon.stateDir)/containers").filter {
        Sys.exists("\(daemon.stateDir)/containers/\($0)/record")
    }.count
    let pinDirsLeft = Sys.listDirectory("\(daemon.stateDir)/containers").filter { $0.hasPrefix("c") }.count - spareDirs.count
    let pinsLeft = pinNamespaceMounts(daemonPid) - 1 - spareNamespaces
    let daemonMountsAfterDestroy = mountsBelow(daemon.stateDir)
    let stateDir = daemon.stateDir
    daemon.stop(keepLog: o.keepLog)
    let daemonMountsAfterStop = mountsBelow(stateDir)

    // report
    var out = "### Node scale: \(n) live containers (run of \(isoDate()))\n\n"
    out += "Machine: \(machineDescription(crunVersion: "crun not used")). Flags: NEW_FS_NS, NEW_UTS_NS, NEW_IPC_NS, NEW_PID_NS, "
    out += "NEW_NET_NS, NEW_CGROUP_NS, NEW_USER_NS (created, not started; one more container, \"target\", runs `sleep` and is exec'd into and asks for keys). "
    out += "Medians over \(s.rounds) runs (unshare, exec), \(s.rounds * 4) (attribution), \(max(3, s.rounds / 6)) (lists); create: the 100 creates after the checkpoint, at \(n) the last 100.\n\n"
    let first = points.first, last = points.first(where: { $0.live == n && $0.label == "\(n)" }), endPoint = points.last
    func ratio(_ a: Samples?, _ b: Samples?) -> Double { (b?.median ?? .nan) / (a?.median ?? .nan) }
    let uRatio = ratio(first?.unshare, last?.unshare), cRatio = ratio(first?.create, last?.create)
    func met(_ ok: Bool) -> String { ok ? "met" : "NOT met" }
    out += "| target | measured | verdict |\n|---|---|---|\n"
    let worstDaemonMounts = points.map(\.daemonHostMounts).max() ?? 0
    out += "| host mount table grows by at most 1 | ctrobjd's entries in it: \(points.map { "\($0.daemonHostMounts)" }.joined(separator: ", ")) at \(points.map { "\($0.live)" }.joined(separator: ", ")) live (whole table: \(hostMountsBefore) lines before ctrobjd, \(last?.hostMounts ?? 0) at \(n); other users of this machine add and remove their own) | \(met(worstDaemonMounts <= 1)) |\n"
    out += "| host `unshare -m /bin/true` at \(n) ≤ 1.1 × at 0 | \(ms(last?.unshare.median ?? .nan)) / \(ms(first?.unshare.median ?? .nan)) ms = \(fixed(uRatio, 2)) | \(met(uRatio <= 1.1)) |\n"
    let ccRatio = ratio(first?.createCPU, last?.createCPU)
    let rRatio = ratio(first?.rawCreate, last?.rawCreate)
    out += "| (the floor) raw C create + fork /bin/true + wait, same namespaces, cgroups beside the containers' | \(ms(last?.rawCreate.median ?? .nan)) / \(ms(first?.rawCreate.median ?? .nan)) ms = \(fixed(rRatio, 2)) (after destroying all: \(ms(endPoint?.rawCreate.median ?? .nan)) ms) | the kernel's share of any drift |\n"
    out += "| create (C ABI) last 100 ≤ 1.1 × first 100 | \(ms(last?.create.median ?? .nan)) / \(ms(first?.create.median ?? .nan)) ms = \(fixed(cRatio, 2)) (after destroying all: \(ms(endPoint?.create.median ?? .nan)) ms); ctrobjd's CPU per create \(us(last?.createCPU.median ?? .nan)) / \(us(first?.createCPU.median ?? .nan)) µs = \(fixed(ccRatio, 2)) | \(met(cRatio <= 1.1)) (wall), \(met(ccRatio <= 1.1)) (CPU) |\n"
    let eRatio = ratio(first?.exec, last?.exec), aRatio = ratio(first?.attribution, last?.attribution)
    let reRatio = ratio(first?.rawExec, last?.rawExec), ecRatio = ratio(first?.execCPU, last?.execCPU)
    let recRatio = ratio(first?.rawExecCPU, last?.rawExecCPU)
    // Ours against the floor measured beside it: what the count does to the
    // library's share, apart from what it does to the kernel's.
    let eOverFloor = eRatio / reRatio, ecOverFloor = ecRatio / recRatio
    out += "| (the floor) raw C exec: setns(pidfd) + fork /bin/true + wait into its own init | \(ms(last?.rawExec.median ?? .nan)) / \(ms(first?.rawExec.median ?? .nan)) ms = \(fixed(reRatio, 2)); CPU \(us(last?.rawExecCPU.median ?? .nan)) / \(us(first?.rawExecCPU.median ?? .nan)) µs = \(fixed(recRatio, 2)) | the kernel's share of any drift |\n"
    out += "| exec independent of the count | \(ms(last?.exec.median ?? .nan)) / \(ms(first?.exec.median ?? .nan)) ms = \(fixed(eRatio, 2)) (\(fixed(eOverFloor, 2)) × the floor's drift); CPU \(us(last?.execCPU.median ?? .nan)) / \(us(first?.execCPU.median ?? .nan)) µs = \(fixed(ecRatio, 2)) (\(fixed(ecOverFloor, 2)) × the floor's) | \(met(eRatio <= 1.1)) (wall), \(met(ecRatio <= 1.1)) (CPU), \(met(ecOverFloor <= 1.1)) (CPU against the floor) |\n"
    let acRatio = ratio(first?.attributionCPU, last?.attributionCPU)
    out += "| upcall attribution independent of the count | \(us(last?.attribution.median ?? .nan)) / \(us(first?.attribution.median ?? .nan)) µs = \(fixed(aRatio, 2)); ctrobjd's CPU per attribution \(us(last?.attributionCPU.median ?? .nan)) / \(us(first?.attributionCPU.median ?? .nan)) µs = \(fixed(acRatio, 2)) | \(met(aRatio <= 1.1)) (wall), \(met(acRatio <= 1.1)) (CPU) |\n"
    let lsWorst = max(last?.ls.median ?? .nan, last?.lsJSON.median ?? .nan, last?.libList.median ?? .nan)
    let cpuWorst = max(last?.lsCPU.median ?? .nan, last?.lsJSONCPU.median ?? .nan)
    out += "| `ctrobj ls`, `ls --json`, library list of all \(n) < 200 ms | \(ms(last?.ls.median ?? .nan)), \(ms(last?.lsJSON.median ?? .nan)), \(ms(last?.libList.median ?? .nan)) ms; CPU (the CLI + ctrobjd) of ls \(ms(last?.lsCPU.median ?? .nan)), ls --json \(ms(last?.lsJSONCPU.median ?? .nan)) ms | \(met(lsWorst < 200e6)) (wall), \(met(cpuWorst < 200e6)) (CPU) |\n"
    out += "| restart after kill -9 serves within 2 s | socket answers after \(ms(Double(serving))) ms (ctrobjd used \(restartCPUms) ms of CPU by then), full list of \(n + 1) after \(ms(Double(firstFullList))) ms | \(met(Double(firstFullList) < 2e9)) |\n"
    out += "| VmRSS < 64 MiB | \(fixed(Double(last?.rssKiB ?? 0) / 1024, 1)) MiB at \(n) live, \(fixed(Double(rssAfterRestart) / 1024, 1)) MiB after restart | \(met(max(last?.rssKiB ?? 0, rssAfterRestart) < 64 * 1024)) |\n"
    out += "| destroying all leaves nothing | \(recordsLeft) records, \(leftCgroups.count) cgroup directories\(leftCgroups.isEmpty ? "" : " (\(leftCgroups.prefix(3).joined(separator: ", ")) …)"), \(pinDirsLeft) record directories, \(pinsLeft) pins in the pin namespace (besides \(spareDirs.count) spare with \(spareNamespaces) pins, made for the next create); ctrobjd's host mounts \(daemonMountsAfterDestroy) (the pin namespace), \(daemonMountsAfterStop) after stop | \(met(recordsLeft == 0 && leftCgroups.isEmpty && pinDirsLeft == 0 && pinsLeft == 0 && daemonMountsAfterStop == 0)) |\n\n"
    out += "After the restart: \(fdsAfterRestart) fds open in ctrobjd, opening and querying all \(n) took \(ms(Double(usedAll))) ms, an exec \(ms(Double(execAfter))) ms; destroying all took \(ms(Double(destroyAll))) ms.\n\n"
    out += "| live containers | host mount lines (ctrobjd's) | host unshare -m ms | create ms | create CPU µs | raw C create+fork ms | exec ms | raw C exec ms | exec CPU µs | raw C exec CPU µs | attribution µs | attribution CPU µs | ctrobj ls ms | ls --json ms | library list ms | ls CPU ms | ls --json CPU ms | ctrobjd VmRSS MiB | ctrobjd fds | pin ns mounts | load (1 min) |\n"
    out += "|---|" + String(repeating: "---:|", count: 20) + "\n"
    var csv = "live,host_mount_lines,ctrobjd_host_mounts,unshare_ms,create_ms,create_cpu_us,raw_create_fork_ms,exec_ms,raw_exec_ms,exec_cpu_us,raw_exec_cpu_us,attribution_us,attribution_cpu_us,ls_ms,ls_json_ms,library_list_ms,ls_cpu_ms,ls_json_cpu_ms,rss_mib,fds,pin_ns_mounts,load1\n"
    for p in points {
        let cells = [p.label, "\(p.hostMounts) (\(p.daemonHostMounts))", ms(p.unshare.median), ms(p.create.median), us(p.createCPU.median), ms(p.rawCreate.median), ms(p.exec.median), ms(p.rawExec.median), us(p.execCPU.median), us(p.rawExecCPU.median), us(p.attribution.median), us(p.attributionCPU.median),
                     ms(p.ls.median), ms(p.lsJSON.median), ms(p.libList.median), ms(p.lsCPU.median), ms(p.lsJSONCPU.median), fixed(Double(p.rssKiB) / 1024, 1), "\(p.fds)", "\(p.pinNamespaceMounts)", p.load]
        out += "| " + cells.joined(separator: " | ") + " |\n"
        var csvCells = cells
        csvCells[0] = "\(p.live)\(p.label.hasSuffix("(end)") ? "_end" : "")"
        csvCells[1] = "\(p.hostMounts),\(p.daemonHostMounts)"
        csv += csvCells.joined(separator: ",") + "\n"
    }
    out += "\nThe same, plot-ready:\n\n```csv\n\(csv)```\n"
    if failures > 0 { out += "\n\(failures) creates failed.\n" }
    return out
}
