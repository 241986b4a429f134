import ContainerObject
import ContainerSystem
import ContainerWire
import Testing
import UpcallInstall
#if canImport(Glibc)
import Glibc
#endif

/// The modprobe helper, invoked exactly as the kernel invokes it
/// (`<modprobe path> -q -- MODULE`, env HOME=/ TERM=linux PATH=…): this
/// machine's kernel has no modules, so nothing else can call it.
@Suite("upcalls: module loads", .serialized, .enabled(if: isRoot, rootOnly))
struct ModprobeUpcallTests {
    @Test("host requests pass to the previous modprobe; a container's only with the module in its allow-list")
    func policy() throws {
        _ = machineLock // before reading: another test process may have its settings in place
        let before = try KernelSettings.read()
        defer { try? before.restore() }
        try withDaemon { d in
            let log = "/tmp/ctrobj-fake-modprobe-\(getpid()).log"
            let fake = "/tmp/ctrobj-fake-modprobe-\(getpid())"
            try Sys.writeFileAtomically(fake, "#!/bin/sh\necho \"$@\" >> \(log)\n", mode: 0o755)
            defer { unlink(fake); unlink(log) }
            var inst = UpcallInstaller(stateDir: d.stateDir, helper: upcallHelper, spoolDir: "\(d.stateDir)-spool")
            inst.fallbackModprobe = fake
            _ = try inst.install()
            defer { _ = try? inst.uninstall() }
            if before.modprobe != nil {
                #expect(try Sys.readFile(KernelSettings.modprobePath).trimmingSuffixNewline() == inst.modprobeLink)
            }
            let kernelEnv = ["HOME=/", "TERM=linux", "PATH=/sbin:/usr/sbin:/bin:/usr/bin"]
            func modprobe(_ module: String, container: String? = nil) throws -> (Int32, String) {
                unlink(log)
                let (code, _) = try runProgram([inst.modprobeLink, "-q", "--", module],
                                               env: kernelEnv + (container.map { ["CONTAINER_NAME=\($0)"] } ?? []))
                return (code, ((try? Sys.readFile(log)) ?? "").trimmingSuffixNewline())
            }
            let (c0, l0) = try modprobe("fs-ctrobjtest")
            #expect(c0 == 0 && l0 == "-q -- fs-ctrobjtest", "a host request reaches the previous modprobe unchanged")

            let c = try Container.create("mods", options: [.newNetNS, .killOnClose])
            let (c1, l1) = try modprobe("fs-ctrobjtest", container: "mods")
            #expect(c1 != 0 && l1.isEmpty, "denied by default for containers")
            try c.setPolicy(modules: ["fs-ctrobjtest"])
            let (c2, l2) = try modprobe("fs-ctrobjtest", container: "mods")
            #expect(c2 == 0 && l2 == "-q -- fs-ctrobjtest", "allowed once listed")
            let (c3, l3) = try modprobe("net-pf-99", container: "mods")
            #expect(c3 != 0 && l3.isEmpty, "only the listed module")
            let (c4, l4) = try modprobe("fs-ctrobjtest", container: "not-ours")
            #expect(c4 != 0 && l4.isEmpty, "an unknown container is denied")
        }
    }
}
