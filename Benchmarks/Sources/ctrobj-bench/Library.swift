import ContainerObject
import ContainerSystem
#if canImport(Glibc)
import Glibc
#endif

/// The library side of each scenario, with a breakdown of where its time goes.
struct LibraryRuns {
    /// Per-step samples of create+fork: create, spawnInit, wait, close (until gone).
    var steps: [String: Samples] = [:]
    static let stepNames = ["run (create + spawn init)", "wait", "close"]

    /// container_create + fork_into_container(/bin/true) + wait + close (through
    /// Container.run, the library's create-and-start call): the
    /// containers are CONTAINER_KILL_ON_CLOSE, so the last close removes the
    /// record, as the kernel would free the object; ctrobjd does that after
    /// the caller has moved on.
    mutating func createFork(_ options: ContainerOptions, name: String, recordSteps: Bool) throws -> UInt64 {
        let t0 = now()
        // Container.run: create + fork_into_container in one request.
        let (c, p) = try Container.run(name, options: options, ProcessSpec("/bin/true", environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]))
        let t2 = now()
        let status = try p.wait()
        let t3 = now()
        c.close()
        let t4 = now()
        if status != 0 { throw BenchError("library: /bin/true in \(name) exited with wait status \(status)") }
        if recordSteps {
            for (k, v) in zip(Self.stepNames, [t2 - t0, t3 - t2, t4 - t3]) { steps[k, default: Samples()].add(v) }
        }
        return t4 - t0
    }

    /// A running container whose init sleeps, to be entered.
    static func startTarget(_ options: ContainerOptions, name: String) throws -> (Container, ContainerProcess) {
        let c = try Container.create(name, options: options)
        let p = try c.spawnInit(ProcessSpec("/bin/sleep", ["/bin/sleep", "100000"]))
        return (c, p)
    }

    /// exec(/bin/true) in the running container + wait.
    static func enter(_ c: Container) throws -> UInt64 {
        let t0 = now()
        let p = try c.exec(ProcessSpec("/bin/true", environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]))
        let status = try p.wait()
        let t1 = now()
        if status != 0 { throw BenchError("library: exec /bin/true exited with wait status \(status)") }
        return t1 - t0
    }

    /// One request/reply with ctrobjd carrying the container fd (status):
    /// the cost of a round trip, for the breakdown.
    static func roundTrip(_ c: Container) throws -> UInt64 {
        let t0 = now()
        _ = try c.status()
        return now() - t0
    }
}
