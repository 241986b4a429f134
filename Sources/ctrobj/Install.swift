import ArgumentParser
import ContainerObject
import ContainerSystem
import ContainerWire
import UpcallInstall
#if canImport(Glibc)
import Glibc
#endif

struct InstallOptions: ParsableArguments {
    @Option(help: "ctrobjd's state directory.") var stateDir = DaemonAddress.stateDir()
    @Option(help: "The helper the kernel runs.") var helper = "\(executableDirectory())/ctrobj-upcall"
    @Option(help: "Where the helper spools cores while ctrobjd is down.") var spool = "/var/lib/ctrobj/spool"

    @Option(help: "How the kernel hands over cores: auto (the best this kernel has), socket-request (@@), socket (@) or pipe (|).")
    var coreMode = "auto"

    @Flag(help: "Only the OCI hook: write (install) or remove (uninstall) its hooks.d file, so podman runs `ctrobj oci-hook` for every container; kernel settings are not touched.")
    var ociHook = false

    @Option(help: "The hooks directory for --oci-hook.") var hooksDir = OCIHook.defaultHooksDir

    @Flag(help: "With --oci-hook: the hook fails the container when it cannot adopt it (default: it says why and lets it run).")
    var strict = false

    /// The hook's environment: ctrobjd's state directory when it is not the default one.
    var hookEnvironment: [String] {
        stateDir == DaemonAddress.defaultStateDir ? [] : ["CTROBJ_STATE_DIR=\(stateDir)"]
    }

    var installer: UpcallInstaller {
        get throws {
            guard let mode = UpcallInstaller.CoreMode(rawValue: coreMode) else {
                throw ContainerError(.invalidArgument, "--core-mode: \"\(coreMode)\" is none of \(UpcallInstaller.CoreMode.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return UpcallInstaller(stateDir: stateDir, helper: helper, spoolDir: spool, coreMode: mode)
        }
    }
}

struct Install: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Register ctrobjd with the kernel as the core dump handler (saves what was there).")
    @OptionGroup var options: InstallOptions

    func run() throws {
        try guarded {
            if options.ociHook {
                let path = try OCIHook.installHookFile(hooksDir: options.hooksDir, ctrobj: "\(executableDirectory())/ctrobj",
                                                       env: options.hookEnvironment, strict: options.strict)
                print("oci hook: \(path)")
                return
            }
            let r = try options.installer.install()
            print("core_pattern: \(r.corePattern)")
            print("was:          \(r.previous.corePattern.trimmingSuffixNewline())")
            print("mode:         \(r.mode) (this kernel \(r.socketModeSupported ? "offers" : "does not offer") socket mode)")
        }
    }
}

struct Uninstall: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Restore every kernel setting `ctrobj install` changed.")
    @OptionGroup var options: InstallOptions

    func run() throws {
        try guarded {
            if options.ociHook {
                let removed = try OCIHook.uninstallHookFile(hooksDir: options.hooksDir)
                print(removed ? "oci hook removed from \(options.hooksDir)" : "no oci hook in \(options.hooksDir)")
                return
            }
            let s = try options.installer.uninstall()
            print("core_pattern restored: \(s.corePattern.trimmingSuffixNewline())")
        }
    }
}
