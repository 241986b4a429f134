import ContainerObject
import ContainerSystem
import ContainerWire
import Testing
import UpcallInstall
#if canImport(Glibc)
import Glibc
#endif

/// Key requests through the real kernel and request-key. These change
/// core_pattern and /etc/request-key.d, so they run one at a time and put
/// everything back on every path.
@Suite("upcalls: key requests", .serialized,
       .enabled(if: isRoot && Sys.exists("/bin/keyctl") && Sys.exists("/sbin/request-key"), "needs root and keyutils"))
struct KeyUpcallTests {
    /// With `cHelper: false` the helper is installed from a directory that
    /// has only ctrobj-upcall, so request-key runs the full (Swift) helper.
    func installed(_ d: PrivateDaemon, timeout: Int = 10, cHelper: Bool = true, _ body: () throws -> Void) throws {
        _ = machineLock // before reading: another test process may have its settings in place
        let before = try KernelSettings.read()
        let rkdBefore = Sys.listDirectory(KernelSettings.requestKeyDir).sorted()
        let rkdExisted = Sys.exists(KernelSettings.requestKeyDir)
        var helper = upcallHelper
        if !cHelper {
            let lonely = "/tmp/ctrobj-lonely-helper-\(uniqueSuffix())"
            try Sys.mkdirs(lonely, 0o755)
            helper = "\(lonely)/ctrobj-upcall"
            if symlink(upcallHelper, helper) < 0 { throw ContainerError.sys("symlink \(helper)") }
        }
        defer {
            if !cHelper {
                unlink(helper)
                rmdir(String(helper.dropLast("/ctrobj-upcall".count)))
            }
        }
        let inst = UpcallInstaller(stateDir: d.stateDir, helper: helper, spoolDir: "\(d.stateDir)-spool",
                                   keyTimeoutSeconds: timeout)
        _ = try inst.install()
        // request-key runs the C helper when it is beside ctrobj-upcall.
        let rule = (try? Sys.readFile("\(KernelSettings.requestKeyDir)/ctrobj.conf")) ?? ""
        #expect(rule.contains(cHelper ? "/upcall-key key " : "/upcall key "), "\(rule)")
        defer {
            _ = try? inst.uninstall()
            try? before.restore()
            #expect(Sys.exists(KernelSettings.requestKeyDir) == rkdExisted)
            #expect(Sys.listDirectory(KernelSettings.requestKeyDir).sorted() == rkdBefore)
        }
        try body()
    }

    /// A container with a copy of the host's files, its own request-key.conf
    /// and /etc/hosts (bound over the copies), and an empty request-key.d.
    func keyContainer(_ name: String, conf: String, hosts: String? = nil) throws -> (Container, ContainerProcess, [String]) {
        let c = try Container.create(name, options: [.newFSNS, .newUserNS, .newPIDNS, .newUTSNS, .newNetNS, .killOnClose])
        var files: [String] = []
        let confPath = "/tmp/ctrobj-rk-\(name)-\(getpid()).conf"
        try Sys.writeFileAtomically(confPath, conf, mode: 0o644)
        files.append(confPath)
        try c.bindMount(hostPath: confPath, target: "/etc/request-key.conf", recursive: false)
        if Sys.exists(KernelSettings.requestKeyDir) {
            try c.mount(source: "tmpfs", target: KernelSettings.requestKeyDir, fstype: "tmpfs")
        }
        if let hosts {
            let hostsPath = "/tmp/ctrobj-hosts-\(name)-\(getpid())"
            try Sys.writeFileAtomically(hostsPath, hosts, mode: 0o644)
            files.append(hostsPath)
            try c.bindMount(hostPath: hostsPath, target: "/etc/hosts", recursive: false)
        }
        let p = try c.spawnInit(ProcessSpec("/bin/sleep", ["sleep", "120"]))
        return (c, p, files)
    }

