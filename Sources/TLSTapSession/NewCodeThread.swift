import Dispatch
import Glibc
import Synchronization
import TLSTapCore

/// Attaches probes to the code traced processes are about to run, on a
/// thread of its own, while a capture runs: reading an executable's symbols
/// and attaching to it can take a while, and the thread that empties the
/// ring buffer must not wait for it. A process that BPF stopped for its
/// probes waits, stopped, until `handle` has attached them and continued it.
///
/// Events are handled one at a time, in the order they came; `stop` handles
/// every event submitted before it, then ends the thread, so no process is
/// left stopped.
final class NewCodeThread: @unchecked Sendable {
    private let pending = Mutex<[ProcessEvent]>([])
    private let wakeup = DispatchSemaphore(value: 0)
    private let stopping = Atomic<Bool>(false)
    private let handle: (ProcessEvent) -> Void
    private var thread = pthread_t()

    /// Starts the thread; nil if it cannot be started.
    /// - Parameter handle: attaches to `process`'s new code, and continues it if it was stopped.
    init?(handle: @escaping (ProcessEvent) -> Void) {
        self.handle = handle
        // Its owner keeps this object until `stop` has joined the thread.
        guard let thread = PosixThread.start({ [unowned(unsafe) self] in run() }) else { return nil }
        self.thread = thread
    }

    /// Hands `process` to the thread.
    func submit(_ process: ProcessEvent) {
        pending.withLock { $0.append(process) }
        wakeup.signal()
    }

    /// Handles what was submitted, then ends the thread. Called once.
    func stop() {
        stopping.store(true, ordering: .releasing)
        wakeup.signal()
        pthread_join(thread, nil)
    }

    private func run() {
        while true {
            wakeup.wait()
            let batch = pending.withLock { events in
                defer { events = [] }
                return events
            }
            for process in batch { handle(process) }
            if stopping.load(ordering: .acquiring) && pending.withLock({ $0.isEmpty }) { return }
        }
    }
}
