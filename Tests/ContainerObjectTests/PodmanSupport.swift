import ContainerObject
import ContainerSystem
import Testing
#if canImport(Glibc)
import Glibc
#endif

// Real clients for the OCI suites: a private podman and a private containerd
// that leave the host as they found it. Both run every command inside one
// private mount namespace of their own (PrivateMountNamespace), so what they
// mount (a container's /dev/shm, containerd's overlay snapshots) and the
// host paths they write whatever their configuration says (podman:
// /var/lib/containers/cache, /run/containers; containerd: /run/containerd)
// live and die with it. Storage, state and configuration are under one
// temporary directory; the cgroups they make are under a parent of their own,
// removed at the end.
//
// Facts about this machine (Debian 12, hybrid cgroups, no CAP_SYS_RESOURCE
// in the sandbox) that the configuration answers:
// - crun refuses the hybrid layout (its v2 hierarchy holds only hugetlb);
//   runc works. The runtime is always given as a path (`--runtime PATH`,
//   `--runc-binary PATH`), which is where ctrobj-oci plugs in.
// - podman needs nofile/nproc ulimits it may set (1024:1024), the cgroupfs
//   manager (no systemd), and no network (or netavark).
// - vfs storage: the container's root is a plain directory the host sees
//   (overlay would be a mount inside the private namespace only).

let podmanBinary = "/usr/bin/podman"
let runcBinary = "/usr/sbin/runc"
let containerdBinary = "/usr/bin/containerd"
let ctrBinary = "/usr/bin/ctr"
let nsenterBinary = "/usr/bin/nsenter"
let havePodman = isRoot && [podmanBinary, runcBinary, "/usr/bin/conmon", "/bin/busybox", nsenterBinary, "/usr/bin/unshare"].allSatisfy(Sys.exists)
let haveContainerd = isRoot && [containerdBinary, ctrBinary, "/usr/bin/containerd-shim-runc-v2", runcBinary, podmanBinary, "/bin/busybox",
                                nsenterBinary, "/usr/bin/unshare"].allSatisfy(Sys.exists)
let podmanMissing: Comment = "needs root, podman, runc, conmon, nsenter and busybox-static (scripts/setup.sh installs them)"
let containerdMissing: Comment = "needs root, containerd (with ctr and containerd-shim-runc-v2), runc, podman (to build the image) and busybox-static"

/// A mount namespace of the harness's own, held by one sleeping process,
/// with a tmpfs over each of `hiding`. Commands run in it through nsenter.
/// `stop()` kills the holder (by pidfd) once nothing else runs in it; the
/// namespace and every mount in it go with the last process.
final class PrivateMountNamespace {
    let holder: pid_t
    let holderFD: OwnedFD
    /// Mount points this made on the host because they were missing (empty dirs, removed at stop).
    private var madeDirs: [String] = []
    private var stopped = false

    init(hiding: [String], readyFile: String) throws {
        for d in hiding where !Sys.exists(d) {
            try Sys.mkdirs(d, 0o755)
            madeDirs.append(d)
        }
        let script = "for d in \"$@\"; do mount -t tmpfs -o mode=0755,size=64m ctrobj-private \"$d\" || exit 125; done; : > \(readyFile); exec sleep 100000"
        // Made on CPU 0: a ctrobjd started in this namespace (also from CPU 0,
        // withDaemon(in:)) then makes its pin namespace with a higher id, which
        // the kernel requires to mount it here (mnt_ns_loop; ids come from
        // per-CPU batches since 6.18, so another CPU's may be lower).
        let pid = try spawn(["/usr/bin/taskset", "-c", "0", "/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh"] + hiding)
        holder = pid
        holderFD = try Sys.pidfdOpen(pid)
        for _ in 0..<500 {
            if Sys.exists(readyFile) { return }
            if (try? Sys.pidfdWait(holderFD.raw, nohang: true)) ?? nil != nil { break }
            usleep(10_000)
        }
        stop()
        throw ContainerError(.system, "the private mount namespace did not come up")
    }

    var nsPath: String { "/proc/\(holder)/ns/mnt" }

