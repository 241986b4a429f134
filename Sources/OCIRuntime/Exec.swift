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

public struct ExecOptions {
    public init() {}
    public var processFile: String?
    public var args: [String] = []
    public var pidFile: String?
    public var detach = false
    public var consoleSocket: String?
    public var tty = false
    public var cwd: String?
    public var env: [String] = []
    public var user: String?
    public var additionalGids: [UInt32] = []
    public var capabilities: [String] = []
    public var noNewPrivs = false
    public var preserveFDs: Int32 = 0
}

extension Runtime {
    /// `exec`: a process joins the running container (its namespaces,
    /// cgroup, pid namespace: ContainerCalls.prepareJoin(enter:)), the C child
    /// sets its credentials and execs.
    public func exec(_ id: String, _ o: ExecOptions) throws -> Int32 {
        let r = try load(id)
        let (st, _) = status(r)
        guard st == .running || st == .created else {
            throw OCIError(st == .paused ? "cannot exec in a paused container (resume it first)" : "cannot exec in a \(st.rawValue) container")
        }
        var p: Spec.Process
        if let f = o.processFile {
            let text: String
            do { text = try Sys.readFile(f, limit: 4 << 20) } catch { throw OCIError("--process \(f): \(error)") }
            do { p = try JSONDecoder().decode(Spec.Process.self, from: Data(text.utf8)) }
            catch let e as DecodingError { throw OCIError("--process \(f): \(Creation.describe(e))") }
            // Its keys as create checks config.json's process: anything it
            // cannot honour is refused by name, never dropped.
            if let doc = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) {
                try Validate.check(doc, Validate.process, "process")
                try Validate.check(doc["user"], Validate.user, "process.user")
            }
        } else {
            guard !o.args.isEmpty else { throw OCIError("exec needs --process or a command") }
            // runc takes the rest from the container's config.json process.
            let base = (try? Sys.readFile("\(r.bundle)/config.json", limit: 16 << 20))
                .flatMap { try? JSONDecoder().decode(Spec.self, from: Data($0.utf8)).process }
            p = base ?? Spec.Process(user: Spec.User(uid: 0, gid: 0), cwd: "/")
            p.args = o.args
            p.terminal = o.tty
            if !o.env.isEmpty { p.env = (p.env ?? []) + o.env }
            if let c = o.cwd { p.cwd = c }
            if let u = o.user {
                let parts = u.split(separator: ":")
                guard let uid = UInt32(parts.first ?? ""), parts.count <= 2, parts.count < 2 || UInt32(parts[1]) != nil else {
                    throw OCIError("--user \(u): uid[:gid] as numbers")
                }
                p.user = Spec.User(uid: uid, gid: parts.count == 2 ? UInt32(parts[1])! : 0)
            }
            if !o.additionalGids.isEmpty { p.user.additionalGids = o.additionalGids }
            if !o.capabilities.isEmpty {
                var caps = p.capabilities ?? Spec.Capabilities(bounding: nil, effective: nil, inheritable: nil, permitted: nil, ambient: nil)
                caps.bounding = (caps.bounding ?? []) + o.capabilities
                caps.effective = (caps.effective ?? []) + o.capabilities
                caps.permitted = (caps.permitted ?? []) + o.capabilities
                p.capabilities = caps
            }
            if o.noNewPrivs { p.noNewPrivileges = true }
        }
        guard let args = p.args, !args.isEmpty else { throw OCIError("process.args: must name a program") }
        if p.terminal == true && o.consoleSocket == nil && o.detach {
            throw OCIError("process.terminal: a detached exec with a terminal needs --console-socket")
        }
        let creds = try Credentials(p, dropMknod: false)
        let c = try Container.open(r.name)
        var sv: [CInt] = [-1, -1]
        guard socketpair(AF_UNIX, CInt(SOCK_SEQPACKET.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0, &sv) == 0 else {
            throw OCIError("socketpair: \(errnoText(errno))")
        }
        let ctl = OwnedFD(sv[0]), childCtl = OwnedFD(sv[1])
        // The container's config: its seccomp profile and /dev/pts. An exec
        // that cannot read it fails rather than run without the profile.
        let bundleSpec: Spec
        do {
            bundleSpec = try JSONDecoder().decode(Spec.self, from: Data(try Sys.readFile("\(r.bundle)/config.json", limit: 16 << 20).utf8))
        } catch {
            throw OCIError("exec: the container's \(r.bundle)/config.json cannot be read (\(error)): its seccomp profile would be lost")
        }
        let devptsInside = (bundleSpec.mounts ?? []).contains { $0.destination == "/dev/pts" && $0.type == "devpts" }
        var master: OwnedFD?, slave: OwnedFD?
        if p.terminal == true && !devptsInside {
            var m: CInt = -1, s: CInt = -1
            guard oci_openpty(&m, &s) == 0 else { throw OCIError("process.terminal: openpty: \(errnoText(errno))") }
            master = OwnedFD(m)
            slave = OwnedFD(s)
        }
        let arena = CArena()
        var cs = oci_child_spec()
        cs.mode = OCI_MODE_EXEC
        cs.ctl_fd = childCtl.raw
        cs.path = arena.string(args[0])
        cs.argv = arena.argv(args)
        cs.envp = arena.argv(p.env ?? [])
        cs.cwd = arena.string(p.cwd)
        creds.apply(to: &cs, arena)
        cs.console_fd = p.terminal == true && devptsInside ? OCI_CONSOLE_INSIDE : slave?.raw ?? -1
        cs.stdio = (-1, -1, -1)
        cs.preserve_fds = o.preserveFDs
        cs.gate_fd = -1
        var sc: [UInt8] = []
        if let s = try bundleSpec.linux?.seccomp.map({ try SeccompProgram($0) }) {
            sc = s.bytes
            cs.seccomp_len = s.length
            cs.seccomp_flags = s.flags
        }
        let scPtr = arena.array(sc)
        if !sc.isEmpty { cs.seccomp_filter = UnsafeRawPointer(scPtr) }
        let prepared = try ContainerCalls.prepareJoin(c.fd.raw, enter: true)
        var plan = prepared.cPlan()
        let cgroupJoin = fastCgroupJoin(&plan)
        var stage: CInt = 0
        let pid = withExtendedLifetime((prepared, arena, sc, childCtl, slave, cgroupJoin)) { oci_spawn(&plan, &cs, &stage) }
        if pid < 0 { let e = errno; throw OCIError("exec in \(id): \(joinStageText(stage)): \(errnoText(e))") }
        childCtl.close()
        slave?.close()
        let pidfd = try Sys.pidfdOpen(pid)
        // EOF: it exec'd; 'T': the pty master (then more); 'E': a step failed.
        var m = oci_msg()
        var buf = [UInt8](repeating: 0, count: 16)
        while true {
            var fd: CInt = -1
            guard oci_ctl_recv_fd(ctl.raw, &m, &buf, buf.count, 60_000, &fd) >= 0 else { break }
            if UInt8(bitPattern: m.tag) == UInt8(ascii: "T") {
                if fd >= 0 { master = OwnedFD(fd) }
                continue
            }
            if fd >= 0 { close(fd) }
            if UInt8(bitPattern: m.tag) == UInt8(ascii: "E") {
                _ = try? Sys.pidfdWait(pidfd.raw)
                throw OCIError("exec in \(id): \(stageField(Int32(m.stage))): \(errnoText(m.value))")
            }
            break
        }
        if let master, let sock = o.consoleSocket {
            guard oci_send_console(sock, master.raw, "/dev/ptmx") == 0 else {
                throw OCIError("--console-socket \(sock): \(errnoText(errno))")
            }
        }
        if let pf = o.pidFile { try writePidFile(pf, pid) }
        if o.detach { return 0 }
        if let master, o.consoleSocket == nil { relay(master, until: pidfd) }
        let s = (try? Sys.pidfdWait(pidfd.raw)) ?? nil ?? 0
        return s & 0x7f == 0 ? (s >> 8) & 0xff : 128 + (s & 0x7f)
    }

