import CUdev
import ContainerSystem
#if canImport(Glibc)
import Glibc
#endif

/// One kernel uevent, as libudev's "kernel" monitor hands it over.
struct Uevent {
    /// Every property, in libudev's order (DEVNAME as libudev rewrites it: "/dev/loop3").
    let properties: [(key: String, value: String)]
    let action: String
    let devpath: String
    let subsystem: String

    init?(properties: [(key: String, value: String)]) {
        self.properties = properties
        func value(_ k: String) -> String? { properties.first { $0.key == k }?.value }
        guard let a = value("ACTION"), let d = value("DEVPATH"), let s = value("SUBSYSTEM") else { return nil }
        action = a
        devpath = d
        subsystem = s
    }

    subscript(_ key: String) -> String? { properties.first { $0.key == key }?.value }

    /// DEVNAME as the kernel sends it: relative to /dev ("loop3", "input/event3").
    var kernelDevname: String? {
        guard let d = self["DEVNAME"] else { return nil }
        return d.hasPrefix("/dev/") ? String(d.dropFirst(5)) : d
    }

    /// The device's kernel name: its DEVNAME, or its INTERFACE for a network device.
    var name: String? { kernelDevname ?? self["INTERFACE"] }

    /// The network interface this event is of, when the kernel tags it with a
    /// network namespace: a net device or one of its children (its queues).
    /// Such events go only into the namespace the device lives in; every
    /// other uevent goes to every namespace owned by the initial user namespace.
    var netInterface: String? {
        if subsystem == "net", let i = self["INTERFACE"] { return i }
        let parts = devpath.split(separator: "/")
        guard let n = parts.firstIndex(of: "net"), n + 1 < parts.count else { return nil }
        return String(parts[n + 1])
    }

    /// The kernel's own wire format, "ACTION@DEVPATH\0KEY=VALUE\0…", with
    /// ACTION, DEVPATH and SUBSYSTEM first as the kernel writes them, and
    /// without SEQNUM: the kernel appends a fresh one when it rebroadcasts.
    var kernelFormat: [UInt8] {
        var out = Array("\(action)@\(devpath)".utf8)
        out.append(0)
        func add(_ k: String, _ v: String) {
            out += Array("\(k)=\(v)".utf8)
            out.append(0)
        }
        add("ACTION", action)
        add("DEVPATH", devpath)
        add("SUBSYSTEM", subsystem)
        for (k, v) in properties where !["ACTION", "DEVPATH", "SUBSYSTEM", "SEQNUM"].contains(k) {
            add(k, k == "DEVNAME" ? (kernelDevname ?? v) : v)
        }
        return out
    }
}

/// libudev's monitor of the kernel's uevents: the "kernel" source, what the
/// kernel broadcasts into ctrobjd's network namespace (no udevd needed;
/// libudev keeps only messages whose sender is the kernel).
final class UeventMonitor {
    private let udev: OpaquePointer
    private let monitor: OpaquePointer
    /// Readable when events wait; nonblocking.
    let fd: CInt

    init() throws {
        guard let u = udev_new() else { throw ContainerError(.system, "uevents: udev_new failed", errno: errno) }
        guard let m = udev_monitor_new_from_netlink(u, "kernel") else {
            let e = errno
            udev_unref(u)
            throw ContainerError(.system, "uevents: udev_monitor_new_from_netlink(kernel): \(errnoDescription(e))", errno: e)
        }
        // A burst (a disk with its partitions, a veth pair with its queues)
        // must not overflow the socket while the loop answers requests.
        _ = udev_monitor_set_receive_buffer_size(m, 8 << 20)
        let rc = udev_monitor_enable_receiving(m)
        if rc < 0 {
            udev_monitor_unref(m)
            udev_unref(u)
            throw ContainerError(.system, "uevents: udev_monitor_enable_receiving: \(errnoDescription(-rc))", errno: -rc)
        }
        udev = u
        monitor = m
        fd = udev_monitor_get_fd(m)
    }

    deinit {
        udev_monitor_unref(monitor)
        udev_unref(udev)
    }

    /// Every event waiting now; `lost` is set when the socket overflowed (ENOBUFS).
    func receive(lost: inout Bool) -> [Uevent] {
        var out: [Uevent] = []
        while true {
            errno = 0
            guard let d = udev_monitor_receive_device(monitor) else {
                if errno == ENOBUFS { lost = true; continue }
                return out
            }
            var props: [(key: String, value: String)] = []
            var e = udev_device_get_properties_list_entry(d)
            while let entry = e {
                if let k = udev_list_entry_get_name(entry) {
                    props.append((String(cString: k), udev_list_entry_get_value(entry).map { String(cString: $0) } ?? ""))
                }
                e = udev_list_entry_get_next(entry)
            }
            udev_device_unref(d)
            if let ev = Uevent(properties: props) { out.append(ev) }
        }
    }
}
