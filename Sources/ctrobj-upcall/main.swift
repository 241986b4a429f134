import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

// ctrobj-upcall: what the kernel runs for an upcall. Thin: parse, call.
//   core <state-dir> %P %u %g %s %t %d %e      (core_pattern pipe mode)

let args = CommandLine.arguments
func usage() -> Never {
    fputs("usage: ctrobj-upcall core STATE_DIR PID UID GID SIGNAL TIME DUMPMODE COMM...\n", stderr)
    exit(2)
}

guard args.count >= 2 else { usage() }
switch args[1] {
case "core":
    guard args.count >= 10, let pid = pid_t(args[3]), let uid = uid_t(args[4]), let gid = gid_t(args[5]),
          let sig = Int32(args[6]), let time = Int(args[7]), let mode = Int32(args[8]) else { usage() }
    let facts = CoreFacts(pid: pid, uid: uid, gid: gid, signal: sig, time: time, dumpMode: mode,
                          comm: args[9...].joined(separator: " "))
    exit(CoreHelper.run(stateDir: args[2], facts: facts))
default:
    usage()
}
