// Fuzz target RequestKeyConf: the reader of the host's request-key.conf and
// request-key.d/*.conf that `ctrobj install` mirrors,
// RequestKeyConf.addCreateSelectors (Sources/UpcallInstall/RequestKeyConf.swift,
// compiled into this target on its own: UpcallInstall is not built here).
// fuzz-sources: Sources/UpcallInstall/RequestKeyConf.swift
//   - never traps;
//   - each selector is four columns, the first "create", that request-key
//     reads back as the same four (no byte request-key takes for a column
//     separator, isspace(3), nor a NUL, inside a column), each selector once;
//   - reading the same text again adds nothing.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    var selectors: [String] = []
    RequestKeyConf.addCreateSelectors(of: text, to: &selectors)
    let isspace: Set<UInt8> = [0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D]
    for sel in selectors {
        let cols = sel.utf8.split(whereSeparator: { isspace.contains($0) })
        fuzzCheck(!sel.utf8.contains(0), "selector \(sel.debugDescription) holds a NUL (request-key's line would end there)")
        fuzzCheck(cols.count == 4, "selector \(sel.debugDescription) is \(cols.count) columns to request-key")
        fuzzCheck(cols.first.map { Array($0) } == Array("create".utf8), "selector \(sel.debugDescription) is not a create line")
        fuzzCheck(sel.utf8.split(separator: 0x20).count == 4, "selector \(sel.debugDescription) is not four space-separated columns")
    }
    fuzzCheck(Set(selectors).count == selectors.count, "a selector twice: \(selectors)")
    let count = selectors.count
    RequestKeyConf.addCreateSelectors(of: text, to: &selectors)
    fuzzCheck(selectors.count == count, "reading the same text twice added selectors")
    return 0
}
