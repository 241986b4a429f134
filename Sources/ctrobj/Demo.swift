import ArgumentParser
import CShim
import ContainerObject
import ContainerSystem
import ContainerWire
import UpcallInstall
#if canImport(Glibc)
import Glibc
#endif

/// The tour: the whole container-object API at work on the real kernel,
/// leaving the host as it was.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A tour: create, populate, start, isolate, limit, freeze and kill-on-close a container.")

    func run() throws {
        guard geteuid() == 0 else { throw ValidationError("the tour needs root (it starts ctrobjd and makes cgroups)") }
        // The tour changes core_pattern and request-key.d: one user of them at
        // a time on a machine, like the test suites (the same lock file).
        let lock = open("/run/lock/ctrobj-tests.lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        if lock >= 0 { _ = flock(lock, LOCK_EX) }
        defer { if lock >= 0 { close(lock) } }
        var tour = Tour()
        do {
            try tour.run()
        } catch let e as ContainerError {
            tour.fail("stopped: \(e.message)")
        }
        tour.finish()
        if tour.failures > 0 { throw ExitCode(1) }
    }
}

struct Tour {
    var failures = 0
    var daemon: PrivateDaemon?
    /// Kernel settings at the start: put back at the end whatever happens.
    var kernelBefore = try? KernelSettings.read()

    mutating func check(_ ok: Bool, _ what: String) {
        print(ok ? "  ok    \(what)" : "  FAIL  \(what)")
        if !ok { failures += 1 }
    }

    mutating func fail(_ what: String) {
        print("  FAIL  \(what)")
        failures += 1
    }

    func step(_ title: String) { print("\n== \(title)") }

    mutating func run() throws {
        step("ctrobjd, the daemon that plays the kernel")
        if (try? Connection.connect()) != nil {
            print("  using the ctrobjd at \(DaemonAddress.socketPath())")
        } else {
            let d = try PrivateDaemon(binary: "\(executableDirectory())/ctrobjd", name: "ctrobj-tour-\(getpid())")
            daemon = d
            print("  started a private ctrobjd (state \(d.stateDir), cgroup parent \(d.cgroupParent))")
        }
        if let d = daemon {
            try d.with { try tourBody() }
        } else {
            try tourBody()
        }
    }

    mutating func tourBody() throws {
        let busybox = "/bin/busybox"
        guard Sys.exists(busybox) else {
            throw ContainerError(.notFound, "the tour runs a static busybox inside an empty container: apt-get install busybox-static")
        }
        let name = "tour-\(getpid())"
        var hostName = [CChar](repeating: 0, count: 256)
        gethostname(&hostName, 255)
        let hostHostname = String(cString: hostName)

        step("container_create(\"\(name)\", NEW_EMPTY_FS_NS|NEW_USER_NS|NEW_PID_NS|NEW_NET_NS|NEW_UTS_NS|NEW_IPC_NS|NEW_CGROUP_NS|KILL_ON_CLOSE)")
        let c = try Container.create(name, options: ContainerOptions.isolated)
        let st = try c.status()
        print("  container fd \(c.fd.raw), id \(st.id), cgroup \(st.cgroup)")
        print("  namespaces: " + st.namespaceInodes.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }.joined(separator: " "))

        step("populate the empty root from outside with at-calls (no process inside yet)")
        for d in ["/bin", "/etc", "/tmp", "/proc", "/dev"] { try c.mkdirs(d) }
        try c.copyIn(hostPath: busybox, to: "/bin/busybox")
        try c.symlink("busybox", at: "/bin/sh")
        try c.writeFile("/etc/motd", "written from outside through the container fd\n")
        try c.writeFile("/dev/null", "")
        try c.bindMount(hostPath: "/dev/null", target: "/dev/null", recursive: false)
        print("  made /bin/busybox, /bin/sh, /etc/motd inside; bind-mounted the host's /dev/null")
        try c.symlink("/../../../../etc", at: "/escape")
        let escaped = (try? c.readFile("/escape/passwd")) != nil
        check(!escaped, "a planted symlink /escape -> /../../../../etc cannot reach the host's /etc/passwd")

        step("limits: pids.max 32, memory 128 MiB")
        try c.setLimit(.pids, 32)
        try c.setLimit(.memory, 128 << 20)

