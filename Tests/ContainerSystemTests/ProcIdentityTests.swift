import ContainerSystem
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The one reader of /proc/PID/cgroup and the one host check.
@Suite("process identity")
struct ProcIdentityTests {
    @Test("a /proc/PID/cgroup file of a hybrid machine reads as its lines, and its v2 path")
    func cgroupLines() {
        let text = "12:pids:/ctrobj/c5\n4:cpu,cpuacct:/ctrobj/c5\n1:name=systemd:/init.scope\n0::/ctrobj/c5:odd\nbroken line\n"
        let lines = ProcInfo.cgroupLines(Array(text.utf8))
        #expect(lines.count == 4)
        #expect(lines[1].controllers == ["cpu", "cpuacct"] && lines[1].path == "/ctrobj/c5" && !lines[1].isV2)
        #expect(lines[3].isV2 && lines[3].path == "/ctrobj/c5:odd")
        #expect(ProcInfo.cgroupV2Path(Array(text.utf8)) == "/ctrobj/c5:odd")
        #expect(ProcInfo.cgroupV2Path(Array("1:name=systemd:/x\n".utf8)) == nil)
        #expect(ProcInfo.cgroupV2Path(Array("0::/".utf8)) == "/")
    }

    @Test("this process is in its own namespaces; pid 1's are compared by inode and device")
    func hostCheck() {
        #expect(Namespaces.areCallers(pid: getpid()))
        #expect(!Namespaces.areCallers(pid: getpid(), kinds: []))
        var me = ProcessIdentity(pid: getpid())
        me.readNamespaces()
        me.readCgroup()
        #expect(me.namespaces[.net] == Namespaces.own[.net]?.inode)
        #expect(me.cgroup == (ProcInfo.cgroupV2Path(pid: getpid()) ?? ""))
    }
}
