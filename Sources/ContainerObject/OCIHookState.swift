import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// `ctrobj oci-hook`: an OCI hook that makes the containers of other
/// runtimes (runc, crun under podman or containerd) container objects for
/// as long as they live, so that their upcalls are routed into them.
///
/// | stage (argument, else from the state's status)     | what it does                                   |
/// |----------------------------------------------------|------------------------------------------------|
/// | createRuntime, prestart, poststart (creating, created, running) | adopt `pid` as oci-… (core policy from annotations) |
/// | poststop (stopped)                                 | forget that record (adopted ones only)         |
/// | createContainer, startContainer                    | refused: they run inside the container         |
///
/// Exit codes, chosen so that the broker never breaks a user's container:
/// 0 when it did its job, and also when it could not because ctrobjd is not
/// running, the runtime's state cannot be adopted, or the name is taken
/// (a message on stderr says so; `--strict` makes these 1); 1 when an
/// `org.ctrobj.*` annotation asks for a policy that cannot be had, which
/// includes `org.ctrobj.modules` and `org.ctrobj.devices` always (only root
/// grants those, with `ctrobj policy`; nothing is adopted then); 2 when
/// stdin is not an OCI state or the stage is unknown.
public enum OCIHook {
    public enum Stage: String, CaseIterable, Sendable {
        case prestart, createRuntime, createContainer, startContainer, poststart, poststop
    }

    /// The runtime-spec state, as far as the hook reads it.
    public struct State: Equatable, Sendable {
        public var id: String
        public var status: String
        public var pid: pid_t
        public var bundle: String
        public var annotations: [String: String]
    }

    /// The upcall policy the `org.ctrobj.*` annotations may ask for: where
    /// the container's cores go (modules and devices are root's to grant,
    /// with `ctrobj policy`, never an annotation's).
    public struct Policy: Equatable, Sendable {
        public var core: String?
        public var isEmpty: Bool { core == nil }
    }

    public struct Outcome: Equatable, Sendable {
        public var exitCode: Int32
        public var messages: [String]
        /// The container name it acted on, when it got that far.
        public var name: String?
    }

    public static let coreAnnotation = "org.ctrobj.core"
    public static let modulesAnnotation = "org.ctrobj.modules"
    public static let devicesAnnotation = "org.ctrobj.devices"

    public struct InputError: Error, CustomStringConvertible {
        public let description: String
    }

    /// The state JSON on stdin, checked: an object with a string `id` (1 to
    /// 1024 bytes), a string `status`, an integer `pid` in range (0 when
    /// absent, as at poststop), string `bundle`, and string annotations.
    public static func parseState(_ bytes: [UInt8]) throws -> State {
        let v: OCIJSON
        do { v = try OCIJSON.parse(bytes) } catch let e as OCIJSON.ParseError {
            throw InputError(description: "stdin is not JSON (\(e)); an OCI hook reads the runtime-spec state there")
        }
        guard case .object = v else { throw InputError(description: "the state on stdin is not a JSON object") }
        guard let id = v["id"]?.stringValue, !id.isEmpty, id.utf8.count <= 1024 else {
            throw InputError(description: "the state has no \"id\" string (1 to 1024 bytes)")
        }
        var pid: pid_t = 0
        if let p = v["pid"], p != .null {
            guard let n = p.int64Value, n >= 0, n <= Int64(RequestRules.pidMax) else {
                throw InputError(description: "the state's \"pid\" is not a process id")
            }
            pid = pid_t(n)
        }
        var annotations: [String: String] = [:]
        if let a = v["annotations"], a != .null {
            guard case .object(let o) = a else { throw InputError(description: "the state's \"annotations\" is not an object") }
            for (k, value) in o {
                guard let s = value.stringValue else { throw InputError(description: "annotation \"\(RequestRules.escaped(k))\" is not a string") }
                annotations[k] = s
            }
        }
        for key in ["status", "bundle"] where v[key] != nil && v[key] != .null && v[key]?.stringValue == nil {
            throw InputError(description: "the state's \"\(key)\" is not a string")
        }
        return State(id: id, status: v["status"]?.stringValue ?? "", pid: pid, bundle: v["bundle"]?.stringValue ?? "",
                     annotations: annotations)
    }

    /// The container name for an OCI id (names are at most 23 bytes, no '/'):
    /// "oci-" and the first 19 characters of a long hex id (podman's and the
    /// CRI's 64), "oci-" and the id itself when it is at most 19 bytes of
    /// letters, digits, '-', '_' and '.', else "ocih-" and 16 hex digits of
    /// its FNV-1a hash.
    public static func containerName(forID id: String) -> String {
        let u = Array(id.utf8)
        let isHex = u.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
        if u.count >= 20 && isHex { return "oci-" + String(decoding: u.prefix(19), as: UTF8.self) }
        let plain = u.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x2d || $0 == 0x5f || $0 == 0x2e }
        if !u.isEmpty && u.count <= 19 && plain { return "oci-" + id }
        var h: UInt64 = 0xcbf29ce484222325
        for c in u { h = (h ^ UInt64(c)) &* 0x100000001b3 }
        let hex = String(h, radix: 16)
        return "ocih-" + String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The policy the annotations ask for, checked as ctrobjd will check it
    /// (ctrobjd checks again): core `file`, `drop` or `handler:/ABSOLUTE`.
    /// Annotations are written by whoever asks for the container (a podman
    /// user, a pod author under the CRI), while this hook runs as root: they
    /// may choose where the container's own cores go, but `org.ctrobj.modules`
    /// and `org.ctrobj.devices` (module loading, device grants: root's word
    /// only) are refused, so that the hook is nobody's confused deputy.
    public static func policy(from annotations: [String: String]) throws -> Policy {
        var p = Policy()
        for (key, flag) in [(modulesAnnotation, "--modules"), (devicesAnnotation, "--devices")] where annotations[key] != nil {
            throw InputError(description: "annotation \(key) refused: annotations come from whoever asks for the container, "
                             + "and only root may grant this; root grants it with `ctrobj policy NAME \(flag) LIST`; not adopted")
        }
        if let c = annotations[coreAnnotation] {
            guard ["file", "drop"].contains(c) || (c.hasPrefix("handler:/") && c.utf8.count > 9 && c.utf8.count <= 4096
                                                   && !c.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7f }) else {
                throw InputError(description: "annotation \(coreAnnotation)=\"\(RequestRules.escaped(c))\": must be file, drop or handler:/absolute/path/inside")
            }
            p.core = c
        }
        return p
    }
}
