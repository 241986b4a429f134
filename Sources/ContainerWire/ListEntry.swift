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

    /// The pairs of one entry; a pair without '=' is skipped.
    public static func decode(_ line: String) -> [String: String] {
        var out: [String: String] = [:]
        out.reserveCapacity(24)
        for pair in line.split(separator: separator, omittingEmptySubsequences: true) {
            guard let eq = pair.firstIndex(of: "=") else { continue }
            var v = String(pair[pair.index(after: eq)...])
            if v.utf8.contains(UInt8(ascii: "%")) {
                v = v.replacing("%1F", with: String(separator)).replacing("%25", with: "%")
            }
            out[String(pair[..<eq])] = v
        }
        return out
    }
}
