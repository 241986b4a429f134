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

    /// Lines, "=" and escapes are found in the UTF-8 bytes, as the C reader
    /// (CShim wire.c) finds them: not in Characters, where "\r\n" is one
    /// Character and so is "=" or "A" followed by a combining mark, and a
    /// value ending in "\r" would swallow the next line.
    public static func decode(_ bytes: [UInt8]) throws -> Message {
        var lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        guard let first = lines.first, !first.isEmpty else {
            throw ContainerError(.protocolError, "empty message")
        }
        lines.removeFirst()
        var fields: [String: String] = [:]
        for line in lines where !line.isEmpty {
            guard let eq = line.firstIndex(of: UInt8(ascii: "=")) else {
                throw ContainerError(.protocolError, "malformed field line")
            }
            fields[String(decoding: line[..<eq], as: UTF8.self)] = unescape(line[(eq + 1)...])
        }
        return Message(String(decoding: first, as: UTF8.self), fields)
    }

    // The common case, nothing to escape, is a byte scan: String.contains(String)
    // goes through _StringProcessing, whose first use costs a cold process
    // (the upcall helper) a noticeable part of its run.
    static func escape(_ v: String) -> String {
        guard v.utf8.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "\n") }) else { return v }
        var out: [UInt8] = []
        out.reserveCapacity(v.utf8.count + 8)
        for b in v.utf8 {
            switch b {
            case UInt8(ascii: "%"): out += [UInt8(ascii: "%"), UInt8(ascii: "2"), UInt8(ascii: "5")]
            case UInt8(ascii: "\n"): out += [UInt8(ascii: "%"), UInt8(ascii: "0"), UInt8(ascii: "A")]
            default: out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// "%25" is "%", "%0A" is "\n", any other "%" is itself (as wire.c's ccs_msg_get).
    static func unescape(_ v: ArraySlice<UInt8>) -> String {
        guard v.contains(UInt8(ascii: "%")) else { return String(decoding: v, as: UTF8.self) }
        var out: [UInt8] = []
        out.reserveCapacity(v.count)
        var i = v.startIndex
        while i < v.endIndex {
            if v[i] == UInt8(ascii: "%"), v.endIndex - i >= 3 {
                let a = v[i + 1], b = v[i + 2]
                if a == UInt8(ascii: "2") && b == UInt8(ascii: "5") {
                    out.append(UInt8(ascii: "%"))
                    i += 3
                    continue
                }
                if a == UInt8(ascii: "0") && b == UInt8(ascii: "A") {
                    out.append(UInt8(ascii: "\n"))
                    i += 3
                    continue
                }
            }
            out.append(v[i])
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: replies

    public static func ok(_ fields: [String: String] = [:]) -> Message { Message(Op.ok, fields) }

    public static func error(_ e: ContainerError) -> Message {
        Message(Op.error, ["errno": "\(e.errno)", "message": e.message, "code": e.code.rawValue])
    }

    /// Throws the error a reply carries, if it is one.
    public func checked() throws -> Message {
        if op == Op.error {
            let err = int("errno").flatMap { Int32(exactly: $0) } ?? EIO
            throw ContainerError(ContainerError.Code(rawValue: fields["code"] ?? "system"),
                                 fields["message"] ?? "ctrobjd: unknown error", errno: err)
        }
        return self
    }
}

