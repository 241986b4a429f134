import ContainerSystem

/// The upcall configuration `ctrobj install` writes to <state>/upcall.conf
/// for the helper: where to spool, and what handled cores before.
public struct UpcallConfig: Sendable, Equatable {
    public var spoolDir: String
    public var previousCorePattern: String
    public var previousModprobe: String?
    public var mode: String
    /// How long a container's request-key may take before it is killed and
    /// the key negated.
    public var keyTimeoutSeconds: Int

    public init(spoolDir: String, previousCorePattern: String, previousModprobe: String?, mode: String, keyTimeoutSeconds: Int = 10) {
        self.spoolDir = spoolDir
        self.previousCorePattern = previousCorePattern
        self.previousModprobe = previousModprobe
        self.mode = mode
        self.keyTimeoutSeconds = keyTimeoutSeconds
    }

    public static func path(stateDir: String) -> String { "\(stateDir)/upcall.conf" }

    public var encoded: String {
        var f = ["spool": spoolDir, "previous_core_pattern": previousCorePattern, "mode": mode, "key_timeout": "\(keyTimeoutSeconds)"]
        if let m = previousModprobe { f["previous_modprobe"] = m }
        return String(decoding: Message("upcall.conf", f).encoded(), as: UTF8.self)
    }

    public static func load(stateDir: String) -> UpcallConfig? {
        guard let text = try? Sys.readFile(path(stateDir: stateDir)) else { return nil }
        return parse(text)
    }

    /// The configuration in upcall.conf's text (what `encoded` writes); nil
    /// when it is not a message. Missing fields take their defaults.
    public static func parse(_ text: String) -> UpcallConfig? {
        guard let m = try? Message.decode(Array(text.utf8)) else { return nil }
        return UpcallConfig(spoolDir: m["spool"] ?? "/var/lib/ctrobj/spool", previousCorePattern: m["previous_core_pattern"] ?? "core",
                            previousModprobe: m["previous_modprobe"], mode: m["mode"] ?? "pipe",
                            keyTimeoutSeconds: m.int("key_timeout") ?? 10)
    }
}
