import ArgumentParser
import CShim
import ContainerObject
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// ctrobj: the command line of the container-object API.
struct Ctrobj: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctrobj",
        abstract: "Containers as kernel objects: create, run, inspect and manage them through ctrobjd.",
        subcommands: [Demo.self, Create.self, List.self, Inspect.self, Run.self, Exec.self, Limits.self,
                      Freeze.self, Thaw.self, Kill.self, Remove.self, Policy.self, Adopt.self, OCIHookCommand.self, Install.self, Uninstall.self, Info.self])
}

/// Run a command body and turn ContainerError into one line and exit 1.
func guarded(_ body: () throws -> Void) throws {
    do { try body() } catch let e as ContainerError {
        printErr("ctrobj: \(RequestRules.escaped(e.message))")
        throw ExitCode(1)
    }
}

struct FlagOptions: ParsableArguments {
    @Option(name: .customLong("flags"), help: "container_create flags, e.g. NEW_PID_NS|NEW_NET_NS or 0xff.")
    var flagsText: String?

    @Flag(help: "Every namespace, an empty root (alias for a sealed sandbox).")
    var isolated = false

    /// What create and run make unless told: a copy of the host's mounts and
    /// new pid, net, uts, ipc, cgroup and user namespaces.
    static let usual = ContainerFlags.newFSNS | ContainerFlags.newUTSNS | ContainerFlags.newIPCNS
        | ContainerFlags.newPIDNS | ContainerFlags.newNetNS | ContainerFlags.newCgroupNS | ContainerFlags.newUserNS

    func flags(default d: UInt32) throws -> UInt32 {
        if isolated { return ContainerOptions.isolated.rawValue & ~(ContainerFlags.killOnClose | ContainerFlags.fdCloexec) }
        guard let t = flagsText else { return d }
        guard let v = ContainerFlags.parse(t) else {
            throw ValidationError("unknown flag in \"\(t)\"; known: " + ContainerFlags.names.map(\.1).joined(separator: ", "))
        }
        return v
    }
}

struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a container (it stays until `ctrobj rm`).")
    @Argument var name: String
    @OptionGroup var flagOptions: FlagOptions
    @Option(help: "The container's cgroup, relative to each hierarchy's root (root only; must not exist yet).") var cgroup: String?
    @Flag var json = false

    func run() throws {
        try guarded {
            let flags = try flagOptions.flags(default: FlagOptions.usual)
            let c = try cgroup.map { try Container.create(name, options: ContainerOptions(rawValue: flags), cgroupPath: $0) }
                ?? Container.create(name, options: ContainerOptions(rawValue: flags))
            let s = try c.status()
            print(json ? JSON.object([("name", .string(s.name)), ("id", .int(Int64(s.id)))]).text : "\(s.name) \(s.id)")
        }
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List containers.")
    @Flag var json = false

    func run() throws {
        try guarded {
            let all = try Container.list()
            var flagNames: [UInt32: String] = [:] // a node has few distinct flag sets
            if json {
                // One string for the whole array, no tree of every container first.
                var out = "["
                out.reserveCapacity(all.count * 400)
                for (i, s) in all.enumerated() {
                    if i > 0 { out += "," }
                    let flags = flagNames[s.flags] ?? ContainerFlags.describe(s.flags)
                    flagNames[s.flags] = flags
                    ctrobj.json(s, flagNames: flags).write(to: &out)
                }
                out += "]"
                print(out)
                return
            }
            var rows = [["NAME", "ID", "STATE", "INIT", "OWNER", "FLAGS"]]
            rows.reserveCapacity(all.count + 1)
            for s in all {
                // A name is the owner's text: never raw bytes on root's terminal.
                let flags = flagNames[s.flags] ?? ContainerFlags.describe(s.flags)
                flagNames[s.flags] = flags
                rows.append([RequestRules.escaped(s.name), "\(s.id)", s.state.name, s.initPid == 0 ? "-" : "\(s.initPid)", "\(s.owner)", flags])
            }
            print(table(rows))
        }
    }
}