    /// `run`: create, start, wait for init, delete; exits with init's status.
    public func run(_ id: String, _ opts: CreateOptions, detach: Bool) throws -> Int32 {
        var o = opts
        o.foreground = !detach
        try StateStore.checkID(id)
        let creation = try Creation(rt: self, id: id, opts: o)
        let record = try creation.run()
        if !detach { heldContainer = creation.container }
        let pidfd: OwnedFD
        do {
            pidfd = try Sys.pidfdOpen(record.pid)
            // start, without reading back the record this process just wrote.
            guard oci_fifo_release(store.fifo(id)) == 0 else {
                throw OCIError("container \"\(id)\": init is not waiting at the start gate: \(errnoText(errno))")
            }
            unlink(store.fifo(id))
            var r = record
            r.started = true
            if !r.poststart.isEmpty {
                try store.save(r)
                for (i, h) in r.poststart.enumerated() {
                    do { try runHook(h, stateJSON(r, status: .running), field: "hooks.poststart[\(i)]") } catch { warn("\(error)") }
                }
            }
        } catch {
            try? delete(id, force: true)
            throw error
        }
        trace("started")
        if detach { return 0 }
        if let master = foregroundConsole { relay(master, until: pidfd) }
        let s = (try? Sys.pidfdWait(pidfd.raw)) ?? nil ?? 0
        trace("exited")
        // The destroy is posted (no wait for ctrobjd's answer: removing
        // the cgroups is its business); then the runtime's own state and
        // the poststop hooks.
        if let c = heldContainer {
            do { try SharedConnection.post(Message(Op.destroy), fds: [c.fd.raw]) }
            catch { store.markDestroy(record.name) }
        }
        try? delete(id, force: true, destroy: heldContainer == nil)
        trace("deleted")
        return s & 0x7f == 0 ? (s >> 8) & 0xff : 128 + (s & 0x7f)
    }

