import CShim
import ContainerObject
import ContainerSystem
import ContainerWire
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Uevent forwarding on the real kernel: loop devices and veths made on the
/// host, listened to from inside a container's network namespace. Every test
/// removes the devices and files it made, also when it fails.
@Suite("upcalls: uevents", .serialized, .enabled(if: isRoot, rootOnly))
struct UeventTests {
    static let losetup = "/usr/sbin/losetup"
    static let ip = "/usr/sbin/ip"

    @Test("a granted loop device's uevents reach a container with its own user and network namespaces, and nothing else does")
    func loop() throws {
        let img = try Self.backingFile()
        defer { unlink(img) }
        var attached: [String] = []
        defer { for dev in attached { _ = try? runProgram([Self.losetup, "-d", dev]) } }
        try withDaemon { _ in
            let c = try Container.create("uev-loop", options: [.newUserNS, .newNetNS, .killOnClose])
            let initP = try c.spawnInit(sh("sleep 60"))
            defer { try? initP.signal(SIGKILL); _ = try? initP.waitCode() }
            let rootUID = ProcInfo.statusField(pid: initP.pid, "Uid")?.first.flatMap { UInt32($0) }
            let listener = try UeventListener(c)

            // Not granted: the kernel keeps a loop device's uevents out of a
            // namespace owned by another user namespace, and so do we.
            let (rc, out) = try runProgram([Self.losetup, "-f", "--show", img])
            try #require(rc == 0, "losetup -f --show: \(out)")
            let ungranted = out.trimmingSuffixNewline()
            attached.append(ungranted)
            #expect(try runProgram([Self.losetup, "-d", ungranted]).0 == 0)
            attached.removeAll { $0 == ungranted }
            let none = listener.collect(seconds: 1)
            #expect(none.isEmpty, "events arrived without a grant: \(none.map(\.summary))")

            // Granted: attach and detach, and see the device's own uevents.
            let dev = try Self.attachGranted(img, to: c, attached: &attached)
            let name = String(dev.dropFirst(5))
            #expect(try runProgram([Self.losetup, "-d", dev]).0 == 0)
            attached.removeAll { $0 == dev }
            let got = listener.collect(seconds: 5) { $0.filter { $0.action == "change" }.count >= 2 }
            let devpath = "/devices/virtual/block/\(name)"
            let change = got.first { $0.action == "change" && $0.devpath == devpath }
            try #require(change != nil, "no change event of \(name): \(got.map(\.summary))")
            if let e = change {
                #expect(e.properties["ACTION"] == "change")
                #expect(e.properties["DEVPATH"] == devpath)
                #expect(e.properties["DEVNAME"] == name, "DEVNAME as the kernel writes it, relative to /dev")
                #expect(e.properties["SUBSYSTEM"] == "block")
                #expect(e.properties["MAJOR"] == "7")
                #expect(e.properties["SEQNUM"].flatMap { UInt64($0) } != nil, "the kernel appends a SEQNUM")
                #expect(e.senderPortID == 0, "the kernel is the sender")
                #expect(rootUID != nil && e.uid == rootUID, "sent as the container's root (uid \(e.uid.map(String.init) ?? "-"))")
            }
            for e in got {
                #expect(e.devpath == devpath || e.devpath.hasPrefix(devpath + "/"), "an ungranted device's event arrived: \(e.summary)")
            }
        }
    }

    @Test("a namespace owned by the initial user namespace gets a loop device's uevents once: from the kernel, not again from us")
    func noDuplicates() throws {
        let img = try Self.backingFile()
        defer { unlink(img) }
        var attached: [String] = []
        defer { for dev in attached { _ = try? runProgram([Self.losetup, "-d", dev]) } }
        try withDaemon { _ in
            let c = try Container.create("uev-dup", options: [.newNetNS, .killOnClose])
            let listener = try UeventListener(c)
            let host = try UeventListener(nil)
            let dev = try Self.attachGranted(img, to: c, attached: &attached)
            #expect(try runProgram([Self.losetup, "-d", dev]).0 == 0)
            attached.removeAll { $0 == dev }
            let devpath = "/devices/virtual/block/\(dev.dropFirst(5))"
            let inHost = host.collect(seconds: 2).filter { $0.devpath == devpath }
            let inside = listener.collect(seconds: 1).filter { $0.devpath == devpath }
            #expect(!inHost.isEmpty)
            #expect(inside.map(\.seqnum) == inHost.map(\.seqnum), "the same events, with the kernel's own sequence numbers")
        }
    }

