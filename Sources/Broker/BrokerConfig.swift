import ContainerSystem
#if canImport(Glibc)
import Glibc
#endif

/// ctrobjd's settings. Each test runs its own daemon with its own state
/// directory and cgroup parent, so nothing here is global.
public struct BrokerConfig: Sendable {
    /// Socket, lock, records and namespace bind mounts live here.
    public var stateDir: String
    /// Containers' cgroups are made below this path in every hierarchy.
    public var cgroupParent: String
    /// Root-created containers with a user namespace map their root to a
    /// block of `idRangeSize` host ids starting at `idRangeBase + k * idRangeSize`,
    /// k < idRangeCount: at most that many such containers live at once
    /// (16,384 blocks of 65,536 from 1,000,000 end at 1,074,741,824; ids are
    /// 32-bit, so 65,520 such blocks fit at most).
    public var idRangeBase: UInt32
    public var idRangeSize: UInt32
    public var idRangeCount: Int
    /// How long a namespace holder may take before creation fails.
    public var holderTimeoutMs: Int32
    public var cgroupLayout: CgroupLayout
    /// Whether to use a delegated cgroup v2 subtree ctrobjd was started in
    /// (CgroupPlacement): auto finds out; the placement replaces
    /// `cgroupParent` at start when it is delegated.
    public var cgroupDelegation: CgroupPlacement.Choice = .auto
    /// `--cgroup-parent` was given: auto then keeps to it (a private
    /// daemon, a test's, has a parent of its own in whatever cgroup it runs).
    public var cgroupParentGiven = false
    /// Where the core helper spools while the daemon is down (when no
    /// upcall.conf names another).
    public var spoolDir = "/var/lib/ctrobj/spool"
    /// Keep pre-made namespaces for root's next create (see Prewarm.swift).
    public var prewarm = true
    /// Per-uid limits for every caller but root (docs/security.md): live
    /// containers (create, adopt), open connections, and bytes of replies
    /// queued for one connection that does not read them.
    public var maxContainersPerUID = 256
    public var maxConnectionsPerUID = 64
    public var maxQueuedBytes = 1 << 20
    /// Open container fds (each costs ctrobjd one fd) per principal.
    public var maxContainerFDsPerUID = 1024
    /// A connection whose queued replies have not moved for this long is dropped.
    public var stalledClientMs: UInt64 = 5000
    /// Fault injection for the crash-consistency tests: kill -9 ourselves at
    /// the Nth crash point of one op ("create:3"). Never set in production.
    public var crashAt: (op: String, point: Int)?

    public init(stateDir: String = "/run/ctrobj", cgroupParent: String = "ctrobj",
                idRangeBase: UInt32 = 1_000_000, idRangeSize: UInt32 = 65536, idRangeCount: Int = 16384,
                holderTimeoutMs: Int32 = 10_000, cgroupLayout: CgroupLayout = .discover()) {
        self.stateDir = stateDir
        self.cgroupParent = cgroupParent
        self.idRangeBase = idRangeBase
        self.idRangeSize = idRangeSize
        self.idRangeCount = idRangeCount
        self.holderTimeoutMs = holderTimeoutMs
        self.cgroupLayout = cgroupLayout
    }

    public var socketPath: String { "\(stateDir)/ctrobjd.sock" }
    public var containersDir: String { "\(stateDir)/containers" }
    public var lockPath: String { "\(stateDir)/ctrobjd.lock" }
    /// The pin namespace's nsfs file, bind-mounted on the host (PinNamespace.swift).
    /// Inside containersDir, which is made a private mount where the state
    /// directory's is shared: a mount namespace's file cannot be mounted where it would propagate.
    public var pinNamespacePath: String { "\(containersDir)/mntns" }
    /// What `ctrobj info` reads: the cgroup layout and placement chosen at start.
    public var placementPath: String { "\(stateDir)/cgroup-placement" }
}
