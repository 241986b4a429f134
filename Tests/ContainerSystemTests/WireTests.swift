import ContainerSystem
import ContainerWire
import Testing

@Suite("wire format and flags")
struct WireTests {
    @Test("a message survives encoding, newlines and percent signs included")
    func roundTrip() throws {
        let m = Message("create", ["name": "a%b\nc", "flags": "42", "empty": ""])
        #expect(try Message.decode(m.encoded()) == m)
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
