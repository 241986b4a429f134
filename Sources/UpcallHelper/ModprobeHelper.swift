import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// ctrobj-upcall as /proc/sys/kernel/modprobe (through the symlink
/// <state>/modprobe): the kernel runs `modprobe -q -- MODULE`.
///
/// A stock kernel does not say who caused a module request, and the task
/// that did is not reachable from the helper, so a request is attributed to
/// a container only when the kernel names it: the kernel patch puts
/// CONTAINER_NAME in the helper's environment. Anything else is the host's
/// and goes to the previous modprobe unchanged. A container's request is
/// allowed only if ctrobjd's policy for that container lists the module.
/// Every decision is logged to the kernel log.
public enum ModprobeHelper {
    public static func run(stateDir: String, arguments: [String], environment: [String: String]) -> Int32 {
        let conf = UpcallConfig.load(stateDir: stateDir)
        let previous = conf?.previousModprobe ?? "/sbin/modprobe"
        let module = arguments.last ?? ""
        guard let container = environment["CONTAINER_NAME"], !container.isEmpty else {
            CoreHelper.log("modprobe \(module): host request, passed to \(previous)")
            return execPrevious(previous, arguments)
        }
        do {
            let conn = try Connection.connect("\(stateDir)/upcall.sock")
            try conn.send(Message(Op.Upcall.modprobe, ["container": container, "module": module]))
            let (reply, _) = try conn.receive(timeoutMs: 10_000)
            if reply.op == Op.Upcall.allow {
                CoreHelper.log("modprobe \(module): container \"\(container)\": allowed")
                return execPrevious(previous, arguments)
            }
            CoreHelper.log("modprobe \(module): container \"\(container)\": denied (\(reply["reason"] ?? reply.op))")
            return 1
        } catch {
            CoreHelper.log("modprobe \(module): container \"\(container)\": denied (ctrobjd unreachable: \(error))")
            return 1
        }
    }

    static func execPrevious(_ path: String, _ arguments: [String]) -> Int32 {
        let argv = CStringArray([path] + arguments)
        let envp = CStringArray(["HOME=/", "TERM=linux", "PATH=/sbin:/usr/sbin:/bin:/usr/bin"])
        execve(path, argv.pointers, envp.pointers)
        CoreHelper.log("modprobe: exec \(path): \(errnoDescription(errno))")
        return 1
    }
}