    /// argv run inside the namespace (same pid, net and cgroup namespaces as the host).
    func run(_ argv: [String], env: [String]? = nil, timeoutSeconds: Int = 120) throws -> (Int32, String) {
        try runProgram([nsenterBinary, "--mount=\(nsPath)", "--"] + argv, env: env, timeoutSeconds: timeoutSeconds)
    }

    /// Mounts the host sees under `dir` (there should be none).
    static func hostMounts(under dir: String) -> [String] {
        ((try? Sys.readFile("/proc/self/mountinfo")) ?? "").split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            guard f.count > 4 else { return nil }
            let point = String(f[4])
            return point == dir || point.hasPrefix(dir + "/") ? point : nil
        }
    }

    /// The end of a private client environment: anything still running in
    /// this namespace is ours (it was started inside it) and is killed, the
    /// namespace goes (and every mount in it), then the client's cgroups
    /// and directory; what leaked onto the host is removed and recorded.
    func tearDown(cgroups: String, dir: String, client: String) {
        for p in processes(inMountNamespaceOf: holder) where p != holder {
            if let fd = try? Sys.pidfdOpen(p) { try? Sys.pidfdSendSignal(fd.raw, SIGKILL) }
        }
        stop()
        let left = removeCgroupTree(cgroups)
        if !left.isEmpty { Issue.record("\(client) cgroups left: \(left)") }
        let stray = PrivateMountNamespace.hostMounts(under: dir)
        for m in stray.reversed() { _ = umount2(m, Int32(MNT_DETACH)) }
        if !stray.isEmpty { Issue.record("\(client) mounts seen on the host: \(stray)") }
        removeTree(dir)
    }

    func stop() {
        guard !stopped else { return }
        stopped = true
        try? Sys.pidfdSendSignal(holderFD.raw, SIGKILL)
        _ = try? Sys.pidfdWait(holderFD.raw)
        for d in madeDirs.reversed() { rmdir(d) }
    }

    deinit { stop() }
}

