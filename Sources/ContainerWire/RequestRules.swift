import ContainerSystem
#if canImport(Glibc)
import Glibc
#endif

/// What ctrobjd accepts, per request, before any handler runs: the fields an
/// op takes (each with its type and range), which of them it needs, and how
/// many fds come with it. Anything else is refused with an error reply and
/// changes nothing; the handlers then read numbers that are known to fit.
///
/// | op            | fields (type, range)                                          | fds  |
/// |---------------|----------------------------------------------------------------|------|
/// | create        | name*, flags* (0...2^32-1), prepare (0/1), cgroup (cgroupPath)  | 0    |
/// | open          | name*, cloexec (0/1)                                            | 0    |
/// | list          | after (0...2^63), compact (0/1: ListEntry)                      | 0    |
/// | adopt         | name*                                                           | 1    |
/// | status, root, stats, freeze, thaw, destroy, cgroup.join | -                     | 1    |
/// | fork.prepare  | mode (init/enter)                                               | 1    |
/// | fork.commit   | pid* (1...4194304)                                              | 1-2  |
/// | fork.abort    | -                                                               | 0-1  |
/// | socket        | domain* (0...255), type*, protocol* (Int32)                     | 1    |
/// | mount         | target*, source, fstype, data (text), flags (0...2^64-1)        | 1-2  |
/// | setns         | nstypes* (1...2^31-1)                                           | 2    |
/// | limit         | which* (1...3), value* (Int64; per limit in the handler)        | 1    |
/// | kill          | signal* (1...64)                                                | 1    |
/// | policy        | core, modules, devices (text)                                   | 1    |
///
/// (* required.) Every request: at most `maxBytes` bytes, `maxFields`
/// fields, values of at most `maxValueBytes` bytes, at most `maxFDs` fds.
public enum RequestRules {
    public static let maxBytes = 65536
    public static let maxFields = 64
    public static let maxValueBytes = 4096
    /// The most fds any request carries; ctrobjd reads up to this many and
    /// refuses (and closes) more.
    public static let maxFDs = 8
    /// The kernel's PID_MAX_LIMIT.
    public static let pidMax: Int64 = 4_194_304

    public enum Field: Sendable {
        case number(ClosedRange<Int64>)
        case unsigned(ClosedRange<UInt64>)
        case text
        case choice([String])
        /// A cgroup path below the hierarchies' roots (`cgroupPath`).
        case cgroupPath
    }

    public struct Rule: Sendable {
        public let fields: [String: Field]
        public let required: Set<String>
        public let fds: ClosedRange<Int>
    }

    static let int32 = Int64(Int32.min)...Int64(Int32.max)
    static let none: [String: Field] = [:]

    public static let rules: [String: Rule] = [
        Op.create: Rule(fields: ["name": .text, "flags": .unsigned(0...UInt64(UInt32.max)), "prepare": .choice(["0", "1"]),
                                "cgroup": .cgroupPath],
                        required: ["name", "flags"], fds: 0...0),
        Op.open: Rule(fields: ["name": .text, "cloexec": .choice(["0", "1"])], required: ["name"], fds: 0...0),
        Op.list: Rule(fields: ["after": .unsigned(0...UInt64(Int64.max)), "compact": .choice(["0", "1"])], required: [], fds: 0...0),
        Op.adopt: Rule(fields: ["name": .text], required: ["name"], fds: 1...1),
        Op.status: Rule(fields: none, required: [], fds: 1...1),
        Op.root: Rule(fields: none, required: [], fds: 1...1),
        Op.stats: Rule(fields: none, required: [], fds: 1...1),
        Op.freeze: Rule(fields: none, required: [], fds: 1...1),
        Op.thaw: Rule(fields: none, required: [], fds: 1...1),
        Op.destroy: Rule(fields: none, required: [], fds: 1...1),
        Op.cgroupJoin: Rule(fields: none, required: [], fds: 1...1),
        Op.forkPrepare: Rule(fields: ["mode": .choice(["init", "enter"])], required: [], fds: 1...1),
        Op.forkCommit: Rule(fields: ["pid": .number(1...pidMax)], required: ["pid"], fds: 1...2),
        Op.forkAbort: Rule(fields: none, required: [], fds: 0...1),
        Op.socket: Rule(fields: ["domain": .number(0...255), "type": .number(int32), "protocol": .number(int32)],
                        required: ["domain", "type", "protocol"], fds: 1...1),
        Op.mount: Rule(fields: ["target": .text, "source": .text, "fstype": .text, "data": .text,
                                "flags": .unsigned(0...UInt64.max)],
                       required: ["target"], fds: 1...2),
        Op.setns: Rule(fields: ["nstypes": .number(1...Int64(Int32.max))], required: ["nstypes"], fds: 2...2),
        Op.limit: Rule(fields: ["which": .number(1...3), "value": .number(Int64.min...Int64.max)],
                       required: ["which", "value"], fds: 1...1),
        Op.kill: Rule(fields: ["signal": .number(1...64)], required: ["signal"], fds: 1...1),
        Op.policy: Rule(fields: ["core": .text, "modules": .text, "devices": .text], required: [], fds: 1...1),
    ]

