// Fuzz target RequestRules: ctrobjd's per-op input validation,
// RequestRules.check(_:fdCount:) (Sources/ContainerWire/RequestRules.swift),
// run on every request before any handler sees it (issue 9).
// fuzz-requires: Sources/ContainerWire/RequestRules.swift
// Input: byte 0 = the number of fds that came with the request (mod 12: the
// cap is 8), the rest = the request as it came off the socket.
//   - never traps, whatever the request;
//   - a refusal is a ContainerError with an errno issue 9 names (EOPNOTSUPP
//     unknown op, EPROTO fds, E2BIG/EMSGSIZE size, EINVAL field);
//   - what it accepts is what the protocol table (Ops.swift) and issue 9
//     allow: a known op with at most 8 fds, 64 fields and 4096 bytes a value;
//     only fields the op takes; text without NUL; and each number the handler
//     narrows in its range (pid 1...4194304, signal 1...64, limit which 1...3,
//     create flags UInt32, socket domain/type/protocol and setns nstypes Int32).
//     The per-limit value ranges and policy list bounds are the handlers'
//     (Requests.swift), not checked here.
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// The fields each op takes, from the protocol table in Ops.swift.
let opFields: [String: Set<String>] = [
    Op.create: ["name", "flags", "prepare"], Op.open: ["name", "cloexec"], Op.status: [],
    Op.forkPrepare: ["mode"], Op.forkCommit: ["pid"], Op.forkAbort: [], Op.socket: ["domain", "type", "protocol"],
    Op.root: [], Op.mount: ["source", "target", "fstype", "flags", "data"], Op.setns: ["nstypes"],
    Op.limit: ["which", "value"], Op.stats: [], Op.freeze: [], Op.thaw: [], Op.kill: ["signal"], Op.destroy: [],
    Op.adopt: ["name"], Op.policy: ["core", "modules", "devices"], Op.list: ["after", "compact"], "cgroup.join": [],
]
let textFields: Set<String> = ["name", "source", "target", "fstype", "data", "core", "modules", "devices"]
let refusals: Set<Int32> = [EINVAL, E2BIG, EMSGSIZE, EPROTO, EOPNOTSUPP]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let fdCount = Int(data[0] % 12)
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    guard let m = try? Message.decode(bytes) else { return 0 }
    do {
        try RequestRules.check(m, fdCount: fdCount)
    } catch let e as ContainerError {
        fuzzCheck(refusals.contains(e.errno), "\(m.op): refused with errno \(e.errno) (\(e.message))")
        return 0
    } catch {
        fuzzFail("\(m.op): threw \(type(of: error)), not a ContainerError")
    }
    guard let takes = opFields[m.op] else { fuzzFail("unknown op \(m.op.debugDescription) accepted") }
    fuzzCheck(fdCount <= 8, "\(m.op) accepted with \(fdCount) fds")
    fuzzCheck(m.fields.count <= 64, "\(m.op) accepted with \(m.fields.count) fields")
    for (k, v) in m.fields {
        fuzzCheck(takes.contains(k), "\(m.op) accepted field \(k.debugDescription), which it does not take")
        fuzzCheck(v.utf8.count <= 4096, "\(m.op) accepted \(k) of \(v.utf8.count) bytes")
        if textFields.contains(k) { fuzzCheck(!v.utf8.contains(0), "\(m.op) accepted \(k) with a NUL byte") }
    }

    func number(_ key: String, in range: ClosedRange<Int64>) {
        guard let s = m[key] else { return }
        guard let v = Int64(s) else { fuzzFail("\(m.op): \(key)=\(s.debugDescription) accepted, not a number") }
        fuzzCheck(range.contains(v), "\(m.op): \(key)=\(v) accepted, outside \(range)")
    }
    let int32 = Int64(Int32.min)...Int64(Int32.max)
    switch m.op {
    case Op.limit:
        number("which", in: 1...3)
        number("value", in: Int64.min...Int64.max)
    case Op.socket:
        number("domain", in: 0...Int64(Int32.max))
        number("type", in: int32)
        number("protocol", in: int32)
    case Op.forkCommit:
        number("pid", in: 1...4_194_304)
    case Op.kill:
        number("signal", in: 1...64)
    case Op.setns:
        number("nstypes", in: int32)
    case Op.create:
        fuzzCheck(m["flags"].flatMap { UInt32($0) } != nil, "create: flags=\(m["flags"]?.debugDescription ?? "nil") accepted")
    case "cgroup.join":
        fuzzCheck(m.fields.isEmpty, "cgroup.join accepted with fields \(m.fields.keys.sorted())")
    default:
        break
    }
    return 0
}
