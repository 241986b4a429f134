import ContainerSystem
/// A tiny JSON writer for --json output (no Foundation in the CLI).
indirect enum JSON {
    case string(String), int(Int64), bool(Bool), null
    case array([JSON]), object([(String, JSON)])

    var text: String {
        var out = ""
        write(to: &out)
        return out
    }

    /// Appends into one string: `ls --json` of ten thousand containers
    /// builds no intermediate string per value.
    func write(to out: inout String) {
        switch self {
        case .string(let s): JSON.quote(s, to: &out)
        case .int(let i): out += String(i)
        case .bool(let b): out += b ? "true" : "false"
        case .null: out += "null"
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                v.write(to: &out)
            }
            out += "]"
        case .object(let o):
            out += "{"
            for (i, (k, v)) in o.enumerated() {
                if i > 0 { out += "," }
                JSON.quote(k, to: &out)
                out += ":"
                v.write(to: &out)
            }
            out += "}"
        }
    }

    static func quote(_ s: String, to out: inout String) { JSONText.quote(s, to: &out) }

    static func quote(_ s: String) -> String { JSONText.quoted(s) }
}
