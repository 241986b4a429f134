import ContainerObject
import ContainerSystem
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A container made by crun(1), adopted by the pid of its init, gets its cores
/// like our own. It installs the broker (core_pattern, request-key.d), so it
/// runs one test at a time and puts the kernel settings back on every path.
@Suite("upcalls: an adopted crun container", .serialized,
       .enabled(if: isRoot && Sys.exists("/usr/bin/crun") && Sys.exists("/usr/bin/unshare") && Sys.exists("/bin/busybox"),
                "needs root, crun and busybox-static"))
struct AdoptCrunTests {
    /// Kernel settings and the installer exactly as the other core tests use them.
    let upcalls = UpcallTests()

    @Test("a crun container adopted by its init's pid gets its cores inside its root, owned by its mapped root")
    func adoptedCrun() throws {
        let dir = "/tmp/ctrobj-crun-\(uniqueSuffix())"
        try Sys.mkdir(dir, 0o755, existOK: false)
        defer { removeTree(dir) }
        let bundle = try CrunBundle(dir: dir, hostRoot: crunRootID)
        try upcalls.preservingKernelSettings {
            try withDaemon { d in
                let inst = upcalls.installer(d)
                _ = try inst.install()
                defer { _ = try? inst.uninstall() }
                let box = try CrunContainer(bundle: bundle, stateRoot: "\(dir)/crun-state", id: "ctrobj-test-\(uniqueSuffix())")
                defer { box.delete() }
                let pid = box.initPid

                // crun reports the same init, and the init is in namespaces of its own.
                let (code, state) = try box.crun(["state", box.id])
                #expect(code == 0 && state.contains("\"pid\": \(pid),") && state.contains("\"status\": \"running\""), "\(state)")
                let c = try Container.adopt("crun-adopted", pid: pid)
                let st = try c.status()
                #expect(st.state == .running && st.initPid == pid)
                for kind in [NamespaceKind.user, .mnt, .pid, .net, .ipc, .uts] {
                    let ino = Namespaces.inode(pid: pid, kind: kind)
                    #expect(ino != nil && ino != Namespaces.inode(pid: getpid(), kind: kind), "crun gave its init a \(kind) namespace")
                    #expect(st.namespaceInodes[kind.rawValue] == ino, "\(kind): \(st.namespaceInodes)")
                }

                // A process crun execs into the container kills itself (PID 1 would be immune).
                let (crashed, out) = try box.crun(["exec", box.id, "/bin/busybox", "sh", "-c", "busybox kill -SEGV $$"])
                #expect(crashed == 139, "the exec'd shell died of SIGSEGV (crun exits 128 + signal): \(out)")
                let found = waitForCores(pid: pid)
                try #require(found.count == 1, "cores in the crun container: \(found)")
                #expect(found[0].hasPrefix("core.busybox."))

                // Inside the container's root, which is the bundle's rootfs, owned by its root as uid_map maps it.
                let f = try Sys.open("/proc/\(pid)/root/var/lib/ctrobj/cores/\(found[0])", O_RDONLY)
                var st1 = stat()
                fstat(f.raw, &st1)
                #expect(st1.st_uid == crunRootID && st1.st_gid == crunRootID, "owned by the container's root (host id \(crunRootID))")
                #expect(st1.st_mode & 0o777 == 0o600)
                var st2 = stat()
                #expect(stat("\(bundle.rootfs)/var/lib/ctrobj/cores/\(found[0])", &st2) == 0 && st2.st_ino == st1.st_ino)
                let end = try elfCoreEnd(f.raw)
                #expect(end > 0 && UInt64(st1.st_size) >= end, "the core is whole: \(st1.st_size) bytes, segments end at \(end)")

                try c.destroy()
                #expect(box.isAlive, "forgetting an adopted container does not kill it")
            }
        }
    }

    /// core.* files in the container's core directory, seen through its init's root.
    func waitForCores(pid: pid_t, seconds: Int = 30) -> [String] {
        var found: [String] = []
        for _ in 0..<(seconds * 50) {
            found = Sys.listDirectory("/proc/\(pid)/root/var/lib/ctrobj/cores").filter { $0.hasPrefix("core.") }.sorted()
            if !found.isEmpty { break }
            usleep(20_000)
        }
        return found
    }
}

/// The host id the crun container's root maps to: clear of ctrobjd's id ranges
/// (1000000 up, 65536 per container), so only the user namespace explains it.
let crunRootID: uid_t = 1_500_000_000

/// An OCI bundle: a rootfs with static busybox, owned by the container's root
/// (so that root can write below it), and `crun spec`'s config.json with a user
/// namespace mapping root to `hostRoot`, a writable root (with spec's read-only
/// one ctrobjd cannot deliver the core), no terminal, no
/// /sys/fs/cgroup mount (crun manages no cgroups here), and `busybox sleep 120`
/// as the process.
struct CrunBundle {
    let path: String
    var rootfs: String { "\(path)/rootfs" }

