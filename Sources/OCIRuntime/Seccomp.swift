import COCIChild
import ContainerSystem
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// linux.seccomp compiled to a BPF program with libseccomp, in the parent:
/// the child only installs it (seccomp(2), just before exec with
/// noNewPrivileges, before dropping capabilities without).
struct SeccompProgram {
    var bytes: [UInt8]
    var length: UInt16
    var flags: UInt32

    init(_ s: Spec.Seccomp) throws {
        let defErrno = s.defaultErrnoRet ?? 1
        guard let def = Tables.seccompAction(s.defaultAction, errnoRet: s.defaultErrnoRet) else {
            throw OCIError.field("linux.seccomp.defaultAction", "unknown action \(s.defaultAction.debugDescription)")
        }
        guard let ctx = oci_sc_new(def) else { throw OCIError.field("linux.seccomp", "libseccomp could not start a filter") }
        defer { oci_sc_free(ctx) }
        for a in s.architectures ?? [] {
            guard let name = Tables.seccompArches[a], oci_sc_add_arch(ctx, name) == 0 else {
                throw OCIError.field("linux.seccomp.architectures", "unknown architecture \(a.debugDescription)")
            }
        }
        var f: UInt32 = 0
        for fl in s.flags ?? [] {
            guard let bit = Tables.seccompFlags[fl] else { throw OCIError.field("linux.seccomp.flags", "unknown or unsupported flag \(fl.debugDescription)") }
            f |= bit
        }
        flags = f
        for (i, rule) in (s.syscalls ?? []).enumerated() {
            let field = "linux.seccomp.syscalls[\(i)]"
            guard let action = Tables.seccompAction(rule.action, errnoRet: rule.errnoRet, defaultErrno: defErrno) else {
                throw OCIError.field("\(field).action", "unknown action \(rule.action.debugDescription)")
            }
            var args: [oci_sc_arg] = []
            for a in rule.args ?? [] {
                guard let op = Tables.seccompOps[a.op] else { throw OCIError.field("\(field).args", "unknown operator \(a.op.debugDescription)") }
                guard a.index < 6 else { throw OCIError.field("\(field).args", "argument index \(a.index) is not 0-5") }
                args.append(oci_sc_arg(index: a.index, value: a.value, value_two: a.valueTwo ?? 0, op: op))
            }
            // Conditions on the same argument cannot be ANDed by libseccomp:
            // as runc does, each becomes a rule of its own (ORed).
            let indexes = args.map(\.index)
            let groups: [[oci_sc_arg]] = Set(indexes).count == indexes.count ? [args] : args.map { [$0] }
            for name in rule.names {
                for g in groups {
                    let rc = g.withUnsafeBufferPointer { oci_sc_add_rule(ctx, action, name, $0.baseAddress, UInt32($0.count)) }
                    if rc < 0 {
                        throw OCIError.field("\(field)", "\(name): libseccomp refused the rule: \(errnoText(errno))")
                    }
                }
            }
        }
        var prog: UnsafeMutableRawPointer?
        var len: UInt16 = 0
        guard oci_sc_export(ctx, &prog, &len) == 0, let prog else {
            throw OCIError.field("linux.seccomp", "libseccomp could not export the filter: \(errnoText(errno))")
        }
        defer { free(prog) }
        bytes = Array(UnsafeRawBufferPointer(start: prog, count: Int(len) * 8))
        length = len
    }
}

extension SeccompProgram {
    init(bytes: [UInt8], length: UInt16, flags: UInt32) {
        self.bytes = bytes
        self.length = length
        self.flags = flags
    }

    static func readAll(_ path: String, max: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = [], buf = [UInt8](repeating: 0, count: 65536)
        while out.count <= max {
            let n = read(fd, &buf, buf.count)
            if n < 0 { return nil }
            if n == 0 { return out }
            out += buf[0..<n]
        }
        return nil
    }

    /// The program for `s`, compiled once per distinct profile. podman writes
    /// the same default profile (hundreds of rules) into every container's
    /// config.json, and libseccomp takes about 12 ms to compile it: a third
    /// of a `create` under podman. Kept in the state root (root's, 0700) at
    /// `.seccomp/<FNV-1a of the key>`: the key (the profile as JSON with
    /// sorted keys, libseccomp's version, the machine), a NUL, the flags (4
    /// bytes), the BPF. Used only when the stored key is byte-identical; any
    /// trouble reading or writing it just compiles.
    static func cached(_ s: Spec.Seccomp, root: String) throws -> SeccompProgram {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        guard let json = try? enc.encode(s) else { return try SeccompProgram(s) }
        var u = utsname()
        uname(&u)
        let machine = withUnsafeBytes(of: &u.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let key = Array("libseccomp \(oci_sc_version()) \(machine)\n".utf8) + Array(json)
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        let dir = "\(root)/.seccomp", path = "\(dir)/\(String(h, radix: 16))"
        if let bytes = readAll(path, max: key.count + 5 + 8 * 65536), bytes.count > key.count + 5 {
            if bytes[key.count] == 0, Array(bytes[0..<key.count]) == key {
                let rest = bytes[(key.count + 1)...]
                let f = rest.prefix(4).enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
                let bpf = Array(rest.dropFirst(4))
                if bpf.count % 8 == 0, bpf.count / 8 > 0, bpf.count / 8 <= Int(UInt16.max) {
                    return SeccompProgram(bytes: bpf, length: UInt16(bpf.count / 8), flags: f)
                }
            }
        }
        let p = try SeccompProgram(s)
        if (try? Sys.mkdirs(dir, 0o700)) != nil {
            var out = key + [0]
            for i in 0..<4 { out.append(UInt8((p.flags >> (8 * UInt32(i))) & 0xff)) }
            out += p.bytes
            let tmp = "\(path).\(getpid())"
            let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
            if fd >= 0 {
                let n = out.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                close(fd)
                if n != out.count || rename(tmp, path) != 0 { unlink(tmp) }
            }
        }
        return p
    }
}
