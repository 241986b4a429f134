import ArgumentParser
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// `ctrobj info`: what the running ctrobjd chose at start (the cgroup layout,
/// delegated subtree or configured parent, which controllers come from where),
/// as it wrote it to `<state>/cgroup-placement`.
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the cgroup layout and placement the running ctrobjd chose at start.")

    @Option(help: "ctrobjd's state directory (default: $CTROBJ_STATE_DIR or /run/ctrobj).")
    var stateDir: String?

    func run() throws {
        let dir = stateDir ?? DaemonAddress.stateDir()
        let path = "\(dir)/cgroup-placement"
        guard let text = try? Sys.readFile(path, limit: 16384) else {
            printErr("ctrobj: no \(path): is ctrobjd running with --state-dir \(dir)?")
            throw ExitCode(1)
        }
        print("state:          \(dir)")
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = String(line[..<colon]) + ":"
            print(key + String(repeating: " ", count: max(1, 16 - key.count))
                  + RequestRules.escaped(String(line[line.index(after: colon)...].drop { $0 == " " })))
        }
    }
}
