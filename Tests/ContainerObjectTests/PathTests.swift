import ContainerObject
import ContainerSystem
import ContainerWire
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("paths and mounts", .enabled(if: isRoot, rootOnly))
struct PathTests {
    /// An empty-root container with a static busybox, so it can run a shell.
    func busyboxContainer(_ name: String, userNS: Bool = true) throws -> Container? {
        guard Sys.exists("/bin/busybox") else { return nil }
        let c = try Container.create(name, options: ContainerOptions([.newEmptyFSNS, .newPIDNS, .killOnClose]).union(userNS ? .newUserNS : []))
        try c.mkdirs("/bin")
        try c.copyIn(hostPath: "/bin/busybox", to: "/bin/busybox")
        try c.symlink("busybox", at: "/bin/sh")
        return c
    }

    @Test("a file made through an at-call shows up inside, owned as asked")
    func atCalls() throws {
        try withDaemon { _ in
            guard let c = try busyboxContainer("atc") else { return }
            try c.mkdirs("/etc/app")
            try c.writeFile("/etc/app/config", "hello from outside\n")
            try c.chown("/etc/app/config", uid: 1_000_000, gid: 1_000_000) // the container's root
            let p = try c.spawnInit(ProcessSpec("/bin/busybox", ["busybox", "sh", "-c",
                "test \"$(busybox cat /etc/app/config)\" = 'hello from outside' && test \"$(busybox stat -c %u /etc/app/config)\" = 0"]))
            #expect(try p.waitCode() == 0)
        }
    }

    @Test("a symlink planted inside cannot redirect an at-call out of the root")
    func noEscape() throws {
        try withDaemon { _ in
            guard let c = try busyboxContainer("esc") else { return }
            let marker = "ctrobj-escape-\(getpid())"
            // The container plants links aiming at the host's /tmp.
            let p = try c.spawnInit(ProcessSpec("/bin/busybox", ["busybox", "sh", "-c",
                "busybox ln -s /../../../../tmp /esc && busybox ln -s ../../../tmp/\(marker) /file && busybox mkdir /tmp && busybox sleep 30"]))
            var tries = 0
            while (try? c.readFile("/esc")) == nil && tries < 200 { usleep(10_000); tries += 1 }
            usleep(50_000)
            try c.writeFile("/esc/\(marker)", "x")
            try c.writeFile("/file", "y")
            #expect(!Sys.exists("/tmp/\(marker)"), "the write escaped to the host")
            // Both landed inside the container's own /tmp.
            #expect(try c.readFile("/tmp/\(marker)") == "y")
            try p.signal(SIGKILL)
            _ = try? p.waitCode()
            unlink("/tmp/\(marker)")
        }
    }

    @Test("mounting from outside fills an empty container: bind, tmpfs and proc")
    func mounts() throws {
        try withDaemon { _ in
            // No user ns here: the kernel lets a user ns mount proc only where a
            // full proc is already visible (mount_too_revealing), and an empty
            // root has none.
            guard let c = try busyboxContainer("mnt", userNS: false) else { return }
            let hostDir = "/tmp/ctrobj-bind-\(getpid())"
            try Sys.mkdir(hostDir)
            defer { unlink("\(hostDir)/data"); rmdir(hostDir) }
            try Sys.writeFileAtomically("\(hostDir)/data", "shared", mode: 0o644)
            try c.mkdirs("/data")
            try c.mkdirs("/scratch")
            try c.mkdirs("/proc")
            try c.bindMount(hostPath: hostDir, target: "/data")
            try c.mount(source: "tmpfs", target: "/scratch", fstype: "tmpfs", data: "size=1m")
            var spec = ProcessSpec("/bin/busybox", ["busybox", "sh", "-c",
                "test \"$(busybox cat /data/data)\" = shared && busybox grep -q ' /scratch tmpfs' /proc/mounts && test $(busybox ls /proc | busybox grep -c '^[0-9]') -lt 10 && test -d /proc/1"])
            spec.gated = true
            let p = try c.spawnInit(spec)
            try c.mount(source: "proc", target: "/proc", fstype: "proc")
            try p.release()
            #expect(try p.waitCode() == 0)
            // The host saw none of it.
            let mounts = try Sys.readFile("/proc/self/mounts")
            #expect(!mounts.contains("/scratch"))
        }
    }

    @Test("a mount inside a NEW_FS_NS container stays there even below a shared host mount")
    func noPropagationToHost() throws {
        try withDaemon { _ in
            let dir = "/tmp/ctrobj-shared-\(getpid())"
            try Sys.mkdir(dir)
            try Sys.mkdir("\(dir)/sub")
            // A shared mount on the host, as systemd makes every mount.
            #expect(mount(dir, dir, nil, UInt(MS_BIND), nil) == 0)
            #expect(mount(nil, dir, nil, UInt(MS_SHARED), nil) == 0)
            defer { umount2(dir, Int32(MNT_DETACH)); rmdir("\(dir)/sub"); rmdir(dir) }
            let c = try Container.create("noprop", options: [.newFSNS, .killOnClose])
            try c.mount(source: "tmpfs", target: "\(dir)/sub", fstype: "tmpfs")
            let mounts = try Sys.readFile("/proc/self/mountinfo")
            #expect(!mounts.contains("\(dir)/sub"), "the container's mount propagated to the host")
        }
    }

    @Test("mounting into a container without its own mount namespace is refused")
    func mountNeedsMntNS() throws {
        try withDaemon { _ in
            let c = try Container.create("nomnt", options: [.newUTSNS, .killOnClose])
            do {
                try c.mount(source: "tmpfs", target: "/mnt", fstype: "tmpfs")
                Issue.record("mounted onto the host")
            } catch let e as ContainerError {
                #expect(e.errno == EINVAL)
                #expect(e.message.contains("would change the host"))
            }
        }
    }
}
