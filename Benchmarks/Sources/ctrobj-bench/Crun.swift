import ContainerSystem
#if canImport(Glibc)
import Glibc
#endif

/// crun (Debian's) with a config equivalent to the library's containers:
/// the same namespaces, a cgroup of its own, /bin/true from a busybox-static
/// rootfs, a tmpfs on /dev (crun makes its device nodes there; without it
/// it leaves them in the rootfs and fails the next run), no masked paths
/// and no seccomp.
///
/// crun refuses this machine's hybrid cgroups (cgroup2 at
/// /sys/fs/cgroup/unified beside v1 controllers), so every crun command runs
/// as `unshare -m sh -c 'mount -t tmpfs none /sys/fs/cgroup/unified && exec crun ...'`;
/// crun then sees plain v1. The wrapper alone is measured as its own row.
struct Crun {
    let workDir: String
    let rootfs: String
    let cgroupParent: String
    static let binary = "/usr/bin/crun"

    static var available: Bool { access(binary, X_OK) == 0 && access("/bin/busybox", X_OK) == 0 }

    init(workDir: String, cgroupParent: String) throws {
        self.workDir = workDir
        self.rootfs = "\(workDir)/rootfs"
        self.cgroupParent = cgroupParent
        try Sys.mkdirs("\(rootfs)/bin", 0o755)
        for d in ["proc", "dev", "sys", "tmp"] { try Sys.mkdirs("\(rootfs)/\(d)", 0o755) }
        try Command("cp", ["/bin/cp", "/bin/busybox", "\(rootfs)/bin/busybox"], log: "\(workDir)/cp.log").check()
        for tool in ["true", "sleep", "sh"] { symlink("busybox", "\(rootfs)/bin/\(tool)") }
    }

    /// A bundle directory whose config runs `args`.
    /// `proc`: mount /proc (crun exec needs it: it reads /proc/self/setgroups
    /// inside the container).
    func bundle(_ name: String, args: [String], userNS: Bool, proc: Bool = false) throws -> String {
        let dir = "\(workDir)/\(name)"
        try Sys.mkdirs(dir, 0o755)
        var namespaces = ["pid", "network", "ipc", "uts", "mount", "cgroup"]
        if userNS { namespaces.append("user") }
        let mapping = "[{\"containerID\": 0, \"hostID\": 900000000, \"size\": 65536}]"
        let config = """
        {
          "ociVersion": "1.0.0",
          "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": [\(args.map { "\"\($0)\"" }.joined(separator: ", "))],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/"
          },
          "root": {"path": "\(rootfs)", "readonly": false},
          "hostname": "bench",
          "mounts": [\(proc ? "{\"destination\": \"/proc\", \"type\": \"proc\", \"source\": \"proc\"}, " : ""){"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755", "size=65536k"]}],
          "linux": {
            \(userNS ? "\"uidMappings\": \(mapping), \"gidMappings\": \(mapping)," : "")
            "cgroupsPath": "/\(cgroupParent)/\(name)",
            "namespaces": [\(namespaces.map { "{\"type\": \"\($0)\"}" }.joined(separator: ", "))]
          }
        }
        """
        try Sys.writeFileAtomically("\(dir)/config.json", config, mode: 0o644)
        return dir
    }

    /// The wrapper around one crun command line.
    static func wrapped(_ crunArgs: String) -> [String] {
        ["/usr/bin/unshare", "-m", "/bin/sh", "-c", "mount -t tmpfs none /sys/fs/cgroup/unified && exec \(crunArgs)"]
    }

    /// The wrapper alone, exec'ing /bin/true instead of crun.
    static let wrapperOnly = wrapped("/bin/true")
}
