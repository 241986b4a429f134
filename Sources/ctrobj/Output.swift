import ContainerObject
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

func json(_ s: ContainerStatus, flagNames: String? = nil) -> JSON {
    var o: [(String, JSON)] = [
        ("name", .string(s.name)), ("id", .int(Int64(s.id))), ("state", .string(s.state.name)),
        ("flags", .string(flagNames ?? ContainerFlags.describe(s.flags))), ("flagsValue", .int(Int64(s.flags))),
        ("initPid", .int(Int64(s.initPid))), ("owner", .int(Int64(s.owner))), ("created", .int(Int64(s.created))),
        ("cgroup", .string(s.cgroup)),
    ]
    o.append(("exitStatus", s.exitStatus.map { .int(Int64($0)) } ?? .null))
    o.append(("namespaces", .object(s.namespaceInodes.sorted { $0.key < $1.key }.map { ($0.key, .int(Int64($0.value))) })))
    return .object(o)
}

/// The width of a cell: its bytes when ASCII (a byte scan; counting
/// Characters walks graphemes, which a table of ten thousand rows felt).
func cellWidth(_ s: String) -> Int {
    s.utf8.allSatisfy { $0 < 0x80 } ? s.utf8.count : s.count
}

func table(_ rows: [[String]]) -> String {
    guard let first = rows.first else { return "" }
    var widths = first.map(cellWidth)
    for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], cellWidth(c)) } }
    var out = ""
    for (n, r) in rows.enumerated() {
        if n > 0 { out += "\n" }
        for (i, c) in r.enumerated() {
            if i > 0 { out += "  " }
            out += c
            if i < r.count - 1 && i < widths.count { out += String(repeating: " ", count: max(0, widths[i] - cellWidth(c))) }
        }
    }
    return out
}

func describe(_ s: ContainerStatus) -> String {
    var lines = [
        "name:     \(RequestRules.escaped(s.name))", "id:       \(s.id)", "state:    \(s.state.name)",
        "flags:    \(ContainerFlags.describe(s.flags))", "init pid: \(s.initPid == 0 ? "-" : "\(s.initPid)")",
        "owner:    uid \(s.owner)", "cgroup:   \(s.cgroup)",
    ]
    if let e = s.exitDescription { lines.append("exit:     \(e)") }
    for (k, v) in s.namespaceInodes.sorted(by: { $0.key < $1.key }) { lines.append("ns \(k):\(String(repeating: " ", count: max(1, 7 - k.count)))\(v)") }
    return lines.joined(separator: "\n")
}

func printErr(_ s: String) { Sys.printError(s + "\n") }
