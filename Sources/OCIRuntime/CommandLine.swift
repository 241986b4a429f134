import ContainerObject
import ContainerSystem
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// runc's command line, as podman/conmon and containerd's runc-v2 shim call
/// it. Flags follow Go's flag package (-x and --x, --x=v and --x v), so the
/// callers' spelling works; a flag runc has but ctrobj-oci does not use is
/// accepted and logged, never fatal.
public enum OCICommandLine {
    static let version = "0.1.0"

    struct Flags {
        var values: [String: [String]] = [:]
        var bools: Set<String> = []
        var positional: [String] = []
        func value(_ n: String) -> String? { values[n]?.last }
    }

    /// Per command: flags that take a value and boolean ones (aliases map to the long name).
    static let valueFlags: [String: Set<String>] = [
        "create": ["bundle", "console-socket", "pid-file", "preserve-fds"],
        "run": ["bundle", "console-socket", "pid-file", "preserve-fds"],
        "exec": ["console-socket", "cwd", "env", "user", "additional-gids", "process", "pid-file", "process-label",
                 "apparmor", "cap", "preserve-fds", "cgroup"],
        "list": ["format"], "ps": ["format"], "update": ["resources", "memory", "pids-limit", "cpu-quota", "cpu-period"],
    ]
    static let boolFlags: [String: Set<String>] = [
        "create": ["no-pivot", "no-new-keyring"], "run": ["no-pivot", "no-new-keyring", "detach", "keep", "no-subreaper"],
        "exec": ["tty", "detach", "no-new-privs", "ignore-paused"], "kill": ["all"], "delete": ["force"], "list": ["quiet"],
    ]
    static let aliases: [String: String] = ["b": "bundle", "d": "detach", "t": "tty", "e": "env", "u": "user", "g": "additional-gids",
                                            "p": "process", "c": "cap", "a": "all", "f": "force", "q": "quiet", "r": "resources"]

    static func parse(_ args: ArraySlice<String>, command: String, rt: Runtime) throws -> Flags {
        var f = Flags()
        var i = args.startIndex
        let vals = valueFlags[command] ?? [], bools = boolFlags[command] ?? []
        while i < args.endIndex {
            let a = args[i]
            i += 1
            if a == "--" { f.positional += args[i...]; break }
            guard a.hasPrefix("-"), a.count > 1, f.positional.isEmpty || command == "kill" || command == "ps" else {
                f.positional.append(a)
                if command == "exec" && !f.positional.isEmpty && f.positional.count >= 1 && f.positional.count > 1 {
                    // after "exec ID cmd", everything is the command
                }
                if command == "exec" && f.positional.count == 2 { f.positional += args[i...]; break }
                continue
            }
            var name = String(a.drop(while: { $0 == "-" }))
            var inline: String?
            if let eq = name.firstIndex(of: "=") {
                inline = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            name = aliases[name] ?? name
            if vals.contains(name) {
                guard let v = inline ?? (i < args.endIndex ? args[i] : nil) else { throw OCIError("flag needs an argument: --\(name)") }
                if inline == nil { i += 1 }
                f.values[name, default: []].append(v)
            } else if bools.contains(name) {
                if let v = inline, v == "false" { continue }
                f.bools.insert(name)
            } else if name == "help" || name == "h" {
                throw OCIError("usage: ctrobj-oci [global options] \(command) ... (see docs/oci.md)")
            } else {
                rt.log("warning", "\(command): flag --\(name) is not used by ctrobj-oci; ignored")
            }
        }
        return f
    }

    static func write(_ s: String) {
        var off = 0
        let bytes = Array(s.utf8)
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            off += n
        }
    }

