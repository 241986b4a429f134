/// A string as a JSON string literal (RFC 8259): quotes and backslashes
/// escaped, control characters as \n, \r, \t or \u00XX; everything else as
/// it is (JSON text is UTF-8). The one quoting of the CLI's --json output,
/// the OCI hook's hooks.d file and ctrobj-oci's state and log lines.
public enum JSONText {
    public static func quoted(_ s: String) -> String {
        var out = ""
        quote(s, to: &out)
        return out
    }

    public static func quote(_ s: String, to out: inout String) {
        out += "\""
        if !s.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            out += s
        } else {
            for u in s.unicodeScalars {
                switch u {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                default:
                    if u.value < 0x20 {
                        let h = String(u.value, radix: 16)
                        out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                    } else {
                        out.unicodeScalars.append(u)
                    }
                }
            }
        }
        out += "\""
    }
}
