/// Which config.json fields ctrobj-oci honours. Every key of the objects it
/// reads is checked here: a key it does not know, or one it knows but cannot
/// honour, set to anything but its zero value, fails `create` with the
/// field's JSON path. Nothing is dropped silently. docs/oci.md has the table.
public struct OCIError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }

    static func field(_ path: String, _ why: String) -> OCIError {
        OCIError("config.json: \(path): \(why)")
    }
}

enum Validate {
    /// known: honoured keys; refused: keys understood but not honoured (reason).
    struct Object {
        var known: Set<String>
        var refused: [String: String] = [:]
        /// A refused key is accepted at this value, which changes nothing.
        var neutral: [String: Double] = [:]
    }

    static let notHere = "not supported by ctrobj-oci"

    static let top = Object(known: ["ociVersion", "process", "root", "hostname", "domainname", "mounts", "hooks", "annotations", "linux"],
                            refused: ["solaris": "Solaris containers are " + notHere, "windows": "Windows containers are " + notHere,
                                      "vm": "VM-based containers are " + notHere, "zos": "z/OS containers are " + notHere])
    static let process = Object(known: ["terminal", "consoleSize", "user", "args", "env", "cwd", "capabilities", "rlimits",
                                        "noNewPrivileges", "oomScoreAdj"],
                                refused: ["apparmorProfile": "AppArmor is " + notHere + " (this host runs none)",
                                          "selinuxLabel": "SELinux is " + notHere + " (this host runs none)",
                                          "ioPriority": "I/O priorities are " + notHere,
                                          "scheduler": "scheduling policies are " + notHere,
                                          "execCPUAffinity": "CPU affinity is " + notHere,
                                          "commandLine": "a Windows command line is " + notHere])
    static let user = Object(known: ["uid", "gid", "umask", "additionalGids"], refused: ["username": "a Windows user name is " + notHere])
    static let linux = Object(known: ["namespaces", "uidMappings", "gidMappings", "devices", "cgroupsPath", "resources", "sysctl",
                                      "seccomp", "rootfsPropagation", "maskedPaths", "readonlyPaths"],
                              refused: ["mountLabel": "SELinux mount labels are " + notHere,
                                        "intelRdt": "Intel RDT is " + notHere,
                                        "personality": "execution domains are " + notHere,
                                        "timeOffsets": "time namespace offsets are " + notHere,
                                        "memoryPolicy": "NUMA memory policies are " + notHere,
                                        "netDevices": "moving network devices is " + notHere])
    static let resources = Object(known: ["devices", "memory", "cpu", "pids"],
                                  refused: ["blockIO": "ctrobjd's container cgroup has no blkio limit",
                                            "hugepageLimits": "ctrobjd's container cgroup has no hugetlb limit",
                                            "network": "ctrobjd's container cgroup has no net_cls/net_prio",
                                            "rdma": "ctrobjd's container cgroup has no rdma limit",
                                            "unified": "raw cgroup v2 files are not written behind ctrobjd"])
    static let memory = Object(known: ["limit", "swap", "useHierarchy", "checkBeforeUpdate"],
                               refused: ["reservation": "ctrobjd sets only memory limits (container_set_limit)",
                                         "kernel": "kernel memory limits are gone from cgroups",
                                         "kernelTCP": "kernel TCP memory limits are gone from cgroups",
                                         "swappiness": "ctrobjd sets only memory limits (container_set_limit)",
                                         "disableOOMKiller": "ctrobjd sets only memory limits (container_set_limit)"])
    static let cpu = Object(known: ["quota", "period"],
                            refused: ["shares": "ctrobjd sets CPU bandwidth only (container_set_limit CPU)",
                                      "burst": "ctrobjd sets CPU bandwidth only", "realtimeRuntime": "real-time CPU time is " + notHere,
                                      "realtimePeriod": "real-time CPU time is " + notHere, "cpus": "cpusets are " + notHere,
                                      "mems": "cpusets are " + notHere, "idle": "SCHED_IDLE cgroups are " + notHere],
                            // 1024, the kernel's default weight, is what containerd's ctr
                            // writes for every container: it asks for nothing.
                            neutral: ["shares": 1024])
    static let seccomp = Object(known: ["defaultAction", "defaultErrnoRet", "architectures", "flags", "syscalls"],
                                refused: ["listenerPath": "seccomp user notification is " + notHere,
                                          "listenerMetadata": "seccomp user notification is " + notHere])
    static let mount = Object(known: ["destination", "type", "source", "options"],
                              refused: ["uidMappings": "id-mapped mounts are " + notHere, "gidMappings": "id-mapped mounts are " + notHere])
    static let hooks = Object(known: ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"])
    static let root = Object(known: ["path", "readonly"])

    static func check(_ v: JSONValue?, _ o: Object, _ path: String) throws {
        guard let v else { return }
        for k in v.objectKeys {
            let value = v[k] ?? .null
            if o.known.contains(k) { continue }
            let p = path.isEmpty ? k : "\(path).\(k)"
            if let why = o.refused[k] {
                if value.isEmpty { continue }
                if case .number(let n) = value, o.neutral[k] == n { continue }
                throw OCIError.field(p, why)
            }
            if k.hasPrefix("_") || k == "comment" { continue }
            throw OCIError.field(p, "unknown field; ctrobj-oci does not know how to honour it")
        }
    }

    /// Check the document's keys; the typed decode did the types.
    static func keys(_ doc: JSONValue) throws {
        try check(doc, top, "")
        try check(doc["process"], process, "process")
        try check(doc["process"]?["user"], user, "process.user")
        try check(doc["root"], root, "root")
        try check(doc["hooks"], hooks, "hooks")
        for (i, m) in (doc["mounts"]?.arrayValue ?? []).enumerated() { try check(m, mount, "mounts[\(i)]") }
        let l = doc["linux"]
        try check(l, linux, "linux")
        try check(l?["resources"], resources, "linux.resources")
        try check(l?["resources"]?["memory"], memory, "linux.resources.memory")
        try check(l?["resources"]?["cpu"], cpu, "linux.resources.cpu")
        try check(l?["seccomp"], seccomp, "linux.seccomp")
    }
}
