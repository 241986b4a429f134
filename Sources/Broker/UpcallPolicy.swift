import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// A container's upcall policy (the "policy" request): where its cores go
/// (CoreDumpRoute.swift), which modules it may have loaded (the modprobe
/// route, UpcallServer.swift) and which host devices' uevents it sees
/// (UeventForwarding.swift). Only its owner may set it; modules and devices
/// only root.
extension Broker {
    func setPolicy(_ r: ContainerRecord, _ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        try requireOwner(r, conn, "policy")
        let maxItems = 64, maxItemBytes = 64
        func list(_ text: String, _ what: String) throws -> [String] {
            let items = text.split(separator: ",").map(String.init)
            guard items.count <= maxItems, items.allSatisfy({ $0.utf8.count <= maxItemBytes }) else {
                throw r.err(.invalidArgument, "policy", "at most \(maxItems) \(what), each at most \(maxItemBytes) bytes")
            }
            return items
        }
        var core: String?, modules: [String]?, devices: [String]?
        if let c = m["core"] {
            guard ["file", "drop"].contains(c) || (c.hasPrefix("handler:/") && c.count > 9 && c.utf8.count <= 4096
                                                   && !c.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7f }) else {
                throw r.err(.invalidArgument, "policy", "core policy must be file, drop or handler:/absolute/path/inside (at most 4096 bytes)")
            }
            core = c
        }
        if let text = m["modules"] {
            // Loading a module changes the host kernel: only root may allow it.
            guard conn.uid == 0 else {
                throw r.err(.permission, "policy", "only root may allow a container to load modules")
            }
            let l = try list(text, "modules")
            guard l.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_".contains($0)) } }) else {
                throw r.err(.invalidArgument, "policy", "module names are letters, digits, '-' and '_'")
            }
            modules = l
        }
        if let text = m["devices"] {
            // A grant shows host device events to the container: only root may give one.
            guard conn.uid == 0 else {
                throw r.err(.permission, "policy", "only root may grant a container a host device's uevents")
            }
            let l = try list(text, "devices")
            guard l.allSatisfy(UeventForwarding.validDeviceName) else {
                throw r.err(.invalidArgument, "policy",
                            "device names are kernel names (DEVNAME below /dev, or an interface): letters, digits, '-_.:+@' and '/'")
            }
            devices = l
        }
        // Everything checked: only now change the record.
        if let core { r.corePolicy = core }
        if let modules { r.allowedModules = modules }
        if let devices {
            r.grantedDevices = devices
            forgetUeventTarget(r)
            learnDevicePaths(devices)
        }
        try persistence.save(r)
        if devices != nil { updateUeventMonitor() }
        return Reply(.ok(["core": r.corePolicy, "modules": r.allowedModules.joined(separator: ","),
                          "devices": r.grantedDevices.joined(separator: ",")]))
    }
}