/// rmdir every cgroup below (and including) `relative` in every hierarchy,
/// deepest first, after SIGKILL (by pidfd) of any process still in one:
/// the tree is the harness's own cgroup parent, so whatever runs there is
/// a container it started.
func removeCgroupTree(_ relative: String) -> [String] {
    var left: [String] = []
    let hierarchies = allCgroupMounts()
    for _ in 0..<50 {
        var found = false
        for h in hierarchies where Sys.exists("\(h)/\(relative)") {
            func kill(_ dir: String) {
                for line in ((try? Sys.readFile("\(dir)/cgroup.procs")) ?? "").split(separator: "\n") {
                    guard let p = pid_t(line), let fd = try? Sys.pidfdOpen(p) else { continue }
                    found = true
                    try? Sys.pidfdSendSignal(fd.raw, SIGKILL)
                }
                for e in Sys.listDirectory(dir) {
                    var st = stat()
                    if lstat("\(dir)/\(e)", &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { kill("\(dir)/\(e)") }
                }
            }
            kill("\(h)/\(relative)")
        }
        if !found { break }
        usleep(20_000)
    }
    for h in hierarchies {
        let top = "\(h)/\(relative)"
        guard Sys.exists(top) else { continue }
        func walk(_ dir: String) {
            for e in Sys.listDirectory(dir) {
                var st = stat()
                if lstat("\(dir)/\(e)", &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { walk("\(dir)/\(e)") }
            }
            var removed = false
            for _ in 0..<100 {
                if rmdir(dir) == 0 || errno == ENOENT { removed = true; break }
                usleep(20_000)
            }
            if !removed { left.append(dir) }
        }
        walk(top)
    }
    return left
}

/// Every cgroup hierarchy mounted (v1 ones of every controller and name=,
/// and v2): podman and containerd make their cgroups in each.
func allCgroupMounts() -> [String] {
    var out: [String] = []
    for line in ((try? Sys.readFile("/proc/self/mountinfo")) ?? "").split(separator: "\n") {
        let halves = line.split(separator: " - ")
        guard halves.count == 2 else { continue }
        let left = halves[0].split(separator: " "), right = halves[1].split(separator: " ")
        guard left.count >= 5, let fs = right.first, fs == "cgroup" || fs == "cgroup2" else { continue }
        let m = String(left[4])
        if !out.contains(m) { out.append(m) }
    }
    return out
}

/// The busybox-static root file system every image is made from: /bin with
/// busybox and a link per applet, /bin/pause (sleeps; a pod's infra
/// command), /etc, /tmp, /var/lib, /sbin.
func makeBusyboxRootfs(_ dir: String) throws {
    for d in ["bin", "sbin", "etc", "tmp", "var/lib", "proc", "sys", "dev", "root"] { try Sys.mkdirs("\(dir)/\(d)", 0o755) }
    chmod("\(dir)/tmp", 0o1777)
    let (cp, out) = try runProgram(["/bin/cp", "/bin/busybox", "\(dir)/bin/busybox"])
    guard cp == 0 else { throw ContainerError(.system, "copy busybox: \(out)") }
    let (code, list) = try runProgram(["/bin/busybox", "--list"])
    guard code == 0 else { throw ContainerError(.system, "busybox --list: \(list)") }
    for applet in list.split(separator: "\n") where applet != "busybox" && !applet.contains("/") {
        _ = symlink("busybox", "\(dir)/bin/\(applet)")
    }
    // A pod's infra command takes no arguments: this one waits for ever.
    try Sys.writeFileAtomically("\(dir)/bin/pause", "#!/bin/sh\nexec /bin/sleep 1000000\n", mode: 0o755)
    try Sys.writeFileAtomically("\(dir)/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", mode: 0o644)
    try Sys.writeFileAtomically("\(dir)/etc/group", "root:x:0:\n", mode: 0o644)
}

/// A podman of the test's own: its containers.conf, storage, hooks
/// directory, cgroup parent and image; nothing of the host's podman is read
/// or changed. Use `with { p in … }` (cleanup on every path) or call
/// `cleanUp()` yourself.
final class PrivatePodman {
    static let image = "localhost/ctrobj-busybox:test"

    /// Host paths podman (4.3) and runc write whatever the configuration
    /// says: the blob-info cache, netavark's run directory, runc's default
    /// --root (podman passes none). A tmpfs over each, in the private
    /// namespace only.
    static let hiddenHostDirs = ["/var/lib/containers", "/run/containers", "/run/runc"]

    let dir: String
    let hooksDir: String
    let cgroupParent: String
    let runtime: String
    let mounts: PrivateMountNamespace
    private var cleaned = false

    var confPath: String { "\(dir)/containers.conf" }
    var storageConfPath: String { "\(dir)/storage.conf" }
    var graphRoot: String { "\(dir)/graph" }
    var runRoot: String { "\(dir)/run" }

    /// `runtime`: the OCI runtime's path (runc here; ctrobj-oci later).
    /// podman gives conmon and the runtime only an environment of its own
    /// choosing (not its caller's), so `runtimeEnvironment` (for example
    /// `CTROBJ_STATE_DIR=…` for a runtime that talks to a private ctrobjd)
    /// is set by a wrapper script that execs `runtime`, and the wrapper is
    /// what podman runs.
    init(runtime: String = runcBinary, runtimeEnvironment: [String] = []) throws {
        _ = machineLock
        let suffix = uniqueSuffix()
        let dir = "/tmp/ctrobj-podman-\(suffix)"
        self.dir = dir
        hooksDir = "\(dir)/hooks.d"
        cgroupParent = "ctrobj-podman-\(suffix)"
        self.runtime = runtimeEnvironment.isEmpty ? runtime : "\(dir)/runtime"
        try Sys.mkdir(dir, 0o755, existOK: false)
        do {
            if !runtimeEnvironment.isEmpty {
                func quoted(_ s: String) -> String { "'" + s.replacing("'", with: "'\\''") + "'" }
                let exports = runtimeEnvironment.map { "export \(quoted($0))" }.joined(separator: "\n")
                try Sys.writeFileAtomically("\(dir)/runtime", "#!/bin/sh\n\(exports)\nexec \(quoted(runtime)) \"$@\"\n", mode: 0o755)
            }
            for d in ["graph", "run", "tmp", "hooks.d", "net", "rootfs"] { try Sys.mkdirs("\(dir)/\(d)", 0o755) }
            try Sys.writeFileAtomically("\(dir)/containers.conf", """
                [containers]
                default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
                netns = "none"
                log_driver = "k8s-file"

                [engine]
                cgroup_manager = "cgroupfs"
                events_logger = "file"
                events_logfile_path = "\(dir)/events.log"
                hooks_dir = ["\(hooksDir)"]
                lock_type = "file"
                tmp_dir = "\(dir)/tmp"
                image_copy_tmp_dir = "\(dir)/tmp"
                static_dir = "\(dir)/graph/libpod"
                volume_path = "\(dir)/graph/volumes"
                runtime = "\(self.runtime)"

                [network]
                network_backend = "netavark"
                network_config_dir = "\(dir)/net"

                """, mode: 0o644)
            try Sys.writeFileAtomically("\(dir)/storage.conf", """
                [storage]
                driver = "vfs"
                graphroot = "\(dir)/graph"
                runroot = "\(dir)/run"

                """, mode: 0o644)
            mounts = try PrivateMountNamespace(hiding: PrivatePodman.hiddenHostDirs, readyFile: "\(dir)/ns-ready")
        } catch {
            removeTree(dir)
            throw error
        }
        do {
            try makeBusyboxRootfs("\(dir)/rootfs")
            let (tc, to) = try runProgram(["/bin/tar", "-C", "\(dir)/rootfs", "-cf", "\(dir)/rootfs.tar", "."])
            guard tc == 0 else { throw ContainerError(.system, "tar the rootfs: \(to)") }
            let (ic, io) = try podman(["import", "\(dir)/rootfs.tar", Self.image])
            guard ic == 0 else { throw ContainerError(.system, "podman import: \(io)") }
        } catch {
            cleanUp()
            throw error
        }
    }

    /// The environment every podman command gets: only what it needs.
    var environment: [String] {
        ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "CONTAINERS_CONF=\(confPath)",
         "CONTAINERS_STORAGE_CONF=\(storageConfPath)", "HOME=\(dir)", "TMPDIR=\(dir)/tmp"]
    }

    /// `podman ARGS` in the private environment (global options first).
    func podman(_ args: [String], timeoutSeconds: Int = 120) throws -> (Int32, String) {
        try mounts.run([podmanBinary, "--runtime", runtime, "--cgroup-manager", "cgroupfs", "--hooks-dir", hooksDir] + args,
                       env: environment, timeoutSeconds: timeoutSeconds)
    }

    /// `podman run` options every container here gets (its cgroup under ours).
    var runOptions: [String] {
        ["--cgroup-parent", "/\(cgroupParent)", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
    }

    /// podman run ARGS…: options go before the image, `command` after it.
    func run(_ options: [String], _ command: [String], timeoutSeconds: Int = 120) throws -> (Int32, String) {
        try podman(["run"] + runOptions + options + [Self.image] + command, timeoutSeconds: timeoutSeconds)
    }

    /// A detached container; returns its full id.
    func runDetached(_ options: [String], _ command: [String]) throws -> String {
        let (code, out) = try podman(["run", "-d"] + runOptions + options + [Self.image] + command)
        let id = out.split(separator: "\n").last.map(String.init) ?? ""
        guard code == 0, id.utf8.count == 64 else { throw ContainerError(.system, "podman run -d: exit \(code): \(out)") }
        return id
    }

    func inspect(_ id: String, _ format: String) throws -> String {
        let (code, out) = try podman(["inspect", "--format", format, id])
        guard code == 0 else { throw ContainerError(.system, "podman inspect \(id): \(out)") }
        return out.trimmingSuffixNewline()
    }

    /// The container's root directory as the host sees it (vfs: a directory).
    func rootfs(_ id: String) throws -> String {
        let (code, out) = try podman(["mount", id])
        guard code == 0 else { throw ContainerError(.system, "podman mount \(id): \(out)") }
        return out.trimmingSuffixNewline()
    }

    /// Install a hooks.d file in the private hooks directory.
    func addHook(_ fileName: String, _ json: String) throws {
        try Sys.writeFileAtomically("\(hooksDir)/\(fileName)", json, mode: 0o644)
    }

    /// Everything goes: containers, images, storage, the namespace (and
    /// with it every mount podman made), the cgroups, the directory.
    /// Problems are recorded as test issues, never thrown.
    func cleanUp() {
        guard !cleaned else { return }
        cleaned = true
        _ = try? podman(["rm", "--all", "--force", "--time", "0"])
        _ = try? podman(["pod", "rm", "--all", "--force"])
        _ = try? podman(["rmi", "--all", "--force"])
        _ = try? podman(["unmount", "--all"])
        // Anything still running in the namespace (a conmon that lost its
        // container) is ours: it was started inside it.
        mounts.tearDown(cgroups: cgroupParent, dir: dir, client: "podman")
    }

    /// Make a podman environment, run body, clean up on every path.
    static func with(runtime: String = runcBinary, runtimeEnvironment: [String] = [], _ body: (PrivatePodman) throws -> Void) throws {
        let p = try PrivatePodman(runtime: runtime, runtimeEnvironment: runtimeEnvironment)
        defer { p.cleanUp() }
        try body(p)
    }
}

/// Processes whose mount namespace is `holder`'s.
func processes(inMountNamespaceOf holder: pid_t) -> [pid_t] {
    guard let ns = Namespaces.inode(pid: holder, kind: .mnt) else { return [] }
    return Sys.listDirectory("/proc").compactMap { pid_t($0) }.filter { Namespaces.inode(pid: $0, kind: .mnt) == ns }
}

/// A containerd of the test's own: --root, --state and the socket under a
/// temporary directory, CRI off, the runc v2 shim; the image is the busybox
/// one exported by a private podman as an OCI archive. Run in a private
/// mount namespace (its snapshots' mounts, ctr's fifos and the shims'
/// sockets under /run/containerd stay in it); stopped by pid.
final class PrivateContainerd {
    let dir: String
    let namespace: String
    let mounts: PrivateMountNamespace
    private var daemon: OwnedFD?
    private var cleaned = false
    var socket: String { "\(dir)/containerd.sock" }
    static let image = "localhost/ctrobj-busybox:test"

    init() throws {
        _ = machineLock
        let suffix = uniqueSuffix()
        dir = "/tmp/ctrobj-containerd-\(suffix)"
        namespace = "ctrobj-\(suffix)"
        try Sys.mkdir(dir, 0o755, existOK: false)
        do {
            try Sys.writeFileAtomically("\(dir)/config.toml", """
                version = 2
                root = "\(dir)/root"
                state = "\(dir)/state"
                disabled_plugins = ["io.containerd.grpc.v1.cri"]

                [grpc]
                  address = "\(dir)/containerd.sock"
                [ttrpc]
                  address = "\(dir)/containerd.sock.ttrpc"
                [debug]
                  address = ""
                [metrics]
                  address = ""
                [plugins."io.containerd.runtime.v1.linux"]
                  shim_debug = false

                """, mode: 0o644)
            mounts = try PrivateMountNamespace(hiding: ["/run/containerd"] + PrivatePodman.hiddenHostDirs, readyFile: "\(dir)/ns-ready")
        } catch {
            removeTree(dir)
            throw error
        }
        do {
            // The image: podman's busybox image, exported as an OCI archive.
            try PrivatePodman.with { p in
                let (code, out) = try p.podman(["save", "--format", "oci-archive", "-o", "\(dir)/image.tar", PrivatePodman.image])
                guard code == 0 else { throw ContainerError(.system, "podman save: \(out)") }
            }
            let pid = try spawn([nsenterBinary, "--mount=\(mounts.nsPath)", "--", containerdBinary, "--config", "\(dir)/config.toml",
                                 "--log-level", "info"], env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], output: "\(dir)/containerd.log")
            daemon = try Sys.pidfdOpen(pid)
            var up = false
            for _ in 0..<500 {
                if let (c, _) = try? ctr(["version"], timeoutSeconds: 5), c == 0 { up = true; break }
                if let d = daemon, (try? Sys.pidfdWait(d.raw, nohang: true)) ?? nil != nil { break }
                usleep(20_000)
            }
            guard up else { throw ContainerError(.system, "containerd did not start: \((try? Sys.readFile("\(dir)/containerd.log")) ?? "")") }
            let (ic, io) = try ctr(["image", "import", "--base-name", "localhost/ctrobj-busybox", "\(dir)/image.tar"])
            guard ic == 0 else { throw ContainerError(.system, "ctr image import: \(io)") }
        } catch {
            cleanUp()
            throw error
        }
    }

    /// `ctr --address … --namespace … ARGS`.
    func ctr(_ args: [String], timeoutSeconds: Int = 120) throws -> (Int32, String) {
        try mounts.run([ctrBinary, "--address", socket, "--namespace", namespace] + args,
                       env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], timeoutSeconds: timeoutSeconds)
    }

    /// `ctr run --rm` of one container with `runtimeBinary` as the runc v2 shim's runc.
    func runRemoving(id: String, runtimeBinary: String = runcBinary, _ command: [String]) throws -> (Int32, String) {
        try ctr(["run", "--rm", "--runc-binary", runtimeBinary, Self.image, id] + command)
    }

    /// `ctr run --rm --config SPEC ID`: a container from a runtime spec of
    /// the test's own (root path, process, hooks) instead of an image's.
    func runSpec(id: String, spec: String, runtimeBinary: String = runcBinary) throws -> (Int32, String) {
        let path = "\(dir)/spec-\(id).json"
        try Sys.writeFileAtomically(path, spec, mode: 0o644)
        defer { unlink(path) }
        return try ctr(["run", "--rm", "--runc-binary", runtimeBinary, "--config", path, id])
    }

    /// A runtime spec (runtime-spec 1.0.2) for `runSpec`: `rootfs` (a
    /// directory), `args`, new pid, ipc, uts, mount and network namespaces,
    /// the usual /proc and /dev, and `hooks` (the spec's "hooks" object, as JSON).
    static func spec(rootfs: String, args: [String], hooks: String = "{}") -> String {
        func q(_ s: String) -> String {
            "\"" + s.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"") + "\""
        }
        return """
            {
              "ociVersion": "1.0.2",
              "process": {
                "terminal": false, "user": { "uid": 0, "gid": 0 },
                "args": [\(args.map(q).joined(separator: ", "))],
                "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "cwd": "/",
                "capabilities": {
                  "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_SETUID", "CAP_SETGID"],
                  "effective": ["CAP_KILL", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_SETUID", "CAP_SETGID"],
                  "permitted": ["CAP_KILL", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_SETUID", "CAP_SETGID"]
                },
                "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
                "noNewPrivileges": true
              },
              "root": { "path": \(q(rootfs)), "readonly": false },
              "hostname": "ctrobj-ctr",
              "mounts": [
                { "destination": "/proc", "type": "proc", "source": "proc" },
                { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
                { "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] }
              ],
              "hooks": \(hooks),
              "linux": {
                "namespaces": [{ "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }, { "type": "network" }],
                "maskedPaths": ["/proc/kcore", "/proc/keys"],
                "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
              }
            }

            """
    }

    func cleanUp() {
        guard !cleaned else { return }
        cleaned = true
        if daemon != nil {
            let (_, tasks) = (try? ctr(["task", "ls", "--quiet"], timeoutSeconds: 20)) ?? (0, "")
            for t in tasks.split(separator: "\n") {
                _ = try? ctr(["task", "kill", "--signal", "SIGKILL", String(t)], timeoutSeconds: 20)
                _ = try? ctr(["task", "delete", "--force", String(t)], timeoutSeconds: 20)
            }
            let (_, ctrs) = (try? ctr(["container", "ls", "--quiet"], timeoutSeconds: 20)) ?? (0, "")
            for c in ctrs.split(separator: "\n") { _ = try? ctr(["container", "delete", String(c)], timeoutSeconds: 20) }
            _ = try? ctr(["image", "remove", Self.image], timeoutSeconds: 20)
        }
        if let d = daemon {
            try? Sys.pidfdSendSignal(d.raw, SIGTERM)
            var pfd = pollfd(fd: d.raw, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 5000) == 0 { try? Sys.pidfdSendSignal(d.raw, SIGKILL) }
            _ = try? Sys.pidfdWait(d.raw)
            daemon = nil
        }
        // Shims (and anything they left) run in our namespace: ours to end.
        mounts.tearDown(cgroups: namespace, dir: dir, client: "containerd")
    }

    static func with(_ body: (PrivateContainerd) throws -> Void) throws {
        let c = try PrivateContainerd()
        defer { c.cleanUp() }
        try body(c)
    }
}
