import ContainerObject
import ContainerSystem
import Testing
#if canImport(Glibc)
import Glibc
#endif

// Real clients running ctrobj-oci: podman (conmon calling it as it calls
// runc) and containerd's runc v2 shim, each private (PodmanSupport.swift),
// against a private ctrobjd. Every podman container is a container object of
// that daemon while it exists, and none is left after rm.
//
// The runtime podman is given is a wrapper that appends each command line to
// a file and execs ctrobj-oci: the tests read which runtime commands podman
// used (kill --all for a container sharing the host's pid namespace). The
// daemon is named with `--runtime-flag ctrobj-socket=PATH` on the podman
// command lines (conmon clears the environment); podman's cleanup process
// passes no runtime flags, and ctrobj-oci then takes the socket create used
// from the container's record.

let haveOCIPodman = havePodman && Sys.exists("\(buildDir)/ctrobj-oci")

/// A private podman whose runtime is ctrobj-oci (through a logging wrapper),
/// serving from daemon `d`.
struct OCIPodman {
    let p: PrivatePodman
    let d: PrivateDaemon
    let calls: String

    /// `podman --runtime-flag ctrobj-socket=… ARGS`.
    func podman(_ args: [String], timeoutSeconds: Int = 120) throws -> (Int32, String) {
        let t0 = Sys.monotonicNanos()
        defer { if getenv("CTROBJ_TEST_TIMING") != nil { print("TIMING \((Sys.monotonicNanos() - t0) / 1_000_000) ms: \(args.prefix(3))") } }
        return try p.podman(["--runtime-flag", "ctrobj-socket=\(d.socket)"] + args, timeoutSeconds: timeoutSeconds)
    }

    func run(_ options: [String], _ command: [String]) throws -> (Int32, String) {
        try podman(["run"] + p.runOptions + options + [PrivatePodman.image] + command)
    }

    func runDetached(_ options: [String], _ command: [String]) throws -> String {
        let (code, out) = try podman(["run", "-d"] + p.runOptions + options + [PrivatePodman.image] + command)
        let id = out.split(separator: "\n").last.map(String.init) ?? ""
        guard code == 0, id.utf8.count == 64 else { throw ContainerError(.system, "podman run -d: exit \(code): \(out)\n\(diagnostics())") }
        return id
    }

    func pid(_ id: String) throws -> pid_t { pid_t(try p.inspect(id, "{{.State.Pid}}")) ?? 0 }

    /// The container object whose init is `pid`, if the daemon has one.
    func record(initPid pid: pid_t) -> ContainerStatus? {
        (try? Container.list())?.first { $0.initPid == pid && $0.name.hasPrefix("oci-") }
    }

    func runtimeCalls() -> [String] { ((try? Sys.readFile(calls)) ?? "").split(separator: "\n").map(String.init) }

    func diagnostics() -> String {
        "runtime calls:\n\(runtimeCalls().suffix(12).joined(separator: "\n"))\ndaemon log tail:\n"
            + (((try? Sys.readFile(d.logPath)) ?? "").split(separator: "\n").suffix(10).joined(separator: "\n"))
    }

    func ns(_ pid: pid_t, _ kind: String) -> String { (try? Sys.readLink("/proc/\(pid)/ns/\(kind)")) ?? "none-\(pid)" }

    /// A private podman running ctrobj-oci, through a wrapper that logs the
    /// command line and runs it in this process's mount namespace (the
    /// host's), served by private daemon `d` there, around body.
    ///
    /// The harness runs podman and conmon in a mount namespace of their own.
    /// ctrobjd clones the rootfs and bind sources ctrobj-oci opens
    /// (open_tree), which the kernel allows only from the mount namespace
    /// they are in (EINVAL otherwise), and it answers upcalls only from
    /// helpers in its own mount namespace, which the kernel starts in the
    /// host's: so both run where they run on a host, in the host's
    /// namespace. With vfs storage the rootfs and podman's files for the
    /// container (/etc/hosts, …) are plain directories and files under the
    /// harness's directory, the same in both namespaces. ctrobj-oci's state
    /// goes under the harness's directory (`--root`): podman passes none.
    static func with(_ d: PrivateDaemon, _ body: (OCIPodman) throws -> Void) throws {
        let dir = "/tmp/ctrobj-ocipodman-\(uniqueSuffix())"
        try Sys.mkdirs(dir, 0o755)
        defer { removeTree(dir) }
        let wrapper = "\(dir)/ctrobj-oci"
        try Sys.writeFileAtomically(wrapper, """
            #!/bin/sh
            echo "$*" >> \(dir)/calls
            exec \(nsenterBinary) --mount=/proc/\(getpid())/ns/mnt -- \(buildDir)/ctrobj-oci --root \(dir)/state "$@"

            """, mode: 0o755)
        try PrivatePodman.with(runtime: wrapper) { p in
            let o = OCIPodman(p: p, d: d, calls: "\(dir)/calls")
            defer {
                // The harness's cleanup does the same, then every container object must be gone.
                _ = try? o.podman(["rm", "--all", "--force", "--time", "0"])
                _ = try? o.podman(["pod", "rm", "--all", "--force"])
                #expect(waitFor(10) { (try? Container.list().isEmpty) == true }, "container objects left: \((try? Container.list().map(\.name)) ?? [])")
            }
            try body(o)
        }
    }
}

