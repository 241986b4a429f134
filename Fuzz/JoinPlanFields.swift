// Fuzz target JoinPlanFields: JoinPlan(fields:fdCount:)
// (Sources/ContainerWire/JoinPlan.swift), which the library and the key
// helper run on ctrobjd's fork.prepare / key reply.
// Input: byte 0 = the number of fds that came with the reply (mod 20), the
// rest = the reply as it came off the socket (Message.decode).
//   - never traps;
//   - every index of a parsed plan names one of the fds that came;
//   - a parsed plan survives its own fields: JoinPlan(fields: plan.fields) == plan.
import ContainerSystem
import ContainerWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let fdCount = Int(data[0] % 20)
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    guard let m = try? Message.decode(bytes), let plan = try? JoinPlan(fields: m, fdCount: fdCount) else { return 0 }
    let fds = 0..<fdCount
    if let u = plan.userns { fuzzCheck(fds.contains(u), "userns index \(u) of \(fdCount)") }
    for (kind, i) in plan.namespaces { fuzzCheck(fds.contains(i), "\(kind) index \(i) of \(fdCount)") }
    if case .join(let i) = plan.pidns { fuzzCheck(fds.contains(i), "pidns index \(i) of \(fdCount)") }
    for i in plan.cgroups { fuzzCheck(fds.contains(i), "cgroup index \(i) of \(fdCount)") }
    do {
        let back = try JoinPlan(fields: Message("ok", plan.fields), fdCount: fdCount)
        fuzzCheck(back == plan, "plan changed through its fields: \(plan) -> \(back)")
    } catch {
        fuzzFail("a parsed plan's own fields do not parse: \(error)\n  plan: \(plan)")
    }
    return 0
}
