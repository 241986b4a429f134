// Fuzz target OCIState: what `ctrobj oci-hook` reads on stdin, the
// runtime-spec state (OCIHook.parseState, Sources/ContainerObject/OCIHookState.swift,
// on the JSON reader OCIJSON, Sources/ContainerObject/OCIHookJSON.swift; both
// compiled into this target on their own: ContainerObject is not built here).
// Anyone may run the hook with any stdin; a runtime gives it the state.
// fuzz-sources: Sources/ContainerObject/OCIHookJSON.swift Sources/ContainerObject/OCIHookState.swift
//   - never traps: every input is a value or an InputError / ParseError;
//   - a value it reads, written back as JSON, reads back the same;
//   - a state it accepts has an id of 1 to 1024 bytes and a pid in 0...pid_max,
//     and the container name made from the id is 1 to 23 bytes, without '/'
//     or a control character, and the same every time;
//   - the policy the annotations ask for is refused or is one ctrobjd takes:
//     core file, drop or handler:/…; never with an org.ctrobj.modules or
//     org.ctrobj.devices annotation (only root grants those, review2 F2).
import ContainerSystem
import ContainerWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let v = try? OCIJSON.parse(bytes) {
        var text = ""
        write(v, to: &text)
        guard let back = try? OCIJSON.parse(Array(text.utf8)) else { fuzzFail("written JSON does not parse: \(text.debugDescription)") }
        fuzzCheck(back == v, "JSON changed when written back: \(text.debugDescription)")
    }
    guard let state = try? OCIHook.parseState(bytes) else { return 0 }
    fuzzCheck(!state.id.isEmpty && state.id.utf8.count <= 1024, "id of \(state.id.utf8.count) bytes accepted")
    fuzzCheck(state.pid >= 0 && Int64(state.pid) <= RequestRules.pidMax, "pid \(state.pid) accepted")
    let name = OCIHook.containerName(forID: state.id)
    fuzzCheck(!name.isEmpty && name.utf8.count < 24, "name \(name.debugDescription) is \(name.utf8.count) bytes")
    fuzzCheck(!name.utf8.contains { $0 == UInt8(ascii: "/") || $0 < 0x20 || $0 == 0x7f }, "name \(name.debugDescription)")
    fuzzCheck(OCIHook.containerName(forID: state.id) == name, "name not stable")
    if let p = try? OCIHook.policy(from: state.annotations) {
        if let c = p.core { fuzzCheck(c == "file" || c == "drop" || (c.hasPrefix("handler:/") && c.utf8.count <= 4096), "core \(c.debugDescription)") }
        fuzzCheck(state.annotations[OCIHook.modulesAnnotation] == nil && state.annotations[OCIHook.devicesAnnotation] == nil,
                  "modules or devices annotation accepted")
    }
    return 0
}

func write(_ v: OCIJSON, to out: inout String) {
    switch v {
    case .null: out += "null"
    case .bool(let b): out += b ? "true" : "false"
    case .number(let n): out += n
    case .string(let s): quote(s, to: &out)
    case .array(let a):
        out += "["
        for (i, e) in a.enumerated() { if i > 0 { out += "," }; write(e, to: &out) }
        out += "]"
    case .object(let o):
        out += "{"
        for (i, k) in o.keys.sorted().enumerated() {
            if i > 0 { out += "," }
            quote(k, to: &out)
            out += ":"
            write(o[k]!, to: &out)
        }
        out += "}"
    }
}

func quote(_ s: String, to out: inout String) { JSONText.quote(s, to: &out) }
