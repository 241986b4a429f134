import COCIChild
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
