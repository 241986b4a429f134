import CShim
import ContainerObject
import ContainerSystem
import ContainerWire
import Testing
import UpcallInstall
#if canImport(Glibc)
import Glibc
#endif

/// Core dumps through the real kernel. These change core_pattern and
/// core_pipe_limit, so they run one at a time and put both back on every
/// path, failures included.
@Suite("upcalls: core dumps", .serialized, .enabled(if: isRoot && Sys.exists("/bin/busybox"), "needs root and busybox-static"))
struct UpcallTests {
    /// Save the kernel settings, run body, restore them whatever happened.
    func preservingKernelSettings(_ body: () throws -> Void) throws {
        _ = machineLock // before reading: another test process may have its settings in place
        let before = try KernelSettings.read()
        defer {
            try? before.restore()
            #expect((try? KernelSettings.read()) == before, "kernel settings were not restored")
        }
        try body()
    }

    /// The broker installed in `mode` for a private daemon, around body;
    /// uninstalled and every kernel setting checked back afterwards.
    func withBroker(_ mode: UpcallInstaller.CoreMode = .auto, _ body: (PrivateDaemon, UpcallInstaller) throws -> Void) throws {
        try preservingKernelSettings {
            try withDaemon { d in
                let inst = installer(d, mode)
                _ = try inst.install()
                defer { _ = try? inst.uninstall() }
                try body(d, inst)
            }
        }
    }

    func installer(_ d: PrivateDaemon, _ mode: UpcallInstaller.CoreMode = .auto) -> UpcallInstaller {
        UpcallInstaller(stateDir: d.stateDir, helper: upcallHelper, spoolDir: "\(d.stateDir)-spool", coreMode: mode)
    }

    /// An empty-root container with busybox whose init sleeps.
    func crashable(_ name: String) throws -> (Container, ContainerProcess) {
        let c = try Container.create(name, options: [.newEmptyFSNS, .newPIDNS, .newUserNS, .newNetNS, .killOnClose])
        try c.mkdirs("/bin")
        try c.copyIn(hostPath: "/bin/busybox", to: "/bin/busybox")
        let p = try c.spawnInit(ProcessSpec("/bin/busybox", ["busybox", "sleep", "120"]))
        return (c, p)
    }

    /// A process inside that kills itself with SIGSEGV (PID 1 would be immune).
    func crash(_ c: Container) throws {
        let p = try c.exec(ProcessSpec("/bin/busybox", ["busybox", "sh", "-c", "busybox sh -c 'busybox kill -SEGV $$'; true"]))
        _ = try p.waitCode(timeoutSeconds: 60)
    }

    func cores(_ c: Container) -> [String] {
        guard let fd = try? c.openFile("/var/lib/ctrobj/cores", flags: O_RDONLY | O_DIRECTORY) else { return [] }
        return Sys.listDirectory("/proc/self/fd/\(fd.raw)").filter { $0.hasPrefix("core.") }.sorted()
    }

    func waitForCores(_ c: Container, count: Int, seconds: Int = 30) -> [String] {
        var found: [String] = []
        for _ in 0..<(seconds * 50) {
            found = cores(c)
            if found.count >= count { break }
            usleep(20_000)
        }
        return found
    }

