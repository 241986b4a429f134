import CShim
#if canImport(Glibc)
import Glibc
#endif

/// Facts about a process read from /proc, used only to re-verify a process
/// that a pidfd already pins.
public enum ProcInfo {
    /// Field 22 of /proc/PID/stat: start time in clock ticks since boot.
    public static func startTime(pid: pid_t, procRoot: String = "/proc") -> UInt64? {
        guard let stat = try? Sys.readFile("\(procRoot)/\(pid)/stat") else { return nil }
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let rest = stat[stat.index(after: close)...].split(separator: " ")
        // rest[0] is field 3 (state); start time is field 22.
        guard rest.count > 19, let v = UInt64(rest[19]) else { return nil }
        return v
    }

    /// Whether every uid of the process (real, effective, saved, fs) is `uid`.
    public static func runsOnlyAs(pid: pid_t, _ uid: uid_t, procRoot: String = "/proc") -> Bool {
        let uids = statusField(pid: pid, "Uid", procRoot: procRoot)?.compactMap { uid_t($0) } ?? []
        return uids.count == 4 && uids.allSatisfy { $0 == uid }
    }

    /// Whether the process has begun to exit (PF_EXITING in field 9 of
    /// /proc/PID/stat), or is gone: between the two its cgroup and
    /// namespaces read back as already left.
    public static func isExiting(pid: pid_t, procRoot: String = "/proc") -> Bool {
        guard let stat = try? Sys.readFile("\(procRoot)/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return true }
        let rest = stat[stat.index(after: close)...].split(separator: " ")
        // rest[0] is field 3 (state); flags are field 9.
        guard rest.count > 6, let flags = UInt64(rest[6]) else { return true }
        return flags & UInt64(CCS_PF_EXITING) != 0 || rest[0] == "Z" || rest[0] == "X"
    }

    /// A status field such as "NSpid" or "Uid" from /proc/PID/status.
    public static func statusField(pid: pid_t, _ name: String, procRoot: String = "/proc") -> [String]? {
        statusFields(pid: pid, [name], procRoot: procRoot)?[name]
    }

    /// Several /proc/PID/status fields from one read (nil: no such process);
    /// a field the file lacks is absent from the result.
    public static func statusFields(pid: pid_t, _ names: Set<String>, procRoot: String = "/proc") -> [String: [String]]? {
        guard let text = try? Sys.readFile("\(procRoot)/\(pid)/status") else { return nil }
        var out: [String: [String]] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = String(line[..<colon])
            guard names.contains(name) else { continue }
            out[name] = line[line.index(after: colon)...].split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        }
        return out
    }

    /// Whether the process is in `cgroup` in every hierarchy the set uses
    /// (/proc/PID/cgroup as ctrobjd's cgroup namespace sees it).
    public static func isInCgroup(pid: pid_t, _ cgroup: CgroupSet, procRoot: String = "/proc") -> Bool {
        guard let bytes = try? Sys.readBytes("\(procRoot)/\(pid)/cgroup") else { return false }
        let want = "/" + cgroup.relativePath
        let hierarchies = Set(cgroup.layout.hierarchies)
        let used = Set(cgroup.layout.v1Mounts.filter { hierarchies.contains($0.value) }.keys)
        var matched = 0
        for line in cgroupLines(bytes) {
            let relevant = line.isV2 ? cgroup.layout.v2Mount != nil : line.controllers.contains { used.contains($0) }
            guard relevant else { continue }
            if line.path != want { return false }
            matched += 1
        }
        return matched > 0
    }

    /// One line of /proc/PID/cgroup: "HIERARCHY-ID:CONTROLLERS:PATH";
    /// cgroup v2's is "0::PATH".
    public struct CgroupLine: Sendable, Equatable {
        public var hierarchyID: String
        public var controllers: [String]
        public var path: String
        /// The unified (v2) hierarchy's line.
        public var isV2: Bool { hierarchyID == "0" && controllers.isEmpty }
    }

    /// The lines of a /proc/PID/cgroup file: the one reader of its format.
    /// A line that is not three fields is skipped.
    public static func cgroupLines(_ bytes: [UInt8]) -> [CgroupLine] {
        var out: [CgroupLine] = []
        forEachCgroupLine(bytes) { id, controllers, path in
            out.append(CgroupLine(hierarchyID: String(decoding: id, as: UTF8.self),
                                  controllers: controllers.split(separator: UInt8(ascii: ",")).map { String(decoding: $0, as: UTF8.self) },
                                  path: String(decoding: path, as: UTF8.self)))
            return true
        }
        return out
    }

    /// The cgroup v2 path ("/ctrobj/c5") in a /proc/PID/cgroup file, nil if
    /// it has no v2 line. Stops at that line, allocating nothing for the
    /// others: it runs on every core's and key request's path.
    public static func cgroupV2Path(_ bytes: [UInt8]) -> String? {
        var found: String?
        forEachCgroupLine(bytes) { id, controllers, path in
            guard id.elementsEqual("0".utf8) && controllers.isEmpty else { return true }
            found = String(decoding: path, as: UTF8.self)
            return false
        }
        return found
    }

    /// The cgroup v2 path of a process, nil if it has none (or is gone).
    public static func cgroupV2Path(pid: pid_t, procRoot: String = "/proc") -> String? {
        (try? Sys.readBytes("\(procRoot)/\(pid)/cgroup", limit: 1 << 16)).flatMap { cgroupV2Path($0) }
    }

    /// Each line's three fields, until `body` returns false.
    static func forEachCgroupLine(_ bytes: [UInt8], _ body: (ArraySlice<UInt8>, ArraySlice<UInt8>, ArraySlice<UInt8>) -> Bool) {
        var start = 0
        while start < bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != 0x0a { end += 1 }
            let line = bytes[start..<end]
            start = end + 1
            guard let c1 = line.firstIndex(of: UInt8(ascii: ":")),
                  let c2 = line[(c1 + 1)...].firstIndex(of: UInt8(ascii: ":")) else { continue }
            if !body(line[..<c1], line[(c1 + 1)..<c2], line[(c2 + 1)...]) { return }
        }
    }

    /// The process's pid in its innermost pid namespace (last NSpid field).
    public static func innermostPid(pid: pid_t, procRoot: String = "/proc") -> pid_t? {
        statusField(pid: pid, "NSpid", procRoot: procRoot)?.last.flatMap { pid_t($0) }
    }

    public static func comm(pid: pid_t) -> String? {
        (try? Sys.readFile("/proc/\(pid)/comm"))?.trimmingSuffixNewline()
    }

    /// The rest of the first line of `bytes` that starts with `prefix`.
    public static func line(in bytes: [UInt8], startingWith prefix: [UInt8]) -> ArraySlice<UInt8>? {
        var start = 0
        while start < bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != 0x0a { end += 1 }
            if end - start >= prefix.count && bytes[start..<(start + prefix.count)].elementsEqual(prefix) {
                return bytes[(start + prefix.count)..<end]
            }
            start = end + 1
        }
        return nil
    }

    /// The arguments of a process ([] when it is gone or a kernel thread).
    public static func cmdline(pid: pid_t) -> [String] {
        guard let text = try? Sys.readFile("/proc/\(pid)/cmdline") else { return [] }
        return text.split(separator: "\0", omittingEmptySubsequences: false).dropLast().map(String.init)
    }
}

extension String {
    public func trimmingSuffixNewline() -> String {
        var s = self
        while s.hasSuffix("\n") { s.removeLast() }
        return s
    }
}
