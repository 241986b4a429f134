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

/// `create`: config.json onto the container-object API.
///
///   linux.namespaces      new ones: container_create flags ("mount" is
///                         CONTAINER_NEW_EMPTY_FS_NS); with "path": container_set_ns
///                         with that nsfs fd; absent: the caller's
///   root.path             bound over the container's "/" (container_mount)
///   mounts                container_mount from outside, in order, once init
///                         exists (proc needs its pid namespace); per-mount
///                         flags of binds and propagation: remounted by init
///   linux.devices, /dev   mknod by init (no user ns) or binds of the host's nodes
///   masked/readonlyPaths  by init, before it drops privileges
///   hostname, sysctl      by init, in its namespaces
///   linux.resources       container_set_limit (memory, pids, cpu)
///   process               the C child (COCIChild): user, groups, caps, rlimits,
///                         no_new_privs, seccomp, cwd, console; oomScoreAdj from here
///   hooks                 prestart/createRuntime here, createContainer and
///                         startContainer in init, poststart in `start`, poststop in `delete`
///   annotations           org.ctrobj.core: where its cores go (org.ctrobj.modules
///                         and org.ctrobj.devices are refused: only root grants them)
public struct CreateOptions {
    public init() {}
    public var bundle = "."
    public var pidFile: String?
    public var consoleSocket: String?
    public var preserveFDs: Int32 = 0
    /// `run`: the caller keeps the init (no console socket, stdio inherited).
    public var foreground = false
}

final class Creation {
    let rt: Runtime
    let id: String
    let opts: CreateOptions
    var spec: Spec
    var bundle: String
    var rootfs = ""
    var container: Container?
    var name = ""
    var initPidfd: OwnedFD?
    var pid: pid_t = 0
    var stateDirMade = false
    var flags: UInt32 = 0
    var ownUserNS = false
    var joinedNS: [(Int32, String)] = []
    var ops: [(kind: oci_op_kind, target: String, flags: UInt, data: String?, mode: mode_t, dev: dev_t, uid: uid_t, gid: gid_t)] = []
    var devOps: [(kind: oci_op_kind, target: String, flags: UInt, data: String?, mode: mode_t, dev: dev_t, uid: uid_t, gid: gid_t)] = []
    var dropMknod = false
    var root: OwnedFD?
    /// Destinations init mounts itself and has not mounted yet (in `ops`).
    var insidePending: [String] = []
    var ctlFD: OwnedFD?

    init(rt: Runtime, id: String, opts: CreateOptions) throws {
        self.rt = rt
        self.id = id
        self.opts = opts
        bundle = opts.bundle
        if !bundle.hasPrefix("/") {
            var buf = [CChar](repeating: 0, count: 4096)
            guard getcwd(&buf, buf.count) != nil else { throw OCIError("getcwd: \(errnoText(errno))") }
            let cwd = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            bundle = bundle == "." ? cwd : "\(cwd)/\(bundle)"
        }
        let text: String
        do { text = try Sys.readFile("\(bundle)/config.json", limit: 16 << 20) }
        catch { throw OCIError("open \(bundle)/config.json: \(error)") }
        let data = Data(text.utf8)
        let doc: JSONValue
        do {
            doc = try JSONDecoder().decode(JSONValue.self, from: data)
            spec = try JSONDecoder().decode(Spec.self, from: data)
        } catch let e as DecodingError {
            throw OCIError("config.json: \(Creation.describe(e))")
        }
        try Validate.keys(doc)
    }

    static func describe(_ e: DecodingError) -> String {
        func path(_ c: [CodingKey]) -> String {
            c.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().drop(while: { $0 == "." }).description
        }
        switch e {
        case .keyNotFound(let k, let c): return "\(path(c.codingPath + [k])): required field missing"
        case .typeMismatch(_, let c): return "\(path(c.codingPath)): wrong type: \(c.debugDescription)"
        case .valueNotFound(_, let c): return "\(path(c.codingPath)): missing value"
        case .dataCorrupted(let c): return "\(path(c.codingPath)): \(c.debugDescription)"
        @unknown default: return "\(e)"
        }
    }

    // MARK: checks before anything is made

