import TLSTapCore
import TLSTapHTTP

/// Data events as the tracker receives them, on a connection over loopback.
enum TrackerEvents {
    /// One call's bytes on connection `id`.
    /// - Parameters:
    ///   - length: the byte count the call returned (more than `bytes` when
    ///     chunks of the call were lost); `bytes.count` when nil.
    ///   - lostBefore: bytes of whole calls lost right before this one.
    static func event(
        _ id: UInt64, _ direction: Direction, _ bytes: [UInt8], time: UInt64 = 5, role: ConnectionRole = .client,
        origin: ConnectionOrigin = .connect, length: Int? = nil, lostBefore: UInt64 = 0
    ) -> DataEvent {
        DataEvent(
            timeNanoseconds: time, pid: 1, tid: 1, comm: "c", library: .openssl, function: .sslWrite,
            direction: direction, ssl: 1, length: UInt64(length ?? bytes.count), payload: bytes, fd: 3,
            connection: Connection(
                id: id, pid: 1, comm: "c", fd: 3, local: SocketAddress(ip: [127, 0, 0, 1], port: 1),
                remote: SocketAddress(ip: [127, 0, 0, 1], port: 2), role: role, origin: origin, openedNanoseconds: 0),
            lostBefore: lostBefore)
    }
}

/// A protocol tracker with each connection's analysis kept by connection
/// id, as tlstap's connection table keeps it, dropped at close.
struct TrackedConnections {
    private let tracker: ProtocolTracker
    private var analyses: [UInt64: ConnectionAnalysis] = [:]

    init(_ tracker: ProtocolTracker) {
        self.tracker = tracker
    }

    /// Connections with state.
    var count: Int { analyses.count }

    mutating func feed(_ event: DataEvent) -> [any ProtocolRecord] {
        guard let id = event.connection?.id else { return [] }
        return tracker.feed(event, into: &analyses[id, default: ConnectionAnalysis()])
    }

    mutating func close(connection: UInt64, time: UInt64) -> [any ProtocolRecord] {
        analyses.removeValue(forKey: connection).map { tracker.close($0, time: time) } ?? []
    }
}

/// The protocol tracker with HTTP's detectors, its records as exchanges
/// (what these tests look at; a record of another protocol is left out).
struct ExchangeTracker {
    private var connections: TrackedConnections

    init(limits: HTTPLimits = HTTPLimits()) {
        connections = TrackedConnections(HTTPProtocols.tracker(limits: limits))
    }

    /// Connections with state.
    var count: Int { connections.count }

    mutating func feed(_ event: DataEvent) -> [HTTPExchange] {
        connections.feed(event).compactMap { $0 as? HTTPExchange }
    }

    mutating func close(connection: UInt64, time: UInt64) -> [HTTPExchange] {
        connections.close(connection: connection, time: time).compactMap { $0 as? HTTPExchange }
    }
}
