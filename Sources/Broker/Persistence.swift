import CShim
import ContainerSystem
import ContainerWire
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The on-disk form of the container table, so a daemon restart (even after
/// kill -9) loses nothing:
///
///   <state>/containers/c<id>/record          fields of ContainerRecord.persistedFields
///   <state>/containers/c<id>/ns/<kind>-<ino> a bind mount of the namespace's nsfs
///                                            file, made in the pin namespace
///   <state>/containers/mntns                 the pin namespace, pinned once on the host
///
/// The bind mounts keep the namespaces alive without any process in them.
/// They live in the pin namespace (PinNamespace.swift), not in the host's
/// mount table: on the host the pin files are empty.
///
/// Crash consistency: a record file is only ever replaced whole (write to
/// record.tmp, rename), and it names only pins that exist when it is
/// written: pins are made before the record that names them, and a pin is
/// removed only after a record that no longer names it is on disk. So at any
/// kill -9, the record on disk (if any) names pins that exist. At start,
/// pins no record names are removed, a directory without a record is a
/// creation that never finished (removed with its cgroup), and a record
/// whose pins are missing is torn (Broker.restore removes it).
///
/// Migration from the layout before the pin namespace (pins in the host's
/// table): at every start, each host mount below <state>/containers is
/// pinned again inside, and only then unmounted on the host; a crash in
/// between leaves both, and the next start finishes. A mount namespace
/// older than the pin namespace cannot be pinned in it (the kernel refuses,
/// ELOOP: mnt_ns_loop), so such a pin stays on the host until its container
/// goes; `hostPins` names those.
///
/// Sendable: workers (Prewarm) pin and write through it too. `pins` is set
/// once by prepare(), before any worker starts; `hostPins` is under a Mutex.
final class Persistence: @unchecked Sendable {
    let config: BrokerConfig
    private(set) var pins: PinNamespace?
    /// Pins (paths below containersDir) still mounted in the host's table.
    private let hostPinSet = Mutex<Set<String>>([])
    var hostPins: Set<String> { hostPinSet.withLock { $0 } }

    init(config: BrokerConfig) { self.config = config }

    func dir(_ r: ContainerRecord) -> String { "\(config.containersDir)/\(r.directoryName)" }

    /// Where the state directory's mount is shared (any systemd host),
    /// <state>/containers becomes a private mount of its own first: the pin
    /// namespace's pin (containers/mntns), a mount namespace's file, cannot
    /// be mounted where it would propagate (nor could old-layout pins of
    /// mount namespaces).
    func prepare() throws {
        try Sys.mkdirs(config.containersDir, 0o700)
        try MountPropagation.makePrivateIfPropagating(config.containersDir)
        pins = try PinNamespace(pinPath: config.pinNamespacePath, rootDir: config.containersDir)
        migrateHostPins()
    }

    private var pinNS: PinNamespace {
        guard let pins else { preconditionFailure("Persistence.prepare() was not called") }
        return pins
    }

    /// Pins of the old layout (host mounts below containersDir) move into
    /// the pin namespace: pinned inside first, then unmounted on the host.
    func migrateHostPins() {
        let prefix = config.containersDir + "/"
        // No 1 MiB cap here: an old layout of 10,000 containers is 50,000 lines.
        let table = String(decoding: (try? Sys.readBytes("/proc/self/mountinfo", limit: 1 << 30)) ?? [], as: UTF8.self)
        let mounts = table.split(separator: "\n").compactMap { line -> String? in
            let f = line.split(separator: " ")
            guard f.count > 4 else { return nil }
            let point = String(f[4])
            // (the pin namespace's own pin lives there too: never one to move)
            return point.hasPrefix(prefix) && !point.contains("\\") && point != config.pinNamespacePath ? point : nil
        }
        for path in mounts {
            let rel = String(path.dropFirst(prefix.count))
            guard let fd = try? Sys.open(path, O_RDONLY), Namespaces.kind(of: fd.raw) != nil,
                  let ino = try? Namespaces.inode(of: fd.raw) else { continue }
            if (try? pinNS.inode(rel)) != ino {
                do {
                    try pinNS.bind(fd.raw, rel)
                } catch {
                    _ = hostPinSet.withLock { $0.insert(rel) } // ELOOP: a mount namespace older than the pin namespace
                    continue
                }
            }
            Sys.umountDetach(path)
        }
    }

    /// The record is not fsync'd: it describes namespace bind mounts that
    /// do not survive a reboot either; it must survive ctrobjd, which it does.
    /// Pins the new record no longer names are removed after it is written.
    func save(_ r: ContainerRecord) throws {
        let d = dir(r)
        let text = String(decoding: Message("record", r.persistedFields).encoded(), as: UTF8.self)
        do {
            try Sys.writeFileAtomically("\(d)/record", text)
        } catch let e as ContainerError where e.errno == ENOENT {
            try makeDirectory(r.directoryName)
            try Sys.writeFileAtomically("\(d)/record", text)
        }
        for name in r.stalePins where !r.pins.values.contains(name) { unpin(directory: r.directoryName, name) }
        r.stalePins.removeAll()
    }

    func makeDirectory(_ name: String) throws {
        let d = "\(config.containersDir)/\(name)"
        if mkdir(d, 0o700) < 0 && errno != EEXIST { throw ContainerError.sys("mkdir \(d)") }
        if mkdir("\(d)/ns", 0o700) < 0 && errno != EEXIST { throw ContainerError.sys("mkdir \(d)/ns") }
    }

    /// Pin a namespace with a bind mount of its nsfs file; returns the pin's name.
    func pin(directory name: String, _ kind: NamespaceKind, _ fd: CInt) throws -> String {
        let ino = try Namespaces.inode(of: fd)
        let pinName = "\(kind.rawValue)-\(ino)"
        let rel = "\(name)/ns/\(pinName)"
        let path = "\(config.containersDir)/\(rel)"
        if Sys.exists(path) {
            if (try? inode(rel)) == ino { return pinName } // pinned already
            pinNS.umount(rel)
        } else {
            let f = try Sys.open(path, O_WRONLY | O_CREAT, 0o600)
            f.close()
        }
        do {
            try pinNS.bind(fd, rel)
        } catch let e as ContainerError {
            unlink(path)
            throw ContainerError.sys("mount --bind \(kind.rawValue) namespace to \(path) (in the pin namespace)", e.errno)
        }
        return pinName
    }

    func unpin(directory name: String, _ pinName: String) {
        let rel = "\(name)/ns/\(pinName)"
        let path = "\(config.containersDir)/\(rel)"
        pinNS.umount(rel)
        if hostPinSet.withLock({ $0.remove(rel) }) != nil { Sys.umountDetach(path) }
        unlink(path)
    }

    /// The pinned namespace, opened.
    func open(directory name: String, _ pinName: String) throws -> OwnedFD {
        let rel = "\(name)/ns/\(pinName)"
        if hostPins.contains(rel) { return try Sys.open("\(config.containersDir)/\(rel)", O_RDONLY) }
        return try pinNS.open(rel)
    }

    /// The inode of the namespace a pin holds (ESTALE if it holds none).
    func inode(_ rel: String) throws -> UInt64 {
        if hostPins.contains(rel) { return try Namespaces.inode(ofPath: "\(config.containersDir)/\(rel)") }
        return try pinNS.inode(rel)
    }

    /// Drop every pinned namespace and the record's directory.
    func remove(_ r: ContainerRecord) { remove(directory: r.directoryName) }

    func remove(directory name: String) {
        let d = "\(config.containersDir)/\(name)"
        for pinName in Sys.listDirectory("\(d)/ns") { unpin(directory: name, pinName) }
        rmdir("\(d)/ns")
        unlink("\(d)/record")
        unlink("\(d)/record.tmp")
        unlink("\(d)/cgroup") // a requested cgroup's progress (CgroupPath.swift)
        unlink("\(d)/cgroup.tmp")
        rmdir(d)
    }

    struct Loaded {
        let record: ContainerRecord
        /// Set when the record names a pin that is not there (torn).
        let problem: String?
    }

    /// Every record on disk, its pins checked against the pin namespace's
    /// mount table (one read for all: PinNamespace.mounted) and pins it does
    /// not name removed. Unreadable records are skipped (the directory is
    /// then an orphan for removeOrphans).
    func load(unreadable: inout [String]) -> [Loaded] {
        var out: [Loaded] = []
        let mounted = pinNS.mounted()
        var named = Set<String>()
        var loadedDirs = Set<String>()
        for entry in Sys.listDirectory(config.containersDir) where entry.hasPrefix("c") {
            let d = "\(config.containersDir)/\(entry)"
            guard let text = try? Sys.readFile("\(d)/record") else { continue }
            let r: ContainerRecord, m: Message
            do {
                m = try Message.decode(Array(text.utf8))
                r = try ContainerRecord.fromPersisted(m, layout: config.cgroupLayout)
                guard r.directoryName == entry else { throw ContainerError(.protocolError, "record of c\(r.id) in \(entry)") }
            } catch {
                // Left in place for root to look at; never served.
                unreadable.append("\(entry): \((error as? ContainerError)?.message ?? "\(error)")")
                continue
            }
            unlink("\(d)/record.tmp")
            loadedDirs.insert(entry)
            var problem: String?
            for pinName in (m["namespaces"] ?? "").split(separator: ",").map(String.init) {
                let kindName = pinName.split(separator: "-").first.map(String.init) ?? pinName
                guard let kind = NamespaceKind(rawValue: kindName), r.pins[kind] == nil else {
                    problem = "bad namespace entry \"\(pinName)\""
                    continue
                }
                let rel = "\(entry)/ns/\(pinName)"
                let ino: UInt64?
                if hostPins.contains(rel) {
                    ino = try? Namespaces.inode(ofPath: "\(config.containersDir)/\(rel)")
                } else if let pin = mounted[rel], pin.kind == kind.procName || pin.kind == kind.rawValue {
                    ino = pin.inode
                } else {
                    ino = nil
                }
                guard let ino else {
                    problem = "its \(kind.rawValue) namespace pin \(pinName) is missing"
                    continue
                }
                named.insert(rel)
                r.pins[kind] = pinName
                r.namespaceInodes[kind] = ino
            }
            out.append(Loaded(record: r, problem: problem))
        }
        // Pins of loaded records that their record does not name (a crash
        // between a pin and its record, or after set_ns replaced one).
        for rel in mounted.keys where !named.contains(rel) {
            guard let dir = rel.split(separator: "/").first.map(String.init), loadedDirs.contains(dir) else { continue }
            unpin(directory: dir, String(rel.split(separator: "/").last ?? ""))
        }
        return out
    }
}
