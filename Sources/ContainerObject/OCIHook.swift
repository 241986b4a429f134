import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// What `ctrobj oci-hook` does with the state OCIHookState.swift read: adopt
/// at createRuntime, forget at poststop (the table and the exit codes are at
/// the top of that file), and the hooks.d file that makes podman run it.
extension OCIHook {
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
                try c.setPolicy(core: policy.core)
            } catch let e as ContainerError {
                // Asked for and not had: no half-configured record stays.
                try? c.destroy()
                return Outcome(exitCode: 1, messages: ["\(label): policy from annotations refused: \(RequestRules.escaped(e.message)); not adopted"], name: name)
            }
            if let core = policy.core { note += ", policy core \(core)" }
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
        let q = JSONText.quoted
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
