// Fuzz target UpcallConfig: the reader of <state>/upcall.conf,
// UpcallConfig.parse (Sources/ContainerWire/UpcallConfig.swift), which the
// upcall helper and ctrobjd run on every upcall.
//   - never traps, whatever the file holds;
//   - what it parses survives being written back: parse(config.encoded) == config.
import ContainerSystem
import ContainerWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let config = UpcallConfig.parse(text) else { return 0 }
    guard let back = UpcallConfig.parse(config.encoded) else {
        fuzzFail("written config does not parse: \(config)")
    }
    fuzzCheck(back == config, "config changed when written back: \(config) -> \(back)")
    return 0
}