enum ContainerObjectsCLI {
    static func json(_ s: ContainerStatus) -> JSON { ctrobj.json(s) }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show one container's state, namespaces and statistics.")
    @Argument var name: String
    @Flag var json = false

    func run() throws {
        try guarded {
            let c = try Container.open(name)
            let s = try c.status()
            let st = s.state == .exited ? nil : try? c.stats()
            if json {
                guard case .object(var o) = ctrobj.json(s) else { return }
                if let st {
                    o.append(("stats", .object([("memoryBytes", .int(Int64(st.memoryBytes))),
                                                ("anonMemoryBytes", .int(Int64(st.anonMemoryBytes))), ("pids", .int(Int64(st.pids))),
                                                ("cpuUsageNs", .int(Int64(st.cpuUsageNanos)))])))
                }
                print(JSON.object(o).text)
            } else {
                print(describe(s))
                if let st {
                    print("memory:   \(st.memoryBytes) bytes (anonymous \(st.anonMemoryBytes))\npids:     \(st.pids)\ncpu:      \(st.cpuUsageNanos) ns")
                }
            }
        }
    }
}

struct LimitOptions: ParsableArguments {
    @Option(help: "Memory limit in bytes (suffixes k, m, g; -1 for none).") var memory: String?
    @Option(help: "Maximum number of processes (-1 for none).") var pids: Int64?
    @Option(help: "CPU limit in thousandths of a CPU (500 = half a CPU; -1 for none).") var cpu: Int64?

    var isEmpty: Bool { memory == nil && pids == nil && cpu == nil }

    func apply(_ c: Container) throws {
        if let m = memory {
            guard let v = parseSize(m) else { throw ValidationError("bad memory size \"\(m)\"") }
            try c.setLimit(.memory, v)
        }
        if let p = pids { try c.setLimit(.pids, p) }
        if let x = cpu { try c.setLimit(.cpu, x) }
    }
}

func parseSize(_ s: String) -> Int64? {
    let lower = s.lowercased()
    let mult: Int64
    var digits = Substring(lower)
    switch lower.last {
    case "k": mult = 1 << 10; digits = digits.dropLast()
    case "m": mult = 1 << 20; digits = digits.dropLast()
    case "g": mult = 1 << 30; digits = digits.dropLast()
    default: mult = 1
    }
    guard let v = Int64(digits) else { return nil }
    return v < 0 ? -1 : v * mult
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a container and start its init.",
        discussion: "By default the container gets a copy of the host's mounts with a fresh /proc, and new pid, net, uts, ipc, cgroup and user namespaces.")
    @Argument var name: String
    @OptionGroup var flagOptions: FlagOptions
    @OptionGroup var limits: LimitOptions
    @Option(name: .customLong("bind"), help: "HOST:TARGET bind mount (repeatable).") var binds: [String] = []
    @Option(name: .customLong("copy"), help: "HOST:TARGET file copied into the root (repeatable).") var copies: [String] = []
    @Flag(help: "Return at once; the container keeps running.") var detach = false
    @Flag(help: "Destroy the container when init exits.") var rm = false
    @Option(help: "The container's cgroup, relative to each hierarchy's root (root only; must not exist yet).") var cgroup: String?
    @Argument(parsing: .postTerminator) var command: [String] = []

    func run() throws {
        let cmd = command.first == "--" ? Array(command.dropFirst()) : command
        guard let path = cmd.first else { throw ValidationError("give the command to run after --") }
        try guarded {
            var flags = try flagOptions.flags(default: FlagOptions.usual)
            if rm { flags |= ContainerFlags.killOnClose }
            let c = try cgroup.map { try Container.create(name, options: ContainerOptions(rawValue: flags), cgroupPath: $0) }
                ?? Container.create(name, options: ContainerOptions(rawValue: flags))
            try limits.apply(c)
            for copy in copies {
                let parts = copy.split(separator: ":", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { throw ValidationError("--copy wants HOST:TARGET") }
                try c.mkdirs(String(parts[1].split(separator: "/").dropLast().joined(separator: "/")))
                try c.copyIn(hostPath: parts[0], to: parts[1])
            }
            for bind in binds {
                let parts = bind.split(separator: ":", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { throw ValidationError("--bind wants HOST:TARGET") }
                try c.bindMount(hostPath: parts[0], target: parts[1])
            }
            var spec = ProcessSpec(path, cmd)
            let hasMnt = flags & (ContainerFlags.newFSNS | ContainerFlags.newEmptyFSNS) != 0
            let wantsProc = hasMnt && flags & ContainerFlags.newPIDNS != 0 && flags & ContainerFlags.newEmptyFSNS == 0
            spec.gated = wantsProc
            let p = try c.spawnInit(spec)
            if wantsProc {
                try c.mount(source: "proc", target: "/proc", fstype: "proc", flags: UInt(CCS_MS_NOSUID | CCS_MS_NODEV | CCS_MS_NOEXEC))
                try p.release()
            }
            if detach {
                print("\(name) init pid \(p.pid)")
                return
            }
            let code = try p.waitExitCode()
            if rm { try? c.destroy() }
            throw ExitCode(code)
        }
    }
}

struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a command inside a running container.")
    @Argument var name: String
    @Argument(parsing: .postTerminator) var command: [String] = []

    func run() throws {
        let cmd = command.first == "--" ? Array(command.dropFirst()) : command
        guard let path = cmd.first else { throw ValidationError("give the command to run after --") }
        try guarded {
            let c = try Container.open(name)
            let p = try c.exec(ProcessSpec(path, cmd))
            throw ExitCode(try p.waitExitCode())
        }
    }
}

