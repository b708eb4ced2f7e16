import Logging
import TLSTapCore
import TLSTapHTTP
import TLSTapLoader
import TLSTapOutput

/// The stages every record of a capture goes through, live or replayed, in
/// order: decoding (`RecordDecoder`), a call's chunks joined
/// (`ChunkAssembler`), calls held until their TLS object's socket is known
/// (`UnboundCalls`), connections named and counted (`ConnectionTable`),
/// protocols analysed (`ProtocolTracker`, in each connection's table entry),
/// and the sink. It keeps the run's
/// counts (`summary`) and the first output error, after which nothing more
/// is written.
///
/// What only a live capture does with a record (probes for new code, the
/// kernel-side state of an exited process, the warning about TLS no probe
/// covers) is the session's: `take` hands such records back as a `Notice`.
///
/// A class: the stages change in place as records pass, and an event that
/// one stage lets go reaches the next through calls back into this object.
final class RecordPipeline {
    /// What a record asks of the session besides being rendered.
    enum Notice {
        /// A traced process is about to run code no traced process ran before.
        case newCode(ProcessEvent)
        /// A traced process exited; `processExited` ends what it left.
        case exited(ProcessEvent)
        /// A connection carries TLS records from code no probe covers.
        case unprobedTLS(Connection)
    }

    /// nil when nothing is rendered (`tlstap record`: only counted).
    private let sink: EventSink?
    private let logger: Logger
    // The state every record touches is marked `@exclusivity(unchecked)`:
    // without it, the runtime's check of each access took the HTTP-parsing
    // bench cell (h1-1k, tlstap-full) from 25,641 to 23,794 req/s and its
    // CPU per event up 10-15% (2026-12-03, two rounds each). It is safe
    // because one thread renders, and the only access that runs code while
    // it lasts, `assembler.add`'s and `unbound`'s callbacks, never touches
    // the stage that called it.
    @exclusivity(unchecked) private var assembler: ChunkAssembler
    @exclusivity(unchecked) private var connections: ConnectionTable
    /// Calls whose TLS object's socket is not known yet.
    private var unbound = UnboundCalls()
    /// Protocol analysis (HTTP, WebSocket), when an output shows its records.
    private let protocols: ProtocolTracker?
    /// The last event's payload, once written: its memory takes the next
    /// record's payload when nothing kept it (no allocation per record).
    /// Kept only up to about one record's most (the allocator rounds up):
    /// a larger call's memory would be held, oversized, by a chunk waiting
    /// in the assembler.
    @exclusivity(unchecked) private var spentPayload: [UInt8] = []
    /// The TLS objects each live process used, to delete their kernel-side
    /// state when it exits.
    @exclusivity(unchecked) private var tlsObjects: [UInt32: Set<UInt64>] = [:]
    /// The kernel's loss counters as last reported.
    private(set) var reportedLost = LostCounts.zero
    @exclusivity(unchecked) private(set) var summary = TraceSummary()
    @exclusivity(unchecked) private(set) var outputError: OutputError?

    /// - Parameters:
    ///   - protocols: analyse protocols with these limits; nil to skip analysis.
    ///   - live: records come from this host now, so the role of a
    ///     connection opened before the capture is guessed from the sockets
    ///     listening here (not in a replay, whose host may be another).
    init(sink: EventSink?, protocols: HTTPLimits?, clock: WallClock, live: Bool, logger: Logger) {
        self.sink = sink
        self.logger = logger
        assembler = ChunkAssembler(clock: clock)
        connections =
            live
            ? ConnectionTable(clock: clock, roleOfMidConnection: ListeningPorts.role)
            : ConnectionTable(clock: clock)
        self.protocols = protocols.map { HTTPProtocols.tracker(limits: $0) }
    }

    /// Starts over with a replayed capture's own clock (its first record).
    func restart(clock: WallClock) {
        assembler = ChunkAssembler(clock: clock)
        connections = ConnectionTable(clock: clock)
    }

    /// Decodes one record from the kernel and renders what it completes.
    /// - Returns: what the session must do about it, if anything.
    func take(_ record: UnsafeRawBufferPointer) -> Notice? {
        do {
            switch try RecordDecoder.decodeRecord(record, reusing: &spentPayload) {
            case .chunk(let chunk):
                assembler.add(chunk) { unbound.take(&$0) { emit(&$0) } }
            case .socket(let socket):
                let silent =
                    socket.kind == .unprobedTLS ? connections.silentConnection(pid: socket.pid, fd: socket.fd) : nil
                for ended in connections.handle(socket) { emit(ended) }
                return silent.map { .unprobedTLS($0) }
            case .process(let process):
                return process.kind == .exit ? .exited(process) : .newCode(process)
            case .objectFreed(let freed):
                unbound.release(pid: freed.pid, ssl: freed.ssl) { emit(&$0) }
            }
        } catch {
            summary.malformedRecords += 1
            logger.error("malformed record from the kernel: \(error)")
        }
        return nil
    }

