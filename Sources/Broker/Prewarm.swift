import CShim
import ContainerSystem
import ContainerWire
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Pre-made namespaces for root's next container_create.
///
/// Making the namespaces (a holder process, unshare, the pins) is most of
/// what create costs. After root creates a container with some set of
/// namespace flags, ctrobjd makes one spare with the same set off the
/// caller's path (posted to the loop), and the next create with that set
/// takes it: id, cgroup directory, namespaces, root and pins are ready. A
/// spare is not a container: it has no record, no name, no process; it is
/// discarded at shutdown, and its leftovers after a crash are removed at
/// start. Only root's creates use spares (an unprivileged creator's user
/// namespace must be made as that user).
struct Spare: Sendable {
    let id: UInt64
    let idBase: UInt32?
    let cgroup: CgroupSet
    let namespaces: [NamespaceKind: OwnedFD]
    /// Their pins' names in the spare's directory, c<id>/ns.
    let pins: [NamespaceKind: String]
    let root: OwnedFD?
}

extension Broker {
    /// The flags that decide what the holder makes (pid and cgroup
    /// namespaces are born with init; the others are the record's business).
    static let spareMask: UInt32 = ContainerFlags.newFSNS | ContainerFlags.newEmptyFSNS | ContainerFlags.newUTSNS
        | ContainerFlags.newIPCNS | ContainerFlags.newUserNS | ContainerFlags.newNetNS | ContainerFlags.newTimeNS
    static let maxSpareKinds = 4

    func takeSpare(flags: UInt32) -> Spare? {
        guard config.prewarm else { return nil }
        return spares.removeValue(forKey: flags & Self.spareMask)
    }

    /// Make a spare for this flag set on a worker thread, so that the loop
    /// keeps answering (the caller's next request is usually fork.prepare).
    /// The id and id block are reserved here, on the loop thread.
    func scheduleSpare(flags: UInt32) {
        guard config.prewarm else { return }
        let key = flags & Self.spareMask
        guard spares[key] == nil, !sparesInFlight.contains(key), spares.count + sparesInFlight.count < Self.maxSpareKinds else { return }
        let id = nextID
        nextID += 1
        var base: UInt32?
        if key & ContainerFlags.newUserNS != 0 {
            guard let b = try? allocateIDBase() else { return }
            base = b
            reservedIDBases.insert(b)
        }
        sparesInFlight.insert(key)
        let reserved = base
        let (config, persistence, logger, loop) = (self.config, self.persistence, self.logger, self.loop)
        DispatchQueue.global().async {
            let result = Result { try makeSpare(key, id: id, idBase: reserved, config: config, persistence: persistence) }
            loop.post { [weak self] in
                guard let self else { return }
                self.sparesInFlight.remove(key)
                if let reserved { self.reservedIDBases.remove(reserved) }
                switch result {
                case .success(let s):
                    if self.spares[key] == nil { self.spares[key] = s } else { self.discard(s) }
                case .failure(let e):
                    logger.debug("no spare for \(ContainerFlags.describe(key)): \(e)")
                }
            }
        }
    }

    func discard(_ s: Spare) {
        persistence.remove(directory: "c\(s.id)")
        try? s.cgroup.remove(timeoutMs: 0)
    }

    func discardSpares() {
        // A spare still being made lands through the loop: give it a moment.
        let deadline = Sys.monotonicNanos() + 3_000_000_000
        while !sparesInFlight.isEmpty && Sys.monotonicNanos() < deadline {
            usleep(5000)
            loop.runPosted()
        }
        for (_, s) in spares { discard(s) }
        spares.removeAll()
    }

    /// After a crash: record directories without a record and cgroup
    /// directories of no container are a dead daemon's spares.
    func removeOrphans() {
        let known = Set(byID.values.map(\.directoryName))
        for entry in Sys.listDirectory(config.containersDir) where entry.hasPrefix("c") && !known.contains(entry) {
            if !Sys.exists("\(config.containersDir)/\(entry)/record") {
                removeOrphanCgroup(directory: entry)
                persistence.remove(directory: entry)
            }
        }
        for h in config.cgroupLayout.hierarchies {
            for entry in Sys.listDirectory("\(h)/\(config.cgroupParent)") where entry.hasPrefix("c") && !known.contains(entry) {
                rmdir("\(h)/\(config.cgroupParent)/\(entry)")
            }
        }
    }
}

/// The part of making a spare that may run on any thread: cgroup, holder,
/// pins. Touches no daemon state.
func makeSpare(_ key: UInt32, id: UInt64, idBase: UInt32?, config: BrokerConfig, persistence: Persistence) throws -> Spare {
    let cgroup = CgroupSet(layout: config.cgroupLayout, relativePath: "\(config.cgroupParent)/c\(id)")
    try cgroup.create()
    do {
        let made = try Creator(config: config).makeNamespaces(
            name: "(spare c\(id))", flags: key, creatorUID: 0, creatorGID: 0, idBase: idBase)
        let dir = "c\(id)"
        try persistence.makeDirectory(dir)
        var pins: [NamespaceKind: String] = [:]
        for (kind, fd) in made.namespaces { pins[kind] = try persistence.pin(directory: dir, kind, fd.raw) }
        return Spare(id: id, idBase: idBase, cgroup: cgroup, namespaces: made.namespaces, pins: pins, root: made.root)
    } catch {
        persistence.remove(directory: "c\(id)")
        try? cgroup.remove(timeoutMs: 0)
        throw error
    }
}
