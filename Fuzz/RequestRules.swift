// Fuzz target RequestRules: ctrobjd's per-op input validation,
// RequestRules.check(_:fdCount:) (Sources/ContainerWire/RequestRules.swift),
// run on every request before any handler sees it (issue 9; the rules are
// /work/contract.md's, docs/security.md).
// fuzz-requires: Sources/ContainerWire/RequestRules.swift
// Input: byte 0 = the number of fds that came with the request (mod 12: the
// cap is 8), the rest = the request as it came off the socket.
//   - never traps, whatever the request;
//   - a refusal is a ContainerError with an errno the contract names;
//   - what it accepts is within the contract's bounds: at most 8 fds, 64
//     fields, 4096 bytes a value; a known op; and each number the op takes in
//     its range.
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

let knownOps: Set<String> = [
    Op.create, Op.open, Op.status, Op.forkPrepare, Op.forkCommit, Op.forkAbort, Op.socket, Op.root, Op.mount,
    Op.setns, Op.limit, Op.stats, Op.freeze, Op.thaw, Op.kill, Op.destroy, Op.policy, Op.adopt, Op.list,
    "cgroup.join",
]
let refusals: Set<Int32> = [EINVAL, E2BIG, EMSGSIZE, EPROTO, EOPNOTSUPP, EBADF]

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
    fuzzCheck(fdCount <= 8, "\(m.op) accepted with \(fdCount) fds")
    fuzzCheck(m.fields.count <= 64, "\(m.op) accepted with \(m.fields.count) fields")
    for (k, v) in m.fields { fuzzCheck(v.utf8.count <= 4096, "\(m.op) accepted \(k) of \(v.utf8.count) bytes") }
    fuzzCheck(knownOps.contains(m.op), "unknown op \(m.op.debugDescription) accepted")

    func number(_ key: String, in range: ClosedRange<Int64>, orMinusOne: Bool = false) {
        guard let s = m[key] else { return }
        guard let v = Int64(s) else { fuzzFail("\(m.op): \(key)=\(s.debugDescription) accepted, not a number") }
        fuzzCheck(range.contains(v) || (orMinusOne && v == -1), "\(m.op): \(key)=\(v) accepted, outside \(range)")
    }
    switch m.op {
    case Op.limit:
        number("which", in: 1...3)
        if let which = m["which"].flatMap({ Int64($0) }) {
            switch which {
            case 1: number("value", in: 0...(1 << 53), orMinusOne: true)
            case 2: number("value", in: 1...4_194_304, orMinusOne: true)
            default: number("value", in: 1...1_000_000, orMinusOne: true)
            }
        }
    case Op.socket:
        number("domain", in: 0...63)
        number("type", in: Int64(Int32.min)...Int64(Int32.max))
        number("protocol", in: Int64(Int32.min)...Int64(Int32.max))
    case Op.forkCommit:
        number("pid", in: 1...4_194_304)
    case Op.kill:
        number("signal", in: 1...64)
    case Op.setns:
        number("nstypes", in: Int64(Int32.min)...Int64(Int32.max))
    case Op.create, Op.mount:
        number("flags", in: 0...Int64(UInt32.max))
    case Op.policy:
        fuzzCheck((m["core"]?.utf8.count ?? 0) <= 4096, "policy: core of \(m["core"]!.utf8.count) bytes accepted")
        for key in ["modules", "devices"] {
            let names = (m[key] ?? "").split(separator: ",")
            fuzzCheck(names.count <= 64, "policy: \(names.count) \(key) accepted")
            for n in names { fuzzCheck(n.utf8.count <= 64, "policy: \(key) name of \(n.utf8.count) bytes accepted") }
        }
    case "cgroup.join":
        fuzzCheck(m.fields.isEmpty, "cgroup.join accepted with fields \(m.fields.keys.sorted())")
    default:
        break
    }
    return 0
}