    @Test("a granted veth's uevents reach the container; once it moves in, the kernel's own and no forwarded copy")
    func veth() throws {
        let a = "uev\(getpid() % 100_000)a", b = "uev\(getpid() % 100_000)b"
        defer {
            _ = try? runProgram([Self.ip, "link", "del", b])
            _ = try? runProgram([Self.ip, "link", "del", a])
        }
        try withDaemon { _ in
            let c = try Container.create("uev-veth", options: [.newUserNS, .newNetNS, .killOnClose])
            let initP = try c.spawnInit(sh("sleep 60"))
            defer { try? initP.signal(SIGKILL); _ = try? initP.waitCode() }
            let rootUID = ProcInfo.statusField(pid: initP.pid, "Uid")?.first.flatMap { UInt32($0) }
            let listener = try UeventListener(c)
            try c.setPolicy(devices: [a])
            let (rc, out) = try runProgram([Self.ip, "link", "add", a, "type", "veth", "peer", "name", b])
            try #require(rc == 0, "ip link add: \(out)")

            let devpath = "/devices/virtual/net/\(a)"
            let got = listener.collect(seconds: 5) { $0.contains { $0.action == "add" && $0.devpath == devpath } }
            let add = got.first { $0.action == "add" && $0.devpath == devpath }
            try #require(add != nil, "no add event of \(a): \(got.map(\.summary))")
            if let e = add {
                #expect(e.properties["INTERFACE"] == a)
                #expect(e.properties["SUBSYSTEM"] == "net")
                #expect(e.properties["IFINDEX"].flatMap { Int($0) } != nil)
                #expect(e.senderPortID == 0)
                #expect(rootUID != nil && e.uid == rootUID)
            }
            let rest = listener.collect(seconds: 1)
            let all = got + rest
            #expect(all.contains { $0.devpath.hasPrefix(devpath + "/queues/") }, "its queues follow the grant")
            #expect(!all.contains { $0.devpath.contains("/net/\(b)") }, "the ungranted peer's events arrived")

            // Moved into the container's namespace: the kernel announces it
            // there ("add"); its "remove" on the host is not forwarded.
            let (mrc, mout) = try runProgram([Self.ip, "link", "set", a, "netns", "\(initP.pid)"])
            try #require(mrc == 0, "ip link set netns: \(mout)")
            let moved = listener.collect(seconds: 2)
            #expect(moved.contains { $0.action == "add" && $0.devpath == devpath }, "the kernel's own add: \(moved.map(\.summary))")
            #expect(!moved.contains { $0.action == "remove" && $0.devpath == devpath }, "a forwarded remove: \(moved.map(\.summary))")
        }
    }

    @Test("grants are kept in the record: after kill -9 and a restart, ctrobjd forwards again; a bad name is refused")
    func restart() throws {
        let a = "uev\(getpid() % 100_000)r", b = "uev\(getpid() % 100_000)s"
        defer {
            _ = try? runProgram([Self.ip, "link", "del", a])
            _ = try? runProgram([Self.ip, "link", "del", b])
        }
        let d = try TestDaemon()
        defer { d.stop() }
        try d.with {
            let c = try Container.create("uev-restart", options: [.newUserNS, .newNetNS])
            #expect(throws: ContainerError.self) { try c.setPolicy(devices: ["../x"]) }
            try c.setPolicy(devices: [a])
            d.kill9()
            try d.start()
            let listener = try UeventListener(c)
            let (rc, out) = try runProgram([Self.ip, "link", "add", a, "type", "veth", "peer", "name", b])
            try #require(rc == 0, "ip link add: \(out)")
            let devpath = "/devices/virtual/net/\(a)"
            let got = listener.collect(seconds: 5) { $0.contains { $0.action == "add" && $0.devpath == devpath } }
            #expect(got.contains { $0.action == "add" && $0.devpath == devpath }, "after restart: \(got.map(\.summary))")
            try c.destroy()
        }
    }

    // MARK: helpers

    static func backingFile() throws -> String {
        let path = "/tmp/ctrobj-uevent-\(uniqueSuffix()).img"
        let fd = try Sys.open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard ftruncate(fd.raw, 1 << 20) == 0 else { throw ContainerError.sys("ftruncate") }
        return path
    }

    /// Pick a free loop device, grant it, attach the file: retried if another
    /// user takes the device in between. Returns "/dev/loopN".
    static func attachGranted(_ img: String, to c: Container, attached: inout [String]) throws -> String {
        for _ in 0..<10 {
            let (rc, out) = try runProgram([losetup, "-f"])
            try #require(rc == 0, "losetup -f: \(out)")
            let dev = out.trimmingSuffixNewline()
            try c.setPolicy(devices: [String(dev.dropFirst(5))])
            if try runProgram([losetup, dev, img]).0 == 0 {
                attached.append(dev)
                return dev
            }
        }
        throw ContainerError(.busy, "no free loop device stayed free")
    }
}

