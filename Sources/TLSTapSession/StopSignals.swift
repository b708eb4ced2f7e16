import Dispatch
import Glibc
import Synchronization

/// Turns SIGINT and SIGTERM into a count the tracing loop reads, so a stop
/// request ends the loop between polls: the ring buffer is then drained,
/// outputs finished and probes detached. SIGPIPE is ignored so that a closed
/// output pipe shows up as EPIPE on write and ends the run cleanly.
public final class StopSignals {
    private final class State: Sendable {
        let received = Atomic<Int>(0)
        let last = Atomic<Int32>(0)
    }

    private let state = State()
    private let sources: [any DispatchSourceSignal]

    /// Holds SIGINT and SIGTERM back on the calling thread until `init`
    /// runs: one that arrives meanwhile waits there, and is counted then,
    /// instead of killing tlstap halfway through attaching. This starts no
    /// thread, so tlstap stays single-threaded until its probes are in
    /// place and its capabilities dropped.
    public static func holdUntilCaught() {
        var stop = sigset_t()
        sigemptyset(&stop)
        for number in [SIGINT, SIGTERM] { sigaddset(&stop, number) }
        pthread_sigmask(SIG_BLOCK, &stop, nil)
    }

    /// Starts catching SIGINT and SIGTERM, counting those `holdUntilCaught` held.
    /// - Parameter onSignal: also called with each signal, on a background queue.
    public init(onSignal: (@Sendable (Int32) -> Void)? = nil) {
        signal(SIGPIPE, SIG_IGN)
        let queue = DispatchQueue(label: "tlstap.signals")
        let state = self.state
        var pending = sigset_t()
        sigpending(&pending)
        for number in [SIGINT, SIGTERM] where sigismember(&pending, number) == 1 {
            state.last.store(number, ordering: .relaxed)
            state.received.add(1, ordering: .releasing)
        }
        sources = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler {
                state.last.store(number, ordering: .relaxed)
                state.received.add(1, ordering: .releasing)
                onSignal?(number)
            }
            source.resume()
            return source
        }
    }

    /// How many stop signals arrived so far.
    public var count: Int { state.received.load(ordering: .acquiring) }

    /// The most recent signal, or 0.
    public var last: Int32 { state.last.load(ordering: .relaxed) }

    deinit {
        for source in sources { source.cancel() }
    }
}
