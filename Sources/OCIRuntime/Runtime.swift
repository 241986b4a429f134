import COCIChild
import CShim
import ContainerObject
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The global options and what every command shares: the state store,
/// logging (stderr, and --log as text or JSON lines for conmon and the
/// containerd shim, which read the last error from there), hooks.
public final class Runtime {
    public var root = "/run/ctrobj-oci"
    public var logFile: String?
    public var logJSON = false
    public var debug = false
    var store: StateStore { StateStore(root: root) }
    /// `run` with a terminal: the master this process relays.
    var foregroundConsole: OwnedFD?
    /// `run`: the container fd, held until exit (KILL_ON_CLOSE).
    var heldContainer: Container?

    public init() {}

    // MARK: logging

    func log(_ level: String, _ msg: String) {
        guard let f = logFile else { return }
        let line: String
        if logJSON {
            line = "{\"level\":\"\(level)\",\"msg\":\(jsonString(msg)),\"time\":\"\(rfc3339Now())\"}\n"
        } else {
            line = "time=\"\(rfc3339Now())\" level=\(level) msg=\(jsonString(msg))\n"
        }
        let fd = open(f, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        _ = try? Sys.write(fd, line)
        close(fd)
    }

    public func error(_ msg: String) {
        log("error", msg)
        let text = "ctrobj-oci: \(msg)\n"
        _ = text.withCString { write(2, $0, strlen($0)) }
    }

    let t0 = Sys.monotonicNanos()
    /// --debug: how long since the start each step took (stderr).
    func trace(_ what: String) {
        guard debug else { return }
        let ms = Double(Sys.monotonicNanos() - t0) / 1e6
        _ = "ctrobj-oci: +\(Int(ms * 1000)) us \(what)\n".withCString { write(2, $0, strlen($0)) }
    }

    func warn(_ msg: String) {
        log("warning", msg)
        if debug { _ = "ctrobj-oci: warning: \(msg)\n".withCString { write(2, $0, strlen($0)) } }
    }

    // MARK: state

    func stateJSON(_ r: Record, status: Status) -> String {
        var o = "{\"ociVersion\":\(jsonString(r.ociVersion)),\"id\":\(jsonString(r.id)),\"status\":\"\(status.rawValue)\""
        if status != .stopped { o += ",\"pid\":\(r.pid)" }
        o += ",\"bundle\":\(jsonString(r.bundle)),\"annotations\":{"
        o += r.annotations.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\(jsonString($0.value))" }.joined(separator: ",")
        return o + "}}"
    }

    /// created (init waits at the gate), running, paused, stopped — from the
    /// pid (checked by start time), the gate, and ctrobjd when it answers.
    func status(_ r: Record) -> (Status, OwnedFD?) {
        guard let fd = liveInit(r) else { return (.stopped, nil) }
        if Sys.exists(store.fifo(r.id)) && !r.started { return (.created, fd) }
        if frozen(r) { return (.paused, fd) }
        return (.running, fd)
    }

    func frozen(_ r: Record) -> Bool {
        // ctrobjd knows (it froze it); when it is down, the init's cgroup:
        // the v2 cgroup.freeze ctrobjd uses, then a v1 freezer.
        if let st = try? Container.open(r.name).status() { return st.state == .frozen }
        guard let lines = try? Sys.readFile("/proc/\(r.pid)/cgroup") else { return false }
        for line in lines.split(separator: "\n") {
            let f = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            if f.count == 3, f[1].isEmpty, f[2] != "/" {
                for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                    if let s = try? Sys.readFile("\(base)\(f[2])/cgroup.freeze") { return s.hasPrefix("1") }
                }
            }
        }
        for line in lines.split(separator: "\n") {
            let f = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard f.count == 3 else { continue }
            if f[1] == "freezer", let s = try? Sys.readFile("/sys/fs/cgroup/freezer\(f[2])/freezer.state") {
                return s.hasPrefix("FROZEN") || s.hasPrefix("FREEZING")
            }
            if f[1].isEmpty, f[2] != "/" {
                for base in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                    if let s = try? Sys.readFile("\(base)\(f[2])/cgroup.freeze") { return s.hasPrefix("1") }
                }
            }
        }
        return false
    }

    /// --ctrobj-socket or CTROBJ_SOCKET/CTROBJ_STATE_DIR given: it wins
    /// over the socket a record names.
    public var explicitSocket = getenv("CTROBJ_SOCKET") != nil || getenv("CTROBJ_STATE_DIR") != nil

    /// A record, with the library pointed at the daemon that made it.
    func load(_ id: String) throws -> Record {
        let r = try store.load(id)
        if !explicitSocket, let s = r.socket, s.hasPrefix("/") { setenv("CTROBJ_SOCKET", s, 1) }
        return r
    }

    /// Destroys ctrobjd could not take while it was down.
    func reconcile() {
        let here = DaemonAddress.socketPath()
        for n in store.pendingDestroys() {
            let there = store.destroyMarkerSocket(n)
            guard there.isEmpty || there == here else { continue }
            do {
                let c = try Container.open(n)
                try c.destroy()
                store.clearDestroy(n)
            } catch let e as ContainerError where e.code == .notFound {
                store.clearDestroy(n)
            } catch { return }
        }
    }

    // MARK: hooks

    func runHook(_ h: Spec.Hook, _ state: String, field: String) throws {
        let arena = CArena()
        var hook = oci_hook(path: arena.string(h.path), argv: arena.argv(h.args ?? [h.path]), envp: arena.argv(h.env ?? []),
                            timeout_s: Int32(clamping: h.timeout ?? 0))
        let st = withExtendedLifetime(arena) { state.withCString { oci_run_hook(&hook, $0, strlen($0)) } }
        if st < 0 {
            throw OCIError("\(field) \(h.path): \(errno == ETIMEDOUT ? "timed out after \(h.timeout ?? 0) s" : errnoText(errno))")
        }
        if st != 0 {
            throw OCIError("\(field) \(h.path): \(st & 0x7f == 0 ? "exit status \((st >> 8) & 0xff)" : "killed by signal \(st & 0x7f)")")
        }
    }

    func writePidFile(_ path: String, _ pid: pid_t) throws {
        // A fresh name, made by us (O_EXCL), never a link someone planted.
        let tmp = path + ".tmp-ctrobj-oci-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do {
            let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw OCIError("--pid-file \(path): \(errnoText(errno))") }
            defer { close(fd) }
            try Sys.write(fd, "\(pid)")
            guard rename(tmp, path) == 0 else { throw OCIError("rename \(path): \(errnoText(errno))") }
        } catch let e as OCIError { unlink(tmp); throw e }
        catch { unlink(tmp); throw OCIError("--pid-file \(path): \(error)") }
    }

    // MARK: commands

    public func create(_ id: String, _ opts: CreateOptions) throws {
        try StateStore.checkID(id)
        _ = try Creation(rt: self, id: id, opts: opts).run()
    }

    public func start(_ id: String) throws {
        var r = try load(id)
        let (st, _) = status(r)
        guard st == .created else { throw OCIError("cannot start a container that has \(st == .stopped ? "stopped" : "already started") (\(st.rawValue))") }
        guard oci_fifo_release(store.fifo(id)) == 0 else {
            throw OCIError("container \"\(id)\": init is not waiting at the start gate: \(errnoText(errno))")
        }
        unlink(store.fifo(id))
        r.started = true
        try store.save(r)
        let running = stateJSON(r, status: .running)
        for (i, h) in r.poststart.enumerated() {
            do { try runHook(h, running, field: "hooks.poststart[\(i)]") } catch { warn("\(error)") }
        }
    }

    public func state(_ id: String) throws -> String {
        let r = try load(id)
        let (st, _) = status(r)
        var o = stateJSON(r, status: st)
        o.removeLast()
        // runc's extra fields, which podman and containerd read.
        o += ",\"rootfs\":\(jsonString(r.rootfs)),\"created\":\(jsonString(r.created)),\"owner\":\"\""
        if st == .stopped { o += ",\"pid\":0" }
        return o + "}"
    }

    public func kill(_ id: String, signal: String, all: Bool) throws {
        let r = try load(id)
        guard let sig = Tables.signal(signal) else { throw OCIError("unknown signal \(signal.debugDescription)") }
        let (st, fd) = status(r)
        guard let fd, st != .stopped else { throw OCIError("container not running") }
        if all {
            // Every process of the container: ctrobjd signals its cgroup.
            do {
                let c = try Container.open(r.name)
                try c.kill(sig)
                if st == .paused, sig == SIGKILL { try? c.thaw() }
                return
            } catch let e as ContainerError where e.code == .daemonUnavailable {
                warn("ctrobjd is down: kill --all signals init only")
            }
        }
        do { try Sys.pidfdSendSignal(fd.raw, sig) }
        catch { throw OCIError("kill \(id): \(error)") }
    }

    public func delete(_ id: String, force: Bool, destroy: Bool = true) throws {
        let r: Record
        do { r = try load(id) } catch {
            if force { return }
            throw error
        }
        let (st, fd) = status(r)
        if st == .running || st == .paused {
            guard force else { throw OCIError("cannot delete container \(id) that is not stopped: \(st.rawValue)") }
        }
        if let fd {
            try? Sys.pidfdSendSignal(fd.raw, SIGKILL)
            // The init is not our child: wait for it to go (POLLIN on the pidfd).
            var p = pollfd(fd: fd.raw, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, 10_000)
        }
        do {
            guard destroy else { throw ContainerError(.notFound, "kept for KILL_ON_CLOSE") }
            let c = try Container.open(r.name)
            if st == .paused { try? c.thaw() }
            try c.destroy()
        } catch let e as ContainerError where e.code == .notFound {
        } catch let e as ContainerError where e.code == .daemonUnavailable {
            store.markDestroy(r.name)
            warn("ctrobjd is down: container object \(r.name) is destroyed when it is back")
        } catch {
            store.markDestroy(r.name)
            warn("destroying \(r.name): \(error)")
        }
        store.releaseName(r.name)
        store.remove(id)
        let stopped = stateJSON(r, status: .stopped)
        for (i, h) in r.poststop.enumerated() {
            do { try runHook(h, stopped, field: "hooks.poststop[\(i)]") } catch { warn("\(error)") }
        }
    }

    public func pause(_ id: String, resume: Bool) throws {
        let r = try load(id)
        let (st, _) = status(r)
        if resume {
            guard st == .paused else { throw OCIError("container not paused") }
            try Container.open(r.name).thaw()
        } else {
            guard st == .running else { throw OCIError("container not running") }
            try Container.open(r.name).freeze()
        }
    }

    public func list(json: Bool, quiet: Bool) -> String {
        var rows: [(Record, Status)] = []
        for id in store.ids() {
            guard let r = try? load(id) else { continue }
            rows.append((r, status(r).0))
        }
        if quiet { return rows.map { $0.0.id + "\n" }.joined() }
        if json {
            let items = rows.map { r, st in
                "{\"ociVersion\":\(jsonString(r.ociVersion)),\"id\":\(jsonString(r.id)),\"pid\":\(st == .stopped ? 0 : r.pid),\"status\":\"\(st.rawValue)\",\"bundle\":\(jsonString(r.bundle)),\"rootfs\":\(jsonString(r.rootfs)),\"created\":\(jsonString(r.created)),\"owner\":\(jsonString(userName(r.owner)))}"
            }
            return "[" + items.joined(separator: ",") + "]\n"
        }
        var out = "ID          PID         STATUS      BUNDLE      CREATED     OWNER\n"
        for (r, st) in rows {
            out += "\(r.id)  \(st == .stopped ? 0 : r.pid)  \(st.rawValue)  \(r.bundle)  \(r.created)  \(userName(r.owner))\n"
        }
        return out
    }

    /// The pids of the container's processes: its init's cgroup (pids
    /// controller on v1, the unified one on v2), read-only.
    public func pids(_ id: String) throws -> [Int32] {
        let r = try load(id)
        guard liveInit(r) != nil, let lines = try? Sys.readFile("/proc/\(r.pid)/cgroup") else { return [] }
        var file: String?
        for line in lines.split(separator: "\n") {
            let f = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard f.count == 3 else { continue }
            if f[1].split(separator: ",").contains("pids") { file = "/sys/fs/cgroup/pids\(f[2])/cgroup.procs"; break }
            if f[1].isEmpty, Sys.exists("/sys/fs/cgroup/cgroup.controllers") { file = "/sys/fs/cgroup\(f[2])/cgroup.procs" }
        }
        guard let file, let text = try? Sys.readFile(file) else { return [r.pid] }
        return text.split(separator: "\n").compactMap { Int32($0) }
    }

    public func features() -> String {
        let caps = Tables.capabilities.sorted { $0.value < $1.value }.map { jsonString($0.key) }.joined(separator: ",")
        let ops = Tables.seccompOps.keys.sorted().map { jsonString($0) }.joined(separator: ",")
        let actions = ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                       "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"].map { jsonString($0) }.joined(separator: ",")
        let arches = Tables.seccompArches.keys.sorted().map { jsonString($0) }.joined(separator: ",")
        let opts = (Array(Tables.mountFlags.keys) + Array(Tables.propagation.keys) + ["bind", "rbind"]).sorted().map { jsonString($0) }.joined(separator: ",")
        let hooks = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"].map { jsonString($0) }.joined(separator: ",")
        return """
        {"ociVersionMin":"1.0.0","ociVersionMax":"1.2.1","hooks":[\(hooks)],"mountOptions":[\(opts)],\
        "linux":{"namespaces":["cgroup","ipc","mount","network","pid","time","user","uts"],"capabilities":[\(caps)],\
        "cgroup":{"v1":true,"v2":true,"systemd":false,"systemdUser":false,"rdma":false},\
        "seccomp":{"enabled":true,"actions":[\(actions)],"operators":[\(ops)],"archs":[\(arches)],\
        "knownFlags":["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW","SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],\
        "supportedFlags":["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW"]},\
        "apparmor":{"enabled":false},"selinux":{"enabled":false},"intelRdt":{"enabled":false},\
        "mountExtensions":{"idmap":{"enabled":false}}},\
        "annotations":{"org.ctrobj.core":"file|drop|handler:/path (upcall policy: where cores go)","org.ctrobj.modules":"refused (root grants it: ctrobj policy NAME --modules)","org.ctrobj.devices":"refused (root grants it: ctrobj policy NAME --devices)"}}
        """
    }
}

func userName(_ uid: UInt32) -> String {
    if let pw = getpwuid(uid), let n = pw.pointee.pw_name { return String(cString: n) }
    return "\(uid)"
}

func jsonString(_ s: String) -> String { JSONText.quoted(s) }
