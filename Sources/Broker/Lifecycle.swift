import CShim
import ContainerSystem
import ContainerWire
#if canImport(Glibc)
import Glibc
#endif

/// A container's life after its start: status, init's exit (the pidfd
/// turns readable), destroy and KILL_ON_CLOSE's (Broker.endClosed), the
/// release of its namespaces and cgroup, and the restore of every record
/// at ctrobjd's start.
extension Broker {
    func status(_ r: ContainerRecord, _ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        refreshExitStatus(r)
        return Reply(.ok(r.statusFields))
    }

    func destroyRequest(_ r: ContainerRecord, _ m: Message, _ fds: [OwnedFD], _ conn: ClientConnection) throws -> Reply {
        try requireOwner(r, conn, "container_destroy")
        destroy(r)
        return Reply(.ok())
    }

    /// init's pidfd became readable: the container is dead.
    func initExited(_ r: ContainerRecord) {
        if let p = r.initPidfd { loop.unwatch(p.raw) }
        guard r.state != .exited else { return }
        r.state = .exited
        // With its own pid ns the kernel already killed the rest; without
        // one the container's members are found through its cgroup (never
        // for an adopted container: that cgroup is another runtime's).
        if !r.adopted { r.cgroup.killAll() }
        refreshExitStatus(r)
        logger.info("container \"\(r.name)\": init \(r.initPid) exited\(r.exitStatus.map { ", wait status \($0)" } ?? "")")
        var closedAlready: [UInt64] = []
        for (cookie, end) in r.ends {
            // Holders now see POLLHUP: our end is shut down both ways. It stays
            // open, watched edge-triggered: after the shutdown poll() reports
            // HUP on it whatever the holders do, so each wakeup asks the
            // kernel whether the holders' end is gone (sock_diag), and the
            // last holder's close still lets KILL_ON_CLOSE remove the record.
            // The holders may have closed already (the process that waited
            // for init and exited): asked once right after arming too.
            _ = Glibc.shutdown(end.raw, Int32(SHUT_RDWR))
            let raw = end.raw
            var armed = false
            let events = EPOLLET.rawValue | EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue | EPOLLRDHUP.rawValue
            try? loop.watch(raw, events: events) { [weak self, weak r] _ in
                guard let self, let r, r.ends[cookie] != nil else { return }
                if let gone = Sys.unixPeerGone(raw) {
                    if gone { self.endClosed(r, cookie) }
                    return
                }
                // No sock_diag: the first wakeup is the one arming reports.
                if !armed { armed = true; return }
                self.endClosed(r, cookie)
            }
            if Sys.unixPeerGone(raw) == true { closedAlready.append(cookie) }
        }
        releaseResources(r)
        try? persistence.save(r)
        // After the save: the last of these may destroy the record.
        for cookie in closedAlready where r.ends[cookie] != nil { endClosed(r, cookie) }
    }

    /// The kernel records the exit code when the init is reaped by its
    /// parent, which may be after it exited.
    func refreshExitStatus(_ r: ContainerRecord) {
        guard r.state == .exited, r.exitStatus == nil, let p = r.initPidfd else { return }
        do {
            if let status = try p.exitStatus() {
                r.exitStatus = status
                r.initPidfd = nil
                try? persistence.save(r)
            }
        } catch {
            r.initPidfd = nil
        }
    }

    func retryPendingExitStatus() {
        for r in byID.values where r.state == .exited && r.exitStatus == nil && r.initPidfd != nil {
            refreshExitStatus(r)
        }
    }

    /// Namespaces, root and cgroup go; the record stays (state exited).
    func releaseResources(_ r: ContainerRecord) {
        for (_, pinName) in r.pins { persistence.unpin(directory: r.directoryName, pinName) }
        r.pins.removeAll()
        r.namespaces.removeAll()
        forgetUeventTarget(r)
        if !r.grantedDevices.isEmpty { updateUeventMonitor() }
        r.root = nil
        if r.adopted { return }
        removeCgroupSoon(r.cgroup, name: r.name)
        forgetRemovedCgroup(r)
    }

    /// rmdir the cgroup now if it is empty; a killed member or an unreaped
    /// init can hold it a moment longer, and the loop must not wait for that:
    /// retried on every tick until it goes (or 30 s pass).
    func removeCgroupSoon(_ cg: CgroupSet, name: String) {
        if (try? cg.remove(timeoutMs: 0)) != nil { return }
        pendingCgroups.append((cg, name, Sys.monotonicNanos() + 30_000_000_000))
    }

    func retryPendingCgroups() {
        guard !pendingCgroups.isEmpty else { return }
        let now = Sys.monotonicNanos()
        pendingCgroups = pendingCgroups.filter { cg, name, deadline in
            if (try? cg.remove(timeoutMs: 0)) != nil { return false }
            if now > deadline {
                logger.warning("container \"\(name)\": cgroup \(cg.relativePath) still busy after 30 s; left in place")
                return false
            }
            return true
        }
    }