/// A test daemon run in `mounts`'s mount namespace (nsenter execs it: its
/// pidfd is the daemon's).
func withDaemon(in mounts: PrivateMountNamespace, _ body: (PrivateDaemon) throws -> Void) throws {
    _ = machineLock
    // Started on CPU 0, where the namespace was made, and kept there: its pin
    // namespace then gets a higher id than this namespace, and every
    // namespace it makes later a higher id than its pin namespace. The
    // kernel refuses to mount a mount namespace's file in a namespace with a
    // higher id (mnt_ns_loop), and since 6.18 ids come from per-CPU batches:
    // a ctrobjd free to use every CPU, started in a namespace made after the
    // host's, fails "mount --bind the pin namespace" (EINVAL) or pinning a
    // container's namespace (ELOOP) about every other time on 2 CPUs.
    let d = try PrivateDaemon(binary: "\(buildDir)/ctrobjd", name: "ctrobj-test-\(uniqueSuffix())", logLevel: "debug",
                              wrapper: ["/usr/bin/taskset", "-c", "0", nsenterBinary, "--mount=\(mounts.nsPath)", "--"])
    defer { d.stop() }
    try d.with { try body(d) }
}

@Suite("ctrobj-oci under podman and containerd", .serialized, .enabled(if: haveOCIPodman, podmanMissing))
struct PodmanOCITests {
    @Test("podman run --rm: output and exit codes pass through; -t gives a tty of the container's devpts; --pid=host is stopped with kill --all")
    func runExitTtyPidHost() throws {
        try withDaemon { d in
            try OCIPodman.with(d) { o in
                var (code, out) = try o.run(["--rm"], ["/bin/sh", "-c", "echo hello-$((6*7)) from $(cat /proc/1/comm) in $(hostname); exit 7"])
                #expect(code == 7, "exit 7 comes back as 7: \(out)\n\(o.diagnostics())")
                #expect(out.contains("hello-42 from sh"), "\(out)")
                (code, out) = try o.run(["--rm", "-t"], ["/bin/sh", "-c", "tty; test -t 0 && echo stdin-is-tty"])
                #expect(code == 0 && out.contains("/dev/pts/0") && out.contains("stdin-is-tty"), "\(out)\n\(o.diagnostics())")
                // --pid=host: the container's processes are in the host's pid namespace.
                let id = try o.runDetached(["--pid=host"], ["/bin/sh", "-c", "sleep 1000 & sleep 1000 & wait"])
                let pid = try o.pid(id)
                #expect(o.ns(pid, "pid") == o.ns(getpid(), "pid"))
                #expect(o.ns(pid, "mnt") != o.ns(getpid(), "mnt"))
                #expect(o.record(initPid: pid) != nil, "a container object: \((try? Container.list().map(\.name)) ?? [])")
                (code, out) = try o.podman(["stop", "--time", "1", id])
                #expect(code == 0, "\(out)\n\(o.diagnostics())")
                #expect(o.runtimeCalls().contains { $0.contains("kill --all") && $0.contains(id) },
                        "podman stops a container without its own pid namespace with kill --all: \(o.runtimeCalls())")
                #expect(try o.p.inspect(id, "{{.State.Status}}") == "exited")
                (code, out) = try o.podman(["rm", id])
                #expect(code == 0, "\(out)")
                // podman kill of a --pid=host container signals its init; its
                // other processes go with the container (delete: ctrobjd ends
                // every process of the container's cgroup), none outlives rm.
                let k = try o.runDetached(["--pid=host"], ["/bin/sh", "-c", "sleep 1000 & echo $! > /tmp/bg; wait"])
                let kpid = try o.pid(k)
                var bg: pid_t = 0
                _ = waitFor(5) { bg = pid_t(((try? Sys.readFile("/proc/\(kpid)/root/tmp/bg")) ?? "").trimmingSuffixNewline()) ?? 0; return bg > 0 }
                try #require(bg > 0 && Sys.exists("/proc/\(bg)"), "the background process, a host pid")
                let bgFD = try Sys.pidfdOpen(bg)
                (code, out) = try o.podman(["kill", k])
                #expect(code == 0, "\(out)\n\(o.diagnostics())")
                #expect(waitFor(10) { (try? o.p.inspect(k, "{{.State.Status}}")) == "exited" })
                (code, out) = try o.podman(["rm", k])
                #expect(code == 0, "\(out)")
                #expect(waitFor(10) { (try? Sys.pidfdWait(bgFD.raw, nohang: true)) ?? nil != nil || !Sys.exists("/proc/\(bg)") || (try? Sys.pidfdSendSignal(bgFD.raw, 0)) == nil },
                        "no process of the container outlives rm; runtime calls: \(o.runtimeCalls().filter { $0.contains(k) })")
            }
        }
    }

    @Test("podman run -d, exec, pause/unpause, stop, kill, rm -f: each a container object while it exists, gone after rm")
    func lifecycle() throws {
        try withDaemon { d in
            try OCIPodman.with(d) { o in
                let a = try o.runDetached([], ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"])
                let b = try o.runDetached([], ["/bin/sleep", "1000"])
                let c = try o.runDetached([], ["/bin/sleep", "1000"])
                let pa = try o.pid(a), pb = try o.pid(b), pc = try o.pid(c)
                let ra = o.record(initPid: pa), rb = o.record(initPid: pb), rc = o.record(initPid: pc)
                #expect(ra != nil && rb != nil && rc != nil, "every podman container is a container object: \((try? Container.list().map(\.name)) ?? [])")
                #expect(Set([ra?.name, rb?.name, rc?.name]).count == 3)
                // exec: output and exit code, in the container's namespaces.
                var (code, out) = try o.podman(["exec", a, "/bin/sh", "-c", "echo exec-in $(readlink /proc/1/ns/pid); exit 5"])
                #expect(code == 5 && out.contains("exec-in \(o.ns(pa, "pid"))"), "\(out)\n\(o.diagnostics())")
                // pause / unpause: podman and the runtime both say so, and the container is frozen.
                (code, out) = try o.podman(["pause", a])
                #expect(code == 0, "\(out)\n\(o.diagnostics())")
                #expect(try o.p.inspect(a, "{{.State.Status}}") == "paused")
                if let name = ra?.name {
                    #expect(try Container.open(name).status().state == .frozen, "the container object is frozen")
                }
                (code, out) = try o.podman(["unpause", a])
                let unpaused = try o.p.inspect(a, "{{.State.Status}}")
                #expect(code == 0 && unpaused == "running", "\(out) \(unpaused)")
                // stop: SIGTERM, which a's shell traps: exit 0.
                (code, out) = try o.podman(["stop", "--time", "10", a])
                #expect(code == 0, "\(out)\n\(o.diagnostics())")
                let aStatus = try o.p.inspect(a, "{{.State.Status}}"), aExit = try o.p.inspect(a, "{{.State.ExitCode}}")
                #expect(aStatus == "exited" && aExit == "0", "trapped TERM: \(aStatus) \(aExit)")
                // kill: SIGKILL by default, 137.
                (code, out) = try o.podman(["kill", b])
                #expect(code == 0, "\(out)\n\(o.diagnostics())")
                #expect(waitFor(10) { (try? o.p.inspect(b, "{{.State.Status}}")) == "exited" })
                #expect(try o.p.inspect(b, "{{.State.ExitCode}}") == "137")
                // rm -f of a running one.
                (code, out) = try o.podman(["rm", "-f", "--time", "0", c])
                #expect(code == 0, "\(out)\n\(o.diagnostics())")
                #expect(waitFor(10) { o.record(initPid: pc) == nil }, "rm -f removed c's container object")
                (code, out) = try o.podman(["rm", a, b])
                #expect(code == 0, "\(out)")
                #expect(waitFor(10) { (try? Container.list().isEmpty) == true }, "after rm: \((try? Container.list().map(\.name)) ?? [])")
                #expect(try o.podman(["ps", "-a", "-q"]).1.trimmingSuffixNewline().isEmpty)
            }
        }
    }

    @Test("a podman pod: two members talk over the pod's loopback and share the infra container's net, ipc and uts namespaces")
    func pod() throws {
        try withDaemon { d in
            try OCIPodman.with(d) { o in
                var (code, out) = try o.podman(["pod", "create", "--name", "ocipod", "--hostname", "ocipod-host", "--cgroup-parent", "/\(o.p.cgroupParent)",
                                                "--network", "none", "--infra-image", PrivatePodman.image, "--infra-command", "/bin/pause"])
                try #require(code == 0, "\(out)")
                let limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
                // a listens on the pod's loopback; b sends to it until it is up.
                (code, out) = try o.podman(["run", "-d", "--pod", "ocipod"] + limits + [PrivatePodman.image, "/bin/sh", "-c",
                                            "nc -l -p 7777 > /tmp/got; hostname > /tmp/host; sleep 1000"])
                try #require(code == 0, "\(out)\n\(o.diagnostics())")
                let a = String(out.split(separator: "\n").last ?? "")
                (code, out) = try o.podman(["run", "-d", "--pod", "ocipod"] + limits + [PrivatePodman.image, "/bin/sh", "-c",
                                            "for i in $(seq 300); do echo hello-over-loopback | nc 127.0.0.1 7777 && break; sleep 0.1; done; sleep 1000"])
                try #require(code == 0, "\(out)\n\(o.diagnostics())")
                let b = String(out.split(separator: "\n").last ?? "")
                let infra = try o.podman(["pod", "inspect", "--format", "{{.InfraContainerID}}", "ocipod"]).1.trimmingSuffixNewline()
                let pi = try o.pid(infra), pa = try o.pid(a), pb = try o.pid(b)
                #expect(pi > 0 && pa > 0 && pb > 0)
                for kind in ["net", "ipc", "uts"] {
                    #expect(o.ns(pa, kind) == o.ns(pi, kind) && o.ns(pb, kind) == o.ns(pi, kind), "\(kind) shared with the infra container")
                    #expect(o.ns(pi, kind) != o.ns(getpid(), kind), "\(kind) is the pod's, not the host's")
                }
                #expect(o.ns(pa, "pid") != o.ns(pb, "pid") && o.ns(pa, "mnt") != o.ns(pb, "mnt"), "each member has its own pid and mount namespace")
                // Three container objects: infra, a, b.
                let records = [pi, pa, pb].map { o.record(initPid: $0) }
                #expect(records.allSatisfy { $0 != nil }, "\((try? Container.list().map(\.name)) ?? [])")
                #expect(waitFor(35) { ((try? Sys.readFile("/proc/\(pa)/root/tmp/got")) ?? "").contains("hello-over-loopback") },
                        "b reached a over the pod's loopback: \((try? Sys.readFile("/proc/\(pa)/root/tmp/got")) ?? "nothing")\n\((try? o.podman(["logs", b]).1) ?? "")")
                #expect(waitFor(5) { ((try? Sys.readFile("/proc/\(pa)/root/tmp/host")) ?? "") == "ocipod-host\n" })
                (code, out) = try o.podman(["exec", b, "hostname"])
                #expect(code == 0 && out.contains("ocipod-host"), "\(out)")
                (code, out) = try o.podman(["pod", "rm", "--force", "--time", "0", "ocipod"])
                #expect(code == 0, "\(out)\n\(o.diagnostics())")
                #expect(waitFor(10) { (try? Container.list().isEmpty) == true }, "after pod rm: \((try? Container.list().map(\.name)) ?? [])")
            }
        }
    }

    @Test("an unmodified crash in a podman container run by ctrobj-oci leaves its core inside that container")
    func core() throws {
        let upcalls = UpcallTests()
        try upcalls.withBroker { d, _ in
            try OCIPodman.with(d) { o in
                let id = try o.runDetached([], ["/bin/sh", "-c", "ulimit -c unlimited; sh -c 'kill -SEGV $$'; sleep 1000"])
                let pid = try o.pid(id)
                #expect(o.record(initPid: pid) != nil)
                let root = try o.p.rootfs(id)
                var cores: [String] = []
                _ = waitFor(20) { cores = Sys.listDirectory("\(root)/var/lib/ctrobj/cores").filter { $0.hasPrefix("core.sh.") }; return !cores.isEmpty }
                try #require(cores.count == 1, "cores in \(root): \(cores)\n\(o.diagnostics())")
                var st = stat(), inside = stat()
                _ = waitFor(10) { stat("\(root)/var/lib/ctrobj/cores/\(cores[0])", &st) == 0 && st.st_size > 0 }
                #expect(stat("\(root)/var/lib/ctrobj/cores/\(cores[0])", &st) == 0 && st.st_uid == 0 && st.st_size > 0)
                #expect(stat("/proc/\(pid)/root/var/lib/ctrobj/cores/\(cores[0])", &inside) == 0 && inside.st_ino == st.st_ino,
                        "the same file the container sees")
                let (code, out) = try o.podman(["rm", "-f", "--time", "0", id])
                #expect(code == 0, "\(out)")
            }
        }
    }

    @Test("a key requested inside a podman container run by ctrobj-oci is answered by its own request-key",
          .enabled(if: Sys.exists("/bin/keyctl") && Sys.exists("/sbin/request-key"), "needs keyutils"))
    func key() throws {
        let keys = KeyUpcallTests()
        try UpcallTests().preservingKernelSettings {
            try withDaemon { d in
                try keys.installed(d) {
                    try OCIPodman.with(d) { o in
                        try Sys.writeFileAtomically("\(o.p.dir)/request-key.conf",
                                                    "create user ctrobjoci:* * /usr/bin/keyctl instantiate %k from-ctrobj-oci-container %S\n", mode: 0o644)
                        // podman's default seccomp profile refuses the key syscalls: unconfined here.
                        let binds = ["-v", "/sbin/request-key:/sbin/request-key:ro", "-v", "/bin/keyctl:/usr/bin/keyctl:ro",
                                     "-v", "/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu:ro", "-v", "/usr/lib64:/lib64:ro",
                                     "-v", "\(o.p.dir)/request-key.conf:/etc/request-key.conf:ro", "--security-opt", "seccomp=unconfined"]
                        let (code, out) = try o.run(["--rm"] + binds, ["/bin/sh", "-c",
                            "/usr/bin/keyctl session - /bin/sh -c '/usr/bin/keyctl print $(/usr/bin/keyctl request2 user ctrobjoci:1 hello @s)'"])
                        #expect(code == 0 && out.contains("from-ctrobj-oci-container"), "\(out)\n\(o.diagnostics())")
                    }
                }
            }
        }
    }

    @Test("containerd: ctr run with ctrobj-oci as the runc v2 shim's runc, one container end to end",
          .enabled(if: haveContainerd, containerdMissing))
    func containerd() throws {
        try PrivateContainerd.with { c in
            try withDaemon(in: c.mounts) { d in
                // The shim passes no flags of ours: a wrapper names the private daemon.
                let wrapper = "\(c.dir)/ctrobj-oci"
                try Sys.writeFileAtomically(wrapper, "#!/bin/sh\necho \"$*\" >> \(c.dir)/calls\nexec \(buildDir)/ctrobj-oci --ctrobj-socket \(d.socket) \"$@\"\n", mode: 0o755)
                let (code, out) = try c.runRemoving(id: "ocictr", runtimeBinary: wrapper,
                                                    ["/bin/sh", "-c", "echo hello-$((6*7)) from $(cat /proc/1/comm) in $(hostname); exit 7"])
                let calls = (try? Sys.readFile("\(c.dir)/calls")) ?? ""
                #expect(code == 7 && out.contains("hello-42 from sh"),
                        "\(out)\ncalls:\n\(calls)\ncontainerd log tail:\n\(((try? Sys.readFile("\(c.dir)/containerd.log")) ?? "").split(separator: "\n").suffix(15).joined(separator: "\n"))")
                for verb in [" create ", " start ", " delete "] { #expect(calls.contains(verb), "\(verb): \(calls)") }
                let (_, left) = try c.ctr(["container", "ls", "--quiet"])
                #expect(left.trimmingSuffixNewline().isEmpty, "--rm removed it: \(left)")
                #expect(waitFor(10) { (try? Container.list().isEmpty) == true }, "no container object left: \((try? Container.list().map(\.name)) ?? [])")
            }
        }
    }
}