        step("fork_into_container: init runs /bin/sh inside")
        let initP = try c.spawnInit(ProcessSpec("/bin/busybox", ["busybox", "sh", "-c",
            "busybox hostname \(name); echo $$ > /tmp/init-pid; exec busybox sleep 3600"]))
        var initView = ""
        for _ in 0..<200 {
            initView = ((try? c.readFile("/tmp/init-pid")) ?? "").trimmingSuffixNewline()
            if !initView.isEmpty { break }
            usleep(10_000)
        }
        print("  init is pid \(initP.pid) on the host")
        check(initView == "1", "init sees itself as pid \(initView.isEmpty ? "?" : initView) (PID 1 of its own pid namespace)")

        step("isolation, seen from a process entering the running container")
        let probe = "/tmp/probe-out"
        let p = try c.exec(ProcessSpec("/bin/busybox", ["busybox", "sh", "-c",
            "echo \"uid=$(busybox id -u) hostname=$(busybox hostname) ifaces=$(busybox ls /sys/class/net 2>/dev/null | busybox tr '\\n' ' ')\" > \(probe); busybox ip -o link >> \(probe)"]))
        _ = try p.waitExitCode()
        let seen = ((try? c.readFile(probe)) ?? "").trimmingSuffixNewline()
        for line in seen.split(separator: "\n") { print("  inside: \(line)") }
        check(seen.contains("uid=0"), "root inside (host uid \(1_000_000) outside)")
        check(seen.contains("hostname=\(name)"), "hostname \(name) inside")
        gethostname(&hostName, 255)
        check(String(cString: hostName) == hostHostname, "the host's hostname is still \(hostHostname)")
        let links = seen.split(separator: "\n").filter { $0.contains(": ") && $0.contains("<") }
        check(links.count == 1 && links[0].contains("lo:"), "the container's net namespace holds only lo")
        let s = try c.socket(domain: AF_INET, type: Int32(SOCK_DGRAM.rawValue))
        let hostIfs = NetInterfaces.names().filter { $0 != "lo" }
        let leaked = hostIfs.filter { NetInterfaces.exists($0, via: s.raw) }
        check(leaked.isEmpty, "container_socket(): a socket in the container sees none of the host's \(hostIfs.joined(separator: ", "))")

        step("a fork bomb inside stops at pids.max")
        let bomb = try c.exec(ProcessSpec("/bin/busybox", ["busybox", "sh", "-c",
            "i=0; while [ $i -lt 200 ]; do busybox sleep 60 & i=$((i+1)); done 2>/dev/null"]))
        _ = try? bomb.waitExitCode()
        var pids: UInt64 = 0
        for _ in 0..<100 { pids = try c.stats().pids; if pids >= 32 { break }; usleep(10_000) }
        check(pids >= 30 && pids <= 32, "pids.current is \(pids), capped at 32 (the rest of 200 forks failed)")
        let stats = try c.stats()
        print("  memory \(stats.memoryBytes / 1024) KiB, cpu \(stats.cpuUsageNanos / 1_000_000) ms")

        step("freeze and thaw")
        try c.freeze()
        check(try c.status().state == .frozen, "state frozen")
        try c.thaw()
        check(try c.status().state == .running, "state running again")

        step("CONTAINER_KILL_ON_CLOSE: close the last fd")
        let dirs = CgroupSet(layout: .discover(), relativePath: st.cgroup).directories
        c.close()
        let code = try initP.waitExitCode()
        check(code == 128 + SIGKILL, "init was killed by SIGKILL")
        var gone = false
        for _ in 0..<200 { gone = dirs.allSatisfy { !Sys.exists($0) }; if gone { break }; usleep(10_000) }
        check(gone, "its cgroup is gone from every hierarchy")
        check(!(try Container.list()).contains { $0.name == name }, "the name is free again")

