import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// Uevent forwarding: the kernel broadcasts a device's uevent only into the
/// network namespaces owned by the initial user namespace (untagged devices:
/// block, char, …) or only into the one its network device lives in (net
/// devices and their queues), so a container with its own user and network
/// namespaces never sees host hotplug. ctrobjd watches the kernel's uevents
/// through libudev and, for a device granted to a container
/// (`ctrobj policy NAME --devices loop3,veth1`), sends the same uevent to the
/// kernel through a NETLINK_KOBJECT_UEVENT socket in the container's network
/// namespace; the kernel rebroadcasts it there as its own (Linux 4.18+, see
/// CShim/uevent.c). An event the kernel already delivers there is not sent.
final class UeventForwarding {
    /// Open while at least one container has a grant.
    var monitor: UeventMonitor?
    /// Container id -> its injection socket.
    var targets: [UInt64: Target] = [:]
    /// Granted device name -> its DEVPATH, from sysfs at grant time and from
    /// every event of that name: the events of its children (DEVPATH below
    /// it: partitions, queues) follow the grant.
    var devpaths: [String: String] = [:]

    final class Target {
        let socket: OwnedFD
        /// The namespace is owned by the initial user namespace: the kernel
        /// already broadcasts untagged uevents into it.
        let initialUserNSOwned: Bool
        /// Who the listeners see as the sender: the namespace owner's root,
        /// as the kernel shows it for its own uevents there.
        let uid: uid_t
        let gid: gid_t

        init(socket: OwnedFD, initialUserNSOwned: Bool, uid: uid_t, gid: gid_t) {
            self.socket = socket
            self.initialUserNSOwned = initialUserNSOwned
            self.uid = uid
            self.gid = gid
        }
    }

    /// The kernel's NETLINK_KOBJECT_UEVENT protocol number (linux/netlink.h).
    static let netlinkKobjectUevent: CInt = 15

    /// A grant names a kernel device: letters, digits and "-_.:+@", or a
    /// DEVNAME below /dev ("input/event3").
    static func validDeviceName(_ n: String) -> Bool {
        guard !n.isEmpty, n.count <= 128, !n.hasPrefix("/"), !n.hasSuffix("/"),
              !n.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else { return false }
        return n.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.:+@/".contains($0)) }
    }
}

extension Broker {
    /// Open the monitor when the first grant to a container with a network
    /// namespace appears and close it with the last; a failure is logged and
    /// ctrobjd serves on without forwarding.
    func updateUeventMonitor() {
        let wanted = byID.values.contains { !$0.grantedDevices.isEmpty && $0.pins[.net] != nil }
        if wanted, uevents.monitor == nil {
            do {
                let m = try UeventMonitor()
                try loop.watch(m.fd) { [weak self] _ in self?.ueventsReady() }
                uevents.monitor = m
                logger.info("uevents: monitoring the kernel's uevents for granted devices")
            } catch {
                logger.warning("uevents: cannot monitor uevents, granted devices are not forwarded: \(error)")
            }
        } else if !wanted, let m = uevents.monitor {
            loop.unwatch(m.fd)
            uevents.monitor = nil
            uevents.targets.removeAll()
            uevents.devpaths.removeAll()
            logger.info("uevents: no grants left; monitor closed")
        }
    }

    /// Where a granted device is now, from sysfs (/sys/class/*/NAME).
    func learnDevicePaths(_ names: [String]) {
        let classes = Sys.listDirectory("/sys/class")
        for name in names where !name.contains("/") {
            for cls in classes {
                guard let real = realpath("/sys/class/\(cls)/\(name)", nil) else { continue }
                let path = String(cString: real)
                free(real)
                if path.hasPrefix("/sys/devices/") { uevents.devpaths[name] = String(path.dropFirst(4)) }
                break
            }
        }
    }

    /// A container's grants changed, or its namespaces went: its socket goes.
    func forgetUeventTarget(_ r: ContainerRecord) {
        uevents.targets.removeValue(forKey: r.id)
    }

    func ueventsReady() {
        guard let m = uevents.monitor else { return }
        var lost = false
        let events = m.receive(lost: &lost)
        if lost { logger.warning("uevents: the monitor's socket overflowed; some uevents were lost") }
        for ev in events { forward(ev) }
    }

    func forward(_ ev: Uevent) {
        let holders = byID.values.filter { !$0.grantedDevices.isEmpty && $0.pins[.net] != nil }
        if let n = ev.name, holders.contains(where: { $0.grantedDevices.contains(n) }) {
            uevents.devpaths[n] = ev.devpath
        }
        let payload = ev.kernelFormat
        for r in holders.sorted(by: { $0.id < $1.id }) where grants(r, ev) {
            guard let t = ueventTarget(r) else { continue }
            if let ifname = ev.netInterface {
                // Tagged with ctrobjd's namespace, where the device was. If it
                // has moved into the container's namespace meanwhile, the
                // kernel speaks there itself (its "remove" here is the move).
                if ccs_netdev_present(t.socket.raw, ifname) == 1 { continue }
            } else if t.initialUserNSOwned {
                continue // the kernel broadcast it there already
            }
            let rc = payload.withUnsafeBytes { ccs_uevent_inject(t.socket.raw, $0.baseAddress, $0.count, t.uid, t.gid) }
            if rc < 0 {
                let e = errno
                logger.warning("container \"\(r.name)\": uevent \(ev.action) \(ev.devpath) not forwarded: \(errnoDescription(e))")
                if e != EINVAL { forgetUeventTarget(r) } // a fresh socket next time
            } else {
                logger.debug("container \"\(r.name)\": forwarded uevent \(ev.action) \(ev.devpath)")
            }
        }
    }

    /// The device is granted by name, or is below a granted device.
    func grants(_ r: ContainerRecord, _ ev: Uevent) -> Bool {
        let name = ev.name
        return r.grantedDevices.contains { g in
            if name == g { return true }
            guard let p = uevents.devpaths[g] else { return false }
            return ev.devpath.hasPrefix(p + "/")
        }
    }

    /// The container's injection socket, made in its network namespace on
    /// first use. Nil without a network namespace of its own (it then sees
    /// the host's uevents itself).
    func ueventTarget(_ r: ContainerRecord) -> UeventForwarding.Target? {
        if let t = uevents.targets[r.id] { return t }
        guard let net = try? namespaceFD(r, .net), let ino = r.namespaceInodes[.net],
              !isOwnNamespace(.net, ino) else { return nil }
        let s = ccs_socket_in_netns(net.raw, AF_NETLINK, CInt(SOCK_RAW.rawValue), UeventForwarding.netlinkKobjectUevent)
        if s < 0 {
            logger.warning("container \"\(r.name)\": uevents: no netlink socket in its network namespace: \(errnoDescription(errno))")
            return nil
        }
        let sock = OwnedFD(s)
        let owner = Namespaces.owningUserNamespace(of: net.raw)
        let initialOwned = owner.map { isOwnNamespace(.user, $0) } ?? false
        var uid: uid_t = 0, gid: gid_t = 0
        if !initialOwned {
            // The record whose user namespace owns it (itself, or a pod's first member).
            let o = owner.flatMap(container(owningUserNamespace:)) ?? r
            uid = o.rootHostID
            gid = o.rootHostGID
        }
        let t = UeventForwarding.Target(socket: sock, initialUserNSOwned: initialOwned, uid: uid, gid: gid)
        uevents.targets[r.id] = t
        return t
    }
}