    func plan() throws {
        let v = spec.ociVersion
        guard v.hasPrefix("1.0.") || v.hasPrefix("1.1.") || v.hasPrefix("1.2.") || v == "1.0" else {
            throw OCIError.field("ociVersion", "\(v.debugDescription) is not 1.0.x-1.2.x")
        }
        guard let p = spec.process else { throw OCIError.field("process", "required for create") }
        guard let args = p.args, !args.isEmpty else { throw OCIError.field("process.args", "must name a program") }
        guard p.cwd.hasPrefix("/") else { throw OCIError.field("process.cwd", "must be an absolute path") }
        if p.terminal == true, opts.consoleSocket == nil, !opts.foreground {
            throw OCIError.field("process.terminal", "a terminal needs --console-socket (the pty master is sent there)")
        }
        if p.terminal != true, opts.consoleSocket != nil {
            throw OCIError("--console-socket given but process.terminal is false")
        }
        guard let r = spec.root, !r.path.isEmpty else { throw OCIError.field("root.path", "required") }
        rootfs = r.path.hasPrefix("/") ? r.path : "\(bundle)/\(r.path)"
        var st = stat()
        guard stat(rootfs, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            throw OCIError.field("root.path", "\(rootfs) is not a directory")
        }
        guard let linux = spec.linux else { throw OCIError.field("linux", "required on Linux") }
        var seen = Set<String>()
        var hasMount = false
        for (i, ns) in (linux.namespaces ?? []).enumerated() {
            let field = "linux.namespaces[\(i)]"
            guard let t = Tables.namespaces[ns.type] else { throw OCIError.field("\(field).type", "unknown namespace \(ns.type.debugDescription)") }
            guard seen.insert(ns.type).inserted else { throw OCIError.field("\(field).type", "\(ns.type) is listed twice") }
            if ns.type == "mount" { hasMount = true }
            if let path = ns.path, !path.isEmpty {
                if ns.type == "mount" {
                    throw OCIError.field("\(field).path", "joining another mount namespace is not supported: the rootfs is mounted into a new one")
                }
                joinedNS.append((t.clone, path))
            } else {
                flags |= t.flag
            }
        }
        guard hasMount else {
            throw OCIError.field("linux.namespaces", "a container without a mount namespace of its own is not supported (its rootfs is mounted into one)")
        }
        ownUserNS = flags & 0x20 != 0
        if ownUserNS || seen.contains("user") {
            if !(linux.uidMappings ?? []).isEmpty {
                throw OCIError.field("linux.uidMappings", "ctrobjd allocates a container's host id block itself (0 inside maps to it); give no mappings")
            }
            if !(linux.gidMappings ?? []).isEmpty {
                throw OCIError.field("linux.gidMappings", "ctrobjd allocates a container's host id block itself (0 inside maps to it); give no mappings")
            }
        } else if !(linux.uidMappings ?? []).isEmpty || !(linux.gidMappings ?? []).isEmpty {
            throw OCIError.field(linux.uidMappings?.isEmpty == false ? "linux.uidMappings" : "linux.gidMappings", "id mappings need a user namespace")
        }
        if let rp = linux.rootfsPropagation, !rp.isEmpty, Tables.propagation[rp] == nil {
            throw OCIError.field("linux.rootfsPropagation", "unknown propagation \(rp.debugDescription)")
        }
        if let rules = linux.resources?.devices, !rules.isEmpty {
            // Honoured as runc's default is meant: deny everything, allow what
            // is listed. Without a devices cgroup, the container reaches only
            // the nodes made in its /dev, and CAP_MKNOD is dropped so it
            // cannot make others.
            guard let first = rules.first, !first.allow, (first.type ?? "a") == "a", first.major == nil || first.major == -1,
                  first.minor == nil || first.minor == -1 else {
                throw OCIError.field("linux.resources.devices", "only a list that starts by denying every device is honoured (there is no devices cgroup under ctrobjd); it is enforced by the nodes /dev holds and by dropping CAP_MKNOD")
            }
            dropMknod = true
        }
        if let m = linux.resources?.memory?.limit, m < -1 { throw OCIError.field("linux.resources.memory.limit", "\(m) is negative") }
        if let s = linux.resources?.memory?.swap, s != -1, s != 0, s != linux.resources?.memory?.limit {
            throw OCIError.field("linux.resources.memory.swap", "ctrobjd sets memory limits only; swap must be unset, -1, or equal to memory.limit")
        }
        if let q = linux.resources?.cpu?.quota, q > 0 {
            let period = linux.resources?.cpu?.period ?? 100_000
            guard period > 0 else { throw OCIError.field("linux.resources.cpu.period", "must be positive") }
        }
        for (k, _) in linux.sysctl ?? [:] {
            guard !k.isEmpty, !k.contains("/"), !k.contains(".."), !k.hasPrefix(".") else {
                throw OCIError.field("linux.sysctl", "bad key \(k.debugDescription)")
            }
        }
        for (i, m) in (spec.mounts ?? []).enumerated() {
            guard m.destination.hasPrefix("/") || !m.destination.isEmpty else {
                throw OCIError.field("mounts[\(i)].destination", "must be a path")
            }
            _ = try mountPlan(m, i)
        }
        for (i, d) in (linux.devices ?? []).enumerated() {
            guard ["c", "b", "u", "p"].contains(d.type) else { throw OCIError.field("linux.devices[\(i)].type", "unknown type \(d.type.debugDescription)") }
            if ownUserNS { throw OCIError.field("linux.devices[\(i)]", "device nodes cannot be made in a user namespace; bind-mount them in `mounts`") }
        }
        if let a = spec.annotations?["org.ctrobj.core"] {
            guard ["file", "drop"].contains(a) || a.hasPrefix("handler:/") else {
                throw OCIError.field("annotations.org.ctrobj.core", "must be file, drop or handler:/path")
            }
        }
        // Annotations are written by whoever asks for the container (a podman
        // user, a pod author under the CRI), not by root: they may choose where
        // the container's own cores go, never module loading or device grants,
        // which only root gives (docs/security.md).
        for (key, flag) in [("org.ctrobj.modules", "--modules"), ("org.ctrobj.devices", "--devices")] where spec.annotations?[key] != nil {
            throw OCIError.field("annotations.\(key)",
                                 "refused: annotations come from whoever asks for the container, and only root may grant this; "
                                 + "root grants it with `ctrobj policy NAME \(flag) LIST` once the container exists")
        }
    }

