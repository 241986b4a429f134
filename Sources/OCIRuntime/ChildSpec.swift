import COCIChild
import CShim
import ContainerSystem
#if canImport(Glibc)
import Glibc
#endif

/// C memory for one oci_child_spec: every string, array and struct the child
/// reads, allocated before the fork and freed after it (the child has its
/// own copy of the address space, or has exec'd).
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    deinit { for b in blocks { free(b) } }

    func string(_ s: String) -> UnsafePointer<CChar> {
        let p = strdup(s)!
        blocks.append(UnsafeMutableRawPointer(p))
        return UnsafePointer(p)
    }

    func optString(_ s: String?) -> UnsafePointer<CChar>? { s.map { string($0) } }

    func array<T>(_ items: [T]) -> UnsafeMutablePointer<T> {
        let p = UnsafeMutablePointer<T>.allocate(capacity: max(1, items.count))
        for (i, v) in items.enumerated() { (p + i).initialize(to: v) }
        blocks.append(UnsafeMutableRawPointer(p))
        return p
    }

    /// A NULL-terminated char *[].
    func argv(_ items: [String]) -> UnsafePointer<UnsafeMutablePointer<CChar>?> {
        let ptrs: [UnsafeMutablePointer<CChar>?] = items.map { UnsafeMutablePointer(mutating: string($0)) } + [nil]
        return UnsafePointer(array(ptrs))
    }

    func hooks(_ list: [Spec.Hook]) -> (UnsafePointer<oci_hook>?, Int32) {
        guard !list.isEmpty else { return (nil, 0) }
        let hs = list.map { h in
            oci_hook(path: string(h.path), argv: argv(h.args ?? [h.path]), envp: argv(h.env ?? []), timeout_s: Int32(clamping: h.timeout ?? 0))
        }
        return (UnsafePointer(array(hs)), Int32(hs.count))
    }
}

/// The credential part of `process`, turned into the C spec's fields.
struct Credentials {
    var uid: uid_t = 0, gid: gid_t = 0, groups: [gid_t] = []
    var umask: Int32 = -1
    var caps: (bounding: UInt64, effective: UInt64, permitted: UInt64, inheritable: UInt64, ambient: UInt64)?
    var rlimits: [oci_rlimit] = []
    var noNewPrivileges = false
    var ambientDropped: UInt64 = 0

    init(_ p: Spec.Process, dropMknod: Bool) throws {
        uid = p.user.uid
        gid = p.user.gid
        groups = p.user.additionalGids ?? []
        guard groups.count <= 64 else { throw OCIError.field("process.user.additionalGids", "at most 64 groups") }
        if let m = p.user.umask {
            guard m <= 0o777 else { throw OCIError.field("process.user.umask", "\(m) is not a umask") }
            umask = Int32(m)
        }
        if let c = p.capabilities {
            func bits(_ names: [String]?, _ field: String) throws -> UInt64 {
                var b: UInt64 = 0
                for n in names ?? [] {
                    guard let bit = Tables.capabilities[n] else {
                        throw OCIError.field("process.capabilities.\(field)", "unknown capability \(n.debugDescription)")
                    }
                    if bit <= Credentials.lastCap { b |= 1 << UInt64(bit) }
                }
                if dropMknod { b &= ~(UInt64(1) << 27) }
                return b
            }
            let inh = try bits(c.inheritable, "inheritable"), perm = try bits(c.permitted, "permitted")
            let amb = try bits(c.ambient, "ambient")
            // The kernel raises an ambient capability only if it is permitted
            // and inheritable; runc leaves the others out, and so does this
            // (the runtime logs which: ambientDropped).
            ambientDropped = amb & ~(inh & perm)
            caps = (try bits(c.bounding, "bounding"), try bits(c.effective, "effective"), perm, inh, amb & inh & perm)
        }
        for r in p.rlimits ?? [] {
            guard let res = Tables.rlimits[r.type] else { throw OCIError.field("process.rlimits", "unknown rlimit \(r.type.debugDescription)") }
            guard r.soft <= r.hard else { throw OCIError.field("process.rlimits", "\(r.type): soft \(r.soft) is above hard \(r.hard)") }
            rlimits.append(oci_rlimit(resource: res, soft: r.soft, hard: r.hard))
        }
        noNewPrivileges = p.noNewPrivileges ?? false
    }

    static let lastCap: Int = {
        if let t = try? Sys.readFile("/proc/sys/kernel/cap_last_cap"), let n = Int(t.filter { $0.isNumber }) { return n }
        return 40
    }()

