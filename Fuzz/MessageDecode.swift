// Fuzz target MessageDecode: the wire decoder, Message.decode
// (Sources/ContainerWire/Message.swift), on whatever bytes a client sends.
//   - decode never traps, whatever the bytes;
//   - what decodes survives encoding: decode(encode(m)) == m, and encoding
//     is stable (encode(decode(encode(m))) == encode(m));
//   - a decoded op has no "\n", a decoded key no "=" or "\n";
//   - checked() on it throws only ContainerError, never traps;
//   - the C reader the key helper uses (CShim wire.c) agrees: ccs_msg_op_is
//     and ccs_msg_get give the same op and values, for messages where both
//     are meant to (valid UTF-8, no NUL byte, no key twice: on those C keeps
//     the first value, Swift the last).
import CShim
import ContainerSystem
import ContainerWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let m = try? Message.decode(bytes) else { return 0 }
    fuzzCheck(!m.op.isEmpty && !m.op.utf8.contains(0x0A), "op \(m.op.debugDescription)")
    for key in m.fields.keys {
        fuzzCheck(!key.utf8.contains(0x0A) && !key.utf8.contains(UInt8(ascii: "=")), "key \(key.debugDescription)")
    }
    let wire = m.encoded()
    let back: Message
    do {
        back = try Message.decode(wire)
    } catch {
        fuzzFail("encoded message does not decode: \(error)\n  message: \(m)")
    }
    fuzzCheck(back == m, "round trip changed the message\n  before: \(m)\n  after:  \(back)")
    fuzzCheck(back.encoded() == wire, "encoding is not stable for \(m)")
    do {
        _ = try m.checked()
    } catch {
        fuzzCheck(error is ContainerError, "checked() threw \(type(of: error))")
    }
    agreesWithC(bytes, m)
    return 0
}

func agreesWithC(_ bytes: [UInt8], _ m: Message) {
    guard !bytes.contains(0), String(validating: bytes, as: UTF8.self) != nil else { return }
    var keys = Set<[UInt8]>()
    for line in bytes.split(separator: 0x0A).dropFirst() {
        guard let eq = line.firstIndex(of: UInt8(ascii: "=")) else { continue }
        guard keys.insert(Array(line[..<eq])).inserted else { return }
    }
    bytes.withUnsafeBufferPointer { raw in
        raw.withMemoryRebound(to: CChar.self) { msg in
            // C wants the op's "\n" (every encoded message has it); Swift takes a bare op.
            if bytes.contains(0x0A) {
                fuzzCheck(ccs_msg_op_is(msg.baseAddress, msg.count, m.op) == 1, "C does not see op \(m.op.debugDescription)")
            }
            var out = [CChar](repeating: 0, count: bytes.count + 1)
            for (key, value) in m.fields {
                let r = ccs_msg_get(msg.baseAddress, msg.count, key, &out, out.count)
                fuzzCheck(r == 1, "C does not find \(key.debugDescription) (\(r))")
                let c = String(decoding: out.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
                fuzzCheck(c == value, "\(key.debugDescription): C reads \(c.debugDescription), Swift \(value.debugDescription)")
            }
        }
    }
}
