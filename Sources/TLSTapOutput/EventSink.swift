import TLSTapCore
import TLSTapHTTP

#if canImport(Glibc)
    import Glibc
#endif

/// Where rendered events go. One implementation per output format; the
/// pipeline hands every event and every loss report to the sink in order.
/// A sink implements only the kinds it shows: the others do nothing.
public protocol EventSink: AnyObject {
    /// Renders one captured call.
    func write(_ event: DataEvent) throws(OutputError)
    /// Renders a connection opening (first data seen) or closing.
    func write(_ event: ConnectionEvent) throws(OutputError)
    /// Renders what a protocol analyzer completed: an HTTP exchange
    /// (`HTTPExchange`), a WebSocket message, any other `ProtocolRecord`.
    func write(_ record: any ProtocolRecord) throws(OutputError)
    /// Reports records the kernel side had to drop since the last report.
    func writeLost(_ lost: LostCounts, timeNanoseconds: UInt64) throws(OutputError)
    /// Writes out anything buffered; called periodically and at the end.
    func flush() throws(OutputError)
    /// Completes the output (a file format's closing part); called once, last.
    func finish() throws(OutputError)
}

extension EventSink {
    public func write(_ event: DataEvent) throws(OutputError) {}
    public func write(_ event: ConnectionEvent) throws(OutputError) {}
    public func write(_ record: any ProtocolRecord) throws(OutputError) {}
    public func writeLost(_ lost: LostCounts, timeNanoseconds: UInt64) throws(OutputError) {}
    public func flush() throws(OutputError) {}

    public func finish() throws(OutputError) {
        try flush()
    }
}

/// Hands every record to several sinks (stdout and `--write`, `--pcapng`, `--har`).
public final class TeeSink: EventSink {
    private let sinks: [EventSink]

    public init(_ sinks: [EventSink]) {
        self.sinks = sinks
    }

    public func write(_ event: DataEvent) throws(OutputError) {
        for sink in sinks { try sink.write(event) }
    }

    public func write(_ event: ConnectionEvent) throws(OutputError) {
        for sink in sinks { try sink.write(event) }
    }

    public func write(_ record: any ProtocolRecord) throws(OutputError) {
        for sink in sinks { try sink.write(record) }
    }

    public func writeLost(_ lost: LostCounts, timeNanoseconds: UInt64) throws(OutputError) {
        for sink in sinks { try sink.writeLost(lost, timeNanoseconds: timeNanoseconds) }
    }

    public func flush() throws(OutputError) {
        for sink in sinks { try sink.flush() }
    }

    /// Finishes every sink, even after one failed; reports the first failure.
    public func finish() throws(OutputError) {
        var firstError: OutputError?
        for sink in sinks {
            do { try sink.finish() } catch { firstError = firstError ?? error }
        }
        if let firstError { throw firstError }
    }
}

/// The output formats of `--format`.
public enum OutputFormat: String, CaseIterable, Sendable {
    case text
    case hex
    case json
    /// One line per HTTP exchange.
    case http

    /// Makes the sink for this format.
    /// - Parameters:
    ///   - output: where events go.
    ///   - diagnostics: where the text formats report losses (stderr).
    ///   - timestamps: how times are shown in the text formats.
    public func makeSink(output: OutputFile, diagnostics: OutputFile, timestamps: TimestampStyle) -> EventSink {
        switch self {
        case .text: TextSink(output: output, diagnostics: diagnostics, timestamps: timestamps, payload: .escaped)
        case .hex: TextSink(output: output, diagnostics: diagnostics, timestamps: timestamps, payload: .hexDump)
        case .json: JSONLinesSink(output: output)
        case .http:
            HTTPLineSink(
                output: output, diagnostics: diagnostics, timestamps: timestamps,
                colors: isatty(output.descriptor) != 0)
        }
    }
}
