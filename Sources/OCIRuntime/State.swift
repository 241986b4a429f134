import COCIChild
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What ctrobj-oci keeps per container under --root (default
/// /run/ctrobj-oci), one directory per OCI id:
///
///   <root>/<id>/state.json   this record (written atomically)
///   <root>/<id>/exec.fifo    the start gate while the container is "created"
///   <root>/.names/<name>     the OCI id a container-object name belongs to
///   <root>/.destroy/<name>   a destroy ctrobjd could not take (it was down):
///                            done by the next command that reaches it
///
/// The pid and its start time let state/kill/delete work with ctrobjd down,
/// and tell the init from a later process that got the same pid.
public struct Record: Codable, Sendable {
    public var id: String
    public var name: String
    public var pid: Int32
    public var startTime: UInt64
    public var bundle: String
    public var rootfs: String
    public var created: String
    public var owner: UInt32
    public var annotations: [String: String]
    public var ociVersion: String
    public var started: Bool
    public var ownPidNamespace: Bool
    public var poststart: [Spec.Hook]
    public var poststop: [Spec.Hook]
    public var cgroupsPath: String?
    /// ctrobjd's socket at create: later commands reach the same daemon
    /// even when their caller passes no --ctrobj-socket (podman's cleanup
    /// process, which conmon starts, does not).
    public var socket: String?
}

public enum Status: String, Sendable { case creating, created, running, paused, stopped }

struct StateStore {
    let root: String

    func dir(_ id: String) -> String { "\(root)/\(id)" }
    func fifo(_ id: String) -> String { "\(root)/\(id)/exec.fifo" }

    static func checkID(_ id: String) throws {
        guard !id.isEmpty, id.utf8.count <= 1024, id != ".", id != "..",
              id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_+-.".contains($0)) }), !id.hasPrefix(".") else {
            throw OCIError("invalid container id \(id.debugDescription): letters, digits, _ + - . only")
        }
    }

    /// The state root and a container's directory are ours alone: a
    /// directory (not a link), owned by this uid, writable by nobody else.
    /// Anyone who could write there could plant state.json hooks that
    /// `delete` runs, or seccomp programs that `create` loads.
    func checkTrusted(_ path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            if errno == ENOENT { return }
            throw OCIError("--root \(path): \(String(cString: strerror(errno)))")
        }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw OCIError("--root \(path): not a directory (a link or file is refused)") }
        guard st.st_uid == geteuid() else { throw OCIError("--root \(path): owned by uid \(st.st_uid), not by this uid \(geteuid()): refused") }
        guard st.st_mode & 0o022 == 0 else {
            throw OCIError("--root \(path): writable by group or others (mode \(String(st.st_mode & 0o7777, radix: 8))): refused")
        }
    }

    func load(_ id: String) throws -> Record {
        try StateStore.checkID(id)
        try checkTrusted(root)
        try checkTrusted(dir(id))
        guard let text = try? Sys.readFile("\(dir(id))/state.json") else {
            throw OCIError("container \"\(id)\" does not exist")
        }
        do { return try JSONDecoder().decode(Record.self, from: Data(text.utf8)) }
        catch { throw OCIError("container \"\(id)\": state.json is damaged: \(error)") }
    }

    func save(_ r: Record) throws {
        let data = try JSONEncoder().encode(r)
        try Sys.writeFileAtomically("\(dir(r.id))/state.json", String(decoding: data, as: UTF8.self), mode: 0o600)
    }

    func ids() -> [String] {
        Sys.listDirectory(root).filter { !$0.hasPrefix(".") && Sys.exists("\(root)/\($0)/state.json") }.sorted()
    }

    func remove(_ id: String) {
        for f in Sys.listDirectory(dir(id)) { unlink("\(dir(id))/\(f)") }
        rmdir(dir(id))
    }

    // MARK: names

    /// A container-object name for an OCI id: names are < 24 bytes without
    /// '/', ids up to 1024: "oci-" + the id when it fits, else a prefix and
    /// a hash; `attempt` > 0 rehashes after a collision.
    static func name(for id: String, attempt: Int = 0) -> String {
        if attempt == 0, id.utf8.count <= 19 { return "oci-" + id }
        var h: UInt64 = 0xcbf29ce484222325
        for b in id.utf8 { h = (h ^ UInt64(b)) &* 0x100000001b3 }
        for _ in 0..<attempt { h = (h ^ 0x5f) &* 0x100000001b3 }
        let hex = String(h, radix: 16)
        let tail = String(repeating: "0", count: max(0, 16 - hex.count)) + hex
        return "oci-" + String(id.prefix(10)) + "-" + String(tail.prefix(8))
    }

    func claimName(_ name: String, id: String) -> Bool {
        let d = "\(root)/.names"
        try? Sys.mkdirs(d, 0o700)
        let fd = open("\(d)/\(name)", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd < 0 { return false }
        _ = try? Sys.write(fd, id)
        close(fd)
        return true
    }

    func releaseName(_ name: String) { unlink("\(root)/.names/\(name)") }

    /// The marker holds the daemon's socket: only that daemon is asked.
    func markDestroy(_ name: String) {
        try? Sys.mkdirs("\(root)/.destroy", 0o700)
        let fd = open("\(root)/.destroy/\(name)", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        if fd >= 0 {
            _ = try? Sys.write(fd, DaemonAddress.socketPath())
            close(fd)
        }
    }

    func destroyMarkerSocket(_ name: String) -> String { (try? Sys.readFile("\(root)/.destroy/\(name)")) ?? "" }

    func pendingDestroys() -> [String] { Sys.listDirectory("\(root)/.destroy") }
    func clearDestroy(_ name: String) { unlink("\(root)/.destroy/\(name)") }
}

/// The init of a record, if it is still the process we started (same pid,
/// same start time), held by a pidfd.
func liveInit(_ r: Record) -> OwnedFD? {
    guard r.pid > 0, let fd = try? Sys.pidfdOpen(r.pid) else { return nil }
    // The pidfd pins the pid: checking the start time after opening it
    // tells a reused pid apart.
    guard oci_proc_start_time(r.pid) == r.startTime else { return nil }
    // A zombie (exited, not reaped by its parent yet) counts as stopped.
    if let st = try? Sys.readFile("/proc/\(r.pid)/stat"), let close = st.lastIndex(of: ")") {
        let after = st[st.index(after: close)...].dropFirst()
        if after.first == "Z" || after.first == "X" { return nil }
    }
    return fd
}

/// RFC 3339 with nanoseconds, UTC, as runc writes "created".
func rfc3339Now() -> String {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    var t = time_t(ts.tv_sec)
    var tmv = tm()
    gmtime_r(&t, &tmv)
    func p(_ v: Int32, _ w: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, w - s.count)) + s }
    let ns = String(ts.tv_nsec)
    return "\(p(tmv.tm_year + 1900, 4))-\(p(tmv.tm_mon + 1, 2))-\(p(tmv.tm_mday, 2))T\(p(tmv.tm_hour, 2)):\(p(tmv.tm_min, 2)):\(p(tmv.tm_sec, 2)).\(String(repeating: "0", count: max(0, 9 - ns.count)) + ns)Z"
}
