#if canImport(Glibc)
import Glibc
#endif

/// The one error type of the project. Messages name the container and the
/// action: `container "web": fork_into_container: init already started (EBUSY)`.
public struct ContainerError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Extensible error kinds.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let invalidArgument = Code(rawValue: "invalidArgument")
        public static let exists = Code(rawValue: "exists")
        public static let notFound = Code(rawValue: "notFound")
        public static let busy = Code(rawValue: "busy")
        public static let permission = Code(rawValue: "permission")
        public static let dead = Code(rawValue: "dead")
        public static let daemonUnavailable = Code(rawValue: "daemonUnavailable")
        public static let protocolError = Code(rawValue: "protocol")
        public static let system = Code(rawValue: "system")
        public static let timeout = Code(rawValue: "timeout")
    }

    public var code: Code
    public var message: String
    /// The errno that C callers see.
    public var errno: Int32
    /// The syscall or operation that failed, when there is one.
    public var syscall: String?

    public init(_ code: Code, _ message: String, errno: Int32? = nil, syscall: String? = nil) {
        self.code = code
        self.message = message
        self.errno = errno ?? ContainerError.defaultErrno(code)
        self.syscall = syscall
    }

    /// An error from a failed system call, `errno` taken from the thread.
    public static func sys(_ call: String, _ err: Int32 = Glibc.errno, context: String? = nil) -> ContainerError {
        let what = context.map { "\($0): " } ?? ""
        return ContainerError(codeFor(err), "\(what)\(call): \(errnoDescription(err))", errno: err, syscall: call)
    }

    public var description: String { message }

    static func defaultErrno(_ code: Code) -> Int32 {
        switch code {
        case .invalidArgument: return EINVAL
        case .exists: return EEXIST
        case .notFound: return ENOENT
        case .busy: return EBUSY
        case .permission: return EPERM
        case .dead: return ESRCH
        case .daemonUnavailable: return EHOSTDOWN
        case .protocolError: return EPROTO
        case .timeout: return ETIMEDOUT
        default: return EIO
        }
    }

    public static func codeFor(_ err: Int32) -> Code {
        switch err {
        case EINVAL: return .invalidArgument
        case EEXIST: return .exists
        case ENOENT: return .notFound
        case EBUSY: return .busy
        case EPERM, EACCES: return .permission
        case ESRCH: return .dead
        case ETIMEDOUT: return .timeout
        default: return .system
        }
    }
}

/// "Operation not permitted (EPERM)".
public func errnoDescription(_ err: Int32) -> String {
    let text = String(cString: strerror(err))
    if let name = errnoNames[err] { return "\(text) (\(name))" }
    return "\(text) (errno \(err))"
}

private let errnoNames: [Int32: String] = [
    EPERM: "EPERM", ENOENT: "ENOENT", ESRCH: "ESRCH", EINTR: "EINTR", EIO: "EIO", E2BIG: "E2BIG",
    ENOEXEC: "ENOEXEC", EBADF: "EBADF", ECHILD: "ECHILD", EAGAIN: "EAGAIN", ENOMEM: "ENOMEM",
    EACCES: "EACCES", EFAULT: "EFAULT", EBUSY: "EBUSY", EEXIST: "EEXIST", EXDEV: "EXDEV",
    ENODEV: "ENODEV", ENOTDIR: "ENOTDIR", EISDIR: "EISDIR", EINVAL: "EINVAL", ENFILE: "ENFILE",
    EMFILE: "EMFILE", ENOSPC: "ENOSPC", EROFS: "EROFS", EPIPE: "EPIPE", ERANGE: "ERANGE",
    ENAMETOOLONG: "ENAMETOOLONG", ENOSYS: "ENOSYS", ENOTEMPTY: "ENOTEMPTY", ELOOP: "ELOOP",
    EPROTO: "EPROTO", EOVERFLOW: "EOVERFLOW", EMSGSIZE: "EMSGSIZE", EAFNOSUPPORT: "EAFNOSUPPORT",
    ECONNREFUSED: "ECONNREFUSED", ECONNRESET: "ECONNRESET", ETIMEDOUT: "ETIMEDOUT",
    EHOSTDOWN: "EHOSTDOWN", ENOTSOCK: "ENOTSOCK", EOPNOTSUPP: "EOPNOTSUPP", EKEYREJECTED: "EKEYREJECTED",
    ENOKEY: "ENOKEY",
]
