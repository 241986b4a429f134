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

    public func encoded() -> [UInt8] {
        var s = op + "\n"
        for key in fields.keys.sorted() {
            s += key + "=" + Message.escape(fields[key]!) + "\n"
        }
        return Array(s.utf8)
    }

    public static func decode(_ bytes: [UInt8]) throws -> Message {
        let text = String(decoding: bytes, as: UTF8.self)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let first = lines.first, !first.isEmpty else {
            throw ContainerError(.protocolError, "empty message")
        }
        lines.removeFirst()
        var fields: [String: String] = [:]
        for line in lines where !line.isEmpty {
            guard let eq = line.firstIndex(of: "=") else {
                throw ContainerError(.protocolError, "malformed field line")
            }
            fields[String(line[..<eq])] = unescape(String(line[line.index(after: eq)...]))
        }
        return Message(String(first), fields)
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