    /// Run a key request inside the container (in a fresh session keyring);
    /// returns (exit code, output).
    func requestInside(_ c: Container, _ script: String) throws -> (Int32, String) {
        let out = "/tmp/ctrobj-keyout-\(getpid())"
        defer { unlink(out) }
        let fd = try Sys.open(out, O_WRONLY | O_CREAT | O_TRUNC, 0o666)
        let p = try c.exec(ProcessSpec("/bin/sh", ["sh", "-c", "keyctl session - sh -c '\(script)'"], stdio: (-1, fd.raw, fd.raw)))
        let code = try p.waitCode(timeoutSeconds: 60)
        return (code, (try? Sys.readFile(out)) ?? "")
    }

    @Test("a user key requested inside a container gets its payload from the container's own request-key.conf",
          arguments: [true, false])
    func userKey(cHelper: Bool) throws {
        try withDaemon { d in
            try installed(d, cHelper: cHelper) {
                let (c, p, files) = try keyContainer("keys", conf: "create user ctrobjtest:* * /bin/keyctl instantiate %k inside-payload %S\n")
                defer { files.forEach { unlink($0) }; try? p.signal(SIGKILL); _ = try? p.waitCode() }
                let (code, out) = try requestInside(c, "keyctl print $(keyctl request2 user ctrobjtest:1 hello @s)")
                #expect(code == 0, "\(out)")
                #expect(out.contains("inside-payload"), "\(out)")
            }
        }
    }

