// Fuzz target CoreFacts: the two readers of a crashing process's facts
// (Sources/ContainerWire/CoreFacts.swift):
//   byte 0 even: CoreFacts(fields:) on a decoded message, what ctrobjd's
//     upcall socket and the spool (<spool>/*.meta) read;
//   byte 0 odd: CoreFacts.pipeArguments on the helper's argv as core_pattern
//     gives it (the rest split at NUL bytes).
//   - never traps (numbers out of range for their type are errors);
//   - parsed facts survive the trip the pipe helper makes to ctrobjd:
//     CoreFacts(fields: decode(encode(Message("core", facts.fields)))) == facts.
import ContainerSystem
import ContainerWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    var facts: CoreFacts
    if data[0] & 1 == 0 {
        guard let m = try? Message.decode(bytes), let f = try? CoreFacts(fields: m) else { return 0 }
        facts = f
    } else {
        let args = bytes.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        guard let parsed = CoreFacts.pipeArguments(args) else { return 0 }
        fuzzCheck(parsed.state == args[1], "state \(parsed.state) is not argv[1]")
        facts = parsed.facts
    }
    _ = facts.cgroupKey
    do {
        let wire = Message("core", facts.fields).encoded()
        let back = try CoreFacts(fields: Message.decode(wire))
        fuzzCheck(back == facts, "facts changed on the wire: \(facts) -> \(back)")
    } catch {
        fuzzFail("facts do not survive the wire: \(error)\n  facts: \(facts)")
    }
    return 0
}
