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

    /// Starts catching SIGINT and SIGTERM.
    /// - Parameter onSignal: also called with each signal, on a background queue.
    public init(onSignal: (@Sendable (Int32) -> Void)? = nil) {
        signal(SIGPIPE, SIG_IGN)
        let queue = DispatchQueue(label: "tlstap.signals")
        let state = self.state
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
        sources.forEach { $0.cancel() }
    }
}
