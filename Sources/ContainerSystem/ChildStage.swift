import CShim

/// What a child made by CShim (ccs_join_fork, the holder, the mount
/// helpers) was doing when it failed, as its (stage, errno) report names it:
/// one table for every error message that says so.
public func childStageName(_ stage: CInt) -> String {
    switch Int(stage) {
    case Int(CCS_STAGE_FORK.rawValue): return "fork"
    case Int(CCS_STAGE_CGROUP.rawValue): return "joining the cgroup"
    case Int(CCS_STAGE_USERNS.rawValue): return "joining the user namespace"
    case Int(CCS_STAGE_SETNS.rawValue): return "joining the namespaces"
    case Int(CCS_STAGE_SETID.rawValue): return "becoming the container's root (setresuid/setresgid)"
    case Int(CCS_STAGE_PIDNS.rawValue): return "the pid namespace"
    case Int(CCS_STAGE_CLONE.rawValue): return "clone3"
    case Int(CCS_STAGE_STDIO.rawValue): return "stdio"
    case Int(CCS_STAGE_EXEC.rawValue): return "execve"
    case Int(CCS_STAGE_CHDIR.rawValue): return "chdir"
    case Int(CCS_STAGE_MOUNT.rawValue): return "mount"
    case Int(CCS_STAGE_ROOT.rawValue): return "the empty root (tmpfs + pivot_root)"
    case Int(CCS_STAGE_SYNC.rawValue): return "talking to the child"
    default: return "step \(stage)"
    }
}
