import ContainerObject
import ContainerSystem
import ContainerWire
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The tour's OCI step: ctrobj-oci, the OCI runtime beside this CLI, runs a
/// bundle (`runc spec`'s config.json, a busybox rootfs); the container is a
/// container object like any other, so its crash leaves the core in the
/// bundle's rootfs with nothing configured for it. Runs while the broker is
/// installed (Tour.upcalls).
extension Tour {
    mutating func ociRuntime(busybox: String) throws {
        let runtime = "\(executableDirectory())/ctrobj-oci"
        guard Sys.exists(runtime), Sys.exists("/usr/sbin/runc") else {
            print("\n== ctrobj-oci: skipped (swift build --product ctrobj-oci; apt-get install runc for `runc spec`)")
            return
        }
        step("ctrobj-oci: an OCI runtime whose containers are container objects")
        let bundle = "/tmp/ctrobj-tour-oci-\(getpid())"
        let root = "\(bundle)-state"
        let id = "tour-oci"
        let env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "CTROBJ_SOCKET=\(daemon?.socket ?? DaemonAddress.socketPath())"]
        defer {
            _ = runCapturing([runtime, "--root", root, "delete", "--force", id], env: env)
            removeTree(bundle)
            removeTree(root)
        }
        try Sys.mkdirs("\(bundle)/rootfs/bin", 0o755)
        for d in ["proc", "sys", "dev", "etc", "tmp"] { try Sys.mkdirs("\(bundle)/rootfs/\(d)", 0o755) }
        guard runQuietly(["/bin/cp", busybox, "\(bundle)/rootfs/bin/busybox"]) else { return fail("copy busybox into the bundle") }
        for applet in ["sh", "kill", "sleep", "hostname"] { symlink("busybox", "\(bundle)/rootfs/bin/\(applet)") }
        guard runQuietly(["/usr/sbin/runc", "spec", "--bundle", bundle]) else { return fail("runc spec") }
        let configPath = "\(bundle)/config.json"
        guard var config = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath)))) as? [String: Any],
              var process = config["process"] as? [String: Any] else { return fail("read runc spec's config.json") }
        process["terminal"] = false
        process["args"] = ["/bin/sh", "-c", "sh -c 'kill -SEGV $$'; sleep 600"]
        config["process"] = process
        config["root"] = ["path": "rootfs", "readonly": false]
        config["hostname"] = "oci-tour"
        try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted]).write(to: URL(fileURLWithPath: configPath))
        print("  bundle: \(bundle) (runc spec's config.json: new pid, mount, ipc, uts, net namespaces; a busybox rootfs)")

        var (code, out) = runCapturing([runtime, "--root", root, "create", "--bundle", bundle, id], env: env)
        check(code == 0, "ctrobj-oci create \(id): init waits for start" + (code == 0 ? "" : ": \(out)"))
        guard code == 0 else { return }
        let listed = (try? Container.list())?.first { $0.name == "oci-\(id)" }
        check(listed != nil, "it is container object \"oci-\(id)\" in ctrobjd (state \(listed.map { "\($0.state)" } ?? "?"))")
        (code, out) = runCapturing([runtime, "--root", root, "start", id], env: env)
        check(code == 0, "ctrobj-oci start \(id): init runs, a process in it crashes" + (code == 0 ? "" : ": \(out)"))
        let cores = "\(bundle)/rootfs/var/lib/ctrobj/cores"
        var found: String?
        for _ in 0..<500 {
            found = Sys.listDirectory(cores).first { $0.hasPrefix("core.") }
            if found != nil { break }
            usleep(20_000)
        }
        var st = stat()
        let ok = found.map { stat("\(cores)/\($0)", &st) == 0 && st.st_size > 0 } ?? false
        check(ok, "its core is in the bundle's rootfs: \(found.map { "/var/lib/ctrobj/cores/\($0), \(st.st_size) bytes" } ?? "none") (nothing configured for this runtime)")
        (code, out) = runCapturing([runtime, "--root", root, "state", id], env: env)
        print("  ctrobj-oci state: " + out.split(separator: "\n").joined(separator: " ").prefix(160))
        (code, out) = runCapturing([runtime, "--root", root, "delete", "--force", id], env: env)
        check(code == 0 && !((try? Container.list())?.contains { $0.name == "oci-\(id)" } ?? true),
              "ctrobj-oci delete --force: the container object is gone")
    }

    /// Run a host program; (exit code, stdout and stderr).
    func runCapturing(_ argv: [String], env: [String]) -> (Int32, String) {
        let out = "/tmp/ctrobj-tour-out-\(getpid())"
        defer { unlink(out) }
        guard let pid = try? spawnProcess(argv, env: env, output: out) else { return (-1, "cannot start \(argv[0])") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (code, (try? Sys.readFile(out)) ?? "")
    }
}
