import CShim
import ContainerSystem
import ContainerWire
import UpcallHelper
#if canImport(Glibc)
import Glibc
#endif

// ctrobj-upcall: what the kernel runs for an upcall. Thin: parse, call.
//   core <state-dir> %P %u %g %s %t %d %e      (core_pattern pipe mode)
//   corefd <state-dir> %F %P %u %g %s %t %d %e (pipe mode where the kernel has %F, 6.16+)
//   key <state-dir> %k %t %u %g %T %P %S %d    (/etc/request-key.d/ctrobj.conf)
//   serve <state-dir>                          (core_pattern socket mode: the core server)
//   (as <state>/modprobe) -q -- MODULE         (/proc/sys/kernel/modprobe)

let args = CommandLine.arguments
func usage() -> Never {
    Sys.printError("usage: ctrobj-upcall core STATE_DIR PID UID GID SIGNAL TIME DUMPMODE COMM...\n")
    Sys.printError("       ctrobj-upcall corefd STATE_DIR PIDFD PID UID GID SIGNAL TIME DUMPMODE COMM...\n")
    Sys.printError("       ctrobj-upcall serve STATE_DIR\n")
    Sys.printError("       ctrobj-upcall key STATE_DIR KEY TYPE UID GID THREAD_KR PROCESS_KR SESSION_KR DESC...\n")
    exit(2)
}

guard args.count >= 2 else { usage() }

// As /proc/sys/kernel/modprobe the kernel runs <state>/modprobe -q -- MODULE.
if args[0].hasSuffix("/modprobe") {
    var parts = args[0].split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast()
    var env: [String: String] = [:]
    for key in ["CONTAINER_NAME", "CONTAINER_ID"] { if let v = getenv(key) { env[key] = String(cString: v) } }
    exit(ModprobeHelper.run(stateDir: parts.joined(separator: "/"), arguments: Array(args.dropFirst()), environment: env))
}

// Pipe mode: the kernel blocks on a full core pipe (64 KiB) until we read;
// a larger one lets it write on while we find out where the core goes.
if args[1] == "core" || args[1] == "corefd" { Sys.growPipe(0, to: 1 << 20) }

switch args[1] {
case "core", "corefd":
    guard let (state, facts, fdNumber) = CoreFacts.pipeArguments(Array(args.dropFirst())) else { usage() }
    // %F: the kernel put a pidfd of the dumping task at this fd number.
    let pidfd = fdNumber.flatMap { $0 >= 0 ? Pidfd(OwnedFD($0)) : nil }.flatMap { $0.names(facts.pid) ? $0 : nil }
    exit(CoreHelper.run(stateDir: state, facts: facts, pidfd: pidfd))
case "key":
    guard args.count >= 11 else { usage() }
    // The key route is one implementation, in C (CShim keyhelper.c), which
    // the C helper ctrobj-upcall-key runs too.
    exit(ccs_key_helper(CommandLine.argc, CommandLine.unsafeArgv))
case "serve":
    guard args.count == 3 else { usage() }
    // Started by CoreServerControl.start with its readiness pipe on fd 3.
    CoreServer.serve(stateDir: args[2], readyFD: fcntl(3, F_GETFD) >= 0 ? 3 : nil)
default:
    usage()
}
