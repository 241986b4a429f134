import CShim
import ContainerSystem
import ContainerWire
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("wire format and flags")
struct WireTests {
    @Test("a message survives encoding, newlines and percent signs included")
    func roundTrip() throws {
        let m = Message("create", ["name": "a%b\nc", "flags": "42", "empty": ""])
        #expect(try Message.decode(m.encoded()) == m)
    }

    @Test("values survive the wire whatever Characters they make: CR before the newline, combining marks after = or an escape")
    func byteLevelFraming() throws {
        let m = Message("ok", ["name": "web\r", "owner": "1001", "mark": "\u{301}x", "nl": "\n\u{301}", "pct": "%\u{301}"])
        #expect(try Message.decode(m.encoded()) == m)
        #expect(try Message.decode(Array("\r\np=1".utf8)) == Message("\r", ["p": "1"]))
    }

    @Test("an error reply whose errno does not fit an Int32 is EIO, not a trap")
    func errnoOutOfRange() {
        let e = #expect(throws: ContainerError.self) { _ = try Message("error", ["errno": "10000000000000"]).checked() }
        #expect(e?.errno == EIO)
    }

    @Test("core facts with a number out of its type's range are an error, not a trap")
    func coreFactsRanges() throws {
        let ok = ["pid": "42", "uid": "0", "gid": "0", "signal": "11"]
        #expect(try CoreFacts(fields: Message("core", ok)).signal == 11)
        for (key, value) in [("pid", "99999999999"), ("uid", "-1"), ("gid", "4294967296"), ("signal", "4294967296"),
                             ("dump_mode", "-2147483649"), ("ns_pid", "2147483648")] {
            var f = ok
            f[key] = value
            #expect(throws: ContainerError.self) { _ = try CoreFacts(fields: Message("core", f)) }
        }
    }

    @Test("the C helpers' encoding (CShim wire.c) and Message agree, both ways")
    func cAgreesWithSwift() throws {
        let fields = ["key_desc": "a%b\nc d%0A", "key_type": "user", "pid": "42", "empty": ""]
        // C encodes, Swift decodes.
        var buf = [CChar](repeating: 0, count: 512)
        var len = 0
        let op = "key\n"
        for b in op.utf8 { buf[len] = CChar(bitPattern: b); len += 1 }
        for key in fields.keys.sorted() {
            #expect(ccs_msg_add(&buf, buf.count, &len, key, fields[key]!) == 0)
        }
        let bytes = buf[..<len].map { UInt8(bitPattern: $0) }
        #expect(try Message.decode(bytes) == Message("key", fields))
        // Swift encodes, C decodes.
        let encoded = Message("ok", fields).encoded().map { CChar(bitPattern: $0) }
        #expect(ccs_msg_op_is(encoded, encoded.count, "ok") == 1)
        #expect(ccs_msg_op_is(encoded, encoded.count, "o") == 0)
        for (key, value) in fields {
            var out = [CChar](repeating: 0, count: 64)
            #expect(ccs_msg_get(encoded, encoded.count, key, &out, out.count) == 1)
            #expect(String(cString: out) == value, "\(key)")
        }
        var small = [CChar](repeating: 0, count: 4)
        #expect(ccs_msg_get(encoded, encoded.count, "key_desc", &small, small.count) == -1)
        #expect(ccs_msg_get(encoded, encoded.count, "missing", &small, small.count) == 0)
        // Too long for the buffer: refused, nothing half-written counted.
        var tiny = [CChar](repeating: 0, count: 8)
        var tlen = 0
        #expect(ccs_msg_add(&tiny, tiny.count, &tlen, "key_desc", "longer than eight") == -1)
        #expect(tlen == 0)
    }

    @Test("malformed messages are errors, not crashes")
    func malformed() {
        #expect(throws: ContainerError.self) { _ = try Message.decode([]) }
        #expect(throws: ContainerError.self) { _ = try Message.decode(Array("op\nnoequals\n".utf8)) }
    }

