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
    /// WebSocket messages (`{"event":"websocket"}`).
    case websocket
    /// Ring buffer losses (`{"event":"lost"}`).
    case lost
}

/// Passes on only the kinds of record asked for.
public final class FilteringSink: EventSink {
    private let inner: EventSink
    // One flag per kind: a set's hashing showed in profiles of busy captures.
    private let passesData: Bool
    private let passesConnections: Bool
    /// The protocol records passed on, by `protocolName`.
    private let passesProtocols: Set<String>
    private let passesLoss: Bool

    public init(_ inner: EventSink, kinds: Set<EventKind>) {
        self.inner = inner
        passesData = kinds.contains(.data)
        passesConnections = kinds.contains(.conn)
        passesProtocols = Set(kinds.filter { $0 != .data && $0 != .conn && $0 != .lost }.map(\.rawValue))
        passesLoss = kinds.contains(.lost)
    }

    public func write(_ event: DataEvent) throws(OutputError) {
        if passesData { try inner.write(event) }
    }

    public func write(_ event: ConnectionEvent) throws(OutputError) {
        if passesConnections { try inner.write(event) }
    }

    public func write(_ record: any ProtocolRecord) throws(OutputError) {
        if passesProtocols.contains(record.protocolName) { try inner.write(record) }
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