    @Test("install then uninstall leaves core_pattern and core_pipe_limit byte for byte as before", arguments: allModes)
    func installUninstall(mode: UpcallInstaller.CoreMode) throws {
        try preservingKernelSettings {
            try withDaemon { d in
                // A pattern with odd bytes, to see it come back exactly.
                try Sys.writeFile(KernelSettings.corePatternPath, "/tmp/ctrobj core %e %p")
                try Sys.writeFile(KernelSettings.corePipeLimitPath, "0")
                let before = try KernelSettings.read()
                let inst = installer(d, mode)
                let report = try inst.install()
                #expect(report.mode == mode.rawValue)
                #expect(try Sys.readFile(KernelSettings.corePatternPath).trimmingSuffixNewline() == report.corePattern)
                // The pipe helper needs the kernel to wait for it; socket mode leaves the limit alone.
                #expect(try Sys.readFile(KernelSettings.corePipeLimitPath).trimmingSuffixNewline() == (mode == .pipe ? "64" : "0"))
                let server = CoreServerControl.running(stateDir: d.stateDir)
                #expect((server != nil) == (mode != .pipe), "a core server runs in socket modes only")
                if mode == .pipe { #expect(report.corePattern.hasPrefix("|\(inst.pipeLink) "), "the C pipe helper: \(report.corePattern)") }
                #expect(throws: ContainerError.self) { _ = try inst.install() }
                try inst.uninstall()
                #expect(try KernelSettings.read() == before)
                #expect(!inst.isInstalled)
                #expect(CoreServerControl.running(stateDir: d.stateDir) == nil && !Sys.exists(CoreServer.socketPath(stateDir: d.stateDir)))
                if let server {
                    var pfd = pollfd(fd: server.pidfd.raw, events: Int16(POLLIN), revents: 0)
                    #expect(poll(&pfd, 1, 3000) == 1, "uninstall stops the core server")
                }
            }
        }
    }

    @Test("auto picks the request protocol where the kernel has it, else plain socket mode, else the pipe")
    func autoMode() throws {
        try preservingKernelSettings {
            try withDaemon { d in
                let inst = installer(d)
                let report = try inst.install()
                defer { _ = try? inst.uninstall() }
                // Probed by writing and reading back: "@@/abs" kept means the request protocol (6.17+).
                if report.socketModeSupported {
                    #expect(report.mode == "socket-request" || report.mode == "socket")
                } else {
                    #expect(report.mode == "pipe")
                }
            }
        }
    }

    @Test("a failed install changes nothing")
    func failedInstall() throws {
        try preservingKernelSettings {
            try withDaemon { d in
                let before = try KernelSettings.read()
                var bad = installer(d)
                bad.helper = "/nonexistent/ctrobj-upcall"
                #expect(throws: ContainerError.self) { _ = try bad.install() }
                bad.helper = "\(buildDir)/ctrobj-upcall"
                bad.stateDir = "/tmp/" + String(repeating: "x", count: 100)
                #expect(throws: ContainerError.self) { _ = try bad.install() }
                #expect(!Sys.exists(bad.stateDir + "/upcall"))
                #expect(try KernelSettings.read() == before)
                #expect(!bad.isInstalled)
            }
        }
    }

    @Test("a crash inside a container leaves a whole core inside its root, owned by its root", arguments: allModes)
    func coreInsideContainer(mode: UpcallInstaller.CoreMode) throws {
        try withBroker(mode) { d, inst in
            let (c, p) = try crashable("crash")
            try crash(c)
            let found = waitForCores(c, count: 1)
            try #require(found.count == 1, "cores: \(found)")
            #expect(found[0].hasPrefix("core.busybox."))
            let f = try c.openFile("/var/lib/ctrobj/cores/\(found[0])", flags: O_RDONLY)
            var st = stat()
            fstat(f.raw, &st)
            #expect(st.st_uid == 1_000_000 && st.st_gid == 1_000_000, "owned by the container's root (host id 1000000)")
            #expect(st.st_mode & 0o777 == 0o600)
            let end = try elfCoreEnd(f.raw)
            #expect(end > 0 && UInt64(st.st_size) >= end, "the core is whole: \(st.st_size) bytes, segments end at \(end)")
            try p.signal(SIGKILL)
            _ = try? p.waitCode()
        }
    }

    @Test("an unprivileged owner's core handler runs inside its container as the owner's uid, never as host root; nobody else may set it")
    func unprivilegedHandler() throws {
        try withBroker() { d, inst in
            let env = ["CTROBJ_STATE_DIR=\(d.stateDir)", "PATH=/usr/bin:/bin"]
            func ctrobj(_ uid: Int, _ args: [String]) throws -> (Int32, String) {
                try runProgram(["/usr/bin/setpriv", "--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", "\(buildDir)/ctrobj"] + args, env: env)
            }
            let name = "uh-\(getpid())"
            let (code, out) = try ctrobj(65534, ["create", name, "--flags", "NEW_USER_NS|NEW_FS_NS|NEW_PID_NS"])
            try #require(code == 0, "\(out)")
            let c = try Container.open(name)
            defer { try? c.destroy() }
            // The handler writes where the host can see who ran it.
            let dir = "/tmp/ctrobj-uh-\(uniqueSuffix())"
            try Sys.mkdirs(dir, 0o755)
            chmod(dir, 0o777)
            defer { unlink("\(dir)/handler"); unlink("\(dir)/ran"); rmdir(dir) }
            try Sys.writeFileAtomically("\(dir)/handler", "#!/bin/sh\ncat > /dev/null\nid -u > \(dir)/ran\n", mode: 0o755)
            // Another unprivileged user may not set it; the owner may; modules and devices are root's to grant.
            let (c1, o1) = try ctrobj(65533, ["policy", name, "--core", "handler:\(dir)/handler"])
            #expect(c1 == 1, "\(o1)")
            let (c2, o2) = try ctrobj(65534, ["policy", name, "--core", "handler:\(dir)/handler"])
            #expect(c2 == 0, "\(o2)")
            let (c3, o3) = try ctrobj(65534, ["policy", name, "--modules", "fs-ctrobjtest"])
            #expect(c3 == 1 && o3.contains("only root"), "\(o3)")
            let (c4, o4) = try ctrobj(65534, ["policy", name, "--devices", "loop7"])
            #expect(c4 == 1 && o4.contains("only root"), "\(o4)")
            let initP = try c.spawnInit(sh("sleep 120"))
            defer { try? initP.signal(SIGKILL); _ = try? initP.waitCode() }
            _ = try c.exec(sh("sh -c 'kill -SEGV $$'; true")).waitCode(timeoutSeconds: 60)
            var st = stat()
            for _ in 0..<1500 where stat("\(dir)/ran", &st) != 0 || st.st_size == 0 { usleep(20_000) }
            #expect(st.st_size > 0, "the handler ran")
            #expect(st.st_uid == 65534, "it ran as the owner's uid on the host (65534), not as host root: \(st.st_uid)")
            #expect((try? Sys.readFile("\(dir)/ran"))?.trimmingSuffixNewline() == "0", "and as root inside its container")
        }
    }

    /// Connects to the upcall socket, sends a key request naming pid 1 (no
    /// pidfd), and prints what came back: "reply OP", "eof", or "connect: ERR".
    static let probeSource = """
        #include <errno.h>
        #include <poll.h>
        #include <stdio.h>
        #include <string.h>
        #include <sys/socket.h>
        #include <sys/un.h>
        #include <unistd.h>
        int main(int argc, char **argv)
        {
        	struct sockaddr_un a = { .sun_family = AF_UNIX };
        	if (argc != 2 || strlen(argv[1]) >= sizeof(a.sun_path))
        		return 2;
        	strcpy(a.sun_path, argv[1]);
        	int s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
        	if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
        		printf("connect: %s\\n", strerror(errno));
        		return 0;
        	}
        	const char msg[] = "key\\npid=1\\n";
        	send(s, msg, sizeof(msg) - 1, MSG_NOSIGNAL);
        	struct pollfd p = { .fd = s, .events = POLLIN };
        	char buf[512];
        	ssize_t n = poll(&p, 1, 10000) == 1 ? recv(s, buf, sizeof(buf) - 1, 0) : -1;
        	if (n <= 0) {
        		printf("eof\\n");
        		return 0;
        	}
        	buf[n] = 0;
        	*strchrnul(buf, '\\n') = 0;
        	printf("reply %s\\n", buf);
        	return 0;
        }
        """

    @Test("the upcall socket serves only root outside every container: root in a container and other users are refused and logged")
    func upcallSocketPeers() throws {
        try withStaticProgram("probe", Self.probeSource) { probe, work in
            try withDaemon { d in
                let sock = "\(d.stateDir)/upcall.sock"
                // Host root, our namespaces: served (an error answer: pid 1 came without a pidfd).
                let (_, host) = try runProgram([probe, sock])
                #expect(host.hasPrefix("reply error"), "\(host)")
                // Another host user: the socket is root's (0600).
                let (_, nobody) = try runProgram(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", probe, sock])
                #expect(nobody.hasPrefix("connect:") || nobody.hasPrefix("eof"), "\(nobody)")
                // Host uid 0 inside a container (no user namespace: root's own mount and pid namespaces):
                // it can reach the socket, and ctrobjd refuses it.
                let c = try Container.create("peer-\(getpid())", options: [.newFSNS, .newPIDNS, .killOnClose])
                defer { c.close() }
                let out = try Sys.open("\(work)/out", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                let code = try c.spawnInit(ProcessSpec(probe, ["probe", sock], stdio: (-1, out.raw, out.raw))).waitCode(timeoutSeconds: 30)
                let inside = (try? Sys.readFile("\(work)/out")) ?? ""
                #expect(code == 0 && inside.hasPrefix("eof"), "\(inside)")
                let log = (try? Sys.readFile(d.logPath)) ?? ""
                #expect(log.contains("upcall socket: refused peer"), "ctrobjd logs the refusal")
            }
        }
    }

    /// Crashes in its second thread (SIGSEGV sent to that thread only).
    static let threadCrashSource = """
        #include <pthread.h>
        #include <signal.h>
        #include <unistd.h>
        static void *crash(void *unused)
        {
        	pthread_kill(pthread_self(), SIGSEGV);
        	pause();
        	return unused;
        }
        int main(void)
        {
        	pthread_t t;
        	if (pthread_create(&t, NULL, crash, NULL) != 0)
        		return 3;
        	pthread_join(t, NULL);
        	return 4;
        }
        """

    /// With the broker installed in `mode`: run `program` as /bin/NAME in a
    /// crashable container, as its root; it must die of SIGSEGV. Returns the
    /// one core it left: its file name, its stat, and whether it is whole.
    func coreOf(program: String, name: String, mode: UpcallInstaller.CoreMode) throws -> (String, stat, Bool) {
        var result: (String, stat, Bool)?
        try withBroker(mode) { d, inst in
            let (c, p) = try crashable(name)
            defer { try? p.signal(SIGKILL); _ = try? p.waitCode() }
            try c.copyIn(hostPath: program, to: "/bin/\(name)")
            let code = try c.exec(ProcessSpec("/bin/\(name)", [name])).waitCode(timeoutSeconds: 60)
            try #require(code == 128 + SIGSEGV, "\(name) exited \(code)")
            let found = waitForCores(c, count: 1)
            try #require(found.count == 1, "cores: \(found)")
            let f = try c.openFile("/var/lib/ctrobj/cores/\(found[0])", flags: O_RDONLY)
            var st = stat()
            fstat(f.raw, &st)
            let end = try elfCoreEnd(f.raw)
            result = (found[0], st, end > 0 && UInt64(st.st_size) >= end)
        }
        return try #require(result)
    }

    @Test("a crash in a thread other than the main one is routed into its container like any other", arguments: allModes)
    func threadCrash(mode: UpcallInstaller.CoreMode) throws {
        try withStaticProgram("threadcrash", Self.threadCrashSource) { program, _ in
            let (name, st, whole) = try coreOf(program: program, name: "threadcrash", mode: mode)
            #expect(name.hasPrefix("core.threadcrash."))
            #expect(st.st_uid == 1_000_000 && st.st_mode & 0o777 == 0o600)
            #expect(whole, "the core is whole")
        }
    }

    /// A program that drops from the container's root to uid/gid 1000 without
    /// exec, so the kernel marks it non-dumpable (fs.suid_dumpable decides:
    /// 2 is "root only"), then crashes: what a privileged program that gave
    /// up its ids but still holds root's secrets in memory looks like.
    static let dropperSource = """
        #include <signal.h>
        #include <sys/prctl.h>
        #include <unistd.h>
        int main(void)
        {
        	if (setresgid(1000, 1000, 1000) || setresuid(1000, 1000, 1000))
        		return 3;
        	if (prctl(PR_GET_DUMPABLE) != 2)
        		return 4; /* not the case under test */
        	raise(SIGSEGV);
        	return 5;
        }
        """

    @Test("dumpability: the core of a process that dropped root's ids goes to the container's root only, never to its user",
          arguments: allModes)
    func nonDumpableCoreIsRootOnly(mode: UpcallInstaller.CoreMode) throws {
        let suidDumpable = "/proc/sys/fs/suid_dumpable"
        let savedSuid = try Sys.readFile(suidDumpable)
        defer {
            try? Sys.writeFile(suidDumpable, savedSuid)
            #expect((try? Sys.readFile(suidDumpable)) == savedSuid, "fs.suid_dumpable restored")
        }
        try withStaticProgram("dropper", Self.dropperSource) { program, _ in
            // 2: the kernel dumps non-dumpable processes, as root only (0 would not dump them at all).
            try Sys.writeFile(suidDumpable, "2")
            // (The dropper exits 4 instead of crashing if it is still dumpable.)
            let (_, st, whole) = try coreOf(program: program, name: "dropper", mode: mode)
            #expect(st.st_uid == 1_000_000 && st.st_gid == 1_000_000,
                    "owned by the container's root (host 1000000), not by its uid 1000 (host 1001000): \(st.st_uid)")
            #expect(st.st_mode & 0o777 == 0o600)
            #expect(whole, "the core is whole")
        }
    }

    @Test("a container's own core handler runs inside it with the core on stdin and its own view of the ids", arguments: allModes)
    func coreHandler(mode: UpcallInstaller.CoreMode) throws {
        try withBroker(mode) { d, inst in
            let (c, p) = try crashable("handled")
            try c.mkdirs("/cores")
            try c.writeFile("/bin/handler", "#!/bin/busybox sh\nbusybox cat > /cores/core.$1\necho \"$@\" > /cores/args\nbusybox id -u >> /cores/args\n", mode: 0o755)
            try c.setPolicy(core: "handler:/bin/handler")
            #expect(throws: ContainerError.self) { try c.setPolicy(core: "handler:relative") }
            try crash(c)
            var args = ""
            for _ in 0..<500 { args = (try? c.readFile("/cores/args")) ?? ""; if args.contains("\n0") { break }; usleep(10_000) }
            let words = args.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
            // PID UID GID SIGNAL TIME COMM, then the handler's own uid.
            #expect(words.count >= 7, "\(args)")
            if words.count >= 7 {
                #expect(words[1] == "0" && words[2] == "0", "the crashing root's ids as the container sees them: \(args)")
                #expect(words[3] == "11")
                #expect(words.last == "0", "the handler runs as the container's root")
                let core = try c.openFile("/cores/core.\(words[0])", flags: O_RDONLY)
                #expect(try elfCoreEnd(core.raw) > 0)
            }
            #expect(cores(c).isEmpty, "the handler, not the default file route, got it")
            try p.signal(SIGKILL)
            _ = try? p.waitCode()
        }
    }

    @Test("a container made by unshare(1) and adopted gets its cores like our own")
    func adoptedUnshare() throws {
        try withBroker() { d, inst in
            // unshare's child: new user (root mapped), pid, mount, uts, net namespaces,
            // with a private tmpfs over /var/lib so nothing lands on the host.
            let u = try spawn(["/usr/bin/unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child", "--mount",
                               "--uts", "--net", "/bin/sh", "-c", "mount -t tmpfs none /var/lib && exec sleep 60"])
            let unshareFD = try Sys.pidfdOpen(u)
            defer { try? Sys.pidfdSendSignal(unshareFD.raw, SIGKILL); _ = try? Sys.pidfdWait(unshareFD.raw) }
            var child: pid_t = 0
            for _ in 0..<500 {
                let kids = ((try? Sys.readFile("/proc/\(u)/task/\(u)/children")) ?? "").split(separator: " ").compactMap { pid_t($0) }
                if let k = kids.first, ProcInfo.comm(pid: k) == "sleep" { child = k; break }
                usleep(10_000)
            }
            try #require(child > 0, "unshare's child did not start")
            let c = try Container.adopt("adopted", pid: child)
            let st = try c.status()
            #expect(st.namespaceInodes["net"] == Namespaces.inode(pid: child, kind: .net))
            #expect(st.namespaceInodes["pid"] == Namespaces.inode(pid: child, kind: .pid))
            #expect(st.state == .running && st.initPid == child)
            let (code, _) = try runProgram(["/usr/bin/nsenter", "-t", "\(child)", "-U", "-m", "-p", "-u", "-n", "--preserve-credentials",
                                            "/bin/sh", "-c", "sh -c 'kill -SEGV $$'; true"])
            #expect(code == 0)
            let found = waitForCores(c, count: 1)
            #expect(found.count == 1 && found.first?.hasPrefix("core.sh.") == true, "\(found)")
            try c.destroy()
            #expect(try Sys.pidfdWait(unshareFD.raw, nohang: true) == nil, "forgetting an adopted container does not kill it")
        }
    }

    @Test("a host process in a network namespace a container joined keeps its core: joined namespaces attribute nothing")
    func joinedNamespaceAttributesNothing() throws {
        try preservingKernelSettings {
            try withDaemon { d in
                let dir = "/tmp/ctrobj-joinedcores-\(getpid())"
                try Sys.mkdir(dir, 0o777)
                defer { removeTree(dir) }
                try Sys.writeFile(KernelSettings.corePatternPath, "\(dir)/core.%e.%p")
                let inst = installer(d)
                _ = try inst.install()
                defer { _ = try? inst.uninstall() }
                // A host daemon in a network namespace of its own, as a named
                // netns (`ip netns`) is; a container without a user namespace joins it.
                let holder = try spawn(["/usr/bin/unshare", "-n", "/bin/sleep", "60"])
                let holderFD = try Sys.pidfdOpen(holder)
                defer { try? Sys.pidfdSendSignal(holderFD.raw, SIGKILL); _ = try? Sys.pidfdWait(holderFD.raw) }
                let own = try Sys.readLink("/proc/self/ns/net")
                for _ in 0..<200 where (try? Sys.readLink("/proc/\(holder)/ns/net")) == own { usleep(5000) }
                let c = try Container.create("joiner", options: [.newEmptyFSNS, .newPIDNS, .killOnClose])
                let net = try Sys.open("/proc/\(holder)/ns/net", O_RDONLY)
                try ContainerCalls.setNamespaces(c.fd.raw, nstypes: NamespaceKind.net.cloneFlag, source: net.raw)
                try c.mkdirs("/bin")
                try c.copyIn(hostPath: "/bin/busybox", to: "/bin/busybox")
                let p = try c.spawnInit(ProcessSpec("/bin/busybox", ["busybox", "sleep", "120"]))
                defer { try? p.signal(SIGKILL); _ = try? p.waitCode() }
                // A host process crashes in that network namespace.
                let (code, out) = try runProgram(["/usr/bin/nsenter", "--net=/proc/\(holder)/ns/net", "/bin/sh", "-c",
                                                  "ulimit -c unlimited; sh -c 'kill -SEGV $$'; true"])
                #expect(code == 0, "\(out)")
                var files: [String] = []
                for _ in 0..<250 { files = Sys.listDirectory(dir); if !files.isEmpty { break }; usleep(20_000) }
                #expect(files.count == 1, "the host's pattern got the host process's core: \(files)")
                #expect(cores(c).isEmpty, "a joined namespace attributed a host process to the container: \(cores(c))")
            }
        }
    }

    @Test("a host crash behaves exactly as before install", arguments: pipeAndRequest)
    func hostCrashUnchanged(mode: UpcallInstaller.CoreMode) throws {
        try preservingKernelSettings {
            try withDaemon { d in
                let dir = "/tmp/ctrobj-hostcores-\(getpid())"
                try Sys.mkdir(dir, 0o777)
                defer { removeTree(dir) }
                try Sys.writeFile(KernelSettings.corePatternPath, "\(dir)/core.%e.%p")
                let inst = installer(d, mode)
                _ = try inst.install()
                defer { _ = try? inst.uninstall() }
                // With RLIMIT_CORE 0 the old pattern gave no file; with a limit, a file by the old pattern.
                let (c0, _) = try runProgram(["/bin/sh", "-c", "ulimit -c 0; sh -c 'kill -SEGV $$'; true"])
                #expect(c0 == 0)
                usleep(300_000)
                #expect(Sys.listDirectory(dir).isEmpty, "RLIMIT_CORE 0 must still mean no core")
                let (c1, _) = try runProgram(["/bin/sh", "-c", "ulimit -c unlimited; sh -c 'kill -SEGV $$'; true"])
                #expect(c1 == 0)
                var files: [String] = []
                for _ in 0..<250 { files = Sys.listDirectory(dir); if !files.isEmpty { break }; usleep(20_000) }
                #expect(files.count == 1 && files.first?.hasPrefix("core.sh.") == true, "\(files)")
                if let name = files.first {
                    let fd = try Sys.open("\(dir)/\(name)", O_RDONLY)
                    #expect(try elfCoreEnd(fd.raw) > 0)
                }
            }
        }
    }

    @Test("ctrobjd down during a crash: the core is spooled and delivered when it comes back", arguments: pipeAndRequest)
    func spoolWhileDown(mode: UpcallInstaller.CoreMode) throws {
        try preservingKernelSettings {
            let d = try TestDaemon()
            defer { d.stop(); removeTree("\(d.stateDir)-spool") }
            try d.with {
                let inst = installer(d, mode)
                _ = try inst.install()
                defer { _ = try? inst.uninstall() }
                let (c, p) = try crashable("spooled")
                // The crasher starts now and dies after ctrobjd is gone.
                let crasher = try c.exec(ProcessSpec("/bin/busybox", ["busybox", "sh", "-c", "busybox sleep 0.5; busybox kill -SEGV $$"]))
                d.kill9()
                _ = try crasher.waitCode(timeoutSeconds: 60)
                let spooled = Sys.listDirectory("\(d.stateDir)-spool").filter { $0.hasSuffix(".meta") }
                #expect(spooled.count == 1, "spool: \(spooled)")
                try d.start()
                let found = waitForCores(c, count: 1)
                #expect(found.count == 1, "delivered after restart: \(found)")
                var empty = false
                for _ in 0..<100 { empty = Sys.listDirectory("\(d.stateDir)-spool").isEmpty; if empty { break }; usleep(20_000) }
                #expect(empty, "the spool is emptied once delivered")
                try p.signal(SIGKILL)
                _ = try? p.waitCode()
            }
        }
    }

    @Test("50 concurrent crashes across 5 containers: 50 cores, each in its own container", arguments: pipeAndRequest)
    func concurrentCrashes(mode: UpcallInstaller.CoreMode) throws {
        try withBroker(mode) { d, inst in
            var boxes: [(Container, ContainerProcess)] = []
            for i in 0..<5 { boxes.append(try crashable("many\(i)")) }
            var crashers: [ContainerProcess] = []
            for (c, _) in boxes {
                for _ in 0..<10 {
                    crashers.append(try c.exec(ProcessSpec("/bin/busybox", ["busybox", "sh", "-c", "busybox kill -SEGV $$"])))
                }
            }
            for p in crashers { _ = try? p.waitCode(timeoutSeconds: 120) }
            for (i, (c, _)) in boxes.enumerated() {
                let found = waitForCores(c, count: 10, seconds: 60)
                #expect(found.count == 10, "container many\(i) has \(found.count) cores")
                // Each core names a pid of that container's own pid ns.
                #expect(Set(found).count == found.count)
            }
            for (_, p) in boxes { try? p.signal(SIGKILL); _ = try? p.waitCode() }
        }
    }

    @Test("pipe mode: the C helper hands a container's core to ctrobjd itself, without the full helper")
    func pipeHelperDirect() throws {
        try withBroker(.pipe) { d, inst in
            try #require(Sys.exists(inst.pipeLink), "ctrobj-upcall-pipe is built beside ctrobj-upcall")
            // Take the full helper away: only the C helper's own path can deliver now.
            unlink(inst.helperLink)
            #expect(symlink("/nonexistent/ctrobj-upcall", inst.helperLink) == 0)
            let (c, p) = try crashable("direct")
            try crash(c)
            let found = waitForCores(c, count: 1)
            #expect(found.count == 1, "delivered through ctrobjd by the C helper: \(found)")
            try p.signal(SIGKILL)
            _ = try? p.waitCode()
        }
    }

    @Test("a core that cannot be written inside its container is kept on the host, root's only, not lost")
    func undeliverableKept() throws {
        try withBroker() { d, inst in
            let (c, p) = try crashable("nowhere")
            // The core directory is taken by a file: nothing can be made there.
            try c.mkdirs("/var/lib/ctrobj")
            try c.writeFile("/var/lib/ctrobj/cores", "not a directory\n", mode: 0o644)
            try crash(c)
            let spool = "\(d.stateDir)-spool"
            var kept: [String] = []
            for _ in 0..<250 {
                kept = Sys.listDirectory(spool).filter { $0.hasSuffix(".undeliverable") }
                if !kept.isEmpty { break }
                usleep(20_000)
            }
            try #require(kept.count == 1, "spool: \(Sys.listDirectory(spool))")
            let core = try Sys.open("\(spool)/\(kept[0].dropLast(".undeliverable".count)).core", O_RDONLY)
            var st = stat()
            fstat(core.raw, &st)
            #expect(st.st_uid == 0 && st.st_mode & 0o777 == 0o600)
            #expect(try elfCoreEnd(core.raw) > 0, "the whole core is kept")
            var dirSt = stat()
            #expect(stat(spool, &dirSt) == 0 && dirSt.st_mode & 0o777 == 0o700)
            try p.signal(SIGKILL)
            _ = try? p.waitCode()
            removeTree(spool)
        }
    }

    @Test("socket mode: a core server that dies is started again by ctrobjd, and the next crash is delivered")
    func coreServerSupervised() throws {
        try withBroker(.socketRequest) { d, inst in
            let first = try #require(CoreServerControl.running(stateDir: d.stateDir))
            try Sys.pidfdSendSignal(first.pidfd.raw, SIGKILL)
            var again: pid_t?
            for _ in 0..<300 {
                if let r = CoreServerControl.running(stateDir: d.stateDir), r.pid != first.pid { again = r.pid; break }
                usleep(10_000)
            }
            #expect(again != nil, "ctrobjd restarts the core server within its half-second housekeeping")
            if let again {
                // A daemon that outlives ctrobjd keeps nothing of ctrobjd's: stdio and its socket.
                // (Its pid file appears just before it closes the ready pipe: allow it that moment.)
                var fds: [Int] = [], links: [String] = []
                for _ in 0..<200 {
                    fds = Sys.listDirectory("/proc/\(again)/fd").compactMap { Int($0) }.sorted()
                    links = fds.map { readlinkText("/proc/\(again)/fd/\($0)") }
                    if fds.count == 4 { break }
                    usleep(5000)
                }
                #expect(fds.prefix(3) == [0, 1, 2] && links.dropFirst(3).allSatisfy { $0.hasPrefix("socket:") } && fds.count == 4,
                        "stdio and core.sock only: fds \(fds): \(links)")
            }
            let (c, p) = try crashable("supervised")
            try crash(c)
            #expect(waitForCores(c, count: 1).count == 1)
            try p.signal(SIGKILL)
            _ = try? p.waitCode()
        }
    }

    @Test("socket mode: a connection that is not the kernel dumping a task is refused, the server keeps serving")
    func coreServerRefusesOthers() throws {
        try withBroker(.socketRequest) { d, inst in
            let path = CoreServer.socketPath(stateDir: d.stateDir)
            var st = stat()
            #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o600 && st.st_uid == 0, "only root (and the kernel) can connect")
            // Root connecting by hand and sending an "ELF core": refused, nothing delivered.
            let s = socket(AF_UNIX, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
            let fd = OwnedFD(s)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in Array(path.utf8).enumerated() { p[i] = b } }
            let r = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd.raw, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            try #require(r == 0)
            try Sys.write(fd.raw, "\u{7f}ELF fake core")
            var pfd = pollfd(fd: fd.raw, events: Int16(POLLIN), revents: 0)
            #expect(poll(&pfd, 1, 5000) == 1)
            var byte: UInt8 = 0
            #expect(read(fd.raw, &byte, 1) <= 0, "the server hangs up on it (EOF or a reset: our bytes were left unread)")
            #expect(Sys.listDirectory("\(d.stateDir)-spool").isEmpty)
            // And real crashes still get through.
            let (c, p) = try crashable("afterfake")
            try crash(c)
            #expect(waitForCores(c, count: 1).count == 1)
            try p.signal(SIGKILL)
            _ = try? p.waitCode()
        }
    }
}

/// readlink(2) ("" when it fails).
func readlinkText(_ path: String) -> String {
    var buf = [CChar](repeating: 0, count: 256)
    let n = readlink(path, &buf, buf.count - 1)
    return n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
}

let allModes: [UpcallInstaller.CoreMode] = [.pipe, .socketRequest, .socket]
let pipeAndRequest: [UpcallInstaller.CoreMode] = [.pipe, .socketRequest]

/// The end of the last segment of an ELF core (0 if it is not one).
func elfCoreEnd(_ fd: Int32) throws -> UInt64 {
    var h = [UInt8](repeating: 0, count: 64)
    guard pread(fd, &h, 64, 0) == 64, h[0] == 0x7f, h[1] == 0x45, h[2] == 0x4c, h[3] == 0x46 else { return 0 }
    func u16(_ b: [UInt8], _ o: Int) -> UInt64 { UInt64(b[o]) | UInt64(b[o + 1]) << 8 }
    func u64(_ b: [UInt8], _ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[o + $1]) << (8 * UInt64($1)) } }
    guard u16(h, 16) == 4 else { return 0 } // ET_CORE
    let phoff = u64(h, 32), phentsize = u16(h, 54), phnum = u16(h, 56)
    var end: UInt64 = 0
    for i in 0..<phnum {
        var ph = [UInt8](repeating: 0, count: 56)
        guard pread(fd, &ph, 56, off_t(phoff + i * phentsize)) == 56 else { return 0 }
        end = max(end, u64(ph, 8) + u64(ph, 32))
    }
    return end
}