    @Test("a key request's handler gets no more privilege than the container's init (no user namespace, init without capabilities)")
    func handlerBoundedByInit() throws {
        guard Sys.exists("/usr/bin/setpriv") else { return }
        try withDaemon { d in
            try installed(d) {
                // Root's container without a user namespace, as ctrobj-oci and
                // adopted podman containers are; its init drops every
                // capability. Its own request-key handler reports its own.
                let probe = "/tmp/ctrobj-capprobe-\(getpid()).sh"
                try Sys.writeFileAtomically(probe, """
                    #!/bin/sh
                    /bin/keyctl instantiate "$1" "$(grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status | tr -s '\\t\\n' '  ')" "$2"

                    """, mode: 0o755)
                defer { unlink(probe) }
                let c = try Container.create("capkeys", options: [.newFSNS, .newPIDNS, .newUTSNS, .newIPCNS, .killOnClose])
                let confPath = "/tmp/ctrobj-rk-capkeys-\(getpid()).conf"
                try Sys.writeFileAtomically(confPath, "create user ctrobjcap:* * \(probe) %k %S\n", mode: 0o644)
                defer { unlink(confPath) }
                try c.bindMount(hostPath: confPath, target: "/etc/request-key.conf", recursive: false)
                if Sys.exists(KernelSettings.requestKeyDir) {
                    try c.mount(source: "tmpfs", target: KernelSettings.requestKeyDir, fstype: "tmpfs")
                }
                let p = try c.spawnInit(ProcessSpec("/usr/bin/setpriv", ["setpriv", "--bounding-set=-all", "--inh-caps=-all",
                                                                          "--ambient-caps=-all", "--no-new-privs", "/bin/sleep", "120"]))
                defer { try? p.signal(SIGKILL); _ = try? p.waitCode() }
                for _ in 0..<200 where ProcInfo.statusField(pid: p.pid, "CapBnd")?.first != "0000000000000000" { usleep(5000) }
                // The requester itself is a full-capability root exec: what
                // bounds the handler is the container's init.
                let (code, out) = try requestInside(c, "keyctl print $(keyctl request2 user ctrobjcap:1 hello @s)")
                #expect(code == 0, "\(out)")
                #expect(out.contains("CapEff: 0000000000000000") && out.contains("CapBnd: 0000000000000000"),
                        "the handler ran with more capabilities than init: \(out)")
                #expect(out.contains("NoNewPrivs: 1"), "init's no_new_privs reaches the handler: \(out)")
            }
        }
    }

    /// Requests a user key from a second thread (raw syscalls, no libkeyutils)
    /// into a fresh session keyring and prints its payload, or the error.
    static let threadedSource = """
        #include <errno.h>
        #include <pthread.h>
        #include <stdio.h>
        #include <string.h>
        #include <sys/syscall.h>
        #include <unistd.h>
        static const char *desc;
        static void *ask(void *unused)
        {
        	long key = syscall(SYS_request_key, "user", desc, "x", -3 /* session */);
        	if (key < 0) {
        		printf("error %s\\n", strerror(errno));
        		return NULL;
        	}
        	char buf[256];
        	long n = syscall(SYS_keyctl, 11 /* KEYCTL_READ */, key, buf, sizeof(buf) - 1);
        	buf[n < 0 ? 0 : n] = 0;
        	printf("payload %s\\n", buf);
        	return NULL;
        }
        int main(int argc, char **argv)
        {
        	if (argc != 2 || syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, NULL) < 0)
        		return 2;
        	desc = argv[1];
        	pthread_t t;
        	if (pthread_create(&t, NULL, ask, NULL) != 0)
        		return 3;
        	pthread_join(t, NULL);
        	return 0;
        }
        """

    @Test("a key requested by a thread other than the main one is answered inside its container too")
    func threadRequester() throws {
        try withStaticProgram("threaded", Self.threadedSource) { program, work in
            try withDaemon { d in
                try installed(d) {
                    let (c, p, files) = try keyContainer("thr", conf: "create user ctrobjthr:* * /bin/keyctl instantiate %k thread-inside %S\n")
                    defer { files.forEach { unlink($0) }; try? p.signal(SIGKILL); _ = try? p.waitCode() }
                    let out = try Sys.open("\(work)/out", O_WRONLY | O_CREAT | O_TRUNC, 0o666)
                    let code = try c.exec(ProcessSpec(program, ["t", "ctrobjthr:1"], stdio: (-1, out.raw, out.raw))).waitCode(timeoutSeconds: 60)
                    let text = (try? Sys.readFile("\(work)/out")) ?? ""
                    #expect(code == 0 && text.contains("payload thread-inside"), "\(text)")
                }
            }
        }
    }

    @Test("the container's request-key and its handler run inside: as the container's root, in its pid namespace, with no host fds")
    func handlerRunsInside() throws {
        try withDaemon { d in
            try installed(d) {
                // The handler reports who and where it is as the key's payload.
                let script = "/tmp/ctrobj-rk-who-\(getpid()).sh"
                // ... and how many of its fds are namespaces, sockets or pidfds
                // (what the broker holds): none may reach it.
                let leaks = "$(for f in /proc/$$/fd/*; do readlink $f; done | grep -c -E '^(user|mnt|net|pid|uts|ipc|cgroup|time):|^socket:|^anon_inode:')"
                try Sys.writeFileAtomically(script, "#!/bin/sh\nexec /bin/keyctl instantiate \"$1\" \"uid=$(id -u) $(readlink /proc/self/ns/pid) leaked=\(leaks)\" \"$2\"\n",
                                            mode: 0o755)
                defer { unlink(script) }
                let (c, p, files) = try keyContainer("who", conf: "create user ctrobjwho:* * \(script) %k %S\n")
                defer { files.forEach { unlink($0) }; try? p.signal(SIGKILL); _ = try? p.waitCode() }
                let pidNS = try #require(try c.status().namespaceInodes["pid"])
                let (code, out) = try requestInside(c, "keyctl print $(keyctl request2 user ctrobjwho:1 x @s)")
                #expect(code == 0, "\(out)")
                #expect(out.contains("uid=0 pid:[\(pidNS)]"), "container pid ns \(pidNS): \(out)")
                #expect(out.contains("leaked=0"), "the handler holds no namespace, socket or pidfd: \(out)")
            }
        }
    }

    @Test("a dns_resolver key inside a container gets the container's /etc/hosts answer")
    func dnsResolver() throws {
        guard Sys.exists("/sbin/key.dns_resolver") else { return }
        try withDaemon { d in
            try installed(d) {
                #expect(!((try? Sys.readFile("/etc/hosts")) ?? "").contains("ctrobj-dns-test"), "the host must not know the name")
                let (c, p, files) = try keyContainer("dns", conf: "create dns_resolver * * /sbin/key.dns_resolver %k\n",
                                                     hosts: "127.0.0.1 localhost\n10.11.12.13 ctrobj-dns-test\n")
                defer { files.forEach { unlink($0) }; try? p.signal(SIGKILL); _ = try? p.waitCode() }
                let (code, out) = try requestInside(c, "keyctl print $(keyctl request2 dns_resolver ctrobj-dns-test \"\" @s)")
                #expect(code == 0, "\(out)")
                #expect(out.contains("10.11.12.13"), "\(out)")
            }
        }
    }

    @Test("a handler that hangs is killed with what it started, and the key negated: the requester gets an error, not a hang")
    func hangingHandler() throws {
        try withDaemon { d in
            try installed(d, timeout: 2) {
                // The handler hangs, and so does a process it started (a sleep with
                // a length no other process here uses, to find it by).
                let marker = 3000 + Int(getpid() % 1000)
                let script = "/tmp/ctrobj-rk-hang-\(getpid()).sh"
                try Sys.writeFileAtomically(script, "#!/bin/sh\n/bin/sleep \(marker) &\n/bin/sleep 300\n", mode: 0o755)
                defer { unlink(script) }
                let (c, p, files) = try keyContainer("slow", conf: "create user slow:* * \(script)\n")
                defer { files.forEach { unlink($0) }; try? p.signal(SIGKILL); _ = try? p.waitCode() }
                let t0 = Sys.monotonicNanos()
                let (code, out) = try requestInside(c, "keyctl request2 user slow:1 x @s")
                let seconds = Double(Sys.monotonicNanos() - t0) / 1e9
                #expect(code != 0, "\(out)")
                #expect(out.contains("not available") || out.contains("rejected"), "\(out)")
                #expect(seconds >= 2 && seconds < 30, "took \(seconds) s: the handler ran until the 2 s timeout")
                // Nothing the handler started outlives it.
                func lingering() -> [String] {
                    Sys.listDirectory("/proc").filter { $0.allSatisfy(\.isNumber) }.filter {
                        (try? Sys.readFile("/proc/\($0)/cmdline")) == "/bin/sleep\0\(marker)\0"
                    }
                }
                for _ in 0..<100 where !lingering().isEmpty { usleep(20_000) }
                #expect(lingering().isEmpty, "the handler's own child was killed with it: \(lingering())")
            }
        }
    }

    @Test("a host key request answered by a rule in /etc/request-key.d is answered the same after install")
    func hostDropInUnchanged() throws {
        let dropIn = "\(KernelSettings.requestKeyDir)/ctrobj-test-\(getpid()).conf"
        try Sys.mkdirs(KernelSettings.requestKeyDir)
        try Sys.writeFileAtomically(dropIn, "create user ctrobjhost:* * /bin/keyctl instantiate %k host-drop-in %S\n", mode: 0o644)
        defer { unlink(dropIn) }
        let script = "keyctl session - sh -c 'keyctl print $(keyctl request2 user ctrobjhost:1 x @s)'"
        let (beforeCode, beforeOut) = try runProgram(["/bin/sh", "-c", script])
        #expect(beforeCode == 0 && beforeOut.contains("host-drop-in"), "\(beforeOut)")
        try withDaemon { d in
            try installed(d) {
                let (code, out) = try runProgram(["/bin/sh", "-c", script.replacing("ctrobjhost:1", with: "ctrobjhost:2")])
                #expect(code == 0 && out.contains("host-drop-in"), "\(out)")
            }
        }
    }

    @Test("a host key request still goes through the host's request-key configuration")
    func hostUnchanged() throws {
        let script = "keyctl session - sh -c 'keyctl print $(keyctl request2 user debug:ctrobj world @s)'"
        let (beforeCode, beforeOut) = try runProgram(["/bin/sh", "-c", script])
        try withDaemon { d in
            try installed(d) {
                let (code, out) = try runProgram(["/bin/sh", "-c", script])
                #expect(code == beforeCode)
                let payload = { (s: String) in s.split(separator: "\n").filter { !$0.hasPrefix("Joined") } }
                #expect(payload(out) == payload(beforeOut), "before: \(beforeOut) after: \(out)")
            }
        }
    }
}