    @Test("an error reply carries errno and message back")
    func errorReply() {
        let e = ContainerError(.busy, "container \"web\": fork_into_container: init already started")
        do {
            _ = try Message.error(e).checked()
            Issue.record("no throw")
        } catch let got as ContainerError {
            #expect(got.errno == e.errno && got.message == e.message && got.code == .busy)
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test("flag names parse and print as container.h spells them")
    func flags() {
        #expect(ContainerFlags.parse("NEW_PID_NS|CONTAINER_NEW_NET_NS") == 0xc0)
        #expect(ContainerFlags.parse("0x101") == 0x101)
        #expect(ContainerFlags.parse("NEW_BOGUS") == nil)
        #expect(ContainerFlags.describe(0x300) == "KILL_ON_CLOSE|FD_CLOEXEC")
    }

    @Test("a join plan survives the wire and rejects out-of-range fd indexes")
    func joinPlan() throws {
        let plan = JoinPlan(userns: 0, namespaces: [(.mnt, 1), (.net, 2)], pidns: .new, cgroups: [3, 4], becomeRoot: true)
        let back = try JoinPlan(fields: Message("ok", plan.fields), fdCount: 5)
        #expect(back == plan)
        #expect(throws: ContainerError.self) { _ = try JoinPlan(fields: Message("ok", plan.fields), fdCount: 3) }
    }

    @Test("the key helper reads a join plan as JoinPlan writes it (CShim ccs_msg_join_plan)")
    func joinPlanInC() throws {
        let fds: [CInt] = [100, 101, 102, 103, 104, 105, 106]
        func decode(_ plan: JoinPlan, fdCount: Int) -> (Int32, ccs_join_plan, CInt) {
            let bytes = Message("ok", plan.fields).encoded().map { CChar(bitPattern: $0) }
            var p = ccs_join_plan()
            var pidns: CInt = 0
            let r = ccs_msg_join_plan(bytes, bytes.count, fds, CInt(fdCount), &p, &pidns)
            return (r, p, pidns)
        }
        let plan = JoinPlan(userns: 0, namespaces: [(.mnt, 1), (.uts, 2), (.net, 3)], pidns: .join(4), cgroups: [5, 6],
                            becomeRoot: true)
        let (r, p, pidns) = decode(plan, fdCount: fds.count)
        #expect(r == 0)
        #expect(p.userns_fd == 100)
        #expect(p.ns_count == 3)
        #expect(withUnsafeBytes(of: p.ns_fds) { Array($0.bindMemory(to: CInt.self).prefix(3)) } == [101, 102, 103])
        #expect(withUnsafeBytes(of: p.ns_types) { Array($0.bindMemory(to: CInt.self).prefix(3)) }
                == [NamespaceKind.mnt.cloneFlag, NamespaceKind.uts.cloneFlag, NamespaceKind.net.cloneFlag])
        #expect(pidns == 104 && p.pidns_mode == 0 && p.pidns_fd == -1)
        #expect(p.cgroup_count == 2)
        #expect(withUnsafeBytes(of: p.cgroup_procs_fds) { Array($0.bindMemory(to: CInt.self).prefix(2)) } == [105, 106])
        #expect(p.become_root == 1 && p.chdir_root == 1 && p.path == nil && p.keep_fd == -1 && p.gate_fd == -1)
        // No user namespace, no pid namespace: nothing to join there.
        let bare = decode(JoinPlan(userns: nil, namespaces: [], pidns: .none, cgroups: [], becomeRoot: false), fdCount: 0)
        #expect(bare.0 == 0 && bare.1.userns_fd == -1 && bare.2 == -1 && bare.1.ns_count == 0 && bare.1.become_root == 0)
        #expect(bare.1.limit_privileges == 0, "no limit unless the plan carries one (the owner's own exec)")
        // An upcall's plan: init's bounding set and no_new_privs, read the same on both sides.
        var limited = plan
        limited.privilegeLimit = JoinPlan.PrivilegeLimit(capBounding: 0x1_0000_0400, noNewPrivs: true)
        let l = decode(limited, fdCount: fds.count)
        #expect(l.0 == 0 && l.1.limit_privileges == 1 && l.1.cap_bounding == 0x1_0000_0400 && l.1.no_new_privs == 1)
        #expect(try JoinPlan(fields: Message("ok", limited.fields), fdCount: fds.count) == limited)
        var bad = limited.fields
        bad["capbnd"] = "-1"
        #expect(throws: ContainerError.self) { _ = try JoinPlan(fields: Message("ok", bad), fdCount: fds.count) }
        let badBytes = Message("ok", bad).encoded().map { CChar(bitPattern: $0) }
        var bp = ccs_join_plan()
        var bpid: CInt = 0
        #expect(ccs_msg_join_plan(badBytes, badBytes.count, fds, CInt(fds.count), &bp, &bpid) == -1)
        // An index beyond the fds that came, or a new pid namespace, is refused.
        #expect(decode(plan, fdCount: 5).0 == -1)
        #expect(decode(JoinPlan(userns: nil, namespaces: [], pidns: .new, cgroups: [], becomeRoot: false), fdCount: 0).0 == -1)
    }

    @Test("cgroup layout picks v2 per controller where v2 has it, v1 otherwise")
    func layout() {
        let l = CgroupLayout(v2Mount: "/sys/fs/cgroup/unified", v2Controllers: ["hugetlb"],
                             v1Mounts: ["memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids"])
        #expect(l.source(of: "hugetlb") == .v2)
        #expect(l.source(of: "memory") == .v1("/sys/fs/cgroup/memory"))
        #expect(l.source(of: "cpu") == .none)
        #expect(l.hierarchies == ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"])
    }
}
