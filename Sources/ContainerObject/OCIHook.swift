import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// `ctrobj oci-hook`: an OCI hook that makes the containers of other
/// runtimes (runc, crun under podman or containerd) container objects for
/// as long as they live, so that their upcalls are routed into them.
///
/// | stage (argument, else from the state's status)     | what it does                                   |
/// |----------------------------------------------------|------------------------------------------------|
/// | createRuntime, prestart, poststart (creating, created, running) | adopt `pid` as oci-… (policy from annotations) |
/// | poststop (stopped)                                 | forget that record (adopted ones only)         |
/// | createContainer, startContainer                    | refused: they run inside the container         |
///
/// Exit codes, chosen so that the broker never breaks a user's container:
/// 0 when it did its job, and also when it could not because ctrobjd is not
/// running, the runtime's state cannot be adopted, or the name is taken
/// (a message on stderr says so; `--strict` makes these 1); 1 when an
/// `org.ctrobj.*` annotation asks for a policy that cannot be had; 2 when
/// stdin is not an OCI state or the stage is unknown.
public enum OCIHook {
    public enum Stage: String, CaseIterable, Sendable {
        case prestart, createRuntime, createContainer, startContainer, poststart, poststop
    }

    /// The runtime-spec state, as far as the hook reads it.
    public struct State: Equatable, Sendable {
        public var id: String
        public var status: String
        public var pid: pid_t
        public var bundle: String
        public var annotations: [String: String]
    }

    /// The upcall policy the `org.ctrobj.*` annotations ask for.
    public struct Policy: Equatable, Sendable {
        public var core: String?
        public var modules: [String]?
        public var devices: [String]?
        public var isEmpty: Bool { core == nil && modules == nil && devices == nil }
    }

    public struct Outcome: Equatable, Sendable {
        public var exitCode: Int32
        public var messages: [String]
        /// The container name it acted on, when it got that far.
        public var name: String?
    }

    public static let coreAnnotation = "org.ctrobj.core"
    public static let modulesAnnotation = "org.ctrobj.modules"
    public static let devicesAnnotation = "org.ctrobj.devices"

    public struct InputError: Error, CustomStringConvertible {
        public let description: String
    }

    /// The state JSON on stdin, checked: an object with a string `id` (1 to
    /// 1024 bytes), a string `status`, an integer `pid` in range (0 when
    /// absent, as at poststop), string `bundle`, and string annotations.
    public static func parseState(_ bytes: [UInt8]) throws -> State {
        let v: OCIJSON
        do { v = try OCIJSON.parse(bytes) } catch let e as OCIJSON.ParseError {
            throw InputError(description: "stdin is not JSON (\(e)); an OCI hook reads the runtime-spec state there")
        }
        guard case .object = v else { throw InputError(description: "the state on stdin is not a JSON object") }
        guard let id = v["id"]?.stringValue, !id.isEmpty, id.utf8.count <= 1024 else {
            throw InputError(description: "the state has no \"id\" string (1 to 1024 bytes)")
        }
        var pid: pid_t = 0
        if let p = v["pid"], p != .null {
            guard let n = p.int64Value, n >= 0, n <= Int64(RequestRules.pidMax) else {
                throw InputError(description: "the state's \"pid\" is not a process id")
            }
            pid = pid_t(n)
        }
        var annotations: [String: String] = [:]
        if let a = v["annotations"], a != .null {
            guard case .object(let o) = a else { throw InputError(description: "the state's \"annotations\" is not an object") }
            for (k, value) in o {
                guard let s = value.stringValue else { throw InputError(description: "annotation \"\(RequestRules.escaped(k))\" is not a string") }
                annotations[k] = s
            }
        }
        for key in ["status", "bundle"] where v[key] != nil && v[key] != .null && v[key]?.stringValue == nil {
            throw InputError(description: "the state's \"\(key)\" is not a string")
        }
        return State(id: id, status: v["status"]?.stringValue ?? "", pid: pid, bundle: v["bundle"]?.stringValue ?? "",
                     annotations: annotations)
    }

