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
    // One flag per kind: a set's hashing showed in profiles of busy captures.
    private let passesData: Bool
    private let passesConnections: Bool
    private let passesExchanges: Bool
    private let passesLoss: Bool

    public init(_ inner: EventSink, kinds: Set<EventKind>) {
        self.inner = inner
        passesData = kinds.contains(.data)
        passesConnections = kinds.contains(.conn)
        passesExchanges = kinds.contains(.http)
        passesLoss = kinds.contains(.lost)
    }

    public func write(_ event: DataEvent) throws(OutputError) {
        if passesData { try inner.write(event) }
    }

    public func write(_ event: ConnectionEvent) throws(OutputError) {
        if passesConnections { try inner.write(event) }
    }

    public func write(_ exchange: HTTPExchange) throws(OutputError) {
        if passesExchanges { try inner.write(exchange) }
    }

    public func writeLost(_ lost: LostCounts, timeNanoseconds: UInt64) throws(OutputError) {
        if passesLoss { try inner.writeLost(lost, timeNanoseconds: timeNanoseconds) }
    }

    public func flush() throws(OutputError) {
        try inner.flush()
    }

    public func finish() throws(OutputError) {
        try inner.finish()
    }
}
