import Glibc
import Logging
import TLSTapCore
import TLSTapHTTP
import TLSTapLoader
import TLSTapOutput

/// One capture, run the way `tlstap` runs it: privileges checked, programs
/// loaded with the scope's filters, probes attached, capabilities dropped,
/// the command (if any) started, every record rendered into the sink until
/// the capture stops, then the ring drained, the outputs finished and every
/// probe detached.
///
/// ```swift
/// let capture = Capture(scope: .command(["/usr/bin/curl", "-s", url]), into: .sink(sink), logger: logger)
/// let outcome = try capture.run()
/// ```
///
/// It runs on the calling thread (and one of its own, which empties the
/// ring buffer while records are rendered). SIGINT and SIGTERM stop it
/// cleanly; with a command, the first is passed on to the command and the
/// capture ends when the command and all it started have exited.
public final class Capture {
    /// What is traced: processes, command names, a command tlstap starts,
    /// and the connections of those with given ports or addresses.
    public struct Scope: Sendable {
        /// Processes (-p), and, with `followsChildren`, those they fork.
        public var pids: [Int32] = []
        public var followsChildren = true
        /// Command names (-c), at most 15 bytes each.
        public var comms: [String] = []
        /// A command to start and trace with everything it starts (`tlstap -- COMMAND`).
        public var command: [String] = []
        /// Only connections with one of these ports or addresses (--port, --host).
        public var ports: [UInt16] = []
        public var hosts: [SocketAddress] = []
        /// Also unencrypted TCP payload (--plaintext).
        public var plaintext = false
        /// The ring buffer's size, a power of two.
        public var ringBufferBytes: UInt32 = 32 << 20

        public init() {}

        /// Every process on the host.
        public static var host: Scope { Scope() }

        /// These processes and the processes they fork.
        public static func processes(_ pids: [Int32]) -> Scope {
            var scope = Scope()
            scope.pids = pids
            return scope
        }

        /// A command tlstap starts, and everything it starts.
        public static func command(_ arguments: [String]) -> Scope {
            var scope = Scope()
            scope.command = arguments
            return scope
        }
    }

    /// Where the captured records go.
    public enum Destination {
        /// Rendered into `sink`; `protocols` analyses HTTP and what HTTP
        /// switches to (nil: none); `rawLog` also keeps every raw record
        /// for `tlstap replay` (`--save-raw`).
        case sink(EventSink, protocols: HTTPLimits? = HTTPLimits(), rawLog: OutputFile? = nil)
        /// The ring buffer's bytes, undecoded, for `tlstap replay` (`tlstap record`).
        case recording(RingCaptureFile)
    }

    /// How a capture ended.
    public struct Outcome: Sendable {
        public var summary: TraceSummary
        /// The command's exit status, as a shell reports it; nil without a command.
        public var commandExitStatus: Int32?
    }

    public let scope: Scope
    private let destination: Destination
    private let logger: Logger
    /// Output is flushed after every poll that brought records, not every
    /// 50 ms: for a terminal, where lines go between the command's own.
    public var flushesEveryPoll = false
    /// Whether the capabilities tracing needs are dropped once the probes
    /// are attached (those that attaching to later programs needs are
    /// kept). tlstap drops them; a program that embeds it may need its own.
    public var dropsCapabilities = true

    public init(scope: Scope, into destination: Destination, logger: Logger) {
        self.scope = scope
        self.destination = destination
        self.logger = logger
    }

    /// Runs the capture to its end.
    /// - Parameters:
    ///   - ready: called once every probe is in place (and the command
    ///     about to start), before the first record is rendered.
    ///   - shouldStop: asked after every poll (at least every 20 ms); the
    ///     capture also stops on SIGINT or SIGTERM, or when the command
    ///     and all it started have exited.
    /// - Throws: `LoaderError` when tracing is not allowed or the programs
    ///   cannot be loaded or attached, `OutputError` when output cannot be
    ///   written.
    public func run(ready: () -> Void = {}, until shouldStop: () -> Bool = { false }) throws -> Outcome {
        try Privileges.requireTracing()
        StopSignals.holdUntilCaught()
        var filters = TraceFilters(
            pids: scope.pids, comms: scope.comms, ports: scope.ports, hosts: scope.hosts)
        filters.plaintext = scope.plaintext
        filters.followChildren = scope.followsChildren
        var program: String?
        if let name = scope.command.first {
            program = ChildProcess.resolve(name)
            guard program != nil else {
                throw LoaderError("cannot run '\(name)': \(ChildProcess.whyNotRunnable(name))")
            }
        }
        let cgroup = scope.command.isEmpty ? nil : try CommandCgroup()
        filters.cgroupID = cgroup?.id

        let session = try makeSession(filters)
        if flushesEveryPoll { session.flushIntervalNanoseconds = 0 }
        if filters.followChildren && !scope.pids.isEmpty {
            // Forks are followed in the kernel from now on; the children already there are found here.
            let descendants = Set(scope.pids.flatMap(ProcessTree.descendants)).subtracting(scope.pids).sorted()
            try session.trace(pids: descendants)
            filters.pids += descendants
        }
        try session.attach(try AttachPlan.make(for: filters))
        if let program { session.attachLinkedTLS(path: program) }
        if dropsCapabilities {
            do {
                let kept = try Privileges.dropAfterAttach(attachingLater: session.followsExecs)
                logger.info("probes attached; capabilities dropped but \(kept.joined(separator: ", "))")
            } catch {
                logger.warning("\(error)")
            }
        }
        let signals = StopSignals()
        ready()
        // Started only now, with every probe in place, so its first call is seen.
        let traced = try cgroup.map { cgroup throws(LoaderError) in try TracedCommand(scope.command, in: cgroup) }
        var signalsForwarded = 0
        try session.run {
            if shouldStop() { return true }
            guard let traced else { return signals.count > 0 }
            if signals.count > signalsForwarded {
                signalsForwarded = signals.count
                traced.forward(signals.last)
            }
            // A second signal stops the capture even if the command ignores the first.
            return traced.isFinished || signals.count > 1
        }
        return Outcome(summary: session.summary, commandExitStatus: traced?.exitStatus)
    }

    private func makeSession(_ filters: TraceFilters) throws -> TraceSession {
        switch destination {
        case .sink(let sink, let protocols, let rawLog):
            try TraceSession(
                filters: filters, ringBufferBytes: scope.ringBufferBytes, sink: sink, http: protocols,
                rawLog: rawLog, logger: logger)
        case .recording(let file):
            try TraceSession(
                filters: filters, ringBufferBytes: scope.ringBufferBytes, recordingTo: file, logger: logger)
        }
    }
}
