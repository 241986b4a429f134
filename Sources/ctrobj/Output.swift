import ContainerObject
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

func json(_ s: ContainerStatus) -> JSON {
    var o: [(String, JSON)] = [
        ("name", .string(s.name)), ("id", .int(Int64(s.id))), ("state", .string(s.state.name)),
        ("flags", .string(ContainerFlags.describe(s.flags))), ("flagsValue", .int(Int64(s.flags))),
        ("initPid", .int(Int64(s.initPid))), ("owner", .int(Int64(s.owner))), ("created", .int(Int64(s.created))),
        ("cgroup", .string(s.cgroup)),
    ]
    o.append(("exitStatus", s.exitStatus.map { .int(Int64($0)) } ?? .null))
    o.append(("namespaces", .object(s.namespaceInodes.sorted { $0.key < $1.key }.map { ($0.key, .int(Int64($0.value))) })))
    return .object(o)
}

func table(_ rows: [[String]]) -> String {
    guard let first = rows.first else { return "" }
    var widths = first.map(\.count)
    for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
    return rows.map { r in
        r.enumerated().map { i, c in i == r.count - 1 ? c : c + String(repeating: " ", count: widths[i] - c.count) }
            .joined(separator: "  ")
    }.joined(separator: "\n")
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

func printErr(_ s: String) { fputs(s + "\n", stderr) }