        try upcalls(busybox: busybox)
    }

    /// The broker: the kernel's core dump upcall, routed into the container.
    mutating func upcalls(busybox: String) throws {
        let stateDir = daemon?.stateDir ?? DaemonAddress.stateDir()
        let spool = daemon.map { "\($0.stateDir)-spool" } ?? "/var/lib/ctrobj/spool"
        let installer = UpcallInstaller(stateDir: stateDir, helper: "\(executableDirectory())/ctrobj-upcall", spoolDir: spool)
        step("ctrobj install: register the broker with the kernel")
        let report = try installer.install()
        defer {
            if installer.isInstalled { _ = try? installer.uninstall() }
            if daemon != nil { removeTree(spool) }
        }
        print("  core_pattern was: \(report.previous.corePattern.trimmingSuffixNewline())")
        print("  core_pattern now: \(report.corePattern)")
        print("  mode: \(report.mode)" + (report.mode.hasPrefix("socket")
            ? " (the kernel connects to the core server, ctrobj-upcall serve; the task's pidfd says who crashed)"
            : " (the kernel runs ctrobj-upcall for each core)"))

        step("a process crashes inside a container")
        let name = "tour-crash-\(getpid())"
        let c = try Container.create(name, options: [.newEmptyFSNS, .newUserNS, .newPIDNS, .newNetNS, .killOnClose])
        try c.mkdirs("/bin")
        try c.copyIn(hostPath: busybox, to: "/bin/busybox")
        let initP = try c.spawnInit(ProcessSpec("/bin/busybox", ["busybox", "sleep", "600"]))
        let crasher = try c.exec(ProcessSpec("/bin/busybox", ["busybox", "sh", "-c", "busybox kill -SEGV $$"]))
        let code = try crasher.waitExitCode()
        print("  the crasher died of signal \(code - 128)")
        var listing = ""
        for _ in 0..<250 {
            let ls = try c.exec(ProcessSpec("/bin/busybox", ["busybox", "sh", "-c", "busybox ls -ln /var/lib/ctrobj/cores > /ls.out 2>&1"]))
            _ = try ls.waitExitCode()
            listing = (try? c.readFile("/ls.out")) ?? ""
            if listing.contains("core.") { break }
            usleep(20_000)
        }
        for line in listing.split(separator: "\n") where line.contains("core.") { print("  inside: \(line)") }
        let fields = listing.split(separator: "\n").first { $0.contains("core.") }?.split(separator: " ") ?? []
        check(fields.count > 4 && fields[2] == "0", "the core is inside the container, owned by its root (uid 0 inside, not the host's root)")
        try initP.signal(SIGKILL)
        _ = try? initP.waitExitCode()
        c.close()

        try ociRuntime(busybox: busybox)
        try keyRequest()
        try uevents()

        step("ctrobj uninstall")
        let restored = try installer.uninstall()
        let now = try KernelSettings.read()
        check(restored == report.previous && now == report.previous,
              "core_pattern and core_pipe_limit are back, byte for byte")
    }

    /// A key request inside a container, answered by the container's own request-key.
    mutating func keyRequest() throws {
        guard Sys.exists("/bin/keyctl"), Sys.exists("/sbin/request-key") else {
            print("\n== key requests: skipped (apt-get install keyutils)")
            return
        }
        step("request a key inside a container: its own /sbin/request-key and request-key.conf answer")
        let name = "tour-keys-\(getpid())"
        let conf = "/tmp/\(name).request-key.conf"
        try Sys.writeFileAtomically(conf, "create user tour:* * /bin/keyctl instantiate %k answered-inside-\(name) %S\n", mode: 0o644)
        defer { unlink(conf) }
        let c = try Container.create(name, options: [.newFSNS, .newUserNS, .newPIDNS, .newUTSNS, .newNetNS, .killOnClose])
        try c.bindMount(hostPath: conf, target: "/etc/request-key.conf", recursive: false)
        try c.mount(source: "tmpfs", target: KernelSettings.requestKeyDir, fstype: "tmpfs")
        print("  the container's /etc/request-key.conf: create user tour:* * /bin/keyctl instantiate %k answered-inside-\(name) %S")
        let initP = try c.spawnInit(ProcessSpec("/bin/sleep", ["sleep", "600"]))
        let out = "/tmp/\(name).out"
        defer { unlink(out) }
        let script = "keyctl session - sh -c 'keyctl print $(keyctl request2 user tour:greeting hello @s)' 2>&1"
        let fd = try Sys.open(out, O_WRONLY | O_CREAT | O_TRUNC, 0o666)
        let p = try c.exec(ProcessSpec("/bin/sh", ["sh", "-c", script], stdio: (-1, fd.raw, fd.raw)))
        _ = try p.waitExitCode()
        let inside = ((try? Sys.readFile(out)) ?? "").split(separator: "\n").filter { !$0.hasPrefix("Joined") }
        for line in inside { print("  inside: \(line)") }
        check(inside.contains { $0 == "answered-inside-\(name)" }, "the payload came from the container's own handler")
        try initP.signal(SIGKILL)
        _ = try? initP.waitExitCode()
        c.close()
    }

    /// Hotplug seen from inside: a granted network device's uevent reaches a
    /// container with its own user and network namespaces.
    mutating func uevents() throws {
        let ip = "/usr/sbin/ip"
        guard Sys.exists(ip) else {
            print("\n== uevents: skipped (apt-get install iproute2)")
            return
        }
        step("a granted device's uevent reaches the container's network namespace")
        let name = "tour-uev-\(getpid())"
        let dev = "ctu\(getpid() % 100_000)a", peer = "ctu\(getpid() % 100_000)b"
        let c = try Container.create(name, options: [.newUserNS, .newNetNS, .killOnClose])
        defer { c.close() }
        let initP = try c.spawnInit(ProcessSpec("/bin/sleep", ["sleep", "600"]))
        defer { try? initP.signal(SIGKILL); _ = try? initP.waitExitCode() }
        // What the container's udev would open: the kernel's uevent group, in its netns.
        let sock = try c.socket(domain: AF_NETLINK, type: CInt(SOCK_RAW.rawValue), protocol: 15 /* NETLINK_KOBJECT_UEVENT */)
        let bound = ccs_netlink_bind_groups(sock.raw, 1)
        guard bound == 0 else { throw ContainerError.sys("bind uevent socket") }
        try c.setPolicy(devices: [dev])
        print("  ctrobj policy \(name) --devices \(dev); then on the host: ip link add \(dev) type veth peer name \(peer)")
        defer { _ = runQuietly([ip, "link", "del", dev]) }
        guard runQuietly([ip, "link", "add", dev, "type", "veth", "peer", "name", peer]) else {
            fail("ip link add \(dev) failed")
            return
        }
        var seen: [String] = []
        let deadline = Sys.monotonicNanos() + 5_000_000_000
        var buf = [UInt8](repeating: 0, count: 8192)
        while Sys.monotonicNanos() < deadline && !seen.contains(where: { $0.hasPrefix("add@") && $0.hasSuffix("/net/\(dev)") }) {
            var pfd = pollfd(fd: sock.raw, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 200) == 1 else { continue }
            let n = buf.withUnsafeMutableBytes { recv(sock.raw, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { continue }
            // "ACTION@DEVPATH\0KEY=VALUE\0...": the header is enough here.
            let header = String(decoding: buf[0..<n].prefix { $0 != 0 }, as: UTF8.self)
            seen.append(header)
            print("  inside: \(header)")
        }
        check(seen.contains { $0 == "add@/devices/virtual/net/\(dev)" }, "the container saw \(dev)'s add event (forwarded by ctrobjd, rebroadcast by the kernel)")
        check(!seen.contains { $0.hasSuffix("/net/\(peer)") }, "and nothing of the ungranted \(peer)")
    }

    /// Run a host tool, output discarded; true on exit 0.
    func runQuietly(_ argv: [String]) -> Bool {
        let env = CStringArray(["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
        return (try? Sys.spawnAndWait(argv[0], CStringArray(argv), env, nullFDs: [1, 2]))?.1 == 0
    }

    mutating func finish() {
        step("leave the host as it was")
        if let before = kernelBefore {
            if (try? KernelSettings.read()) != before { try? before.restore() }
            check((try? KernelSettings.read()) == before, "kernel settings as they were")
            check(!Sys.exists("\(KernelSettings.requestKeyDir)/ctrobj.conf"), "no ctrobj file in \(KernelSettings.requestKeyDir)")
        }
        if let d = daemon {
            let mounts = { (try? Sys.readFile("/proc/self/mountinfo")) ?? "" }
            d.stop()
            check(!Sys.exists(d.stateDir), "private state directory removed")
            check(!mounts().contains(d.stateDir), "no namespace bind mounts left")
            let layout = CgroupLayout.discover()
            check(layout.hierarchies.allSatisfy { !Sys.exists("\($0)/\(d.cgroupParent)") }, "no cgroups left")
        }
        print(failures == 0 ? "\ntour complete: every check passed" : "\ntour: \(failures) check(s) failed")
    }
}

