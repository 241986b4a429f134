import CShim
import ContainerSystem
#if canImport(Glibc)
import Glibc
#endif

// ctrobj-attack: a hostile local client of ctrobjd, for the adversarial
// suite (Tests/ContainerObjectTests/AdversarialTests.swift), which runs it as
// a throwaway unprivileged user. It talks to $CTROBJ_SOCKET raw (any bytes,
// fds and numbers) or through the library, and reports one line per step
// (Raw.swift: Report). Exit status: 0 every judged step held, 1 some step
// broke (named on stderr), 2 usage or setup failure.

let scenarios: [String: ([String]) throws -> Void] = [
    "commit-victim": Scenarios.commitVictim,   // finding 1
    "prepare-fds": Scenarios.prepareFDs,       // finding 2
    "spawn-legit": Scenarios.spawnLegit,       // finding 2: the legitimate path still works
    "join-setuid": Scenarios.joinSetuid,       // finding 2: cgroup.join by a peer that became root
    "suid-peer": Scenarios.suidPeer,           // (its helper)
    "socket": Scenarios.sockets,               // finding 3
    "socket-hostnet": Scenarios.socketHostNet, // finding 3 through setns
    "host-namespaces": Scenarios.hostNamespaces, // upcall attribution by a host namespace
    "number": Scenarios.number,                // finding 4
    "create-many": Scenarios.createMany,       // finding 5
    "create-recycle": Scenarios.createRecycle, // finding 5
    "connections": Scenarios.connections,      // finding 5
    "flood": Scenarios.flood,                  // finding 6
    "lib-list": Scenarios.libList,             // finding 6 (timeouts)
    "policy-big": Scenarios.policyBig,         // finding 8
    "bounds": Scenarios.bounds,                // contract 5
    "bind-victim": Scenarios.bindVictim,       // finding 9
    "bind-dir": Scenarios.bindDir,             // finding 9, every path call
    "bind-peel": Scenarios.bindPeel,           // a bind must not uncover what a submount hides
    "bind-remount": Scenarios.bindRemount,     // nor lift a host mount's ro/nodev/noexec
    "open-many": Scenarios.openMany,           // container fds per uid are bounded
    "setns-pidfd": Scenarios.setnsPidfd,       // a pidfd's namespaces only as the kernel would give them
    "names": Scenarios.names,                  // finding 10
    "prepare-two": Scenarios.prepareTwo,       // finding 10
    "wire-junk": Scenarios.wireJunk,           // finding 10, contract 6
    "rights": Scenarios.rights,                // the threat model's refusals
    "fd-holder": Scenarios.fdHolder,
    "cgroup-path": Scenarios.cgroupPath,       // create's cgroup field is root's only
]

ccs_line_buffer_stdout()
let args = Array(CommandLine.arguments.dropFirst())
guard let name = args.first, let run = scenarios[name] else {
    Sys.printError("usage: ctrobj-attack SCENARIO [ARGS...]; scenarios: \(scenarios.keys.sorted().joined(separator: " "))\n")
    exit(2)
}
print("step=whoami\tuid=\(getuid())\tgid=\(getgid())\tscenario=\(name)")
do {
    try run(Array(args.dropFirst()))
} catch is Usage {
    Sys.printError("ctrobj-attack \(name): bad arguments or setup: \(args)\n")
    exit(2)
} catch {
    print("step=setup\tresult=failed\tmessage=\(Report.clean("\(error)"))")
    exit(2)
}
if !Report.broke.isEmpty {
    Sys.printError("ctrobj-attack \(name): broke: \(Report.broke.joined(separator: " "))\n")
    exit(1)
}
exit(0)
