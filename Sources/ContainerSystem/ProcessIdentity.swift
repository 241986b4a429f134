import CShim
#if canImport(Glibc)
import Glibc
#endif

/// A process as an upcall names it, and what was read about it through
/// /proc: its cgroup v2 path and its namespace inodes. This is what the
/// attribution (Broker's Attribution.swift) takes, for cores, key requests
/// and anything else that must be placed in a container. What is read is
/// the process's only while a pidfd pins it and still names it afterwards:
/// the reader checks that (Broker's `attributeLive`), not this type.
public struct ProcessIdentity: Sendable, Equatable {
    /// In the host's pid namespace.
    public var pid: pid_t
    /// The cgroup v2 path ("/ctrobj/c5"), "" when unknown.
    public var cgroup: String
    /// Namespace inodes by kind (time is left out: nothing is attributed by it).
    public var namespaces: [NamespaceKind: UInt64]

    public init(pid: pid_t, cgroup: String = "", namespaces: [NamespaceKind: UInt64] = [:]) {
        self.pid = pid
        self.cgroup = cgroup
        self.namespaces = namespaces
    }

    /// The kinds an identity holds.
    public static let kinds: [NamespaceKind] = NamespaceKind.allCases.filter { $0 != .time }

    /// The cgroup path as ctrobjd's index keys it (no leading slash).
    public var cgroupKey: String { cgroup.hasPrefix("/") ? String(cgroup.dropFirst()) : cgroup }

    /// Read the cgroup v2 path (one /proc read: enough to place a process
    /// of a container made by ctrobjd).
    public mutating func readCgroup(procRoot: String = "/proc") {
        cgroup = ProcInfo.cgroupV2Path(pid: pid, procRoot: procRoot) ?? ""
    }

    /// Read the namespace inodes (seven stats: read only when the cgroup
    /// did not say which container it is).
    public mutating func readNamespaces(procRoot: String = "/proc") {
        for kind in Self.kinds {
            if let ino = Namespaces.inode(pid: pid, kind: kind, procRoot: procRoot) { namespaces[kind] = ino }
        }
    }
}

/// A namespace's identity: the inode of its nsfs file and the device that
/// file is on.
public struct NamespaceID: Hashable, Sendable {
    public var inode: UInt64
    public var device: UInt64

    public init(inode: UInt64, device: UInt64) {
        self.inode = inode
        self.device = device
    }

    /// The namespace at an nsfs path (/proc/PID/ns/NAME), nil when it
    /// cannot be read.
    public init?(path: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        self.init(inode: UInt64(st.st_ino), device: UInt64(st.st_dev))
    }
}

extension Namespaces {
    /// This process's namespaces, read once (they do not change while it
    /// runs; every thread sees the thread group leader's /proc/PID/ns).
    public static let own: [NamespaceKind: NamespaceID] = {
        var out: [NamespaceKind: NamespaceID] = [:]
        let me = getpid()
        for kind in NamespaceKind.allCases {
            if let id = NamespaceID(path: "/proc/\(me)/ns/\(kind.rawValue)") { out[kind] = id }
        }
        return out
    }()

    /// The one host check: true when every namespace of `kinds` that can be
    /// read for `pid` is this process's (inode and device), and at least
    /// one can. One implementation, in C (CShim keyhelper.c), which the key
    /// route runs too.
    public static func areCallers(pid: pid_t, kinds: [NamespaceKind] = ProcessIdentity.kinds) -> Bool {
        ccs_is_host_process(pid, kinds.reduce(0) { $0 | $1.cloneFlag }) == 1
    }
}
