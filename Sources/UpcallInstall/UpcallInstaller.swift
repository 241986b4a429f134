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
///   request-key.saved       whether /etc/request-key.d existed before
///   request-key-host/       the host's request-key configuration minus ours
///   core.sock, core-server.pid   the core server (socket modes)
///   upcall, upcall-pipe, upcall-key, modprobe   symlinks to the programs the
///                           kernel (or request-key) runs: ctrobj-upcall and
///                           the C helpers beside it, when they are there
/// and /etc/request-key.d/ctrobj.conf.
public struct UpcallInstaller {
    /// How the kernel hands over cores.
    public enum CoreMode: String, Sendable, CaseIterable {
        /// The best this kernel has: socket-request, else socket, else pipe.
        case auto
        /// `|<helper> core …`: the kernel runs the helper per core.
        case pipe
        /// `@<state>/core.sock` (6.16+): the kernel connects and writes the core.
        case socket
        /// `@@<state>/core.sock` (6.17+): the same with the request protocol;
        /// the kernel keeps the task until the server closes.
        case socketRequest = "socket-request"
    }

    public var stateDir: String
    public var helper: String
    public var spoolDir: String

    /// Seconds a container's request-key may run before the key is negated.
    public var keyTimeoutSeconds: Int
    /// Where request-key reads its drop-in configuration (tests keep the real one).
    public var requestKeyDir: String

    public var coreMode: CoreMode

    public init(stateDir: String, helper: String, spoolDir: String = "/var/lib/ctrobj/spool", keyTimeoutSeconds: Int = 10,
                requestKeyDir: String = KernelSettings.requestKeyDir, coreMode: CoreMode = .auto) {
        self.coreMode = coreMode
        self.stateDir = stateDir
        self.helper = helper
        self.spoolDir = spoolDir
        self.keyTimeoutSeconds = keyTimeoutSeconds
        self.requestKeyDir = requestKeyDir
    }

    /// The kernel's modprobe path points here: a symlink to the helper.
    public var modprobeLink: String { "\(stateDir)/modprobe" }
    /// What the helper runs for host requests when the kernel has no
    /// modprobe setting to save (a kernel without modules).
    public var fallbackModprobe = "/sbin/modprobe"

    var requestKeyConf: String { "\(requestKeyDir)/ctrobj.conf" }
    var requestKeySaved: String { "\(stateDir)/request-key.saved" }
    var hostConfigDir: String { "\(stateDir)/request-key-host" }

    /// request-key takes the best match, reading request-key.d before
    /// request-key.conf and the first of equal matches: so every create line
    /// of the host's configuration is mirrored with our helper, plus a
    /// catch-all, and ours wins every tie. %d comes last: a description may
    /// hold spaces.
    func requestKeyLines() -> String {
        var selectors: [String] = []
        var files = ["/etc/request-key.conf"]
        files += Sys.listDirectory(requestKeyDir).filter { $0.hasSuffix(".conf") && $0 != "ctrobj.conf" }.sorted()
            .map { "\(requestKeyDir)/\($0)" }
        for f in files {
            RequestKeyConf.addCreateSelectors(of: (try? Sys.readFile(f)) ?? "", to: &selectors)
        }
        if !selectors.contains("create * * *") { selectors.append("create * * *") }
        let program = "\(keyProgram) key \(stateDir) %k %t %u %g %T %P %S %d"
        return "# Written by `ctrobj install`; removed by `ctrobj uninstall`.\n"
            + selectors.map { "\($0) \(program)" }.joined(separator: "\n") + "\n"
    }

    /// The host's configuration without ours, for `request-key -l`: copies,
    /// since request-key skips request-key.d entries that are not regular
    /// files (a symlink is ignored).
    func makeHostConfigDir() throws {
        removeTree(hostConfigDir)
        try Sys.mkdirs("\(hostConfigDir)/request-key.d", 0o755)
        if let text = try? Sys.readFile("/etc/request-key.conf") {
            try Sys.writeFileAtomically("\(hostConfigDir)/request-key.conf", text, mode: 0o644)
        }
        for f in Sys.listDirectory(requestKeyDir) where f != "ctrobj.conf" {
            guard let text = try? Sys.readFile("\(requestKeyDir)/\(f)") else { continue }
            try Sys.writeFileAtomically("\(hostConfigDir)/request-key.d/\(f)", text, mode: 0o644)
        }
    }

