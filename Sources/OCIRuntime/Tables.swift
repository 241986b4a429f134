/// Name tables of the runtime-spec: capabilities, rlimits, mount options,
/// namespaces, seccomp actions and operators.
enum Tables {
    static let capabilities: [String: Int] = [
        "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4,
        "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_LINUX_IMMUTABLE": 9,
        "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13,
        "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15, "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18,
        "CAP_SYS_PTRACE": 19, "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
        "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27, "CAP_LEASE": 28,
        "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31, "CAP_MAC_OVERRIDE": 32,
        "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35, "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37,
        "CAP_PERFMON": 38, "CAP_BPF": 39, "CAP_CHECKPOINT_RESTORE": 40,
    ]

    static let rlimits: [String: Int32] = [
        "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4, "RLIMIT_RSS": 5,
        "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10,
        "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
    ]

    static let MS_RDONLY: UInt = 1, MS_NOSUID: UInt = 2, MS_NODEV: UInt = 4, MS_NOEXEC: UInt = 8
    static let MS_REMOUNT: UInt = 32, MS_BIND: UInt = 4096, MS_REC: UInt = 16384
    static let MS_PRIVATE: UInt = 1 << 18, MS_SLAVE: UInt = 1 << 19, MS_SHARED: UInt = 1 << 20, MS_UNBINDABLE: UInt = 1 << 17

    /// option -> (set, clear)
    static let mountFlags: [String: (UInt, UInt)] = [
        "ro": (1, 0), "rw": (0, 1), "nosuid": (2, 0), "suid": (0, 2), "nodev": (4, 0), "dev": (0, 4),
        "noexec": (8, 0), "exec": (0, 8), "sync": (16, 0), "async": (0, 16), "mand": (64, 0), "nomand": (0, 64),
        "dirsync": (128, 0), "noatime": (1024, 0), "atime": (0, 1024), "nodiratime": (2048, 0), "diratime": (0, 2048),
        "relatime": (1 << 21, 0), "norelatime": (0, 1 << 21), "strictatime": (1 << 24, 0), "nostrictatime": (0, 1 << 24),
        "silent": (32768, 0), "loud": (0, 32768), "defaults": (0, 0),
    ]

    static let propagation: [String: UInt] = [
        "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
        "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC, "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
    ]

    /// runtime-spec namespace type -> (CLONE_NEW* bit, container_create flag)
    static let namespaces: [String: (clone: Int32, flag: UInt32)] = [
        "pid": (0x2000_0000, 0x40), "network": (0x4000_0000, 0x80), "mount": (0x0002_0000, 0x2), "ipc": (0x0800_0000, 0x10),
        "uts": (0x0400_0000, 0x8), "user": (0x1000_0000, 0x20), "cgroup": (0x0200_0000, 0x4), "time": (0x80, 0x400),
    ]

    static func seccompAction(_ name: String, errnoRet: UInt32?, defaultErrno: UInt32 = 1) -> UInt32? {
        switch name {
        case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD": return 0
        case "SCMP_ACT_KILL_PROCESS": return 0x8000_0000
        case "SCMP_ACT_TRAP": return 0x0003_0000
        case "SCMP_ACT_ERRNO": return 0x0005_0000 | ((errnoRet ?? defaultErrno) & 0xffff)
        case "SCMP_ACT_TRACE": return 0x7ff0_0000 | ((errnoRet ?? defaultErrno) & 0xffff)
        case "SCMP_ACT_ALLOW": return 0x7fff_0000
        case "SCMP_ACT_LOG": return 0x7ffc_0000
        default: return nil
        }
    }

    static let seccompOps: [String: Int32] = [
        "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6,
        "SCMP_CMP_MASKED_EQ": 7,
    ]

    static let seccompArches: [String: String] = [
        "SCMP_ARCH_X86": "x86", "SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_X32": "x32", "SCMP_ARCH_ARM": "arm",
        "SCMP_ARCH_AARCH64": "aarch64", "SCMP_ARCH_MIPS": "mips", "SCMP_ARCH_MIPS64": "mips64",
        "SCMP_ARCH_MIPS64N32": "mips64n32", "SCMP_ARCH_MIPSEL": "mipsel", "SCMP_ARCH_MIPSEL64": "mipsel64",
        "SCMP_ARCH_MIPSEL64N32": "mipsel64n32", "SCMP_ARCH_PPC": "ppc", "SCMP_ARCH_PPC64": "ppc64",
        "SCMP_ARCH_PPC64LE": "ppc64le", "SCMP_ARCH_S390": "s390", "SCMP_ARCH_S390X": "s390x",
        "SCMP_ARCH_RISCV64": "riscv64",
    ]

    static let seccompFlags: [String: UInt32] = [
        "SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2, "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32,
    ]

    static let signals: [String: Int32] = [
        "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7, "FPE": 8, "KILL": 9,
        "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15, "STKFLT": 16, "CHLD": 17,
        "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25,
        "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
    ]

    /// "TERM", "SIGTERM", "15", "RTMIN+3".
    static func signal(_ text: String) -> Int32? {
        if let n = Int32(text), n > 0, n < 65 { return n }
        var s = text.uppercased()
        if s.hasPrefix("SIG") { s.removeFirst(3) }
        if let n = signals[s] { return n }
        if s == "RTMIN" { return 34 }
        if s == "RTMAX" { return 64 }
        if s.hasPrefix("RTMIN+"), let k = Int32(s.dropFirst(6)), 34 + k <= 64 { return 34 + k }
        if s.hasPrefix("RTMAX-"), let k = Int32(s.dropFirst(6)), 64 - k >= 34 { return 64 - k }
        return nil
    }
}