    public static func main(_ argv: [String]) -> Int32 {
        let rt = Runtime()
        var args = argv.dropFirst()
        // Global flags, before the command.
        while let a = args.first, a.hasPrefix("-") {
            args = args.dropFirst()
            var name = String(a.drop(while: { $0 == "-" }))
            var inline: String?
            if let eq = name.firstIndex(of: "=") {
                inline = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            func value() -> String? {
                if let inline { return inline }
                guard let v = args.first else { return nil }
                args = args.dropFirst()
                return v
            }
            switch name {
            case "root": if let v = value() { rt.root = v }
            case "log": rt.logFile = value()
            case "log-format":
                let v = value() ?? "text"
                guard v == "text" || v == "json" else { rt.error("--log-format: \(v) is not text or json"); return 1 }
                rt.logJSON = v == "json"
            case "debug": rt.debug = inline != "false"
            case "systemd-cgroup":
                if inline == "false" { continue }
                rt.error("--systemd-cgroup: there is no systemd cgroup manager here; ctrobjd places each container's cgroup itself (use cgroupfs, e.g. podman --cgroup-manager=cgroupfs)")
                return 1
            case "version", "v":
                write("ctrobj-oci version \(version)\nspec: 1.2.1\ncontainer objects: ctrobjd at \(getenv("CTROBJ_SOCKET").map { String(cString: $0) } ?? "/run/ctrobj/ctrobjd.sock")\n")
                return 0
            case "help", "h":
                write(usage)
                return 0
            case "rootless":
                let v = inline ?? value() ?? "auto"
                if v == "true" { rt.error("--rootless=true: ctrobj-oci runs as a client of ctrobjd; run it as root (rootless containers: ctrobj)"); return 1 }
            case "criu": _ = value()
            case "ctrobj-socket":
                // ctrobjd's socket for a private daemon: conmon clears the
                // environment, so podman passes it as --runtime-flag.
                guard let v = value(), v.hasPrefix("/") else { rt.error("--ctrobj-socket needs an absolute path"); return 1 }
                setenv("CTROBJ_SOCKET", v, 1)
                rt.explicitSocket = true
            default: rt.log("warning", "global flag --\(name) is not used by ctrobj-oci; ignored")
            }
        }
        guard let command = args.first else { write(usage); return 0 }
        args = args.dropFirst()
        do {
            let f = try parse(args, command: command, rt: rt)
            func id() throws -> String {
                guard let i = f.positional.first else { throw OCIError("\(command): a container id is required") }
                return i
            }
            switch command {
            case "create":
                try rt.create(try id(), createOptions(f))
            case "run":
                return try rt.run(try id(), createOptions(f), detach: f.bools.contains("detach"))
            case "start":
                try rt.start(try id())
            case "state":
                write(try rt.state(try id()) + "\n")
            case "kill":
                try rt.kill(try id(), signal: f.positional.count > 1 ? f.positional[1] : "TERM", all: f.bools.contains("all"))
            case "delete":
                try rt.delete(try id(), force: f.bools.contains("force"))
            case "pause":
                try rt.pause(try id(), resume: false)
            case "resume":
                try rt.pause(try id(), resume: true)
            case "list":
                write(rt.list(json: f.value("format") == "json", quiet: f.bools.contains("quiet")))
            case "ps":
                let pids = try rt.pids(try id())
                if f.value("format") == "json" {
                    write("[" + pids.map(String.init).joined(separator: ",") + "]\n")
                } else {
                    // runc runs ps(1) with extra args; here, the pids.
                    write("PID\n" + pids.map { "\($0)\n" }.joined())
                }
            case "exec":
                var o = ExecOptions()
                o.processFile = f.value("process")
                o.args = Array(f.positional.dropFirst())
                o.pidFile = f.value("pid-file")
                o.detach = f.bools.contains("detach")
                o.consoleSocket = f.value("console-socket")
                o.tty = f.bools.contains("tty")
                o.cwd = f.value("cwd")
                o.env = f.values["env"] ?? []
                o.user = f.value("user")
                o.additionalGids = (f.values["additional-gids"] ?? []).flatMap { $0.split(separator: ",").compactMap { UInt32($0) } }
                o.capabilities = f.values["cap"] ?? []
                o.noNewPrivs = f.bools.contains("no-new-privs")
                o.preserveFDs = Int32(f.value("preserve-fds") ?? "0") ?? 0
                return try rt.exec(try id(), o)
            case "features":
                write(rt.features() + "\n")
            case "update":
                try rt.update(try id(), f)
            case "spec":
                throw OCIError("spec: write a config.json by hand or with runc spec; ctrobj-oci reads the same format")
            case "checkpoint", "restore":
                throw OCIError("\(command): checkpoint/restore (CRIU) is not supported by ctrobj-oci")
            case "events":
                throw OCIError("events: not supported by ctrobj-oci (use `ctrobj-oci state` or `ctrobj stats`)")
            default:
                throw OCIError("unknown command \(command.debugDescription)")
            }
            return 0
        } catch {
            rt.error("\(error)")
            return 1
        }
    }

    static func createOptions(_ f: Flags) throws -> CreateOptions {
        var o = CreateOptions()
        o.bundle = f.value("bundle") ?? "."
        o.pidFile = f.value("pid-file")
        o.consoleSocket = f.value("console-socket")
        if let p = f.value("preserve-fds") {
            guard let n = Int32(p), n >= 0, n < 1024 else { throw OCIError("--preserve-fds: \(p) is not a count") }
            o.preserveFDs = n
        }
        return o
    }

    static let usage = """
    ctrobj-oci: an OCI runtime whose every container is a container object (docs/oci.md)

    usage: ctrobj-oci [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND ...

    commands: create [--bundle DIR] [--pid-file F] [--console-socket S] [--preserve-fds N] ID
              start ID | state ID | kill [--all] ID [SIGNAL] | delete [--force] ID
              exec [--process F | ARGS...] [--pid-file F] [--detach] [--tty] [--console-socket S] [--cwd D] [--env E] [--user U] ID
              pause ID | resume ID | list [--format json] [-q] | ps [--format json] ID
              run [--bundle DIR] [--detach] ID | features | update --resources F ID | --version

    """
}

extension Runtime {
    /// `update --resources FILE|-`: memory, pids and cpu limits (the rest refused by name).
    func update(_ id: String, _ f: OCICommandLine.Flags) throws {
        let r = try load(id)
        let c = try Container.open(r.name)
        if let file = f.value("resources") {
            let text: String
            if file == "-" {
                var bytes: [UInt8] = []
                var buf = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = read(0, &buf, buf.count)
                    if n <= 0 { break }
                    bytes += buf[0..<n]
                }
                text = String(decoding: bytes, as: UTF8.self)
            } else { text = try Sys.readFile(file) }
            let doc = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
            try Validate.check(doc, Validate.resources, "resources")
            try Validate.check(doc["memory"], Validate.memory, "resources.memory")
            try Validate.check(doc["cpu"], Validate.cpu, "resources.cpu")
            let res = try JSONDecoder().decode(Spec.Resources.self, from: Data(text.utf8))
            if let m = res.memory?.limit { try c.setLimit(.memory, m > 0 ? m : -1) }
            if let p = res.pids?.limit { try c.setLimit(.pids, p > 0 ? p : -1) }
            if let q = res.cpu?.quota { try c.setLimit(.cpu, q > 0 ? max(1, q * 1000 / Int64(res.cpu?.period ?? 100_000)) : -1) }
        }
        if let m = f.value("memory"), let v = Int64(m) { try c.setLimit(.memory, v) }
        if let p = f.value("pids-limit"), let v = Int64(p) { try c.setLimit(.pids, v) }
    }
}
