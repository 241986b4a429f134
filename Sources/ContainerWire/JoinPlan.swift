import CShim
import ContainerSystem

/// What a process needs to join a container, as ctrobjd hands it out with
/// fork.prepare. Fields: "userns" (index of the fd or -1), "ns" (comma list
/// of kind:index), "pidns" (none / new / index), "cgroups" (comma list of
/// indexes), "root" (1 when the joiner becomes the container's root),
/// "cgroupjoin" ("request": no cgroup fds; the joiner asks ctrobjd with
/// op cgroup.join, as a non-root caller must), "cgroupdir" (index of the
/// cgroup v2 directory fd: pure v2, the joiner is born there with
/// clone3(CLONE_INTO_CGROUP) and writes no cgroup.procs), "capbnd" (hex
/// capability bounding set) and "nnp" (1: no_new_privs): an upcall's
/// program gets no more privilege than the container's init.
public struct JoinPlan: Sendable, Equatable {
    public enum PidNS: Equatable, Sendable { case none, new, join(Int) }
    public var userns: Int?
    public var namespaces: [(NamespaceKind, Int)]
    public var pidns: PidNS
    public var cgroups: [Int]
    public var becomeRoot: Bool
    /// Make the container's cgroup namespace (rooted at its cgroup) here,
    /// for its init: it is born with init, as the pid namespace is.
    public var newCgroupNS: Bool
    /// Join the cgroup by a cgroup.join request (no cgroup.procs fds).
    public var cgroupJoinRequest: Bool
    /// Pure v2: the cgroup directory's fd index, for CLONE_INTO_CGROUP.
    public var cgroupDir: Int?
    /// The privilege of the container's init, which an upcall's program
    /// (request-key, a core handler) may not exceed: its capability bounding
    /// set and its no_new_privs. nil: the joiner keeps what it has (the
    /// owner's own exec).
    public var privilegeLimit: PrivilegeLimit?

    public struct PrivilegeLimit: Sendable, Equatable {
        public var capBounding: UInt64
        public var noNewPrivs: Bool
        public init(capBounding: UInt64, noNewPrivs: Bool) {
            self.capBounding = capBounding
            self.noNewPrivs = noNewPrivs
        }
    }

    public init(userns: Int?, namespaces: [(NamespaceKind, Int)], pidns: PidNS, cgroups: [Int], becomeRoot: Bool,
                newCgroupNS: Bool = false, cgroupJoinRequest: Bool = false, cgroupDir: Int? = nil) {
        self.cgroupJoinRequest = cgroupJoinRequest
        self.cgroupDir = cgroupDir
        self.userns = userns
        self.namespaces = namespaces
        self.pidns = pidns
        self.cgroups = cgroups
        self.becomeRoot = becomeRoot
        self.newCgroupNS = newCgroupNS
    }

    public static func == (a: JoinPlan, b: JoinPlan) -> Bool {
        a.userns == b.userns && a.pidns == b.pidns && a.cgroups == b.cgroups && a.becomeRoot == b.becomeRoot
            && a.newCgroupNS == b.newCgroupNS && a.cgroupJoinRequest == b.cgroupJoinRequest && a.cgroupDir == b.cgroupDir
            && a.privilegeLimit == b.privilegeLimit
            && a.namespaces.map { "\($0.0.rawValue):\($0.1)" } == b.namespaces.map { "\($0.0.rawValue):\($0.1)" }
    }

    public var fields: [String: String] {
        let pid: String
        switch pidns {
        case .none: pid = "none"
        case .new: pid = "new"
        case .join(let i): pid = "\(i)"
        }
        var f = [
            "userns": "\(userns ?? -1)",
            "ns": namespaces.map { "\($0.0.rawValue):\($0.1)" }.joined(separator: ","),
            "pidns": pid,
            "cgroups": cgroups.map(String.init).joined(separator: ","),
            "root": becomeRoot ? "1" : "0",
            "cgroupns": newCgroupNS ? "new" : "",
            "cgroupjoin": cgroupJoinRequest ? "request" : "",
            "cgroupdir": cgroupDir.map(String.init) ?? "",
        ]
        if let l = privilegeLimit {
            f["capbnd"] = String(l.capBounding, radix: 16)
            f["nnp"] = l.noNewPrivs ? "1" : "0"
        }
        return f
    }