    /// Check a request's shape; throws the error to answer with.
    public static func check(_ m: Message, fdCount: Int) throws {
        guard let rule = rules[m.op] else {
            let shown = m.op.utf8.count <= 32 ? m.op : String(decoding: m.op.utf8.prefix(32), as: UTF8.self) + "…"
            throw ContainerError(.invalidArgument, "unknown request \"\(escaped(shown))\"", errno: EOPNOTSUPP)
        }
        if m.fields.count > maxFields {
            throw ContainerError(.invalidArgument, "\(m.op): \(m.fields.count) fields, at most \(maxFields)", errno: E2BIG)
        }
        guard rule.fds.contains(fdCount) else {
            let want = rule.fds.lowerBound == rule.fds.upperBound ? "\(rule.fds.lowerBound)" : "\(rule.fds.lowerBound) to \(rule.fds.upperBound)"
            throw ContainerError(.protocolError, "\(m.op): takes \(want) fd(s), got \(fdCount)", errno: EPROTO)
        }
        for name in rule.required where m.fields[name] == nil {
            throw ContainerError(.invalidArgument, "\(m.op): field \(name) is required")
        }
        for (key, value) in m.fields {
            guard let kind = rule.fields[key] else {
                throw ContainerError(.invalidArgument, "\(m.op): unexpected field \"\(escaped(String(key.prefix(32))))\"")
            }
            if value.utf8.count > maxValueBytes {
                throw ContainerError(.invalidArgument, "\(m.op): field \(key) is \(value.utf8.count) bytes, at most \(maxValueBytes)",
                                     errno: E2BIG)
            }
            switch kind {
            case .number(let range):
                guard let v = Int64(value), range.contains(v) else {
                    throw ContainerError(.invalidArgument, "\(m.op): field \(key) must be an integer in \(range.lowerBound)...\(range.upperBound)")
                }
            case .unsigned(let range):
                guard let v = UInt64(value), range.contains(v) else {
                    throw ContainerError(.invalidArgument, "\(m.op): field \(key) must be an integer in \(range.lowerBound)...\(range.upperBound)")
                }
            case .choice(let options):
                guard options.contains(value) else {
                    throw ContainerError(.invalidArgument, "\(m.op): field \(key) must be one of \(options.joined(separator: ", "))")
                }
            case .cgroupPath:
                _ = try cgroupPath(value, field: "\(m.op): field \(key)")
            case .text:
                if value.utf8.contains(0) {
                    throw ContainerError(.invalidArgument, "\(m.op): field \(key) contains a NUL byte")
                }
            }
        }
    }

    /// Limits of a requested cgroup path (create's `cgroup`).
    public static let maxCgroupPathBytes = 1024
    public static let maxCgroupPathComponents = 16

    /// A requested cgroup path, normalised: relative to each hierarchy's
    /// root, without a leading or trailing "/" ("/libpod_parent/libpod-1"
    /// and "libpod_parent/libpod-1/" are both "libpod_parent/libpod-1").
    /// Refused: the root itself, empty components ("a//b"), "." and "..",
    /// control characters (C0, DEL, C1), a component over 255 bytes (NAME_MAX),
    /// more than 16 components or 1024 bytes. Whether the path may be used
    /// (who asks, what exists there) is ctrobjd's decision (CgroupPath.swift).
    public static func cgroupPath(_ raw: String, field: String = "cgroup") throws -> String {
        func bad(_ why: String) -> ContainerError {
            ContainerError(.invalidArgument, "\(field): cgroup path \"\(escaped(String(raw.prefix(64))))\": \(why)")
        }
        guard raw.utf8.count <= maxCgroupPathBytes else { throw bad("longer than \(maxCgroupPathBytes) bytes") }
        if raw.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f || (0x80..<0xa0).contains($0.value) }) {
            throw bad("contains a control character")
        }
        var s = Substring(raw)
        if s.hasPrefix("/") { s = s.dropFirst() }
        if s.hasSuffix("/") { s = s.dropLast() }
        guard !s.isEmpty else { throw bad("names the root cgroup") }
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= maxCgroupPathComponents else { throw bad("more than \(maxCgroupPathComponents) components") }
        for p in parts {
            if p.isEmpty { throw bad("has an empty component") }
            if p == "." || p == ".." { throw bad("has a \"\(p)\" component") }
            if p.utf8.count > 255 { throw bad("has a component longer than 255 bytes") }
        }
        return String(s)
    }

    /// Text from a client, fit for a message, a log line or a terminal:
    /// control characters (C0, DEL, C1) and backslashes as \xNN.
    public static func escaped(_ s: String) -> String {
        func plain(_ u: Unicode.Scalar) -> Bool { u.value >= 0x20 && u.value != 0x7f && !(0x80..<0xa0).contains(u.value) && u != "\\" }
        if s.unicodeScalars.allSatisfy(plain) { return s }
        var out = ""
        for u in s.unicodeScalars {
            if plain(u) {
                out.unicodeScalars.append(u)
            } else {
                out += "\\x" + (u.value < 16 ? "0" : "") + String(u.value, radix: 16)
            }
        }
        return out
    }
}
