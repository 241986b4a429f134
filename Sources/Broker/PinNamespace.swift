import CShim
import ContainerSystem
#if canImport(Glibc)
import Glibc
#endif

/// The mount namespace the containers' namespaces are pinned in, so that the
/// host's mount table holds one entry for ctrobjd however many containers
/// live (CShim pinner.c has the why and how):
///
///   <state>/containers/mntns       on the host: a bind mount of the pin namespace's nsfs
///                       file, made once (at the first start), kept across
///                       restarts and kill -9; a reboot ends it with the pins
///   <state>/containers  in the pin namespace: its root, where the pins are
///                       mounted (c<id>/ns/<kind>-<inode>); on the host the
///                       same files are empty
///
/// Pins are mounted and unmounted by the pinner thread, and opened or
/// stat'ed by any thread through `view`, the pin namespace's root.
/// Sendable: the pinner thread takes one job at a time (its own mutex and
/// condition variable, CShim pinner.c); `view` is only read.
final class PinNamespace: @unchecked Sendable {
    let view: OwnedFD
    private let pinner: OpaquePointer
    let pinPath: String
    /// The namespace was made by this start (no earlier pins can be in it).
    let isNew: Bool

    init(pinPath: String, rootDir: String) throws {
        var viewFD: CInt = -1, newNS: CInt = -1
        guard let p = ccs_pinner_start(pinPath, rootDir, &viewFD, &newNS) else {
            throw ContainerError.sys("pin namespace at \(pinPath)")
        }
        pinner = p
        view = OwnedFD(viewFD)
        self.pinPath = pinPath
        isNew = newNS >= 0
        if newNS >= 0 {
            let ns = OwnedFD(newNS)
            // <state>/containers/mntns may be an empty file left by a start that died
            // before this mount, or a stale pin of a namespace whose root
            // directory was removed: replace it.
            Sys.umountDetach(pinPath)
            let f = try Sys.open(pinPath, O_WRONLY | O_CREAT | O_NOFOLLOW, 0o600)
            f.close()
            if ccs_bind_mount_fd(ns.raw, pinPath) < 0 {
                let e = errno
                ccs_pinner_stop(p)
                // EINVAL here: the state directory is on a shared mount with
                // peers, where the kernel refuses a mount namespace's file
                // (it could propagate into itself).
                throw ContainerError.sys("mount --bind the pin namespace to \(pinPath)" +
                    (e == EINVAL ? " (is the state directory on a shared mount? make it private: mount --bind DIR DIR; mount --make-private DIR)" : ""), e)
            }
        }
    }

    /// Bind the namespace `fd` onto `rel` (an existing file below the root).
    func bind(_ fd: CInt, _ rel: String) throws {
        if ccs_pinner_bind(pinner, fd, rel) < 0 { throw ContainerError.sys("pin a namespace at \(rel)") }
    }

    func umount(_ rel: String) {
        _ = ccs_pinner_umount(pinner, rel)
    }

    func open(_ rel: String) throws -> OwnedFD {
        let fd = openat(view.raw, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 { throw ContainerError.sys("open pin \(rel)") }
        return OwnedFD(fd)
    }

    /// Every pin in the pin namespace, from one read of its mount table (a
    /// restart with thousands of containers checks their pins with it
    /// instead of a path walk and a stat per pin): relative path
    /// ("c5/ns/net-4026532001") -> (namespace kind, inode), as the mount's
    /// root says ("net:[4026532001]").
    func mounted() -> [String: (kind: String, inode: UInt64)] {
        let tid = ccs_pinner_tid(pinner)
        guard let bytes = try? Sys.readBytes("/proc/self/task/\(tid)/mountinfo", limit: 1 << 30) else { return [:] }
        var out: [String: (kind: String, inode: UInt64)] = [:]
        out.reserveCapacity(bytes.count / 100)
        var start = 0
        let n = bytes.count
        while start < n {
            var end = start
            while end < n && bytes[end] != 0x0A { end += 1 }
            // fields: id parent major:minor root mountpoint ...
            var fields: [Range<Int>] = []
            var f = start
            while f < end && fields.count < 5 {
                var g = f
                while g < end && bytes[g] != 0x20 { g += 1 }
                fields.append(f..<g)
                f = g + 1
            }
            if fields.count == 5 {
                let root = bytes[fields[3]], point = bytes[fields[4]]
                if let colon = root.firstIndex(of: UInt8(ascii: ":")), root.last == UInt8(ascii: "]"),
                   let ino = UInt64(String(decoding: root[(colon + 2)..<(root.endIndex - 1)], as: UTF8.self)),
                   point.count > 1, point.first == UInt8(ascii: "/") {
                    out[String(decoding: point.dropFirst(), as: UTF8.self)] = (String(decoding: root[..<colon], as: UTF8.self), ino)
                }
            }
            start = end + 1
        }
        return out
    }

    /// The inode of the namespace pinned at `rel`: ENOENT if the file is
    /// missing, ESTALE if it is not an nsfs file (its bind mount is gone).
    func inode(_ rel: String) throws -> UInt64 {
        let type = ccs_statfs_type_at(view.raw, rel)
        if type < 0 { throw ContainerError.sys("statfs pin \(rel)") }
        guard type == CCS_NSFS_MAGIC else {
            throw ContainerError(.notFound, "\(rel) is not a namespace (its bind mount is gone)", errno: ESTALE)
        }
        var st = stat()
        if fstatat(view.raw, rel, &st, AT_SYMLINK_NOFOLLOW) < 0 { throw ContainerError.sys("stat pin \(rel)") }
        return UInt64(st.st_ino)
    }
}
