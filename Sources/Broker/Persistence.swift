import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// The on-disk form of the container table, so a daemon restart (even after
/// kill -9) loses nothing:
///
///   <state>/containers/c<id>/record     fields of ContainerRecord.persistedFields
///   <state>/containers/c<id>/ns/<kind>  a bind mount of the namespace's nsfs file
///
/// The bind mounts keep the namespaces alive without any process in them.
struct Persistence {
    let config: BrokerConfig

    func dir(_ r: ContainerRecord) -> String { "\(config.containersDir)/\(r.directoryName)" }

    func prepare() throws {
        try Sys.mkdirs(config.containersDir, 0o700)
    }

    /// The record is not fsync'd: it describes namespace bind mounts that
    /// do not survive a reboot either; it must survive ctrobjd, which it does.
    func save(_ r: ContainerRecord) throws {
        let d = dir(r)
        let text = String(decoding: Message("record", r.persistedFields).encoded(), as: UTF8.self)
        do {
            try Sys.writeFileAtomically("\(d)/record", text)
        } catch let e as ContainerError where e.errno == ENOENT {
            try makeDirectory(r.directoryName)
            try Sys.writeFileAtomically("\(d)/record", text)
        }
    }

    /// Pin a namespace with a bind mount of its nsfs file.
    func pin(_ r: ContainerRecord, _ kind: NamespaceKind, _ fd: CInt) throws {
        try pin(directory: r.directoryName, kind, fd)
    }

    func makeDirectory(_ name: String) throws {
        try Sys.mkdir("\(config.containersDir)/\(name)", 0o700)
        try Sys.mkdir("\(config.containersDir)/\(name)/ns", 0o700)
    }

    func pin(directory name: String, _ kind: NamespaceKind, _ fd: CInt) throws {
        let path = "\(config.containersDir)/\(name)/ns/\(kind.rawValue)"
        if Sys.exists(path) {
            _ = ccs_umount_detach(path) // replacing a shared-in namespace
        } else {
            let f = try Sys.open(path, O_WRONLY | O_CREAT, 0o600)
            f.close()
        }
        if ccs_bind_mount_fd(fd, path) < 0 {
            throw ContainerError.sys("mount --bind \(kind.rawValue) namespace to \(path)")
        }
    }

    func unpin(_ r: ContainerRecord, _ kind: NamespaceKind) {
        unpin(directory: r.directoryName, kind)
    }

    func unpin(directory name: String, _ kind: NamespaceKind) {
        let path = "\(config.containersDir)/\(name)/ns/\(kind.rawValue)"
        _ = ccs_umount_detach(path)
        unlink(path)
    }

    /// Drop every pinned namespace and the record's directory.
    func remove(_ r: ContainerRecord) { remove(directory: r.directoryName) }

    func remove(directory name: String) {
        let d = "\(config.containersDir)/\(name)"
        for kind in NamespaceKind.allCases where Sys.exists("\(d)/ns/\(kind.rawValue)") {
            unpin(directory: name, kind)
        }
        rmdir("\(d)/ns")
        unlink("\(d)/record")
        unlink("\(d)/record.tmp")
        rmdir(d)
    }

    /// Every record on disk, with its pinned namespaces opened.
    func load() -> [(ContainerRecord, [NamespaceKind: OwnedFD])] {
        var out: [(ContainerRecord, [NamespaceKind: OwnedFD])] = []
        for entry in Sys.listDirectory(config.containersDir) where entry.hasPrefix("c") {
            let d = "\(config.containersDir)/\(entry)"
            guard let text = try? Sys.readFile("\(d)/record"),
                  let m = try? Message.decode(Array(text.utf8)),
                  let r = try? ContainerRecord.fromPersisted(m, layout: config.cgroupLayout) else { continue }
            var ns: [NamespaceKind: OwnedFD] = [:]
            for k in (m["namespaces"] ?? "").split(separator: ",") {
                guard let kind = NamespaceKind(rawValue: String(k)),
                      let fd = try? Sys.open("\(d)/ns/\(kind.rawValue)", O_RDONLY) else { continue }
                ns[kind] = fd
            }
            out.append((r, ns))
        }
        return out
    }
}

