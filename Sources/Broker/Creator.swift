import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// container_create: validation, the cgroup, and the namespace holder.
struct Creator {
    let config: BrokerConfig

    /// Name rules of container.h: 1..23 bytes, no '/', no NUL.
    static func validate(name: String, flags: UInt32) throws {
        let bytes = Array(name.utf8)
        if bytes.isEmpty || bytes.count >= ContainerFlags.nameMax || bytes.contains(UInt8(ascii: "/")) || bytes.contains(0)
            || name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f || (0x80..<0xa0).contains($0.value) }) {
            throw ContainerError(.invalidArgument,
                "container_create: invalid name \"\(RequestRules.escaped(name))\": 1 to \(ContainerFlags.nameMax - 1) bytes, no '/', no control characters")
        }
        if flags & ~ContainerFlags.mask != 0 {
            throw ContainerError(.invalidArgument,
                "container \"\(name)\": container_create: unknown flag bits 0x\(String(flags & ~ContainerFlags.mask, radix: 16))")
        }
        if flags & ContainerFlags.newFSNS != 0 && flags & ContainerFlags.newEmptyFSNS != 0 {
            throw ContainerError(.invalidArgument,
                "container \"\(name)\": container_create: CONTAINER_NEW_FS_NS and CONTAINER_NEW_EMPTY_FS_NS exclude each other")
        }
    }

    struct Made {
        var namespaces: [NamespaceKind: OwnedFD]
        var root: OwnedFD?
    }

    /// Make the namespaces through a holder process. `idBase` is the host id
    /// that root inside maps to for root creators; unprivileged creators map
    /// their own uid and gid only.
    func makeNamespaces(name: String, flags: UInt32, creatorUID: uid_t, creatorGID: gid_t,
                        idBase: UInt32?) throws -> Made {
        let newUser = flags & ContainerFlags.newUserNS != 0
        var unshare: Int32 = 0
        if flags & (ContainerFlags.newFSNS | ContainerFlags.newEmptyFSNS) != 0 { unshare |= NamespaceKind.mnt.cloneFlag }
        if flags & ContainerFlags.newUTSNS != 0 { unshare |= NamespaceKind.uts.cloneFlag }
        if flags & ContainerFlags.newIPCNS != 0 { unshare |= NamespaceKind.ipc.cloneFlag }
        if flags & ContainerFlags.newNetNS != 0 { unshare |= NamespaceKind.net.cloneFlag }
        // No CLONE_NEWCGROUP here: the cgroup namespace must be rooted at the
        // container's cgroup, and joining a cgroup costs a cgroup migration
        // (an RCU grace period on the first one): it is born with init, which
        // joins the cgroup anyway (JoinPlan.newCgroupNS).
        if flags & ContainerFlags.newTimeNS != 0 { unshare |= NamespaceKind.time.cloneFlag }
        if !newUser && unshare == 0 { return Made(namespaces: [:], root: nil) }

        var plan = ccs_holder_plan()
        let unprivileged = creatorUID != 0
        plan.become_user = unprivileged ? 1 : 0
        plan.uid = creatorUID
        plan.gid = creatorGID
        plan.new_user = newUser ? 1 : 0
        plan.unshare_flags = unshare
        plan.empty_root = flags & ContainerFlags.newEmptyFSNS != 0 ? 1 : 0

        var ctlRaw: CInt = -1
        let pid = ccs_holder_start(&plan, &ctlRaw)
        if pid < 0 { throw ContainerError.sys("clone", context: "container \"\(name)\": container_create") }
        let ctl = OwnedFD(ctlRaw)
        var reaped = false
        defer {
            if !reaped {
                kill(pid, SIGKILL) // our own unreaped child: the pid cannot have been reused
                _ = try? Sys.waitpid(pid)
            }
        }
        var stage: CInt = 0
        func expect(_ tag: UInt8) throws {
            if ccs_holder_expect(ctl.raw, CChar(bitPattern: tag), config.holderTimeoutMs, &stage) < 0 {
                let e = errno
                throw ContainerError(ContainerError.codeFor(e),
                    "container \"\(name)\": container_create: namespace holder failed at \(childStageName(stage)): \(errnoDescription(e))",
                    errno: e)
            }
        }
        if newUser {
            try expect(UInt8(ascii: "U"))
            if unprivileged {
                try Sys.writeFile("/proc/\(pid)/setgroups", "deny")
                try Sys.writeFile("/proc/\(pid)/uid_map", "0 \(creatorUID) 1\n")
                try Sys.writeFile("/proc/\(pid)/gid_map", "0 \(creatorGID) 1\n")
            } else {
                let base = idBase ?? config.idRangeBase
                try Sys.writeFile("/proc/\(pid)/uid_map", "0 \(base) \(config.idRangeSize)\n")
                try Sys.writeFile("/proc/\(pid)/gid_map", "0 \(base) \(config.idRangeSize)\n")
            }
            _ = ccs_holder_tell(ctl.raw, CChar(UInt8(ascii: "M")))
        }
        try expect(UInt8(ascii: "R"))
        var made = Made(namespaces: [:], root: nil)
        for kind in NamespaceKind.allCases where kind != .pid {
            let wanted = kind == .user ? newUser : (unshare & kind.cloneFlag != 0)
            guard wanted else { continue }
            made.namespaces[kind] = try Sys.open("/proc/\(pid)/ns/\(kind.procName)", O_RDONLY)
        }
        if unshare & NamespaceKind.mnt.cloneFlag != 0 {
            made.root = try Sys.open("/proc/\(pid)/root", O_PATH | O_DIRECTORY)
        }
        withExtendedLifetime(ctl) { _ = ccs_holder_tell(ctl.raw, CChar(UInt8(ascii: "X"))) }
        // Its work is done once the fds are open; it runs as the creator, who
        // could stop it, so it is not waited for: killed (our own unreaped
        // child, the pid cannot have been reused) and reaped.
        kill(pid, SIGKILL)
        _ = try? Sys.waitpid(pid)
        reaped = true
        return made
    }
}