    init(dir: String, hostRoot: uid_t) throws {
        path = "\(dir)/bundle"
        try Sys.mkdirs("\(path)/rootfs/bin")
        let (cp, out) = try runProgram(["/bin/cp", "/bin/busybox", "\(path)/rootfs/bin/busybox"])
        guard cp == 0 else { throw ContainerError(.system, "copy busybox into the bundle: \(out)") }
        guard symlink("busybox", "\(path)/rootfs/bin/sh") == 0 else { throw ContainerError.sys("symlink \(path)/rootfs/bin/sh") }
        for p in ["rootfs", "rootfs/bin", "rootfs/bin/busybox", "rootfs/bin/sh"] {
            guard lchown("\(path)/\(p)", hostRoot, hostRoot) == 0 else { throw ContainerError.sys("lchown \(path)/\(p)") }
        }
        try Sys.writeFileAtomically("\(path)/config.json", Self.config(hostRoot: hostRoot), mode: 0o644)
    }

    static func config(hostRoot: uid_t) -> String {
        """
        {
          "ociVersion": "1.0.0",
          "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": ["/bin/busybox", "sleep", "120"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {
              "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
              "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
              "inheritable": [],
              "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
              "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
          },
          "root": { "path": "rootfs", "readonly": false },
          "hostname": "crun",
          "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"] }
          ],
          "linux": {
            "uidMappings": [{ "containerID": 0, "hostID": \(hostRoot), "size": 65536 }],
            "gidMappings": [{ "containerID": 0, "hostID": \(hostRoot), "size": 65536 }],
            "namespaces": [{ "type": "pid" }, { "type": "network" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }, { "type": "user" }],
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
          }
        }
        """
    }
}

/// A crun container run detached, with its state in a private `--root` beside
/// the bundle. Every crun command runs in a private mount namespace with a
/// tmpfs over /sys/fs/cgroup/unified: crun 1.8.1 refuses hybrid cgroups
/// ("cgroups in hybrid mode not supported"), and on a tmpfs it sees none.
/// `--cgroup-manager=disabled`, since otherwise it makes a cgroup in every
/// host v1 hierarchy; the init stays in the test's cgroups.
struct CrunContainer {
    let id: String
    let stateRoot: String
    let initPid: pid_t
    let initPidfd: OwnedFD

    init(bundle: CrunBundle, stateRoot: String, id: String) throws {
        self.id = id
        self.stateRoot = stateRoot
        try Sys.mkdir(stateRoot, 0o700, existOK: false)
        let pidFile = "\(stateRoot)/\(id).pid"
        let (code, out) = try Self.crun(stateRoot, ["run", "--detach", "--pid-file", pidFile, "--bundle", bundle.path, id])
        guard code == 0 else {
            _ = try? Self.crun(stateRoot, ["delete", "--force", id])
            throw ContainerError(.system, "crun run \(id): exit \(code): \(out)")
        }
        let text = ((try? Sys.readFile(pidFile)) ?? "").trimmingSuffixNewline()
        guard let pid = pid_t(text), pid > 0, let fd = try? Sys.pidfdOpen(pid) else {
            _ = try? Self.crun(stateRoot, ["delete", "--force", id])
            throw ContainerError(.system, "crun run \(id): no init pid in \(pidFile): \"\(text)\"")
        }
        initPid = pid
        initPidfd = fd
    }

    static func crun(_ stateRoot: String, _ args: [String]) throws -> (Int32, String) {
        let hide = "if [ -d /sys/fs/cgroup/unified ]; then mount -t tmpfs none /sys/fs/cgroup/unified || exit 125; fi; exec \"$@\""
        return try runProgram(["/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", hide, "sh",
                               "/usr/bin/crun", "--root", stateRoot, "--cgroup-manager=disabled"] + args)
    }

    func crun(_ args: [String]) throws -> (Int32, String) { try Self.crun(stateRoot, args) }

    /// The init has not exited. It is not our child (crun's, then reparented), so poll its pidfd.
    var isAlive: Bool {
        var pfd = pollfd(fd: initPidfd.raw, events: Int16(POLLIN), revents: 0)
        return poll(&pfd, 1, 0) == 0
    }

    /// crun delete --force kills the init and drops its state; if that failed,
    /// SIGKILL the init by its pidfd. Then wait (a few seconds at most) for it to go.
    func delete() {
        let (code, out) = (try? crun(["delete", "--force", id])) ?? (-1, "")
        if code != 0 { print("crun delete \(id): exit \(code): \(out)") }
        if isAlive { try? Sys.pidfdSendSignal(initPidfd.raw, SIGKILL) }
        var pfd = pollfd(fd: initPidfd.raw, events: Int16(POLLIN), revents: 0)
        _ = poll(&pfd, 1, 5000)
    }
}