    func installRequestKey() throws {
        guard !Sys.exists(requestKeyConf) else {
            throw ContainerError(.exists, "install: \(requestKeyConf) exists already")
        }
        let existed = Sys.exists(requestKeyDir)
        try Sys.writeFileAtomically(requestKeySaved, existed ? "existing-dir\n" : "created-dir\n")
        try makeHostConfigDir()
        try Sys.mkdirs(requestKeyDir, 0o755)
        try Sys.writeFileAtomically(requestKeyConf, requestKeyLines(), mode: 0o644)
    }

    func uninstallRequestKey() {
        unlink(requestKeyConf)
        if (try? Sys.readFile(requestKeySaved))?.hasPrefix("created-dir") == true { rmdir(requestKeyDir) }
        unlink(requestKeySaved)
        removeTree(hostConfigDir)
    }

    var savedPath: String { "\(stateDir)/kernel-settings.saved" }
    public var isInstalled: Bool { Sys.exists(savedPath) }

    /// The pipe-mode pattern. The kernel splits it at spaces; %e comes last
    /// because a comm may hold spaces.
    public var corePattern: String { "|\(pipeProgram) core \(stateDir) %P %u %g %s %t %d %e" }

    /// The pipe-mode pattern with %F (a pidfd of the dumping task at fd 3),
    /// for kernels that have it: %F came with socket mode in 6.16, and an
    /// older kernel would expand it to nothing, so it is used only where the
    /// socket-mode probe said yes.
    public var corePatternWithPidfd: String { "|\(pipeProgram) corefd \(stateDir) %F %P %u %g %s %t %d %e" }

    /// What the kernel runs per core in pipe mode: <state>/upcall-pipe (the
    /// small C helper that hands the core to ctrobjd) when it was installed
    /// beside the helper, else the helper itself.
    var pipeProgram: String { Sys.exists(pipeLink) ? pipeLink : helperLink }
    /// <state>/upcall-pipe, a symlink to ctrobj-upcall-pipe beside the helper.
    public var pipeLink: String { "\(stateDir)/upcall-pipe" }
    var pipeHelper: String { sibling("ctrobj-upcall-pipe") }

    /// What request-key runs per key request: <state>/upcall-key (the small C
    /// helper, ctrobj-upcall-key) when it was installed beside the helper,
    /// else the helper itself.
    var keyProgram: String { Sys.exists(keyLink) ? keyLink : helperLink }
    /// <state>/upcall-key, a symlink to ctrobj-upcall-key beside the helper.
    public var keyLink: String { "\(stateDir)/upcall-key" }
    var keyHelper: String { sibling("ctrobj-upcall-key") }

    /// A program installed beside the helper.
    func sibling(_ name: String) -> String {
        (helper.split(separator: "/", omittingEmptySubsequences: false).dropLast() + [Substring(name)]).joined(separator: "/")
    }

    /// The pattern of a mode other than auto.
    public func corePattern(_ mode: CoreMode, pidfd: Bool = false) -> String {
        switch mode {
        case .auto, .pipe: return pidfd ? corePatternWithPidfd : corePattern
        case .socket: return "@" + CoreServer.socketPath(stateDir: stateDir)
        case .socketRequest: return "@@" + CoreServer.socketPath(stateDir: stateDir)
        }
    }

