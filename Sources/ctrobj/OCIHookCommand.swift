import ArgumentParser
import ContainerObject
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// `ctrobj oci-hook [STAGE]`: what a runtime runs as an OCI hook (the state
/// JSON on stdin). The logic is OCIHook in the library; this reads stdin,
/// prints the outcome on stderr (and to --log), and exits with its code.
struct OCIHookCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "oci-hook",
        abstract: "OCI hook: adopt another runtime's container at createRuntime, forget it at poststop (state JSON on stdin).",
        discussion: """
            Installed for podman by `ctrobj install --oci-hook`. Without STAGE the stage follows the state's status \
            (creating/created/running: adopt; stopped: forget). Annotation org.ctrobj.core (file, drop, \
            handler:/PATH) sets where the container's cores go; org.ctrobj.modules and org.ctrobj.devices are refused \
            (exit 1, not adopted): only root grants those, with `ctrobj policy NAME --modules/--devices`. If ctrobjd \
            is not running the hook says so on stderr and exits 0, so containers still start (--strict: exit 1).
            """)

    @Argument(help: "createRuntime, prestart, poststart (adopt) or poststop (forget).")
    var stage: String?

    @Flag(help: "Fail (exit 1) when the container cannot be adopted or ctrobjd is down, which makes the runtime fail the container.")
    var strict = false

    @Option(help: "Also append each message, with a timestamp, to this file.")
    var log: String?

    func run() throws {
        var parsedStage: OCIHook.Stage?
        if let s = stage {
            guard let st = OCIHook.Stage(rawValue: s) else {
                let m = "refused: unknown stage \"\(RequestRules.escaped(s))\"; one of \(OCIHook.Stage.allCases.map(\.rawValue).joined(separator: ", "))"
                printErr("ctrobj oci-hook: \(m)")
                if let log { appendLog(log, m) }
                throw ExitCode(2)
            }
            parsedStage = st
        }
        let input = readAll(fd: 0, limit: OCIJSON.maxBytes + 1)
        let outcome = OCIHook.run(stage: parsedStage, input: input, strict: strict)
        for m in outcome.messages {
            printErr("ctrobj oci-hook: \(m)")
            if let log { appendLog(log, m) }
        }
        if outcome.exitCode != 0 { throw ExitCode(outcome.exitCode) }
    }

    func readAll(fd: CInt, limit: Int) -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while out.count < limit {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    func appendLog(_ path: String, _ message: String) {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let line = "\(Sys.realtimeSeconds()) pid \(getpid()): \(message)\n"
        _ = line.withCString { write(fd, $0, strlen($0)) }
    }
}
