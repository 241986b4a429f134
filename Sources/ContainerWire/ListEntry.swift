#if canImport(Glibc)
import Glibc
#endif

/// One container of a `list` page in the compact form (a list request with
/// `compact=1`): the whole entry is one field of the page, its `key=value`
/// pairs separated by the unit separator (0x1F), a `%` or 0x1F in a value
/// written as `%25` or `%1F`. A page of 32 KiB then holds about twice as many
/// containers as one field per pair, and neither side builds a dictionary
/// per entry's field names ("12.ns.net") only to take it apart again.
///
/// | page field | value                                  |
/// |------------|----------------------------------------|
/// | count      | entries in this page                   |
/// | next       | the id to ask after, when more remain  |
/// | 0 … n-1    | one entry: id=5␟name=web␟state=2␟…     |
public enum ListEntry {
    static let separator: Character = "\u{1F}"

    public static func encode(_ pairs: [(String, String)]) -> String {
        var s = ""
        s.reserveCapacity(pairs.count * 24)
        for (k, v) in pairs {
            if !s.isEmpty { s.append(separator) }
            s += k
            s += "="
            if v.utf8.contains(where: { $0 == UInt8(ascii: "%") || $0 == 0x1F }) {
                for ch in v {
                    if ch == "%" { s += "%25" } else if ch == separator { s += "%1F" } else { s.append(ch) }
                }
            } else {
                s += v
            }
        }
        return s
    }

    /// The pairs of one entry; a pair without '=' is skipped. Byte by byte
    /// (see Message.decode).
    public static func decode(_ line: String) -> [String: String] {
        var out: [String: String] = [:]
        out.reserveCapacity(24)
        var line = line
        line.withUTF8 { b in
            var start = 0
            let n = b.count
            while start < n {
                var end = start
                var eq = -1
                while end < n && b[end] != 0x1F {
                    if eq < 0 && b[end] == UInt8(ascii: "=") { eq = end }
                    end += 1
                }
                if eq >= 0 {
                    var v = String(decoding: UnsafeBufferPointer(rebasing: b[(eq + 1)..<end]), as: UTF8.self)
                    if v.utf8.contains(UInt8(ascii: "%")) {
                        v = v.replacing("%1F", with: String(separator)).replacing("%25", with: "%")
                    }
                    out[String(decoding: UnsafeBufferPointer(rebasing: b[start..<eq]), as: UTF8.self)] = v
                }
                start = end + 1
            }
        }
        return out
    }
}
