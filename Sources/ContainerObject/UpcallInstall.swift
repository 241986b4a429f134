import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// `ctrobj install` / `ctrobj uninstall`: register the broker with the kernel
/// and put every setting back byte for byte.
///
/// Files under the state directory:
///   kernel-settings.saved   what was there before (written first, removed last)
///   upcall.conf             what the helper needs (spool dir, previous pattern)
public struct UpcallInstaller {
    public var stateDir: String
    public var helper: String
    public var spoolDir: String

    public init(stateDir: String, helper: String, spoolDir: String = "/var/lib/ctrobj/spool") {
        self.stateDir = stateDir
        self.helper = helper
        self.spoolDir = spoolDir
    }

    var savedPath: String { "\(stateDir)/kernel-settings.saved" }
    public var isInstalled: Bool { Sys.exists(savedPath) }

    /// The pipe-mode pattern. The kernel splits it at spaces; %e comes last
    /// because a comm may hold spaces.
    public var corePattern: String { "|\(helper) core \(stateDir) %P %u %g %s %t %d %e" }

    public struct Report: Sendable {
        public var mode: String
        public var corePattern: String
        public var socketModeSupported: Bool
        public var previous: KernelSettings
    }

    public func install() throws -> Report {
        guard geteuid() == 0 else { throw ContainerError(.permission, "install: only root may register kernel upcall handlers") }
        guard !isInstalled else {
            throw ContainerError(.exists, "install: already installed for \(stateDir) (\(savedPath) exists); run `ctrobj uninstall` first")
        }
        guard Sys.exists(helper) else { throw ContainerError(.notFound, "install: no helper at \(helper)") }
        guard corePattern.utf8.count < 128 else {
            throw ContainerError(.invalidArgument, "install: core_pattern would be \(corePattern.utf8.count) bytes, the kernel takes 127: use a shorter helper path or state directory")
        }
        let previous = try KernelSettings.read()
        try Sys.mkdirs(stateDir, 0o755)
        try Sys.writeFileAtomically(savedPath, previous.saved)
        do {
            let socketOK = KernelSettings.supportsCoreSocket()
            try Sys.writeFileAtomically(UpcallConfig.path(stateDir: stateDir),
                UpcallConfig(spoolDir: spoolDir, previousCorePattern: previous.corePattern.trimmingSuffixNewline(),
                             previousModprobe: previous.modprobe?.trimmingSuffixNewline(), mode: "pipe").encoded, mode: 0o644)
            // A pipe helper is only safe by pid while the kernel waits for it.
            if previous.corePipeLimit.trimmingSuffixNewline() == "0" {
                try Sys.writeFile(KernelSettings.corePipeLimitPath, "64")
            }
            guard KernelSettings.tryCorePattern(corePattern) else {
                throw ContainerError(.system, "install: the kernel did not take core_pattern \(corePattern)")
            }
            return Report(mode: "pipe", corePattern: corePattern, socketModeSupported: socketOK, previous: previous)
        } catch {
            try? previous.restore()
            unlink(UpcallConfig.path(stateDir: stateDir))
            unlink(savedPath)
            throw error
        }
    }

    /// Restore what install saved. Returns the restored settings.
    @discardableResult
    public func uninstall() throws -> KernelSettings {
        guard let text = try? Sys.readFile(savedPath), let saved = KernelSettings(saved: text) else {
            throw ContainerError(.notFound, "uninstall: nothing installed for \(stateDir) (no \(savedPath))")
        }
        try saved.restore()
        unlink(UpcallConfig.path(stateDir: stateDir))
        unlink(savedPath)
        return saved
    }
}
