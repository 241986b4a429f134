#if canImport(Glibc)
import Glibc
#endif

/// The global kernel settings the upcall broker registers itself in, saved
/// and restored byte for byte.
public struct KernelSettings: Equatable, Sendable {
    public static let corePatternPath = "/proc/sys/kernel/core_pattern"
    public static let corePipeLimitPath = "/proc/sys/kernel/core_pipe_limit"
    public static let modprobePath = "/proc/sys/kernel/modprobe"
    public static let requestKeyDir = "/etc/request-key.d"

    public var corePattern: String
    public var corePipeLimit: String
    /// nil when the kernel has no module support.
    public var modprobe: String?

    public static func read() throws -> KernelSettings {
        KernelSettings(corePattern: try Sys.readFile(corePatternPath),
                       corePipeLimit: try Sys.readFile(corePipeLimitPath),
                       modprobe: Sys.exists(modprobePath) ? try Sys.readFile(modprobePath) : nil)
    }

    /// Write every setting back exactly as read.
    public func restore() throws {
        try Sys.writeFile(KernelSettings.corePatternPath, corePattern)
        try Sys.writeFile(KernelSettings.corePipeLimitPath, corePipeLimit)
        if let m = modprobe, Sys.exists(KernelSettings.modprobePath) { try Sys.writeFile(KernelSettings.modprobePath, m) }
    }

    /// Serialised as three lines of hex, so any bytes survive.
    public var saved: String {
        [corePattern, corePipeLimit, modprobe ?? ""].map { hex($0) }.joined(separator: "\n") + "\n" + (modprobe == nil ? "nomodules" : "modules") + "\n"
    }

    public init(corePattern: String, corePipeLimit: String, modprobe: String?) {
        self.corePattern = corePattern
        self.corePipeLimit = corePipeLimit
        self.modprobe = modprobe
    }

    public init?(saved text: String) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.count >= 4, let a = unhex(lines[0]), let b = unhex(lines[1]), let c = unhex(lines[2]) else { return nil }
        self.init(corePattern: a, corePipeLimit: b, modprobe: lines[3] == "modules" ? c : nil)
    }

    /// Try a core_pattern: write it, read it back, keep it only if the kernel
    /// kept it. Since 6.16.8/6.17 an invalid pattern is accepted on write and
    /// only shows as different on read. Restores the old value on failure.
    public static func tryCorePattern(_ pattern: String) -> Bool {
        guard let old = try? Sys.readFile(corePatternPath) else { return false }
        if (try? Sys.writeFile(corePatternPath, pattern)) != nil,
           let now = try? Sys.readFile(corePatternPath), now.trimmingSuffixNewline() == pattern {
            return true
        }
        try? Sys.writeFile(corePatternPath, old)
        return false
    }

    /// Whether the kernel knows core_pattern socket mode ("@/path", 6.16+):
    /// such a kernel refuses a relative socket path, an older one takes
    /// "@relative" as a file name. Leaves core_pattern as it was.
    public static func supportsCoreSocket() -> Bool {
        guard let old = try? Sys.readFile(corePatternPath) else { return false }
        defer { try? Sys.writeFile(corePatternPath, old) }
        return !tryCorePattern("@ctrobj-probe-relative")
    }
}

private func hex(_ s: String) -> String {
    let digits = Array("0123456789abcdef")
    var out = ""
    for b in s.utf8 { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
    return out
}

private func unhex(_ s: String) -> String? {
    var bytes: [UInt8] = []
    var it = s.makeIterator()
    while let h = it.next() {
        guard let l = it.next(), let v = UInt8(String([h, l]), radix: 16) else { return nil }
        bytes.append(v)
    }
    return String(decoding: bytes, as: UTF8.self)
}