    /// Copy between our stdio and a pty master until the process exits.
    func relay(_ master: OwnedFD, until pidfd: OwnedFD) {
        var fds = [pollfd(fd: 0, events: Int16(POLLIN), revents: 0), pollfd(fd: master.raw, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: pidfd.raw, events: Int16(POLLIN), revents: 0)]
        var buf = [UInt8](repeating: 0, count: 4096)
        var stdinOpen = true
        while true {
            fds[0].fd = stdinOpen ? 0 : -1
            if poll(&fds, 3, -1) < 0 { if errno == EINTR { continue }; return }
            if fds[1].revents & Int16(POLLIN) != 0 {
                let n = read(master.raw, &buf, buf.count)
                if n > 0 { _ = write(1, buf, n) }
            }
            if fds[0].revents & Int16(POLLIN | POLLHUP) != 0 {
                let n = read(0, &buf, buf.count)
                if n > 0 { _ = write(master.raw, buf, n) } else { stdinOpen = false }
            }
            if fds[2].revents & Int16(POLLIN) != 0 {
                // Drain what is left.
                while true {
                    var p = pollfd(fd: master.raw, events: Int16(POLLIN), revents: 0)
                    guard poll(&p, 1, 50) > 0, p.revents & Int16(POLLIN) != 0 else { break }
                    let n = read(master.raw, &buf, buf.count)
                    if n <= 0 { break }
                    _ = write(1, buf, n)
                }
                return
            }
        }
    }
}

extension Spec.Process {
    init(user: Spec.User, cwd: String) {
        self.user = user
        self.cwd = cwd
    }
}