    struct MountPlan {
        var flags: UInt
        var propagation: UInt
        var data: String
        var bind: Bool
    }

    func mountPlan(_ m: Spec.Mount, _ i: Int) throws -> MountPlan {
        var flags: UInt = 0, prop: UInt = 0, data: [String] = []
        var bind = m.type == "bind"
        for o in m.options ?? [] {
            if o == "bind" { bind = true; flags |= Tables.MS_BIND; continue }
            if o == "rbind" { bind = true; flags |= Tables.MS_BIND | Tables.MS_REC; continue }
            if let (set, clear) = Tables.mountFlags[o] { flags = (flags & ~clear) | set; continue }
            if let p = Tables.propagation[o] { prop = p; continue }
            if ["z", "Z", "private-z"].contains(o) { continue } // SELinux relabel, done by podman (no SELinux here)
            if ["idmap", "ridmap", "tmpcopyup", "copy-symlink", "notmpcopyup", "rro", "rrw"].contains(o) || o.hasPrefix("X-mount.") {
                throw OCIError.field("mounts[\(i)].options", "\(o.debugDescription) is not supported by ctrobj-oci")
            }
            if bind { throw OCIError.field("mounts[\(i)].options", "\(o.debugDescription) is not a bind mount option") }
            data.append(o)
        }
        if bind {
            flags |= Tables.MS_BIND
            guard let s = m.source, !s.isEmpty else { throw OCIError.field("mounts[\(i)].source", "a bind mount needs a source") }
        } else {
            guard let t = m.type, !t.isEmpty else { throw OCIError.field("mounts[\(i)].type", "required unless the mount is a bind") }
        }
        return MountPlan(flags: flags, propagation: prop, data: data.joined(separator: ","), bind: bind)
    }

    // MARK: the run

    func cleanup() {
        if let fd = initPidfd {
            try? Sys.pidfdSendSignal(fd.raw, SIGKILL)
            _ = try? Sys.pidfdWait(fd.raw)
        }
        if let c = container { try? c.destroy() }
        if !name.isEmpty { rt.store.releaseName(name) }
        if stateDirMade { rt.store.remove(id) }
    }

    func run() throws -> Record {
        rt.trace("config read")
        try plan()
        rt.trace("planned")
        let store = rt.store
        try store.checkTrusted(store.root)
        try Sys.mkdirs(store.root, 0o700)
        try store.checkTrusted(store.root)
        rt.reconcile()
        guard mkdir(store.dir(id), 0o700) == 0 else {
            if errno == EEXIST { throw OCIError("container with id exists: \(id)") }
            throw OCIError("mkdir \(store.dir(id)): \(errnoText(errno))")
        }
        stateDirMade = true
        do {
            return try make()
        } catch {
            cleanup()
            throw error
        }
    }

