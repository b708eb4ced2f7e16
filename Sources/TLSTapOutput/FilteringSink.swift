import TLSTapCore
import TLSTapHTTP

/// The kinds of record `--events` selects.
public enum EventKind: String, CaseIterable, Sendable {
    /// Captured payloads (`{"event":"data"}`).
    case data
    /// Connection open and close (`{"event":"open"}`, `{"event":"close"}`).
    case conn
    /// HTTP exchanges (`{"event":"http"}`).
    case http
    /// Ring buffer losses (`{"event":"lost"}`).
    case lost
}

/// Passes on only the kinds of record asked for.
public final class FilteringSink: EventSink {
    private let inner: EventSink
    private let kinds: Set<EventKind>

    public init(_ inner: EventSink, kinds: Set<EventKind>) {
        self.inner = inner
        self.kinds = kinds
    }

    public func write(_ event: DataEvent) throws(OutputError) {
        if kinds.contains(.data) { try inner.write(event) }
    }

    public func write(_ event: ConnectionEvent) throws(OutputError) {
        if kinds.contains(.conn) { try inner.write(event) }
    }

    public func write(_ exchange: HTTPExchange) throws(OutputError) {
        if kinds.contains(.http) { try inner.write(exchange) }
    }

    public func writeLost(_ lost: LostCounts, timeNanoseconds: UInt64) throws(OutputError) {
        if kinds.contains(.lost) { try inner.writeLost(lost, timeNanoseconds: timeNanoseconds) }
    }

    public func flush() throws(OutputError) {
        try inner.flush()
    }

    public func finish() throws(OutputError) {
        try inner.finish()
    }
}
