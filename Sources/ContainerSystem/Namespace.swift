import CShim
#if canImport(Glibc)
import Glibc
#endif

/// The namespace kinds, in the order a joining process enters them
/// (user first: it grants the capabilities the others need).
public enum NamespaceKind: String, CaseIterable, Sendable {
    case user, mnt, uts, ipc, net, cgroup, pid, time

    public var cloneFlag: Int32 {
        switch self {
        case .user: return 0x1000_0000
        case .mnt: return 0x0002_0000
        case .uts: return 0x0400_0000
        case .ipc: return 0x0800_0000
        case .net: return 0x4000_0000
        case .cgroup: return 0x0200_0000
        case .pid: return 0x2000_0000
        case .time: return 0x0000_0080
        }
    }

    /// The file under /proc/PID/ns that names it for new children.
    public var procName: String {
        switch self {
        case .pid: return "pid_for_children"
        case .time: return "time_for_children"
        default: return rawValue
        }
    }

    public static func from(cloneFlag: Int32) -> NamespaceKind? {
        allCases.first { $0.cloneFlag == cloneFlag }
    }

    /// Kinds named in a CLONE_NEW* mask.
    public static func kinds(inMask mask: Int32) -> [NamespaceKind] {
        allCases.filter { mask & $0.cloneFlag != 0 }
    }
}

public enum Namespaces {
    /// The inode of an nsfs fd: the identity of the namespace.
    public static func inode(of fd: CInt) throws -> UInt64 {
        var st = stat()
        if fstat(fd, &st) < 0 { throw ContainerError.sys("fstat") }
        return UInt64(st.st_ino)
    }

    /// The namespace a pin (a bind mount of an nsfs file) holds; throws
    /// ENOENT if the path is missing and ESTALE if it is not an nsfs file
    /// (an empty file whose bind mount is gone, as after a reboot).
    public static func inode(ofPath path: String) throws -> UInt64 {
        let type = ccs_statfs_type(path)
        if type < 0 { throw ContainerError.sys("statfs \(path)") }
        guard type == CCS_NSFS_MAGIC else {
            throw ContainerError(.notFound, "\(path) is not a namespace (its bind mount is gone)", errno: ESTALE)
        }
        var st = stat()
        if stat(path, &st) < 0 { throw ContainerError.sys("stat \(path)") }
        return UInt64(st.st_ino)
    }

    /// The inode of /proc/PID/ns/NAME, or nil when it cannot be read.
    public static func inode(pid: pid_t, kind: NamespaceKind, procRoot: String = "/proc") -> UInt64? {
        var st = stat()
        if stat("\(procRoot)/\(pid)/ns/\(kind.rawValue)", &st) < 0 { return nil }
        return UInt64(st.st_ino)
    }

    /// Which namespace kind an nsfs fd is (NS_GET_NSTYPE), or nil if it is not one.
    public static func kind(of fd: CInt) -> NamespaceKind? {
        let t = ioctl(fd, UInt(CCS_NS_GET_NSTYPE))
        if t < 0 { return nil }
        return NamespaceKind.from(cloneFlag: t)
    }

    /// The inode of the user namespace that owns a namespace (NS_GET_USERNS),
    /// or nil when the kernel does not say (the caller cannot see its owner).
    public static func owningUserNamespace(of fd: CInt) -> UInt64? {
        let u = ioctl(fd, UInt(CCS_NS_GET_USERNS))
        if u < 0 { return nil }
        defer { close(u) }
        return try? inode(of: u)
    }
}