    /// A record of `tlstap record`, whose bytes go to the file undecoded: a
    /// data record is only counted (a call once, by its first chunk).
    /// - Returns: false for any other record, which `take` must see.
    func count(_ record: UnsafeRawBufferPointer) -> Bool {
        guard let data = RecordDecoder.peekData(record) else { return false }
        if data.startsCall { summary.events += 1 }
        summary.payloadBytes += UInt64(data.payloadBytes)
        return true
    }

    /// A traced process is gone: its calls without a socket go out without
    /// one, its connections end.
    /// - Returns: what the kernel side kept for it (its sockets' fds and
    ///   its TLS objects), to delete.
    func processExited(_ process: ProcessEvent) -> (fds: [Int32], tlsObjects: [UInt64]) {
        let objects = (tlsObjects.removeValue(forKey: process.pid) ?? []).union(unbound.objects(of: process.pid))
        let fds = connections.fds(of: process.pid)
        unbound.release(pid: process.pid) { emit(&$0) }
        for ended in connections.processExited(process) { emit(ended) }
        return (fds, Array(objects))
    }

    /// The capture stopped at `time`: calls in pieces and calls without a
    /// socket go out as they are, and protocol records still open end.
    func stop(at time: UInt64) {
        for var event in assembler.flush() { unbound.take(&event) { emit(&$0) } }
        unbound.releaseAll { emit(&$0) }
        for analysis in connections.removeAll() {
            for record in protocols?.close(analysis, time: time, end: .captureStopped) ?? [] { emit(record) }
        }
    }

    /// Tells the sink what was lost since the last report: the kernel's
    /// counters now stand at `lost`.
    func report(lost: LostCounts, timeNanoseconds: UInt64) {
        let gained = lost.since(reportedLost)
        reportedLost = lost
        summary.lost = lost
        write { sink throws(OutputError) in try sink.writeLost(gained, timeNanoseconds: timeNanoseconds) }
    }

    /// A process that sends TLS from code no probe covers, for the summary.
    func noteUnprobedTLS(_ process: String) {
        summary.unprobedTLS.append(process)
    }

    /// A saved capture's note that could not be read.
    func noteMalformed() {
        summary.malformedRecords += 1
    }

    /// Keeps the first output error (of another output, such as the raw log).
    func fail(_ error: OutputError) {
        outputError = outputError ?? error
    }

    func flush() {
        write { sink throws(OutputError) in try sink.flush() }
    }

    /// Completes the sink's outputs; called once, last.
    func finishSink() {
        write { sink throws(OutputError) in try sink.finish() }
    }

    /// Runs `body` on the sink unless an output failed already; keeps its error.
    private func write(_ body: (EventSink) throws(OutputError) -> Void) {
        guard let sink, outputError == nil else { return }
        do { try body(sink) } catch { outputError = error }
    }

    private func emit(_ event: inout DataEvent) {
        var records: [any ProtocolRecord] = []
        let opened = connections.attach(&event) { event, analysis in
            if let protocols { records = protocols.feed(event, into: &analysis) }
        }
        if let opened {
            // Once per connection: BPF keeps its TLS object's fd only for calls that named a socket.
            if event.ssl != 0 { tlsObjects[event.pid, default: []].insert(event.ssl) }
            emit(opened)
        }
        summary.events += 1
        summary.payloadBytes += UInt64(event.payload.count)
        if event.connection == nil { summary.eventsWithoutConnection += 1 }
        guard let sink, outputError == nil else { return }
        do { try sink.write(event) } catch { outputError = error }
        for record in records { emit(record) }
        if event.payload.capacity < 2 * RecordDecoder.maxChunkPayload { spentPayload = event.payload }
    }

    /// A connection ended: its open records end, then it closes.
    private func emit(_ ended: ConnectionTable.Ended) {
        guard let closed = ended.closed, case .closed(_, _, let time) = closed else { return }
        for record in protocols?.close(ended.analysis, time: time) ?? [] { emit(record) }
        emit(closed)
    }

    private func emit(_ event: ConnectionEvent) {
        write { sink throws(OutputError) in try sink.write(event) }
    }

    private func emit(_ record: any ProtocolRecord) {
        if record is HTTPExchange { summary.exchanges += 1 }
        write { sink throws(OutputError) in try sink.write(record) }
    }
}