    func apply(to s: inout oci_child_spec, _ arena: CArena) {
        s.set_user = 1
        s.uid = uid
        s.gid = gid
        s.groups = UnsafePointer(arena.array(groups))
        s.ngroups = Int32(groups.count)
        s.umask = umask
        if let c = caps {
            s.set_caps = 1
            s.cap_bounding = c.bounding
            s.cap_effective = c.effective
            s.cap_permitted = c.permitted
            s.cap_inheritable = c.inheritable
            s.cap_ambient = c.ambient
        }
        s.last_cap = Int32(Credentials.lastCap)
        s.rlimits = UnsafePointer(arena.array(rlimits))
        s.nrlimits = Int32(rlimits.count)
        s.no_new_privs = noNewPrivileges ? 1 : 0
    }
}

/// The child's failing stage, as the config.json field it came from.
func stageField(_ stage: Int32) -> String {
    switch UInt32(stage) {
    case OCI_STAGE_HOSTNAME.rawValue: return "hostname"
    case OCI_STAGE_SYSCTL.rawValue: return "linux.sysctl"
    case OCI_STAGE_MOUNT.rawValue: return "mounts options / linux.maskedPaths / linux.readonlyPaths / root.readonly"
    case OCI_STAGE_MKNOD.rawValue: return "linux.devices"
    case OCI_STAGE_HOOK.rawValue: return "hooks.createContainer"
    case OCI_STAGE_CONSOLE.rawValue: return "process.terminal"
    case OCI_STAGE_GROUPS.rawValue: return "process.user.additionalGids"
    case OCI_STAGE_USER.rawValue: return "process.user"
    case OCI_STAGE_CAPS.rawValue: return "process.capabilities"
    case OCI_STAGE_RLIMIT.rawValue: return "process.rlimits"
    case OCI_STAGE_NNP.rawValue: return "process.noNewPrivileges"
    case OCI_STAGE_SECCOMP.rawValue: return "linux.seccomp"
    case OCI_STAGE_CWD.rawValue: return "process.cwd"
    case OCI_STAGE_EXEC.rawValue: return "process.args"
    case OCI_STAGE_STDIO.rawValue: return "stdio"
    case OCI_STAGE_LOOPBACK.rawValue: return "linux.namespaces (network: bringing up lo)"
    default: return "init"
    }
}

func errnoText(_ e: Int32) -> String { String(cString: strerror(e)) }

/// Joining the container's cgroups without the RCU grace period a
/// cgroup.procs write costs (cgroup_threadgroup_rwsem taken for writing:
/// 8-16 ms on this kernel, most of a `run` of /bin/true). The same cgroups
/// ctrobjd's plan names, entered another way: a v1 controller's `tasks`
/// with "0" moves only the writing thread (the fork's only one), which the
/// kernel does without that lock; the v2 cgroup is entered at birth
/// (clone3 CLONE_INTO_CGROUP, which takes the lock's read side). Root
/// callers only (they are the ones given cgroup.procs fds). The returned
/// fds must stay open until the fork returns.
func fastCgroupJoin(_ plan: inout ccs_join_plan) -> [OwnedFD] {
    guard plan.join_via_daemon == 0, geteuid() == 0 else { return [] }
    var keep: [OwnedFD] = []
    var intoCgroup = plan.into_cgroup
    var dirFD = plan.cgroup_dir_fd
    withUnsafeMutableBytes(of: &plan.cgroup_procs_fds) { raw in
        let a = raw.bindMemory(to: CInt.self)
        for i in 0..<Int(plan.cgroup_count) where a[i] >= 0 {
            guard let path = try? Sys.readLink("/proc/self/fd/\(a[i])"), path.hasPrefix("/"), path.hasSuffix("/cgroup.procs") else { continue }
            let dir = String(path.dropLast("/cgroup.procs".count))
            if ccs_statfs_type(dir) == 0x6367_7270 { // CGROUP2_SUPER_MAGIC
                guard intoCgroup == 0 else { continue }
                let d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                guard d >= 0 else { continue }
                keep.append(OwnedFD(d))
                intoCgroup = 1
                dirFD = d
                a[i] = -1
            } else {
                let t = open(dir + "/tasks", O_WRONLY | O_CLOEXEC)
                guard t >= 0 else { continue }
                keep.append(OwnedFD(t))
                a[i] = t
            }
        }
    }
    plan.into_cgroup = intoCgroup
    plan.cgroup_dir_fd = dirFD
    return keep
}

/// ccs_join_fork's failing step (joining the container), in words.
func joinStageText(_ stage: Int32) -> String {
    switch UInt32(stage) {
    case CCS_STAGE_CGROUP.rawValue: return "joining the cgroup"
    case CCS_STAGE_USERNS.rawValue: return "joining the user namespace"
    case CCS_STAGE_SETNS.rawValue: return "joining the namespaces"
    case CCS_STAGE_SETID.rawValue: return "becoming the container's root"
    case CCS_STAGE_PIDNS.rawValue: return "the pid namespace"
    case CCS_STAGE_CLONE.rawValue: return "clone3"
    case CCS_STAGE_CHDIR.rawValue: return "chdir"
    case CCS_STAGE_SYNC.rawValue: return "the report from the child"
    default: return "fork"
    }
}