    /// <state>/upcall, a symlink to the helper: the kernel's patterns name it,
    /// so their length depends on the state directory only (core_pattern
    /// holds 127 bytes) and the helper can move with a rebuild.
    public var helperLink: String { "\(stateDir)/upcall" }

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
        let longest = "|\(pipeLink) corefd \(stateDir) %F %P %u %g %s %t %d %e"
        guard longest.utf8.count < 128 else {
            throw ContainerError(.invalidArgument, "install: core_pattern would be \(longest.utf8.count) bytes, the kernel takes 127: use a shorter state directory")
        }
        guard coreMode == .pipe || CoreServer.socketPath(stateDir: stateDir).utf8.count < 108 else {
            throw ContainerError(.invalidArgument, "install: \(CoreServer.socketPath(stateDir: stateDir)) is too long for a socket address: use a shorter state directory or --core-mode pipe")
        }
        let previous = try KernelSettings.read()
        try Sys.mkdirs(stateDir, 0o755)
        try Sys.writeFileAtomically(savedPath, previous.saved, durable: true)
        do {
            // "@relative" is refused by a kernel that knows socket mode and
            // taken as a file name by one that does not; "@@/abs" is refused
            // by 6.16, which knows only "@". Read back, never by version.
            let socketOK = KernelSettings.supportsCoreSocket()
            let config = UpcallConfig(spoolDir: spoolDir, previousCorePattern: previous.corePattern.trimmingSuffixNewline(),
                                      previousModprobe: previous.modprobe?.trimmingSuffixNewline() ?? fallbackModprobe, mode: "pipe",
                                      keyTimeoutSeconds: keyTimeoutSeconds)
            try Sys.writeFileAtomically(UpcallConfig.path(stateDir: stateDir), config.encoded, mode: 0o644)
            unlink(keyLink)
            if Sys.exists(keyHelper), symlink(keyHelper, keyLink) < 0 { throw ContainerError.sys("symlink \(keyLink)") }
            try installRequestKey()
            unlink(modprobeLink)
            if symlink(helper, modprobeLink) < 0 { throw ContainerError.sys("symlink \(modprobeLink)") }
            unlink(helperLink)
            if symlink(helper, helperLink) < 0 { throw ContainerError.sys("symlink \(helperLink)") }
            unlink(pipeLink)
            if Sys.exists(pipeHelper), symlink(pipeHelper, pipeLink) < 0 { throw ContainerError.sys("symlink \(pipeLink)") }
            if previous.modprobe != nil { try Sys.writeFile(KernelSettings.modprobePath, modprobeLink) }
            let candidates: [CoreMode]
            switch coreMode {
            case .auto: candidates = socketOK ? [.socketRequest, .socket, .pipe] : [.pipe]
            case .pipe: candidates = [.pipe]
            case .socket, .socketRequest:
                guard socketOK else {
                    throw ContainerError(.invalidArgument, "install: this kernel has no core_pattern socket mode (6.16+); use --core-mode pipe", errno: EOPNOTSUPP)
                }
                candidates = [coreMode]
            }
            var chosen: CoreMode?
            for mode in candidates {
                if mode == .pipe {
                    CoreServerControl.stop(stateDir: stateDir)
                    // A pipe helper is only safe by pid while the kernel waits for it.
                    if previous.corePipeLimit.trimmingSuffixNewline() == "0" {
                        try Sys.writeFile(KernelSettings.corePipeLimitPath, "64")
                    }
                } else {
                    // The listener first: the kernel connects from the first crash on.
                    try CoreServerControl.start(stateDir: stateDir, helper: helperLink)
                }
                if KernelSettings.tryCorePattern(corePattern(mode, pidfd: socketOK)) {
                    chosen = mode
                    break
                }
            }
            guard let chosen else {
                throw ContainerError(.system, "install: the kernel did not take core_pattern \(corePattern(candidates.last ?? .pipe))")
            }
            var final = config
            final.mode = chosen.rawValue
            try Sys.writeFileAtomically(UpcallConfig.path(stateDir: stateDir), final.encoded, mode: 0o644)
            return Report(mode: chosen.rawValue, corePattern: corePattern(chosen, pidfd: socketOK), socketModeSupported: socketOK, previous: previous)
        } catch {
            try? previous.restore()
            // Our request-key rule only if we got as far as writing it (a
            // ctrobj.conf that was there before is someone else's).
            removeInstalled(requestKey: Sys.exists(requestKeySaved))
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
        removeInstalled(requestKey: true)
        return saved
    }

    /// After the kernel settings are back (so no new upcall can come): stop
    /// the core server and remove what install wrote, kernel-settings.saved last.
    func removeInstalled(requestKey: Bool) {
        CoreServerControl.stop(stateDir: stateDir)
        if requestKey { uninstallRequestKey() }
        for path in [modprobeLink, helperLink, pipeLink, keyLink, UpcallConfig.path(stateDir: stateDir), savedPath] {
            unlink(path)
        }
    }
}