    func make() throws -> Record {
        let store = rt.store
        let p = spec.process!
        let linux = spec.linux!
        // Compile what can fail before anything exists.
        let seccomp = try linux.seccomp.map { try SeccompProgram.cached($0, root: store.root) }
        rt.trace("seccomp")
        let creds = try Credentials(p, dropMknod: dropMknod)
        if creds.ambientDropped != 0 {
            rt.warn("process.capabilities.ambient: capabilities not both permitted and inheritable are not raised (as runc): mask 0x\(String(creds.ambientDropped, radix: 16))")
        }
        // linux.cgroupsPath: the container's cgroup there (CgroupsPath.swift), or create fails naming it.
        let cgroupPath = try linux.cgroupsPath.flatMap { $0.isEmpty ? nil : try CgroupsPath.resolve($0) }
        var nsFDs: [(Int32, OwnedFD)] = []
        for (i, (clone, path)) in joinedNS.enumerated() {
            do { nsFDs.append((clone, try Sys.open(path, O_RDONLY))) }
            catch { throw OCIError.field("linux.namespaces path \(path)", "\(error)") }
            _ = i
        }
        // The name: "oci-<id>" or a hash of it; a taken name (another OCI id
        // whose name hashed the same, or a container made by hand) moves on.
        var c: Container?
        for attempt in 0..<8 {
            let n = StateStore.name(for: id, attempt: attempt)
            guard store.claimName(n, id: id) else { continue }
            do {
                if let cgroupPath {
                    c = try Container.create(n, options: ContainerOptions(rawValue: flags), cgroupPath: cgroupPath)
                } else {
                    c = try Container.create(n, options: ContainerOptions(rawValue: flags))
                }
                name = n
                break
            } catch let e as ContainerError where e.code == .exists && e.message.contains("the name is taken") {
                store.releaseName(n)
                continue
            } catch let e as ContainerError where cgroupPath != nil && e.message.contains("cgroup") {
                store.releaseName(n)
                throw OCIError.field("linux.cgroupsPath", e.message)
            } catch {
                store.releaseName(n)
                throw error
            }
        }
        rt.trace("created")
        guard let c else { throw OCIError("no free container name for \(id)") }
        container = c
        for (clone, fd) in nsFDs {
            do { try ContainerCalls.setNamespaces(c.fd.raw, nstypes: clone, source: fd.raw) }
            catch { throw OCIError.field("linux.namespaces", "joining \(joinedNS.first { $0.0 == clone }?.1 ?? "?"): \(error)") }
        }
        // Policy from annotations: the core disposition only (plan() refused
        // org.ctrobj.modules and org.ctrobj.devices).
        if let core = spec.annotations?["org.ctrobj.core"] {
            do { try c.setPolicy(core: core) }
            catch { throw OCIError.field("annotations", "org.ctrobj policy refused: \(error)") }
        }
        rt.trace("policy")
        try applyResources(c, linux.resources)
        // The rootfs over the empty root.
        do { try c.mount(source: rootfs, target: "/", fstype: nil, flags: Tables.MS_BIND | Tables.MS_REC) }
        catch { throw OCIError.field("root.path", "binding \(rootfs) over the container's root: \(error)") }

        rt.trace("rootfs bound")
        // Start gate, ctl socket, console.
        let fifoFD = oci_make_fifo(store.fifo(id))
        guard fifoFD >= 0 else { throw OCIError("mkfifo \(store.fifo(id)): \(errnoText(errno))") }
        let fifo = OwnedFD(fifoFD)
        var sv: [CInt] = [-1, -1]
        guard socketpair(AF_UNIX, CInt(SOCK_SEQPACKET.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0, &sv) == 0 else {
            throw OCIError("socketpair: \(errnoText(errno))")
        }
        let ctl = OwnedFD(sv[0]), childCtl = OwnedFD(sv[1])
        var master: OwnedFD?, slave: OwnedFD?
        // A terminal from the container's own devpts when it has one (as
        // runc: ttyname works inside), else from the host's.
        let devptsInside = (spec.mounts ?? []).contains { $0.destination == "/dev/pts" && $0.type == "devpts" }
        if p.terminal == true && !devptsInside {
            var m: CInt = -1, s: CInt = -1
            guard oci_openpty(&m, &s) == 0 else { throw OCIError.field("process.terminal", "openpty: \(errnoText(errno))") }
            master = OwnedFD(m)
            slave = OwnedFD(s)
            if let size = p.consoleSize {
                var ws = winsize(ws_row: UInt16(clamping: size.height), ws_col: UInt16(clamping: size.width), ws_xpixel: 0, ws_ypixel: 0)
                _ = ioctl(m, UInt(TIOCSWINSZ), &ws)
            }
        }

        // The child spec.
        let arena = CArena()
        var cs = oci_child_spec()
        cs.mode = OCI_MODE_INIT
        cs.ctl_fd = childCtl.raw
        let args = p.args!
        cs.path = arena.string(args[0])
        cs.argv = arena.argv(args)
        cs.envp = arena.argv(p.env ?? [])
        cs.cwd = arena.string(p.cwd)
        if flags & 0x8 != 0 || joinedNS.contains(where: { $0.0 == 0x0400_0000 }) {
            cs.hostname = arena.optString(spec.hostname.flatMap { $0.isEmpty ? nil : $0 })
            cs.domainname = arena.optString(spec.domainname.flatMap { $0.isEmpty ? nil : $0 })
        } else if (spec.hostname ?? "").isEmpty == false {
            throw OCIError.field("hostname", "setting a hostname needs a uts namespace of the container's own")
        }
        // A network namespace of its own (NEW_NET_NS, 0x80): lo up, as runc does.
        cs.loopback_up = flags & 0x80 != 0 ? 1 : 0
        creds.apply(to: &cs, arena)
        (cs.create_hooks, cs.ncreate_hooks) = arena.hooks(spec.hooks?.createContainer ?? [])
        (cs.start_hooks, cs.nstart_hooks) = arena.hooks(spec.hooks?.startContainer ?? [])
        var sc: [UInt8] = []
        if let s = seccomp {
            sc = s.bytes
            cs.seccomp_len = s.length
            cs.seccomp_flags = s.flags
        }
        let scPtr = arena.array(sc)
        if !sc.isEmpty { cs.seccomp_filter = UnsafeRawPointer(scPtr) }
        cs.console_fd = p.terminal == true && devptsInside ? OCI_CONSOLE_INSIDE : slave?.raw ?? -1
        cs.stdio = (-1, -1, -1)
        cs.preserve_fds = opts.preserveFDs
        cs.gate_fd = fifo.raw
        let syncHooks = !(spec.hooks?.prestart ?? []).isEmpty || !(spec.hooks?.createRuntime ?? []).isEmpty
        cs.sync_runtime_hooks = syncHooks ? 1 : 0
        // The container's own cgroups for a "cgroup" mount, as detached
        // trees init moves into place (no request per controller).
        if !ownUserNS, (spec.mounts ?? []).contains(where: { $0.type == "cgroup" || $0.type == "cgroup2" }) {
            try openCgroupTrees(c)
        }
        try openNullTrees(linux)

        // init: joins the container (ccs_join_fork), then the C child.
        let prepared = try ContainerCalls.prepareJoin(c.fd.raw, enter: false)
        rt.trace("prepared")
        var plan = prepared.cPlan()
        let cgroupJoin = fastCgroupJoin(&plan)
        var stage: CInt = 0
        let forked = withExtendedLifetime((prepared, arena, sc, childCtl, slave, fifo, cgroupTrees, nullTrees, cgroupJoin)) { oci_spawn(&plan, &cs, &stage) }
        if forked < 0 {
            let e = errno
            ContainerCalls.abort(c.fd.raw)
            throw OCIError("container \"\(id)\": starting init: \(joinStageText(stage)): \(errnoText(e))")
        }
        rt.trace("forked")
        pid = forked
        do { initPidfd = try ContainerCalls.commit(prepared, pid: pid) }
        catch {
            if let fd = try? Sys.pidfdOpen(pid) { try? Sys.pidfdSendSignal(fd.raw, SIGKILL); _ = try? Sys.pidfdWait(fd.raw) }
            throw error
        }
        childCtl.close()
        slave?.close()
        fifo.close()
        if let adj = p.oomScoreAdj {
            do { try Sys.writeFile("/proc/\(pid)/oom_score_adj", "\(adj)") }
            catch { throw OCIError.field("process.oomScoreAdj", "\(error)") }
        }
        rt.trace("committed")
        ctlFD = ctl
        // Mounts from outside, /dev, then init finishes inside.
        try mountAll(c, linux)
        rt.trace("mounted")
        try addDefaultDevices(c, linux)
        finishingOps(linux)
        // Build the child's op list now that mounts are known: it was filled
        // into `ops` by mountAll; the child reads a copy sent with 'a'.
        let record = Record(id: id, name: name, pid: pid, startTime: UInt64(oci_proc_start_time(pid)), bundle: bundle, rootfs: rootfs,
                            created: rfc3339Now(), owner: getuid(), annotations: spec.annotations ?? [:],
                            ociVersion: spec.ociVersion, started: false, ownPidNamespace: flags & 0x40 != 0,
                            poststart: spec.hooks?.poststart ?? [], poststop: spec.hooks?.poststop ?? [],
                            cgroupsPath: linux.cgroupsPath, socket: DaemonAddress.socketPath())
        try store.save(record)
        let creating = rt.stateJSON(record, status: .creating)
        try send(ctl, "a", try opsPayload(creating + "\u{3}" + rt.stateJSON(record, status: .created)))
        if syncHooks {
            try expect(ctl, "B")
            for (k, hooks) in [("prestart", spec.hooks?.prestart ?? []), ("createRuntime", spec.hooks?.createRuntime ?? [])] {
                for (i, h) in hooks.enumerated() { try rt.runHook(h, creating, field: "hooks.\(k)[\(i)]") }
            }
            try send(ctl, "b", "")
        }
        rt.trace("ops sent")
        try expect(ctl, "R")
        if let m = insideMaster {
            if let size = p.consoleSize {
                var ws = winsize(ws_row: UInt16(clamping: size.height), ws_col: UInt16(clamping: size.width), ws_xpixel: 0, ws_ypixel: 0)
                _ = ioctl(m.raw, UInt(TIOCSWINSZ), &ws)
            }
            master = m
        }
        if let master, let sock = opts.consoleSocket {
            guard oci_send_console(sock, master.raw, "/dev/ptmx") == 0 else {
                throw OCIError("--console-socket \(sock): sending the pty master: \(errnoText(errno))")
            }
        }
        rt.foregroundConsole = master
        rt.trace("R")
        if let pf = opts.pidFile { try rt.writePidFile(pf, pid) }
        initPidfd = nil // the init lives on without us
        return record
    }

    /// What init does inside (ops) is known only once the mounts are made,
    /// after the fork: it travels with the 'a' message.
    func opsPayload(_ state: String) throws -> String {
        // Ops are carried in the 'a' payload after the state, separated by
        // a NUL: "state\0op\0op...". Each op: kind, flags, mode, dev, uid,
        // gid, data, target, separated by \u{1}.
        var payload = state
        for o in ops {
            let fields = ["\(o.kind.rawValue)", "\(o.flags)", "\(o.mode)", "\(o.dev)", "\(o.uid)", "\(o.gid)", o.data ?? "", o.target]
            guard !fields.contains(where: { $0.contains("\u{1}") || $0.contains("\0") }) else {
                throw OCIError("container \"\(id)\": a mount path or sysctl holds a control character: \(o.target.debugDescription)")
            }
            payload += "\0" + fields.joined(separator: "\u{1}")
        }
        return payload
    }

    /// Have init make the ops so far (mounts the next outside ones stack on).
    func flushInside() throws {
        guard let ctl = ctlFD else { return }
        try send(ctl, "o", try opsPayload(""))
        ops.removeAll()
        insidePending.removeAll()
        try expect(ctl, "O")
    }

    func send(_ ctl: OwnedFD, _ tag: Character, _ payload: String) throws {
        let bytes = Array(payload.utf8)
        guard bytes.count <= 65536 else { throw OCIError("container \"\(id)\": the state and mount list for init exceed 64 KiB") }
        let rc = bytes.withUnsafeBytes { oci_ctl_send(ctl.raw, CChar(UInt8(ascii: tag.unicodeScalars.first!)), $0.baseAddress, $0.count) }
        guard rc == 0 else { throw OCIError("container \"\(id)\": init is gone (\(errnoText(errno)))") }
    }

    /// The pty master init made from the container's /dev/ptmx ('T').
    var insideMaster: OwnedFD?

    func expect(_ ctl: OwnedFD, _ tag: Character) throws {
        var m = oci_msg()
        var buf = [UInt8](repeating: 0, count: 16)
        var fd: CInt = -1
        var n = oci_ctl_recv_fd(ctl.raw, &m, &buf, buf.count, 60_000, &fd)
        while n >= 0 && UInt8(bitPattern: m.tag) == UInt8(ascii: "T") {
            if fd >= 0 { insideMaster = OwnedFD(fd) }
            n = oci_ctl_recv_fd(ctl.raw, &m, &buf, buf.count, 60_000, &fd)
        }
        if fd >= 0 { close(fd) }
        if n < 0 {
            throw OCIError("container \"\(id)\": init did not report (\(errnoText(errno)))")
        }
        if UInt8(bitPattern: m.tag) == UInt8(ascii: "E") {
            let field = stageField(Int32(m.stage))
            throw OCIError("container \"\(id)\": init failed at \(field): \(errnoText(m.value))")
        }
        guard UInt8(bitPattern: m.tag) == UInt8(ascii: tag.unicodeScalars.first!) else {
            throw OCIError("container \"\(id)\": init sent an unexpected report")
        }
    }

    // MARK: resources

    func applyResources(_ c: Container, _ r: Spec.Resources?) throws {
        guard let r else { return }
        if let m = r.memory?.limit, m > 0 {
            do { try c.setLimit(.memory, m) } catch { throw OCIError.field("linux.resources.memory.limit", "\(error)") }
        }
        if let p = r.pids?.limit, p > 0 {
            do { try c.setLimit(.pids, p) } catch { throw OCIError.field("linux.resources.pids.limit", "\(error)") }
        }
        if let q = r.cpu?.quota, q > 0 {
            let period = Int64(r.cpu?.period ?? 100_000)
            let milli = max(1, q * 1000 / period)
            do { try c.setLimit(.cpu, milli) } catch { throw OCIError.field("linux.resources.cpu.quota", "\(error)") }
        }
    }

    // MARK: mounts

    /// An O_PATH fd of the container's root, for making mount points (as
    /// root: with a user namespace the library's calls act as its root).
    func mkdirs(_ c: Container, _ path: String) throws {
        if ownUserNS { try c.mkdirs(path); return }
        if root == nil { root = try ContainerCalls.root(c.fd.raw) }
        var current = ""
        for part in path.split(separator: "/") {
            current += (current.isEmpty ? "" : "/") + part
            let dir = try parentFD(current)
            let rc = withExtendedLifetime(dir) { mkdirat(dir.raw, String(part), 0o755) }
            if rc < 0 && errno != EEXIST {
                throw OCIError("mkdir \(path) in the container: \(errnoText(errno))")
            }
        }
    }

    func parentFD(_ rel: String) throws -> OwnedFD {
        let parts = rel.split(separator: "/")
        let dir = parts.dropLast().joined(separator: "/")
        return try Sys.openat2(root!.raw, dir.isEmpty ? "." : dir, O_PATH | O_DIRECTORY, 0, resolve: Sys.resolveInRoot | Sys.resolveNoMagiclinks)
    }

    func touch(_ c: Container, _ path: String) throws {
        let parent = String(path.split(separator: "/").dropLast().joined(separator: "/"))
        if !parent.isEmpty { try mkdirs(c, parent) }
        if ownUserNS {
            do { _ = try c.openFile(path, flags: O_WRONLY | O_CREAT, mode: 0o644) }
            catch let e as ContainerError where e.errno == EISDIR {}
            return
        }
        let rel = path.split(separator: "/").joined(separator: "/")
        let dir = try parentFD(rel)
        let fd = withExtendedLifetime(dir) { openat(dir.raw, String(path.split(separator: "/").last ?? ""), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644) }
        if fd >= 0 { close(fd) } else if errno != EISDIR && errno != EEXIST { throw OCIError("create \(path) in the container: \(errnoText(errno))") }
    }

    func op(_ kind: oci_op_kind, _ target: String, flags: UInt = 0, data: String? = nil, mode: mode_t = 0, dev: dev_t = 0, uid: uid_t = 0, gid: gid_t = 0) {
        ops.append((kind, target, flags, data, mode, dev, uid, gid))
    }

    func mountAll(_ c: Container, _ linux: Spec.Linux) throws {
        if let rp = linux.rootfsPropagation, let f = Tables.propagation[rp] { op(OCI_OP_PROPAGATE, "/", flags: f) }
        for (i, m) in (spec.mounts ?? []).enumerated() {
            let field = "mounts[\(i)]"
            let mp = try mountPlan(m, i)
            let dest = m.destination.hasPrefix("/") ? m.destination : "/" + m.destination
            // An outside mount that lands on one init makes: init makes its batch first.
            let outside = mp.bind || ((m.type == "cgroup" || m.type == "cgroup2") && ownUserNS)
            if outside, insidePending.contains(where: { dest == $0 || dest.hasPrefix($0 + "/") }) { try flushInside() }
            do {
                if mp.bind {
                    var src = m.source!
                    if !src.hasPrefix("/") { src = "\(bundle)/\(src)" }
                    var st = stat()
                    guard stat(src, &st) == 0 else { throw OCIError.field("\(field).source", "\(src): \(errnoText(errno))") }
                    if st.st_mode & S_IFMT == S_IFDIR { try mkdirs(c, dest) } else { try touch(c, dest) }
                    try c.mount(source: src, target: dest, fstype: nil, flags: Tables.MS_BIND | (mp.flags & Tables.MS_REC))
                    let extra = mp.flags & ~(Tables.MS_BIND | Tables.MS_REC)
                    if extra != 0 { op(OCI_OP_REMOUNT, dest, flags: extra) }
                } else if m.type == "cgroup" || m.type == "cgroup2" {
                    guard !ownUserNS else {
                        throw OCIError.field(field, "a cgroup mount in a user namespace is not supported by ctrobj-oci")
                    }
                    try mountCgroup(c, dest, mp, field)
                    continue
                } else {
                    // Kernel filesystems (proc, sysfs, tmpfs, devpts, mqueue …)
                    // are made by init, inside every namespace of the
                    // container: sysfs and mqueue show the mounter's network
                    // and IPC namespaces, proc its pid namespace, and it
                    // saves a request and a fork in ctrobjd per mount.
                    op(OCI_OP_MOUNT, dest, flags: mp.flags, data: m.type! + "\u{2}" + (m.source ?? "") + "\u{2}" + mp.data)
                    insidePending.append(dest)
                }
            } catch let e as OCIError {
                throw e
            } catch {
                throw OCIError.field(field, "\(m.type ?? "bind") on \(dest): \(error)")
            }
            if mp.propagation != 0 { op(OCI_OP_PROPAGATE, dest, flags: mp.propagation) }
        }
    }

    /// What init does last, as root, before it drops privileges.
    func finishingOps(_ linux: Spec.Linux) {
        for (k, v) in (linux.sysctl ?? [:]).sorted(by: { $0.key < $1.key }) {
            op(OCI_OP_SYSCTL, String(k.map { $0 == "." ? "/" : $0 }), data: v)
        }
        for (i, p) in (linux.maskedPaths ?? []).enumerated() { op(OCI_OP_MASK, p, data: "\(nullTrees[i].raw)") }
        for p in linux.readonlyPaths ?? [] { op(OCI_OP_READONLY, p) }
        if spec.root?.readonly == true { op(OCI_OP_REMOUNT, "/", flags: Tables.MS_RDONLY) }
    }

    /// cgroup: the container's own cgroups, bound read-only (per controller
    /// on v1) over a tmpfs, as runc does without a cgroup namespace.
    func mountCgroup(_ c: Container, _ dest: String, _ mp: MountPlan, _ field: String) throws {
        let ro = mp.flags & Tables.MS_RDONLY
        let base = mp.flags & (Tables.MS_NOSUID | Tables.MS_NODEV | Tables.MS_NOEXEC)
        if cgroupTrees.count == 1, cgroupTrees[0].0.isEmpty {
            // Pure v2: the container's cgroup directory itself.
            op(OCI_OP_MKDIR, dest)
            op(OCI_OP_MOVE, dest, data: "\(cgroupTrees[0].1.raw)")
            op(OCI_OP_REMOUNT, dest, flags: base | ro)
            return
        }
        op(OCI_OP_MOUNT, dest, flags: base, data: "tmpfs\u{2}tmpfs\u{2}mode=755")
        for (ctrl, tree) in cgroupTrees {
            op(OCI_OP_MKDIR, "\(dest)/\(ctrl)")
            op(OCI_OP_MOVE, "\(dest)/\(ctrl)", data: "\(tree.raw)")
            op(OCI_OP_REMOUNT, "\(dest)/\(ctrl)", flags: base | ro)
        }
        // The hybrid layout's v2 hierarchy (hugetlb only here) is left out, as runc does.
        if ro != 0 { op(OCI_OP_REMOUNT, dest, flags: base | ro) }
    }

    /// One detached clone (open_tree) of the host's /dev/null per masked
    /// path, made before init forks (it inherits them): init binds this
    /// over a masked file, never the container's own /dev/null, which an
    /// image can make a symlink to a writable sysctl (runc's CVE-2025-31133).
    var nullTrees: [OwnedFD] = []

    func openNullTrees(_ linux: Spec.Linux) throws {
        for _ in linux.maskedPaths ?? [] {
            let fd = ccs_open_tree(AT_FDCWD, "/dev/null", UInt32(CCS_OPEN_TREE_CLONE) | UInt32(O_CLOEXEC))
            guard fd >= 0 else { throw OCIError.field("linux.maskedPaths", "open_tree /dev/null: \(errnoText(errno))") }
            let tree = OwnedFD(fd)
            var st = stat()
            guard fstat(tree.raw, &st) == 0, st.st_mode & S_IFMT == S_IFCHR, st.st_rdev == makedev(1, 3) else {
                throw OCIError.field("linux.maskedPaths", "the host's /dev/null is not the null device (char 1:3)")
            }
            nullTrees.append(tree)
        }
    }

    /// Detached clones (open_tree) of the container's cgroup directories:
    /// each v1 controller's (name, tree), or ("", tree) on pure v2.
    var cgroupTrees: [(String, OwnedFD)] = []

    func openCgroupTrees(_ c: Container) throws {
        let cg = try c.status().cgroup.split(separator: "/").joined(separator: "/")
        guard !cg.isEmpty else { throw OCIError.field("mounts (cgroup)", "ctrobjd reports no cgroup for the container") }
        func tree(_ path: String) throws -> OwnedFD {
            let fd = ccs_open_tree(AT_FDCWD, path, UInt32(CCS_OPEN_TREE_CLONE) | UInt32(O_CLOEXEC))
            guard fd >= 0 else { throw OCIError.field("mounts (cgroup)", "open_tree \(path): \(errnoText(errno))") }
            return OwnedFD(fd)
        }
        if Sys.exists("/sys/fs/cgroup/cgroup.controllers") {
            cgroupTrees = [("", try tree("/sys/fs/cgroup/\(cg)"))]
            return
        }
        // Controllers where ctrobjd gives the container no cgroup of its own
        // (blkio, devices, freezer … on this hybrid host): the one init is
        // in, which is this process's, as runc shows its container's.
        var own: [String: String] = [:]
        for line in ((try? Sys.readFile("/proc/self/cgroup")) ?? "").split(separator: "\n") {
            let f = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard f.count == 3, !f[1].isEmpty else { continue }
            for ctrl in f[1].split(separator: ",") {
                own[ctrl.hasPrefix("name=") ? String(ctrl.dropFirst(5)) : String(ctrl)] = String(f[2])
            }
        }
        for e in Sys.listDirectory("/sys/fs/cgroup").sorted() where e != "unified" && !e.hasPrefix(".") {
            var st = stat()
            guard lstat("/sys/fs/cgroup/\(e)", &st) == 0, st.st_mode & S_IFMT == S_IFDIR else { continue }
            if Sys.exists("/sys/fs/cgroup/\(e)/\(cg)") {
                cgroupTrees.append((e, try tree("/sys/fs/cgroup/\(e)/\(cg)")))
            } else if let mine = e.split(separator: ",").lazy.compactMap({ own[String($0)] }).first {
                cgroupTrees.append((e, try tree("/sys/fs/cgroup/\(e)\(mine)")))
            }
        }
    }

    /// The default /dev nodes and links (when /dev is a mount of the
    /// config's), and linux.devices.
    func addDefaultDevices(_ c: Container, _ linux: Spec.Linux) throws {
        let hasDev = (spec.mounts ?? []).contains { $0.destination == "/dev" }
        var devices: [(String, String, Int64, Int64, UInt32, UInt32, UInt32)] = [] // path type major minor mode uid gid
        if hasDev {
            for (n, maj, min) in [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)] {
                devices.append(("/dev/\(n)", "c", Int64(maj), Int64(min), 0o666, 0, 0))
            }
        }
        for d in linux.devices ?? [] {
            devices.removeAll { $0.0 == d.path }
            devices.append((d.path, d.type, d.major ?? 0, d.minor ?? 0, d.fileMode ?? 0o666, d.uid ?? 0, d.gid ?? 0))
        }
        if ownUserNS && !devices.isEmpty { try flushInside() }
        for (path, type, maj, min, mode, uid, gid) in devices {
            let parent = path.split(separator: "/").dropLast().joined(separator: "/")
            if ownUserNS {
                // No mknod in a user namespace: the host's node, bound.
                if !parent.isEmpty { try mkdirs(c, parent) }
                try touch(c, path)
                try c.mount(source: path, target: path, fstype: nil, flags: Tables.MS_BIND)
                continue
            }
            if !parent.isEmpty { op(OCI_OP_MKDIR, "/" + parent) }
            let t: mode_t = type == "b" ? S_IFBLK : type == "p" ? S_IFIFO : S_IFCHR
            let dev = makedev(UInt32(maj), UInt32(min))
            op(OCI_OP_MKNOD, path, mode: t | mode_t(mode & 0o7777), dev: dev, uid: uid, gid: gid)
        }
        if hasDev {
            for (target, link) in [("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"), ("/proc/self/fd/1", "/dev/stdout"),
                                   ("/proc/self/fd/2", "/dev/stderr")] {
                op(OCI_OP_SYMLINK, link, data: target)
            }
            if (spec.mounts ?? []).contains(where: { $0.destination == "/dev/pts" }) {
                op(OCI_OP_SYMLINK, "/dev/ptmx", data: "pts/ptmx")
            }
            op(OCI_OP_MKDIR, "/dev/shm")
        }
    }
}

func makedev(_ major: UInt32, _ minor: UInt32) -> dev_t {
    let ma = dev_t(major), mi = dev_t(minor)
    return ((ma & 0xfffff000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffffff00) << 12) | (mi & 0xff)
}