    /// The container name for an OCI id (names are at most 23 bytes, no '/'):
    /// "oci-" and the first 19 characters of a long hex id (podman's and the
    /// CRI's 64), "oci-" and the id itself when it is at most 19 bytes of
    /// letters, digits, '-', '_' and '.', else "ocih-" and 16 hex digits of
    /// its FNV-1a hash.
    public static func containerName(forID id: String) -> String {
        let u = Array(id.utf8)
        let isHex = u.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
        if u.count >= 20 && isHex { return "oci-" + String(decoding: u.prefix(19), as: UTF8.self) }
        let plain = u.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x2d || $0 == 0x5f || $0 == 0x2e }
        if !u.isEmpty && u.count <= 19 && plain { return "oci-" + id }
        var h: UInt64 = 0xcbf29ce484222325
        for c in u { h = (h ^ UInt64(c)) &* 0x100000001b3 }
        let hex = String(h, radix: 16)
        return "ocih-" + String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The policy the annotations ask for, checked as ctrobjd will check it
    /// (ctrobjd checks again): core `file`, `drop` or `handler:/ABSOLUTE`;
    /// modules and devices comma-separated names ("" for none).
    public static func policy(from annotations: [String: String]) throws -> Policy {
        var p = Policy()
        if let c = annotations[coreAnnotation] {
            guard ["file", "drop"].contains(c) || (c.hasPrefix("handler:/") && c.utf8.count > 9 && c.utf8.count <= 4096
                                                   && !c.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7f }) else {
                throw InputError(description: "annotation \(coreAnnotation)=\"\(RequestRules.escaped(c))\": must be file, drop or handler:/absolute/path/inside")
            }
            p.core = c
        }
        func list(_ key: String, _ ok: (Character) -> Bool) throws -> [String]? {
            guard let text = annotations[key] else { return nil }
            let items = text.split(separator: ",", omittingEmptySubsequences: true).map { String($0) }
            guard items.count <= 64, items.allSatisfy({ $0.utf8.count <= 64 && $0.allSatisfy(ok) }) else {
                throw InputError(description: "annotation \(key)=\"\(RequestRules.escaped(text))\": at most 64 comma-separated names of at most 64 bytes")
            }
            return items
        }
        p.modules = try list(modulesAnnotation) { $0.isASCII && ($0.isLetter || $0.isNumber || "-_".contains($0)) }
        p.devices = try list(devicesAnnotation) { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.:+@/".contains($0)) }
        return p
    }

    enum Action { case adopt, forget }

    static func action(stage: Stage?, status: String) -> Action? {
        switch stage {
        case .prestart?, .createRuntime?, .poststart?: return .adopt
        case .poststop?: return .forget
        case .createContainer?, .startContainer?: return nil
        case nil:
            switch status {
            case "creating", "created", "running": return .adopt
            case "stopped": return .forget
            default: return nil
            }
        }
    }

    /// Read the state from `input` and do what `stage` (else the state's
    /// status) calls for, against the daemon the library is pointed at.
    public static func run(stage: Stage?, input: [UInt8], strict: Bool = false) -> Outcome {
        let state: State
        do { state = try parseState(input) } catch {
            return Outcome(exitCode: 2, messages: ["refused: \(error)"], name: nil)
        }
        guard let action = action(stage: stage, status: state.status) else {
            let why = stage.map { "stage \($0.rawValue) runs inside the container, where this hook is not; use createRuntime and poststop" }
                ?? "status \"\(RequestRules.escaped(state.status))\" names no stage (give one: createRuntime or poststop)"
            return Outcome(exitCode: 2, messages: ["refused: \(why)"], name: nil)
        }
        let name = containerName(forID: state.id)
        let label = "container \(RequestRules.escaped(String(state.id.prefix(64)))) (\(name))"
        let soft: Int32 = strict ? 1 : 0
        do {
            switch action {
            case .adopt: return try adopt(state, name: name, label: label, soft: soft)
            case .forget: return try forget(state, name: name, label: label)
            }
        } catch let e as ContainerError where e.code == .daemonUnavailable {
            return Outcome(exitCode: soft, messages: [
                "\(label): ctrobjd is not running, so its upcalls are not routed (they go to the host's handlers): \(e.message)"
                + (strict ? "" : "; the container runs anyway"),
            ], name: name)
        } catch let e as InputError {
            return Outcome(exitCode: 1, messages: ["\(label): \(e.description)"], name: name)
        } catch let e as ContainerError {
            return Outcome(exitCode: soft, messages: ["\(label): \(RequestRules.escaped(e.message))"], name: name)
        } catch {
            return Outcome(exitCode: soft, messages: ["\(label): \(error)"], name: name)
        }
    }

    static func adopt(_ state: State, name: String, label: String, soft: Int32) throws -> Outcome {
        let policy = try policy(from: state.annotations)
        guard state.pid > 0 else {
            return Outcome(exitCode: soft, messages: ["\(label): the state has no pid at status \"\(RequestRules.escaped(state.status))\"; not adopted"], name: name)
        }
        var c: Container
        var note = "adopted pid \(state.pid)"
        do {
            c = try Container.adopt(name, pid: state.pid)
        } catch let e as ContainerError where e.code == .exists {
            // The name is taken: by this very container (the hook ran at an
            // earlier stage too), by a record whose container is gone (its
            // poststop never ran), or by something else, which is left alone.
            guard let old = try? Container.open(name), let s = try? old.status() else {
                return Outcome(exitCode: soft, messages: ["\(label): not adopted: \(RequestRules.escaped(e.message))"], name: name)
            }
            if s.adopted && s.state != .exited && s.initPid == state.pid {
                return Outcome(exitCode: 0, messages: ["\(label): already adopted (pid \(state.pid))"], name: name)
            }
            guard s.adopted && s.state == .exited else {
                return Outcome(exitCode: soft, messages: ["\(label): not adopted: \(RequestRules.escaped(e.message))"], name: name)
            }
            try old.destroy()
            c = try Container.adopt(name, pid: state.pid)
            note = "adopted pid \(state.pid) (a stale record of that name, whose container had exited, was forgotten first)"
        }
        if !policy.isEmpty {
            do {
                try c.setPolicy(core: policy.core, modules: policy.modules, devices: policy.devices)
            } catch let e as ContainerError {
                // Asked for and not had: no half-configured record stays.
                try? c.destroy()
                return Outcome(exitCode: 1, messages: ["\(label): policy from annotations refused: \(RequestRules.escaped(e.message)); not adopted"], name: name)
            }
            var parts: [String] = []
            if let core = policy.core { parts.append("core \(core)") }
            if let m = policy.modules { parts.append("modules \(m.joined(separator: ","))") }
            if let d = policy.devices { parts.append("devices \(d.joined(separator: ","))") }
            note += ", policy " + parts.joined(separator: ", ")
        }
        // The container fd closes when the hook exits; an adopted record has
        // no CONTAINER_KILL_ON_CLOSE, so it stays until poststop forgets it.
        return Outcome(exitCode: 0, messages: ["\(label): \(note)"], name: name)
    }

