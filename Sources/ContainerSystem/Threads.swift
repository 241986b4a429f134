#if canImport(Glibc)
import Glibc
#endif

/// Run `body` on a new detached thread. Returns false (and runs nothing) if
/// no thread could be made. Used where a job must start at once: a thread
/// pool's idle workers can take a few hundred microseconds to wake, more
/// than making a thread costs.
public func startDetachedThread(_ body: @escaping @Sendable () -> Void) -> Bool {
    final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    var attr = pthread_attr_t()
    pthread_attr_init(&attr)
    defer { pthread_attr_destroy(&attr) }
    pthread_attr_setdetachstate(&attr, CInt(PTHREAD_CREATE_DETACHED))
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, &attr, { arg in
        Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
        return nil
    }, box)
    if rc != 0 { Unmanaged<Box>.fromOpaque(box).release() }
    return rc == 0
}