struct Limits: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Set limits, or show usage when none is given.")
    @Argument var name: String
    @OptionGroup var limits: LimitOptions
    @Flag var json = false

    func run() throws {
        try guarded {
            let c = try Container.open(name)
            try limits.apply(c)
            let s = try c.stats()
            if json {
                print(JSON.object([("memoryBytes", .int(Int64(s.memoryBytes))), ("anonMemoryBytes", .int(Int64(s.anonMemoryBytes))),
                                   ("pids", .int(Int64(s.pids))), ("cpuUsageNs", .int(Int64(s.cpuUsageNanos)))]).text)
            } else {
                print("memory \(s.memoryBytes) bytes, pids \(s.pids), cpu \(s.cpuUsageNanos) ns, anonymous memory \(s.anonMemoryBytes) bytes")
            }
        }
    }
}

struct Freeze: ParsableCommand {
    @Argument var name: String
    func run() throws { try guarded { try Container.open(name).freeze() } }
}

struct Thaw: ParsableCommand {
    @Argument var name: String
    func run() throws { try guarded { try Container.open(name).thaw() } }
}

struct Kill: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Signal every process of a container.")
    @Argument var name: String
    @Option(help: "Signal number.") var signal: Int32 = SIGKILL
    func run() throws { try guarded { try Container.open(name).kill(signal) } }
}

struct Policy: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Set a container's upcall policy: cores (file/drop/handler), allowed modules and granted devices.")
    @Argument var name: String
    @Option(help: "file (into the container's root, the default), drop, or handler:/PATH (PATH inside the container runs as its root with the core on stdin).")
    var core: String?
    @Option(help: "Comma-separated modules the container may cause to load (empty: none; root only).") var modules: String?
    @Option(help: "Comma-separated host devices (loop3, veth1) whose uevents go into its network namespace (empty: none; root only).")
    var devices: String?
    func run() throws {
        func list(_ s: String?) -> [String]? { s.map { $0.split(separator: ",").map(String.init) } }
        try guarded {
            try Container.open(name).setPolicy(core: core, modules: list(modules), devices: list(devices))
        }
    }
}

struct Adopt: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Register a running process of another runtime (unshare, crun) as a container, so its upcalls are routed.")
    @Argument var name: String
    @Argument var pid: Int32
    func run() throws {
        try guarded {
            let c = try Container.adopt(name, pid: pid)
            let s = try c.status()
            print("\(s.name) \(s.id) \(ContainerFlags.describe(s.flags))")
        }
    }
}

struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Destroy containers: kill, remove cgroup, release namespaces.")
    @Argument var names: [String]
    func run() throws { try guarded { for n in names { try Container.open(n).destroy() } } }
}

Ctrobj.main()