    /// container_destroy, and CONTAINER_KILL_ON_CLOSE's last close. Marked
    /// on disk first, so that a restart after a crash anywhere below
    /// finishes it rather than bringing back a half-destroyed container.
    func destroy(_ r: ContainerRecord) {
        r.destroying = true
        try? persistence.save(r)
        crashPoint("destroy")
        if let p = r.initPidfd {
            loop.unwatch(p.raw)
            // An adopted container belongs to another runtime: forget it, do not kill it.
            if !r.adopted { try? p.sendSignal(SIGKILL) }
        }
        if !r.adopted { r.cgroup.killAll() }
        crashPoint("destroy")
        closeEnds(r)
        releaseResources(r)
        crashPoint("destroy")
        unregister(r)
        persistence.remove(r)
        logger.info("container \"\(r.name)\" destroyed")
    }

    /// Stop watching and close every daemon end of its container fds.
    func closeEnds(_ r: ContainerRecord) {
        for (cookie, end) in r.ends {
            loop.unwatch(end.raw)
            end.close()
            uncharge(r, cookie)
        }
        r.ends.removeAll()
        for c in r.cookies where byCookie[c] === r { byCookie.removeValue(forKey: c) }
    }

    /// Undo a container that was never handed out (a failed create or adopt).
    func discardUnfinished(_ r: ContainerRecord, removeCgroup: Bool) {
        closeEnds(r)
        if let p = r.initPidfd { loop.unwatch(p.raw) }
        unregister(r)
        persistence.remove(r)
        if removeCgroup { try? r.cgroup.remove(timeoutMs: 0) }
    }

    /// Rebuild the table from disk after a restart (or a kill -9). Pins are
    /// checked, not opened (namespaceFD opens them on first use). A record
    /// that is not whole is removed: a destroy that did not finish, pins
    /// missing, or a namespace its flags promise that it does not have.
    func restore() {
        // No new container may take the directory of one that is on disk,
        // readable or not.
        for entry in Sys.listDirectory(config.containersDir) where entry.hasPrefix("c") {
            if let id = UInt64(entry.dropFirst()), id < UInt64.max { nextID = max(nextID, id + 1) }
        }
        var unreadable: [String] = []
        defer {
            for u in unreadable { logger.error("record \(RequestRules.escaped(u)): not restored (left on disk)") }
        }
        for loaded in persistence.load(unreadable: &unreadable) {
            let r = loaded.record
            if let why = loaded.problem ?? missingNamespace(r) ?? (r.destroying ? "its destroy did not finish" : nil) {
                logger.warning("container \"\(RequestRules.escaped(r.name))\" (id \(r.id)) removed at start: \(why)")
                if !r.adopted {
                    r.cgroup.killAll()
                    removeCgroupSoon(r.cgroup, name: r.name)
                }
                persistence.remove(r)
                nextID = max(nextID, r.id + 1)
                continue
            }
            register(r)
            if r.state == .created && !r.adopted && !r.cgroup.members().isEmpty {
                // A fork_into_container whose commit never reached the disk:
                // its process is not the record's init. The container stays
                // "created" and whole; the unrecorded process goes.
                logger.warning("container \"\(RequestRules.escaped(r.name))\": killing processes of an unrecorded start")
                r.cgroup.killAll()
            }
            if r.state == .running {
                // Trust the saved pid only through a pidfd whose process has
                // the saved start time.
                if let pidfd = try? Pidfd.open(r.initPid),
                   ProcInfo.startTime(pid: r.initPid) == r.initStartTime,
                   pidfd.names(r.initPid) {
                    r.initPidfd = pidfd
                    try? loop.watch(pidfd.raw) { [weak self, weak r] _ in if let self, let r { self.initExited(r) } }
                } else {
                    initExited(r)
                }
            }
            logger.info("restored container \"\(RequestRules.escaped(r.name))\" (id \(r.id), \(r.state.name))")
        }
    }

    /// A namespace that the record's flags promise and its pins lack, for a
    /// container whose init has not exited (then they are released).
    func missingNamespace(_ r: ContainerRecord) -> String? {
        guard r.state != .exited, !r.adopted else { return nil }
        let promised: [(UInt32, NamespaceKind)] = [
            (ContainerFlags.newUserNS, .user), (ContainerFlags.newFSNS, .mnt), (ContainerFlags.newEmptyFSNS, .mnt),
            (ContainerFlags.newUTSNS, .uts), (ContainerFlags.newIPCNS, .ipc), (ContainerFlags.newNetNS, .net),
            (ContainerFlags.newTimeNS, .time),
        ]
        for (flag, kind) in promised where r.flags & flag != 0 && r.pins[kind] == nil {
            return "its flags promise a \(kind.rawValue) namespace and none is pinned"
        }
        if r.state == .running && r.flags & ContainerFlags.newPIDNS != 0 && r.pins[.pid] == nil {
            return "its init runs but its pid namespace is not pinned"
        }
        return nil
    }
}
