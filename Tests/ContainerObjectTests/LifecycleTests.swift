import ContainerObject
import ContainerSystem
import ContainerWire
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("limits and lifecycle", .enabled(if: isRoot, rootOnly))
struct LifecycleTests {
    @Test("a fork bomb stops at the pids limit")
    func forkBomb() throws {
        try withDaemon { _ in
            let c = try Container.create("bomb", options: [.newPIDNS, .killOnClose])
            try c.setLimit(.pids, 12)
            // The inner shell dies when fork fails; init (the outer one) stays.
            let p = try c.spawnInit(sh("sh -c 'i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done' 2>/dev/null; sleep 30"))
            var peak: UInt64 = 0
            for _ in 0..<100 {
                peak = max(peak, try c.stats().pids)
                if peak >= 12 { break }
                usleep(20_000)
            }
            usleep(200_000)
            let now = try c.stats().pids
            #expect(peak >= 10)
            #expect(now <= 12, "pids.current \(now) exceeds the limit")
            try p.signal(SIGKILL) // init dies: the pid ns takes every member with it
            _ = try? p.waitCode()
        }
    }

    @Test("KILL_ON_CLOSE removes a container whose init exited just before its last fd closed")
    func killOnCloseAfterExit() throws {
        try withDaemon { d in
            // The CLI waits for init, then exits: its close of the container fd
            // reaches ctrobjd right after init's exit, often in the same turn
            // of its loop. Each run must leave no record behind.
            for i in 0..<6 {
                let name = "koc\(i)"
                let (code, out) = try runProgram([buildDir + "/ctrobj", "run", name, "--flags", "NEW_PID_NS|NEW_FS_NS|KILL_ON_CLOSE",
                                                  "--", "/bin/sleep", i % 2 == 0 ? "0.2" : "0"],
                                                 env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "CTROBJ_SOCKET=\(d.socket)"])
                #expect(code == 0, "ctrobj run: \(out)")
                var left = true
                for _ in 0..<200 {
                    left = try Container.list().contains { $0.name == name }
                    if !left { break }
                    usleep(10_000)
                }
                #expect(!left, "container \(name) is still recorded after its last fd closed")
            }
        }
    }

    @Test("memory and cpu limits land in the cgroup; stats report usage")
    func limitsAndStats() throws {
        try withDaemon { d in
            let c = try Container.create("lim", options: [.newPIDNS, .killOnClose])
            try c.setLimit(.memory, 64 << 20)
            try c.setLimit(.cpu, 500)
            let st = try c.status()
            let layout = CgroupLayout.discover()
            if case .v1(let m) = layout.source(of: "memory") {
                #expect(try Sys.readFile("\(m)/\(st.cgroup)/memory.limit_in_bytes").trimmingSuffixNewline() == "\(64 << 20)")
            }
            if case .v1(let m) = layout.source(of: "cpu") {
                #expect(try Sys.readFile("\(m)/\(st.cgroup)/cpu.cfs_quota_us").trimmingSuffixNewline() == "50000")
            }
            let p = try c.spawnInit(sh("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 5"))
            var cpu: UInt64 = 0
            for _ in 0..<200 { cpu = try c.stats().cpuUsageNanos; if cpu > 10_000_000 { break }; usleep(10_000) }
            #expect(cpu > 10_000_000, "cpu usage is counted")
            #expect(try c.stats().memoryBytes > 0)
            #expect(try c.stats().anonMemoryBytes > 0, "memory.stat's anonymous memory of a running shell")
            try c.setLimit(.cpu, -1)
            if case .v1(let m) = layout.source(of: "cpu") {
                #expect(try Sys.readFile("\(m)/\(st.cgroup)/cpu.cfs_quota_us").trimmingSuffixNewline() == "-1")
            }
            _ = d
            try p.signal(SIGKILL)
            _ = try? p.waitCode()
        }
    }

    @Test("freeze stops every process; thaw lets them run")
    func freezeThaw() throws {
        try withDaemon { _ in
            let c = try Container.create("frz", options: [.newPIDNS, .killOnClose])
            let p = try c.spawnInit(sh("sleep 30; exit 7"))
            // The shell (init, which ignores SIGTERM as any pid-namespace init
            // does) and its sleep: kill reaches the sleep, and then init ends.
            for _ in 0..<500 where try c.stats().pids < 2 { usleep(2000) }
            try c.freeze()
            #expect(try c.status().state == .frozen)
            let stateField = ProcInfo.statusField(pid: p.pid, "State")?.first
            #expect(stateField == "S" || stateField == "D", "a frozen task sleeps")
            try c.thaw()
            #expect(try c.status().state == .running)
            try c.kill(SIGTERM)
            #expect(try p.waitCode() == 7, "the sleep got SIGTERM; init went on to exit 7")
        }
    }

    @Test("closing the fd in every holder kills init and removes the cgroup")
    func killOnClose() throws {
        try withDaemon { _ in
            let c = try Container.create("koc", options: [.newPIDNS, .killOnClose])
            let st = try c.status()
            let p = try c.spawnInit(sh("sleep 30"))
            let copy = try c.fd.duplicate()
            // A forked holder (another process) keeps a reference too.
            let holder = try spawnHolding(copy.raw)
            c.close()
            usleep(100_000)
            #expect(try Sys.pidfdWait(p.pidfd.raw, nohang: true) == nil, "init must live while a copy is open")
            copy.close()
            usleep(100_000)
            #expect(try Sys.pidfdWait(p.pidfd.raw, nohang: true) == nil, "init must live while another process holds it")
            try holder.signal(SIGKILL)
            _ = try holder.waitCode()
            #expect(try p.waitCode() == 128 + SIGKILL)
            let dirs = CgroupSet(layout: .discover(), relativePath: st.cgroup).directories
            var gone = false
            for _ in 0..<200 { gone = dirs.allSatisfy { !Sys.exists($0) }; if gone { break }; usleep(10_000) }
            #expect(gone, "cgroup directories remain: \(dirs)")
            #expect(throws: ContainerError.self) { _ = try Container.open("koc") }
        }
    }

    @Test("when init exits every member dies and the fd reports POLLHUP")
    func initExit() throws {
        try withDaemon { _ in
            let c = try Container.create("hup", options: [.newPIDNS, .killOnClose])
            let p = try c.spawnInit(sh("sleep 30 & sleep 0.2; exit 3"))
            #expect(try p.waitCode() == 3)
            var pfd = pollfd(fd: c.fd.raw, events: Int16(POLLIN), revents: 0)
            #expect(poll(&pfd, 1, 5000) == 1)
            #expect(pfd.revents & Int16(POLLHUP) != 0)
            var st = try c.status()
            for _ in 0..<100 where st.exitStatus == nil { usleep(10_000); st = try c.status() }
            #expect(st.state == .exited && st.exitStatus == 3 << 8)
            #expect(try c.stats().pids == 0)
            // KILL_ON_CLOSE still applies to the dead container's record.
            c.close()
            var gone = false
            for _ in 0..<200 { gone = !(try Container.list()).contains { $0.name == "hup" }; if gone { break }; usleep(10_000) }
            #expect(gone, "closing the last fd of an exited KILL_ON_CLOSE container removes it")
        }
    }

    @Test("after kill -9 and a restart of ctrobjd the container is still listed and usable")
    func daemonRestart() throws {
        let d = try TestDaemon()
        defer { d.stop() }
        try d.with {
            let c = try Container.create("persist", options: [.newPIDNS, .newUTSNS, .newNetNS, .newUserNS, .newFSNS])
            let p = try c.spawnInit(sh("hostname kept; sleep 60"))
            usleep(100_000)
            let before = try c.status()
            d.kill9()
            #expect(try Sys.pidfdWait(p.pidfd.raw, nohang: true) == nil, "the container keeps running while ctrobjd is down")
            try d.start()
            let names = try Container.list().map(\.name)
            #expect(names.contains("persist"))
            // The dead daemon's spare (pre-made namespaces) is gone: one directory, one container.
            #expect(Sys.listDirectory("\(d.stateDir)/containers").filter { $0 != "mntns" }.count == names.count)
            let again = try Container.open("persist")
            let after = try again.status()
            #expect(after.state == .running && after.initPid == before.initPid)
            #expect(after.namespaceInodes == before.namespaceInodes)
            // The old fd still works for calls, and the container is usable.
            #expect(try c.status().name == "persist")
            let e = try again.exec(sh("test $(hostname) = kept"))
            #expect(try e.waitCode() == 0)
            try again.destroy()
            #expect(try p.waitCode() == 128 + SIGKILL)
        }
    }
}

/// A child process that holds an inherited copy of fd and sleeps.
func spawnHolding(_ fd: Int32) throws -> ContainerProcess {
    try Sys.setCloexec(fd, false)
    defer { try? Sys.setCloexec(fd, true) }
    let pid = try spawn(["/bin/sleep", "30"])
    return ContainerProcess.adopt(pid: pid, pidfd: try Sys.pidfdOpen(pid))
}