    static func forget(_ state: State, name: String, label: String) throws -> Outcome {
        let c: Container
        do { c = try Container.open(name) } catch let e as ContainerError where e.code == .notFound {
            return Outcome(exitCode: 0, messages: ["\(label): no record to forget"], name: name)
        }
        var s = try c.status()
        guard s.adopted else {
            return Outcome(exitCode: 0, messages: ["\(label): \"\(name)\" is not an adopted container; left alone"], name: name)
        }
        // At poststop the container's processes are gone; ctrobjd may learn
        // of its init's exit a moment after the runtime did.
        var waited = 0
        while s.state != .exited && waited < 100 {
            if state.pid > 0 && s.initPid != state.pid { break }
            usleep(10_000)
            waited += 1
            s = try c.status()
        }
        guard s.state == .exited else {
            return Outcome(exitCode: 0, messages: ["\(label): \"\(name)\" still has a live init (pid \(s.initPid)); it is another container's, left alone"], name: name)
        }
        try c.destroy()
        return Outcome(exitCode: 0, messages: ["\(label): forgot the adopted record"], name: name)
    }

    /// The hooks.d file (podman's format 1.0.0) that runs `ctrobj` as this
    /// hook for every container at createRuntime and poststop. `env` is
    /// the hook's whole environment (a runtime passes nothing else).
    public static func hooksJSON(ctrobj: String, env: [String] = [], strict: Bool = false, log: String? = nil) -> String {
        func q(_ s: String) -> String {
            var out = "\""
            for u in s.unicodeScalars {
                switch u {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                default:
                    if u.value < 0x20 {
                        let h = String(u.value, radix: 16)
                        out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                    } else { out.unicodeScalars.append(u) }
                }
            }
            return out + "\""
        }
        let args = ["ctrobj", "oci-hook"] + (strict ? ["--strict"] : []) + (log.map { ["--log", $0] } ?? [])
        return """
        {
          "version": "1.0.0",
          "hook": {
            "path": \(q(ctrobj)),
            "args": [\(args.map(q).joined(separator: ", "))],
            "env": [\(env.map(q).joined(separator: ", "))],
            "timeout": 10
          },
          "when": { "always": true },
          "stages": ["createRuntime", "poststop"]
        }

        """
    }
}

extension OCIHook {
    /// podman's (and CRI-O's) system hooks directory for packages.
    public static let defaultHooksDir = "/usr/share/containers/oci/hooks.d"
    public static let hookFileName = "ctrobj-oci-hook.json"

    /// Write the hooks.d file into `hooksDir` (made if missing), replacing
    /// our own earlier one. Returns its path.
    @discardableResult
    public static func installHookFile(hooksDir: String = defaultHooksDir, ctrobj: String, env: [String] = [], strict: Bool = false,
                                       log: String? = nil) throws -> String {
        guard ctrobj.hasPrefix("/") else { throw ContainerError(.invalidArgument, "oci hook: the ctrobj path must be absolute: \(ctrobj)") }
        try Sys.mkdirs(hooksDir, 0o755)
        let path = "\(hooksDir)/\(hookFileName)"
        try Sys.writeFileAtomically(path, hooksJSON(ctrobj: ctrobj, env: env, strict: strict, log: log), mode: 0o644)
        return path
    }

    /// Remove the hooks.d file if it is ours (it runs `oci-hook`); true if removed.
    @discardableResult
    public static func uninstallHookFile(hooksDir: String = defaultHooksDir) throws -> Bool {
        let path = "\(hooksDir)/\(hookFileName)"
        guard let text = try? Sys.readFile(path, limit: 1 << 16) else { return false }
        guard text.contains("\"oci-hook\"") else {
            throw ContainerError(.invalidArgument, "oci hook: \(path) was not written by ctrobj install --oci-hook; left in place")
        }
        guard unlink(path) == 0 else { throw ContainerError.sys("unlink \(path)") }
        return true
    }
}
