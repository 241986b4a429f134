import ArgumentParser
import Broker
import ContainerSystem
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// ctrobjd: the daemon that plays the kernel for container objects.
struct CtrobjD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctrobjd",
        abstract: "Hold container objects and answer the container-object API (run as root).")

    @Option(help: "State directory: socket, lock, records, namespace bind mounts.")
    var stateDir = "/run/ctrobj"

    @Option(help: "Cgroup parent path made in every hierarchy (default ctrobj). Given, it is used even in a delegated cgroup v2 subtree.")
    var cgroupParent: String?

    @Option(help: ArgumentHelp("Use the delegated cgroup v2 subtree ctrobjd was started in: auto (when it finds one and no --cgroup-parent is given), yes, no (always the cgroup parent).",
                               valueName: "auto|yes|no"))
    var cgroupDelegation = "auto"

    @Option(help: "First host id of the id blocks for root-created user namespaces.")
    var idBase: UInt32 = 1_000_000

    @Option(help: "Size of each container's id block.")
    var idSize: UInt32 = 65536

    @Option(help: "Number of id blocks: at most this many containers with a user namespace made by root live at once.")
    var idCount = 16384

    @Flag(help: "Do not keep pre-made namespaces for root's next create.")
    var noPrewarm = false

    @Option(help: "Live containers one uid (other than root) may have.")
    var maxContainersPerUid = 256

    @Option(help: "Open connections one uid (other than root) may have.")
    var maxConnectionsPerUid = 64

    @Option(help: "Open container fds one uid (other than root) may hold.")
    var maxContainerFdsPerUid = 1024

    @Option(help: "Bytes of unread replies queued for one uid (root: per connection) before its connection is dropped.")
    var maxQueuedBytes = 1 << 20

    @Option(help: ArgumentHelp("Fault injection for tests: kill -9 ctrobjd at the Nth crash point of OP (create, cgpath, fork, setns, destroy, adopt).",
                               valueName: "OP:N", visibility: .hidden))
    var crashAt: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel = "info"

    func run() throws {
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = Logger.Level(rawValue: logLevel) ?? .info
            return h
        }
        let logger = Logger(label: "ctrobjd")
        guard geteuid() == 0 else {
            throw ValidationError("ctrobjd must run as root: it makes namespaces and cgroups for its callers")
        }
        guard idSize >= 1, idCount >= 1, UInt64(idBase) + UInt64(idSize) * UInt64(idCount) <= UInt64(UInt32.max) else {
            throw ValidationError("--id-base + --id-size × --id-count must stay below 2^32 (ids are 32-bit)")
        }
        var config = BrokerConfig(stateDir: stateDir, cgroupParent: cgroupParent ?? "ctrobj", idRangeBase: idBase, idRangeSize: idSize, idRangeCount: idCount)
        config.prewarm = !noPrewarm
        guard let delegation = CgroupPlacement.Choice(rawValue: cgroupDelegation) else {
            throw ValidationError("--cgroup-delegation auto, yes or no")
        }
        config.cgroupDelegation = delegation
        config.cgroupParentGiven = cgroupParent != nil
        guard maxContainersPerUid >= 0, maxConnectionsPerUid >= 1, maxQueuedBytes >= 65536 else {
            throw ValidationError("limits: --max-containers-per-uid >= 0, --max-connections-per-uid >= 1, --max-queued-bytes >= 65536")
        }
        config.maxContainersPerUID = maxContainersPerUid
        config.maxConnectionsPerUID = maxConnectionsPerUid
        config.maxQueuedBytes = maxQueuedBytes
        guard maxContainerFdsPerUid >= 1 else { throw ValidationError("--max-container-fds-per-uid >= 1") }
        config.maxContainerFDsPerUID = maxContainerFdsPerUid
        if let crashAt {
            let parts = crashAt.split(separator: ":")
            guard parts.count == 2, let n = Int(parts[1]), n >= 1,
                  ["create", "cgpath", "fork", "setns", "destroy", "adopt"].contains(String(parts[0])) else {
                throw ValidationError("--crash-at OP:N, OP one of create, cgpath, fork, setns, destroy, adopt, N >= 1")
            }
            config.crashAt = (String(parts[0]), n)
        }
        do {
            let broker = try Broker(config: config, logger: logger)
            try broker.start()
            broker.run()
        } catch let e as ContainerError {
            FileHandleStderr.write("ctrobjd: \(e.message)\n")
            throw ExitCode(1)
        }
    }
}

enum FileHandleStderr {
    static func write(_ s: String) { Sys.printError(s) }
}

CtrobjD.main()
