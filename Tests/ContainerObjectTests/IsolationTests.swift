import CShim
import ContainerObject
import ContainerSystem
import ContainerWire
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("isolation", .enabled(if: isRoot, rootOnly))
struct IsolationTests {
    static let full: ContainerOptions = [.newFSNS, .newUTSNS, .newIPCNS, .newPIDNS, .newNetNS, .newCgroupNS, .newUserNS, .killOnClose]

    @Test("init is PID 1, root of its user namespace, and a child of the caller")
    func pid1() throws {
        try withDaemon { _ in
            let c = try Container.create("pid1", options: Self.full)
            let p = try c.spawnInit(sh("test $$ = 1 && test $(id -u) = 0 && exit 7"))
            #expect(try p.waitCode() == 7)
            var st = try c.status()
            for _ in 0..<100 where st.exitStatus == nil { usleep(10_000); st = try c.status() }
            #expect(st.state == .exited)
            #expect(st.exitStatus.map { ($0 >> 8) & 0xff } == 7, "a query reports the exit status")
        }
    }

    @Test("Container.run creates and starts init in one go, with the same guarantees")
    func runInOneGo() throws {
        try withDaemon { _ in
            let (c, p) = try Container.run("run1", options: Self.full, sh("test $$ = 1 && test $(id -u) = 0 && exit 5"))
            #expect(try p.waitCode() == 5)
            #expect(throws: ContainerError.self) { _ = try c.spawnInit(sh("true")) }
            #expect(throws: ContainerError.self) { _ = try Container.run("run1", options: Self.full, sh("true")) }
        }
    }

    @Test("a second fork_into_container is EBUSY")
    func ebusy() throws {
        try withDaemon { _ in
            let c = try Container.create("busy", options: [.newPIDNS, .killOnClose])
            let p = try c.spawnInit(sh("sleep 5"))
            #expect(throws: ContainerError.self) { _ = try c.spawnInit(sh("true")) }
            do { _ = try c.spawnInit(sh("true")) } catch let e as ContainerError {
                #expect(e.errno == EBUSY)
                #expect(e.message.contains("container \"busy\""))
            }
            try p.signal(SIGKILL)
            _ = try? p.waitCode()
        }
    }

    @Test("a hostname set inside is invisible outside")
    func uts() throws {
        try withDaemon { _ in
            var host = [CChar](repeating: 0, count: 256)
            gethostname(&host, 255)
            let c = try Container.create("uts", options: Self.full)
            let p = try c.spawnInit(sh("hostname inside-ctr && test $(hostname) = inside-ctr"))
            #expect(try p.waitCode() == 0)
            var after = [CChar](repeating: 0, count: 256)
            gethostname(&after, 255)
            #expect(String(cString: after) == String(cString: host))
        }
    }

    @Test("container_socket sees only the container's interfaces")
    func socketInNetns() throws {
        try withDaemon { _ in
            let c = try Container.create("net", options: [.newNetNS, .killOnClose])
            let s = try c.socket(domain: AF_INET, type: Int32(SOCK_DGRAM.rawValue))
            // A host interface other than lo:
            guard let hostIf = NetInterfaces.names().first(where: { $0 != "lo" }) else { return }
            #expect(NetInterfaces.exists("lo", via: s.raw))
            #expect(!NetInterfaces.exists(hostIf, via: s.raw), "host interface \(hostIf) must not be visible")
            let hostSock = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            defer { close(hostSock) }
            #expect(NetInterfaces.exists(hostIf, via: hostSock))
            // The netns inode of the socket is the container's.
            let st = try c.status()
            let nsGetNetns: UInt = 0x894C // SIOCGSKNS
            let nsfd = ioctl(s.raw, nsGetNetns)
            #expect(nsfd >= 0)
            if nsfd >= 0 {
                #expect(try Namespaces.inode(of: nsfd) == st.namespaceInodes["net"])
                close(nsfd)
            }
        }
    }

    @Test("exec enters the running container: same pid ns, cgroup and root")
    func exec() throws {
        try withDaemon { _ in
            let c = try Container.create("ex", options: Self.full)
            let initP = try c.spawnInit(sh("hostname ex-host; sleep 30"))
            usleep(100_000)
            // Same uts and pid ns as init (pid > 1), root inside, and the
            // container's cgroup ns root.
            let p = try c.exec(sh("test $(hostname) = ex-host && test $$ -gt 1 && test $(id -u) = 0 && grep -q '^0::/$' /proc/self/cgroup"))
            #expect(try p.waitCode() == 0)
            #expect(try c.status().state == .running)
            // A second exec uses the cached way in and gets the same view.
            let again = try c.exec(sh("test $(hostname) = ex-host"))
            #expect(try again.waitCode() == 0)
            try initP.signal(SIGKILL)
            _ = try? initP.waitCode()
            // Once init is gone the cache is stale: the error says so.
            usleep(100_000)
            do {
                _ = try c.exec(sh("true"))
                Issue.record("exec into a dead container succeeded")
            } catch let e as ContainerError {
                #expect(e.errno == ESRCH, "\(e)")
            }
        }
    }

    @Test("pod: a container shares the net, ipc and uts namespaces of another")
    func pod() throws {
        try withDaemon { _ in
            let pause = try Container.create("pause", options: [.newNetNS, .newIPCNS, .newUTSNS, .killOnClose])
            let app = try Container.create("app", options: [.newPIDNS, .killOnClose])
            try app.shareNamespaces([.net, .ipc, .uts], with: pause)
            let a = try pause.status(), b = try app.status()
            #expect(a.namespaceInodes["net"] == b.namespaceInodes["net"])
            #expect(a.namespaceInodes["uts"] == b.namespaceInodes["uts"])
            let p = try app.spawnInit(sh("hostname pod-host"))
            #expect(try p.waitCode() == 0)
            // Too late once init started:
            #expect(throws: ContainerError.self) { try app.shareNamespaces([.net], with: pause) }
        }
    }

    @Test("a process whose main thread exited is not taken for the host's (its mount namespace link is gone, its user and pid links remain)")
    func leaderExitedIsNotHost() throws {
        let source = """
            #include <pthread.h>
            #include <sys/syscall.h>
            #include <unistd.h>
            static void *wait_here(void *unused) { sleep(30); return unused; }
            int main(void)
            {
            	pthread_t t;
            	pthread_create(&t, NULL, wait_here, NULL);
            	syscall(SYS_exit, 0); /* the leader only; the thread group lives on */
            	return 0;
            }
            """
        try withStaticProgram("leaderexit", source) { program, _ in
            let pid = try spawn([program])
            let pidfd = try Sys.pidfdOpen(pid)
            defer { try? Sys.pidfdSendSignal(pidfd.raw, SIGKILL); _ = try? Sys.pidfdWait(pidfd.raw) }
            var gone = false
            for _ in 0..<400 {
                gone = !Sys.exists("/proc/\(pid)/ns/mnt") || (try? Sys.readLink("/proc/\(pid)/ns/mnt")) == nil
                if gone { break }
                usleep(5000)
            }
            #expect(gone, "the leader's mount namespace link is still there")
            #expect(!Namespaces.areCallers(pid: pid, kinds: [.user, .mnt, .pid]), "an unreadable namespace counts as not ours")
            #expect(Namespaces.areCallers(pid: getpid(), kinds: [.user, .mnt, .pid]))
        }
    }
}
