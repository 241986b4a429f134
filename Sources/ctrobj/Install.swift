import ArgumentParser
import ContainerObject
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

struct InstallOptions: ParsableArguments {
    @Option(help: "ctrobjd's state directory.") var stateDir = DaemonAddress.stateDir()
    @Option(help: "The helper the kernel runs.") var helper = "\(executableDirectory())/ctrobj-upcall"
    @Option(help: "Where the helper spools cores while ctrobjd is down.") var spool = "/var/lib/ctrobj/spool"

    var installer: UpcallInstaller { UpcallInstaller(stateDir: stateDir, helper: helper, spoolDir: spool) }
}

struct Install: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Register ctrobjd with the kernel as the core dump handler (saves what was there).")
    @OptionGroup var options: InstallOptions

    func run() throws {
        try guarded {
            let r = try options.installer.install()
            print("core_pattern: \(r.corePattern)")
            print("was:          \(r.previous.corePattern.trimmingSuffixNewline())")
            print("mode:         \(r.mode) (socket mode \(r.socketModeSupported ? "is" : "is not") offered by this kernel; the pipe helper is used because it spools when ctrobjd is down)")
        }
    }
}

struct Uninstall: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Restore every kernel setting `ctrobj install` changed.")
    @OptionGroup var options: InstallOptions

    func run() throws {
        try guarded {
            let s = try options.installer.uninstall()
            print("core_pattern restored: \(s.corePattern.trimmingSuffixNewline())")
        }
    }
}
