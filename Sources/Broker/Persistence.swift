import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// The on-disk form of the container table, so a daemon restart (even after
/// kill -9) loses nothing:
///
///   <state>/containers/c<id>/record          fields of ContainerRecord.persistedFields
///   <state>/containers/c<id>/ns/<kind>-<ino> a bind mount of the namespace's nsfs file
///
/// The bind mounts keep the namespaces alive without any process in them.
///
/// Crash consistency: a record file is only ever replaced whole (write to
/// record.tmp, rename), and it names only pins that exist when it is
/// written: pins are made before the record that names them, and a pin is
/// removed only after a record that no longer names it is on disk. So at any
/// kill -9, the record on disk (if any) names pins that exist. At start,
/// pins no record names are removed, a directory without a record is a
/// creation that never finished (removed with its cgroup), and a record
/// whose pins are missing is torn (Broker.restore removes it).
struct Persistence {
    let config: BrokerConfig

    func dir(_ r: ContainerRecord) -> String { "\(config.containersDir)/\(r.directoryName)" }

    /// Pins go in a private mount where the state directory's mount is
    /// shared (any systemd host): a mount namespace's pin cannot propagate.
    func prepare() throws {
        try Sys.mkdirs(config.containersDir, 0o700)
        try MountPropagation.makePrivateIfPropagating(config.containersDir)
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
        let path = "\(config.containersDir)/\(name)/ns/\(pinName)"
        if Sys.exists(path) {
            if (try? Namespaces.inode(ofPath: path)) == ino { return pinName } // pinned already
            _ = ccs_umount_detach(path)
        } else {
            let f = try Sys.open(path, O_WRONLY | O_CREAT, 0o600)
            f.close()
        }
        if ccs_bind_mount_fd(fd, path) < 0 {
            let e = errno
            unlink(path)
            throw ContainerError.sys("mount --bind \(kind.rawValue) namespace to \(path)", e)
        }
        return pinName
    }

    func unpin(directory name: String, _ pinName: String) {
        let path = "\(config.containersDir)/\(name)/ns/\(pinName)"
        _ = ccs_umount_detach(path)
        unlink(path)
    }

    /// The pinned namespace, opened.
    func open(directory name: String, _ pinName: String) throws -> OwnedFD {
        try Sys.open("\(config.containersDir)/\(name)/ns/\(pinName)", O_RDONLY)
    }

    /// Drop every pinned namespace and the record's directory.
    func remove(_ r: ContainerRecord) { remove(directory: r.directoryName) }

    func remove(directory name: String) {
        let d = "\(config.containersDir)/\(name)"
        for pinName in Sys.listDirectory("\(d)/ns") { unpin(directory: name, pinName) }
        rmdir("\(d)/ns")
        unlink("\(d)/record")
        unlink("\(d)/record.tmp")
        rmdir(d)
    }

    struct Loaded {
        let record: ContainerRecord
        /// Set when the record names a pin that is not there (torn).
        let problem: String?
    }

    /// Every record on disk, its pins checked (stat, no fd kept) and pins
    /// it does not name removed. Unreadable records are skipped (the
    /// directory is then an orphan for removeOrphans).
    func load(unreadable: inout [String]) -> [Loaded] {
        var out: [Loaded] = []
        for entry in Sys.listDirectory(config.containersDir) where entry.hasPrefix("c") {
            let d = "\(config.containersDir)/\(entry)"
            guard let text = try? Sys.readFile("\(d)/record") else { continue }
            let r: ContainerRecord
            do {
                r = try ContainerRecord.fromPersisted(try Message.decode(Array(text.utf8)), layout: config.cgroupLayout)
                guard r.directoryName == entry else { throw ContainerError(.protocolError, "record of c\(r.id) in \(entry)") }
            } catch {
                // Left in place for root to look at; never served.
                unreadable.append("\(entry): \((error as? ContainerError)?.message ?? "\(error)")")
                continue
            }
            guard let m = try? Message.decode(Array(text.utf8)) else { continue }
            unlink("\(d)/record.tmp")
            var problem: String?
            for pinName in (m["namespaces"] ?? "").split(separator: ",").map(String.init) {
                let kindName = pinName.split(separator: "-").first.map(String.init) ?? pinName
                guard let kind = NamespaceKind(rawValue: kindName), r.pins[kind] == nil else {
                    problem = "bad namespace entry \"\(pinName)\""
                    continue
                }
                guard let ino = try? Namespaces.inode(ofPath: "\(d)/ns/\(pinName)") else {
                    problem = "its \(kind.rawValue) namespace pin \(pinName) is missing"
                    continue
                }
                r.pins[kind] = pinName
                r.namespaceInodes[kind] = ino
            }
            let named = Set(r.pins.values)
            for pinName in Sys.listDirectory("\(d)/ns") where !named.contains(pinName) {
                unpin(directory: entry, pinName)
            }
            out.append(Loaded(record: r, problem: problem))
        }
        return out
    }
}