/// A NETLINK_KOBJECT_UEVENT listener (group 1, as udev's) in a container's
/// network namespace, or in the caller's.
final class UeventListener {
    struct Event {
        var header: String
        var properties: [String: String]
        var senderPortID: UInt32
        var uid: UInt32?
        var action: String { properties["ACTION"] ?? "" }
        var devpath: String { properties["DEVPATH"] ?? "" }
        var seqnum: UInt64 { properties["SEQNUM"].flatMap { UInt64($0) } ?? 0 }
        var summary: String { "\(header) \(properties["SUBSYSTEM"] ?? "")" }
    }

    let fd: OwnedFD

    init(_ c: Container?) throws {
        let netlinkKobjectUevent: Int32 = 15
        if let c {
            fd = try c.socket(domain: AF_NETLINK, type: Int32(SOCK_RAW.rawValue), protocol: netlinkKobjectUevent)
        } else {
            let s = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), netlinkKobjectUevent)
            guard s >= 0 else { throw ContainerError.sys("socket(AF_NETLINK)") }
            fd = OwnedFD(s)
        }
        var on: Int32 = 1
        setsockopt(fd.raw, SOL_SOCKET, SO_PASSCRED, &on, 4)
        var size: Int32 = 4 << 20
        setsockopt(fd.raw, SOL_SOCKET, SO_RCVBUFFORCE, &size, 4)
        var addr = SockaddrNL(family: UInt16(AF_NETLINK), pad: 0, pid: 0, groups: 1)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd.raw, $0, 12) }
        }
        guard rc == 0 else { throw ContainerError.sys("bind(NETLINK_KOBJECT_UEVENT, group 1)") }
    }

    struct SockaddrNL {
        var family: UInt16
        var pad: UInt16
        var pid: UInt32
        var groups: UInt32
    }

    /// Events until `done` says enough or `seconds` pass.
    func collect(seconds: Double, until done: ([Event]) -> Bool = { _ in false }) -> [Event] {
        var out: [Event] = []
        let deadline = Sys.monotonicNanos() + UInt64(seconds * 1e9)
        while !done(out) {
            let now = Sys.monotonicNanos()
            guard now < deadline else { break }
            var p = pollfd(fd: fd.raw, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, Int32((deadline - now) / 1_000_000) + 1) <= 0 { continue }
            if let e = receive() { out.append(e) }
        }
        return out
    }

    func receive() -> Event? {
        var buf = [UInt8](repeating: 0, count: 8192)
        var ctl = [UInt8](repeating: 0, count: 64)
        var addr = SockaddrNL(family: 0, pad: 0, pid: 0, groups: 0)
        let n: Int = buf.withUnsafeMutableBytes { b in
            ctl.withUnsafeMutableBytes { c in
                withUnsafeMutablePointer(to: &addr) { a in
                    var iov = iovec(iov_base: b.baseAddress, iov_len: b.count)
                    return withUnsafeMutablePointer(to: &iov) { iovp in
                        var m = msghdr()
                        m.msg_name = UnsafeMutableRawPointer(a)
                        m.msg_namelen = 12
                        m.msg_iov = iovp
                        m.msg_iovlen = 1
                        m.msg_control = c.baseAddress
                        m.msg_controllen = c.count
                        return recvmsg(fd.raw, &m, Int32(MSG_DONTWAIT))
                    }
                }
            }
        }
        guard n > 0 else { return nil }
        // SCM_CREDENTIALS: cmsghdr (len, level, type) then struct ucred (pid, uid, gid).
        var uid: UInt32?
        if ctl.count >= 28 {
            let level = ctl.withUnsafeBytes { $0.load(fromByteOffset: 8, as: Int32.self) }
            let type = ctl.withUnsafeBytes { $0.load(fromByteOffset: 12, as: Int32.self) }
            if level == SOL_SOCKET && type == 2 { uid = ctl.withUnsafeBytes { $0.load(fromByteOffset: 20, as: UInt32.self) } }
        }
        let parts = buf[0..<n].split(separator: 0, omittingEmptySubsequences: true).map { String(decoding: $0, as: UTF8.self) }
        guard let header = parts.first, header.contains("@/") else { return nil }
        var props: [String: String] = [:]
        for p in parts.dropFirst() {
            guard let eq = p.firstIndex(of: "=") else { continue }
            props[String(p[..<eq])] = String(p[p.index(after: eq)...])
        }
        return Event(header: header, properties: props, senderPortID: addr.pid, uid: uid)
    }
}