    public init(fields m: Message, fdCount: Int) throws {
        func index(_ s: Substring) throws -> Int {
            guard let i = Int(s), i >= 0, i < fdCount else {
                throw ContainerError(.protocolError, "join plan names fd \(s) of \(fdCount)")
            }
            return i
        }
        let u = m.int("userns") ?? -1
        userns = u >= 0 ? try index(Substring("\(u)")) : nil
        namespaces = try (m["ns"] ?? "").split(separator: ",").map { item in
            let parts = item.split(separator: ":")
            guard parts.count == 2, let kind = NamespaceKind(rawValue: String(parts[0])) else {
                throw ContainerError(.protocolError, "bad namespace item \(item)")
            }
            return (kind, try index(parts[1]))
        }
        switch m["pidns"] ?? "none" {
        case "none": pidns = .none
        case "new": pidns = .new
        case let s: pidns = .join(try index(Substring(s)))
        }
        cgroups = try (m["cgroups"] ?? "").split(separator: ",").map { try index($0) }
        becomeRoot = m["root"] == "1"
        newCgroupNS = m["cgroupns"] == "new"
        cgroupJoinRequest = m["cgroupjoin"] == "request"
        if let d = m["cgroupdir"], !d.isEmpty { cgroupDir = try index(Substring(d)) } else { cgroupDir = nil }
        if let b = m["capbnd"], !b.isEmpty {
            guard b.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) || ($0 >= 0x41 && $0 <= 0x46) }),
                  let v = UInt64(b, radix: 16) else {
                throw ContainerError(.protocolError, "join plan: bad capability set \(b)")
            }
            privilegeLimit = PrivilegeLimit(capBounding: v, noNewPrivs: m["nnp"] == "1")
        } else {
            privilegeLimit = nil
        }
    }
}

extension JoinPlan {
    /// The C plan for ccs_join_fork, its fds taken from `fds` (which must
    /// stay open until the fork returns). Exec fields are left empty. A plan
    /// that joins by cgroup.join needs the container fd and the daemon's socket.
    public func cPlan(fds: [OwnedFD], containerFD: CInt = -1, daemonPath: String = DaemonAddress.socketPath()) -> ccs_join_plan {
        var p = ccs_join_plan()
        if cgroupJoinRequest { ccs_plan_set_cgroup_join(&p, containerFD, daemonPath) }
        if let d = cgroupDir {
            p.into_cgroup = 1
            p.cgroup_dir_fd = fds[d].raw
        }
        p.userns_fd = userns.map { fds[$0].raw } ?? -1
        withUnsafeMutableBytes(of: &p.ns_fds) { raw in
            let a = raw.bindMemory(to: CInt.self)
            for (i, item) in namespaces.prefix(Int(CCS_MAX_NS)).enumerated() { a[i] = fds[item.1].raw }
        }
        withUnsafeMutableBytes(of: &p.ns_types) { raw in
            let a = raw.bindMemory(to: CInt.self)
            for (i, item) in namespaces.prefix(Int(CCS_MAX_NS)).enumerated() { a[i] = item.0.cloneFlag }
        }
        p.ns_count = CInt(min(namespaces.count, Int(CCS_MAX_NS)))
        switch pidns {
        case .none: p.pidns_mode = 0; p.pidns_fd = -1
        case .new: p.pidns_mode = 1; p.pidns_fd = -1
        case .join(let i): p.pidns_mode = 2; p.pidns_fd = fds[i].raw
        }
        withUnsafeMutableBytes(of: &p.cgroup_procs_fds) { raw in
            let a = raw.bindMemory(to: CInt.self)
            for (i, idx) in cgroups.prefix(Int(CCS_MAX_CGROUPS)).enumerated() { a[i] = fds[idx].raw }
        }
        p.cgroup_count = CInt(min(cgroups.count, Int(CCS_MAX_CGROUPS)))
        p.become_root = becomeRoot ? 1 : 0
        if let l = privilegeLimit {
            p.limit_privileges = 1
            p.cap_bounding = l.capBounding
            p.no_new_privs = l.noNewPrivs ? 1 : 0
        }
        p.unshare_cgroup = newCgroupNS ? 1 : 0
        p.chdir_root = 1
        p.path = nil
        p.stdio = (-1, -1, -1)
        p.keep_fd = -1
        p.die_with_parent = 0
        p.gate_fd = -1
        return p
    }
}
