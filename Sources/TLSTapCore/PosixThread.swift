import Glibc

/// A POSIX thread of tlstap's own (the ring's draining, attaching to new
/// code, direct writes), not one of Dispatch's pool: it starts with the
/// capabilities tlstap kept and the signal mask of the thread that starts
/// it, and it can be joined.
public enum PosixThread {
    private final class Body {
        let run: () -> Void

        init(_ run: @escaping () -> Void) {
            self.run = run
        }
    }

    /// Starts a thread that runs `body`, which holds what it captures until it returns.
    /// - Returns: the thread, to join; nil if it could not be started.
    public static func start(_ body: @escaping () -> Void) -> pthread_t? {
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        var thread = pthread_t()
        let started = pthread_create(
            &thread, nil,
            { context in
                Unmanaged<Body>.fromOpaque(context!).takeRetainedValue().run()
                return nil
            }, context)
        guard started == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            return nil
        }
        return thread
    }
}
