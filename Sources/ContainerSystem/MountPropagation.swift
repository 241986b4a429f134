import CShim
#if canImport(Glibc)
import Glibc
#endif

/// Mount propagation seen from /proc/self/mountinfo. On a systemd host every
/// mount is shared (`mount --make-rshared /`), and a bind mount of a mount
/// namespace's nsfs file cannot propagate (the kernel refuses to copy one
/// into a peer or slave: EINVAL), so where namespaces are pinned must be a
/// private mount of its own.
public enum MountPropagation {
    /// The mountinfo line of the mount that holds `path` (the longest mount
    /// point that is `path` or an ancestor; the last one mounted there).
    static func holdingMount(_ path: String, mountinfo: String) -> [Substring]? {
        var best: [Substring]?
        var bestLength = -1
        for line in mountinfo.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 6 else { continue }
            let mp = unescape(fields[4])
            let covers = mp == "/" || path == mp || path.hasPrefix(mp + "/")
            if covers && mp.count >= bestLength {
                best = fields
                bestLength = mp.count
            }
        }
        return best
    }

    /// mountinfo writes space, tab, newline and backslash as \ooo.
    static func unescape(_ s: Substring) -> String {
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 3 < b.count,
               let v = UInt8(String(decoding: b[(i + 1)..<min(i + 4, b.count)], as: UTF8.self), radix: 8) {
                out.append(v)
                i += 4
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether the mount holding `path` propagates to or from others
    /// (shared:N or master:N among its optional fields).
    public static func propagates(_ path: String, mountinfo: String? = nil) -> Bool {
        let text = mountinfo ?? ((try? Sys.readFile("/proc/self/mountinfo", limit: 1 << 24)) ?? "")
        guard let fields = holdingMount(path, mountinfo: text) else { return false }
        for f in fields.dropFirst(6) {
            if f == "-" { break }
            if f.hasPrefix("shared:") || f.hasPrefix("master:") { return true }
        }
        return false
    }

    /// Make `dir` a private mount of its own (bound onto itself) when the
    /// mount that holds it propagates. Returns whether it did.
    @discardableResult
    public static func makePrivateIfPropagating(_ dir: String) throws -> Bool {
        guard propagates(dir) else { return false }
        if ccs_bind_mount(dir, dir) < 0 { throw ContainerError.sys("mount --bind \(dir) \(dir)") }
        if ccs_make_private(dir) < 0 { throw ContainerError.sys("mount --make-rprivate \(dir)") }
        return true
    }
}
