import ContainerSystem
#if canImport(Glibc)
import Glibc
#endif

/// One message between the library, the upcall helper and ctrobjd.
///
/// Encoding (one SOCK_SEQPACKET datagram, fds as SCM_RIGHTS beside it):
///
/// | part    | bytes                                                    |
/// |---------|----------------------------------------------------------|
/// | op      | UTF-8, up to the first "\n"                              |
/// | fields  | "key=value\n" each; in values "%" is "%25", "\n" "%0A"   |
///
/// Replies use op "ok" or "error" (fields errno, message).
public struct Message: Equatable, Sendable {
    public var op: String
    public var fields: [String: String]

    public init(_ op: String, _ fields: [String: String] = [:]) {
        self.op = op
        self.fields = fields
    }

    public subscript(key: String) -> String? {
        get { fields[key] }
        set { fields[key] = newValue }
    }

    public func int(_ key: String) -> Int? { fields[key].flatMap { Int($0) } }
    public func int64(_ key: String) -> Int64? { fields[key].flatMap { Int64($0) } }
    public func uint64(_ key: String) -> UInt64? { fields[key].flatMap { UInt64($0) } }

    /// Built and parsed byte by byte: a list page carries thousands of
    /// fields, and splitting a String into Characters (grapheme breaking)
    /// was most of what a client spent on a long list.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(op.utf8.count + 1 + fields.count * 32)
        out.append(contentsOf: op.utf8)
        out.append(0x0A)
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) {
            out.append(contentsOf: key.utf8)
            out.append(UInt8(ascii: "="))
            for b in value.utf8 {
                switch b {
                case UInt8(ascii: "%"): out.append(contentsOf: [0x25, 0x32, 0x35]) // %25
                case 0x0A: out.append(contentsOf: [0x25, 0x30, 0x41]) // %0A
                default: out.append(b)
                }
            }
            out.append(0x0A)
        }
        return out
    }

    public static func decode(_ bytes: [UInt8]) throws -> Message {
        var op: String?
        var fields: [String: String] = [:]
        var start = 0
        let n = bytes.count
        while start <= n {
            var end = start
            while end < n && bytes[end] != 0x0A { end += 1 }
            if op == nil {
                guard end > start else { throw ContainerError(.protocolError, "empty message") }
                op = String(decoding: bytes[start..<end], as: UTF8.self)
            } else if end > start {
                guard let eq = bytes[start..<end].firstIndex(of: UInt8(ascii: "=")) else {
                    throw ContainerError(.protocolError, "malformed field line")
                }
                let value = String(decoding: bytes[(eq + 1)..<end], as: UTF8.self)
                fields[String(decoding: bytes[start..<eq], as: UTF8.self)] = unescape(value)
            }
            start = end + 1
        }
        return Message(op ?? "", fields)
    }

    // The common case, nothing to escape, is a byte scan: String.contains(String)
    // goes through _StringProcessing, whose first use costs a cold process
    // (the upcall helper) a noticeable part of its run.
    static func escape(_ v: String) -> String {
        guard v.utf8.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "\n") }) else { return v }
        return v.replacing("%", with: "%25").replacing("\n", with: "%0A")
    }

    static func unescape(_ v: String) -> String {
        guard v.utf8.contains(UInt8(ascii: "%")) else { return v }
        return v.replacing("%0A", with: "\n").replacing("%25", with: "%")
    }

    // MARK: replies

    public static func ok(_ fields: [String: String] = [:]) -> Message { Message("ok", fields) }

    public static func error(_ e: ContainerError) -> Message {
        Message("error", ["errno": "\(e.errno)", "message": e.message, "code": e.code.rawValue])
    }

    /// Throws the error a reply carries, if it is one.
    public func checked() throws -> Message {
        if op == "error" {
            let err = int("errno").map(Int32.init) ?? EIO
            throw ContainerError(ContainerError.Code(rawValue: fields["code"] ?? "system"),
                                 fields["message"] ?? "ctrobjd: unknown error", errno: err)
        }
        return self
    }
}

