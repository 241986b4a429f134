import ContainerObject
import ContainerSystem
import ContainerWire
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("container_create", .enabled(if: isRoot, rootOnly))
struct CreateTests {
    @Test("bad flags and names are EINVAL and change nothing; a taken name is EEXIST")
    func validation() throws {
        try withDaemon { _ in
            func errnoOf(_ name: String, _ flags: UInt32) -> Int32? {
                do { _ = try Container.create(name, options: ContainerOptions(rawValue: flags)); return nil } catch let e as ContainerError { return e.errno } catch { return -1 }
            }
            #expect(errnoOf("a", 0x800) == EINVAL)
            #expect(errnoOf("a", ContainerFlags.newFSNS | ContainerFlags.newEmptyFSNS) == EINVAL)
            #expect(errnoOf("", 0) == EINVAL)
            #expect(errnoOf(String(repeating: "x", count: 24), 0) == EINVAL)
            #expect(errnoOf("a/b", 0) == EINVAL)
            #expect(try Container.list().isEmpty, "a refused create leaves no record")
            let c = try Container.create(String(repeating: "y", count: 23), options: [.killOnClose])
            #expect(errnoOf(String(repeating: "y", count: 23), 0) == EEXIST)
            c.close()
        }
    }

    @Test("an unprivileged caller gets EPERM without a user namespace, and its own uid as root with one")
    func unprivileged() throws {
        try withDaemon { d in
            let env = ["CTROBJ_STATE_DIR=\(d.stateDir)", "PATH=/usr/bin:/bin"]
            let nobody = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "\(buildDir)/ctrobj"]
            let (code, out) = try runProgram(nobody + ["create", "u1-\(getpid())", "--flags", "NEW_PID_NS"], env: env)
            #expect(code == 1)
            #expect(out.contains("CONTAINER_NEW_USER_NS"), "the message names what was refused: \(out)")
            let name = "u2-\(getpid())"
            let (code2, out2) = try runProgram(nobody + ["create", name, "--flags", "NEW_USER_NS|NEW_PID_NS|NEW_UTS_NS"], env: env)
            #expect(code2 == 0, "\(out2)")
            // Root sees it, owned by 65534; its user ns maps 0 to 65534 only.
            let c = try Container.open(name)
            #expect(try c.status().owner == 65534)
            let p = try c.spawnInit(sh("read a b c < /proc/self/uid_map; test \"$a $b $c\" = \"0 65534 1\" && test $(id -u) = 0"))
            #expect(try p.waitCode() == 0)
            try c.destroy()
            // Another unprivileged user may not open it.
            let other = ["/usr/bin/setpriv", "--reuid=65533", "--regid=65533", "--clear-groups", "\(buildDir)/ctrobj"]
            let (code3, out3) = try runProgram(other + ["inspect", name], env: env)
            #expect(code3 == 1 && (out3.contains("no such container") || out3.contains("may not")))
        }
    }

    @Test("CONTAINER_FD_CLOEXEC decides whether the fd survives exec")
    func cloexec() throws {
        try withDaemon { _ in
            let a = try ContainerCalls.create(name: "cx1", flags: ContainerFlags.fdCloexec | ContainerFlags.killOnClose)
            let b = try ContainerCalls.create(name: "cx2", flags: ContainerFlags.killOnClose)
            #expect(Sys.isCloexec(a))
            #expect(!Sys.isCloexec(b))
            close(a)
            close(b)
        }
    }

    @Test("when ctrobjd is not running every call fails with one clear error")
    func daemonDown() throws {
        try DaemonAddress.$override.withValue("/tmp/ctrobj-nonexistent-\(getpid())/ctrobjd.sock") {
            do {
                _ = try Container.create("x", options: [])
                Issue.record("create succeeded without a daemon")
            } catch let e as ContainerError {
                #expect(e.errno == EHOSTDOWN)
                #expect(e.message.contains("ctrobjd is not running"))
                #expect(e.message.contains("start it"))
            }
        }
    }
}
