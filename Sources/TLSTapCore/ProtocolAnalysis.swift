/// The protocol layer: what reads a connection's plaintext as a protocol.
///
/// A `ProtocolDetector` looks at a connection's first bytes and, when they
/// are its protocol's, makes a `ProtocolAnalyzer` for the connection; the
/// analyzer is fed every call's bytes after that, in order, and produces
/// `ProtocolRecord`s (an HTTP exchange, a WebSocket message) for the sinks.
/// `ProtocolTracker` holds the per-connection state and runs the detectors of
/// a registry in order. A protocol is added with a detector, an analyzer and
/// a record type, in a file or two; the sinks render any record through its
/// `details`.

/// A value of one field of a protocol record.
public enum ProtocolValue: Sendable, Equatable {
    case string(String)
    case integer(Int)
    case boolean(Bool)
    /// Bytes that need not be text (base64 in JSON, escaped in text).
    case bytes([UInt8])
}

/// A named value of a protocol record.
public struct ProtocolField: Sendable, Equatable {
    public var name: String
    public var value: ProtocolValue

    public init(_ name: String, _ value: ProtocolValue) {
        self.name = name
        self.value = value
    }
}

/// What an analyzer recognised on a connection: an exchange, a message.
public protocol ProtocolRecord: Sendable {
    /// The record's kind, lower case: the `event` of its JSON line and a
    /// kind of `--events` ("http", "websocket").
    var protocolName: String { get }
    /// The connection's id (as in its open and close events).
    var connection: UInt64 { get }
    var pid: UInt32 { get }
    var comm: String { get }
    /// Wall-clock time of its first byte.
    var startNanoseconds: UInt64 { get }
    /// Wall-clock time of its last byte.
    var endNanoseconds: UInt64 { get }
    /// What it is, named as OpenTelemetry's semantic conventions name it
    /// (`network.protocol.name`, `http.request.method`, …), where they do.
    var attributes: [ProtocolField] { get }
    /// The protocol's own details, in order: what an output that knows
    /// nothing of the protocol shows (JSON Lines, text).
    var details: [ProtocolField] { get }
    /// One line for people, without time or process (text output).
    var summary: String { get }
}

/// Who a connection's peer is and how its bytes came, for the records an
/// analyzer makes.
public struct ProtocolContext: Sendable {
    public var connection: UInt64
    public var pid: UInt32
    public var comm: String
    /// Whether the bytes are a TLS library's plaintext (https, wss), not a
    /// plain socket's (`--plaintext`).
    public var overTLS: Bool

    public init(connection: UInt64, pid: UInt32, comm: String, overTLS: Bool) {
        self.connection = connection
        self.pid = pid
        self.comm = comm
        self.overTLS = overTLS
    }
}

/// Reads the bytes of one connection as one protocol. A class: it owns the
/// connection's parsing state, which changes in place as bytes arrive.
///
/// Bytes come in call order, each side's in its own order, in any split;
/// an analyzer produces the same records for every split.
public protocol ProtocolAnalyzer: AnyObject {
    /// Bytes one side sent, at `time`.
    /// - Returns: the records they completed.
    func feed(fromClient: Bool, _ bytes: [UInt8], time: UInt64) -> [any ProtocolRecord]
    /// Bytes one side sent were lost (the ring buffer was full) at `time`,
    /// right before the bytes fed next from that side.
    /// - Returns: records the gap ended (marked as such).
    func lost(fromClient: Bool, time: UInt64) -> [any ProtocolRecord]
    /// The connection closed, or the capture stopped, at `time`.
    /// - Returns: the records still open, ended with `end.note`.
    func close(time: UInt64, end: ConnectionEnd) -> [any ProtocolRecord]
    /// Whether the bytes turned out not to be this protocol: the connection
    /// is not analysed any further.
    var gaveUp: Bool { get }
    /// After a feed that switched the connection to another protocol (an
    /// HTTP/1.1 `101 Switching Protocols`): what reads it from then on.
    /// Taken once.
    func takeSwitch() -> ProtocolSwitch?
}

extension ProtocolAnalyzer {
    public var gaveUp: Bool { false }
    public func takeSwitch() -> ProtocolSwitch? { nil }
}

/// Why a connection's analysis ends.
public enum ConnectionEnd: Sendable {
    case closed
    /// tlstap stopped, with the connection still open.
    case captureStopped

    /// What records left open by it say.
    public var note: String {
        switch self {
        case .closed: "connection closed"
        case .captureStopped: "capture stopped"
        }
    }
}

/// A connection that changed protocol in the middle of a call.
public struct ProtocolSwitch {
    /// Reads the connection from the switch on.
    public var analyzer: any ProtocolAnalyzer
    /// The bytes after the switch in the call that made it, and who sent them.
    public var rest: [UInt8]
    public var restFromClient: Bool

    public init(analyzer: any ProtocolAnalyzer, rest: [UInt8] = [], restFromClient: Bool) {
        self.analyzer = analyzer
        self.rest = rest
        self.restFromClient = restFromClient
    }
}

/// A connection's first bytes, as a detector sees them.
public struct ConnectionOpening {
    /// Everything each side sent so far.
    public var outbound: [UInt8]
    public var inbound: [UInt8]
    /// Whether outbound bytes are the client's; nil until known.
    public var clientIsOutbound: Bool?
    /// tlstap joined the connection while it was in use: either side's
    /// first bytes may be the middle of a message.
    public var joinedMidway: Bool
    public var context: ProtocolContext

    /// The ways the connection may be oriented: whether the client's bytes
    /// are the outbound ones (one way when the role is known, else both).
    public var orientations: [Bool] { clientIsOutbound.map { [$0] } ?? [true, false] }

    /// The client's bytes, if outbound bytes are the client's as `clientIsOutbound` says.
    public func client(outbound clientIsOutbound: Bool) -> [UInt8] { clientIsOutbound ? outbound : inbound }

    /// The server's bytes, if outbound bytes are the client's as `clientIsOutbound` says.
    public func server(outbound clientIsOutbound: Bool) -> [UInt8] { clientIsOutbound ? inbound : outbound }
}

/// What a detector made of a connection's first bytes.
public enum ProtocolDetection {
    /// Its protocol: `analyzer` reads the connection, oriented so.
    case found(clientIsOutbound: Bool, analyzer: any ProtocolAnalyzer)
    /// Not yet known: more bytes may make it so.
    case possible
    /// Not its protocol, whatever comes next (said only when the
    /// connection's orientation is known).
    case ruledOut
}

/// Recognises one protocol from a connection's first bytes.
public protocol ProtocolDetector {
    func detect(_ opening: ConnectionOpening) -> ProtocolDetection
}

/// One connection's protocol analysis: the bytes held while no detector
/// has decided, then the analyzer reading it, or nothing when it is left
/// alone. It hangs off the connection's entry in the `ConnectionTable`
/// and ends with it; `ProtocolTracker` changes it.
public struct ConnectionAnalysis {
    fileprivate enum Reader {
        case undecided
        case analyzer(any ProtocolAnalyzer)
        case ignored
    }

    fileprivate var reader = Reader.undecided
    /// Whether outbound bytes are the client's; nil until known.
    fileprivate var clientIsOutbound: Bool?
    /// Bytes seen before the protocol was recognised, replayed after.
    fileprivate var early: [(outbound: Bool, bytes: [UInt8], time: UInt64)] = []
    fileprivate var earlyBytes = 0

    public init() {}
}

/// Turns the data events of each connection into protocol records, in the
/// connection's `ConnectionAnalysis`.
///
/// Per connection, the bytes are held until a detector of `detectors` (in
/// order) recognises them, then replayed into its analyzer; a connection no
/// detector can recognise, or whose analyzer gives up, is left alone from
/// then on. Which direction is the client's follows from the connection's
/// role, or, when it is not known, from the detector. Where the kernel lost
/// bytes of a stream (an event's `lostBefore`, or chunks missing from its
/// own call), the analyzer is told.
public struct ProtocolTracker {
    private let detectors: [any ProtocolDetector]
    private let maxOpeningBytes: Int

    /// - Parameters:
    ///   - detectors: tried in order on each connection's first bytes.
    ///   - maxOpeningBytes: bytes held per connection while no detector
    ///     has decided; beyond them, the connection is left alone.
    public init(detectors: [any ProtocolDetector], maxOpeningBytes: Int) {
        self.detectors = detectors
        self.maxOpeningBytes = maxOpeningBytes
    }

    /// Feeds one data event (which must carry its connection) into that
    /// connection's `state`.
    /// - Returns: the records it completed.
    public func feed(_ event: DataEvent, into state: inout ConnectionAnalysis) -> [any ProtocolRecord] {
        guard let connection = event.connection else { return [] }
        if state.clientIsOutbound == nil {
            switch connection.role {
            case .client: state.clientIsOutbound = true
            case .server: state.clientIsOutbound = false
            case .unknown: break
            }
        }
        let outbound = event.direction == .outbound
        var finished: [any ProtocolRecord] = []
        switch state.reader {
        case .ignored:
            break
        case .undecided:
            state.early.append((outbound, event.payload, event.timeNanoseconds))
            state.earlyBytes += event.payload.count
            decide(&state, event: event, connection: connection)
            if case .undecided = state.reader, state.earlyBytes > maxOpeningBytes { state.reader = .ignored }
            if case .analyzer = state.reader {
                let early = state.early
                state.early = []
                state.earlyBytes = 0
                for chunk in early {
                    Self.add(
                        feed(&state, outbound: chunk.outbound, bytes: chunk.bytes, time: chunk.time), to: &finished)
                }
            }
        case .analyzer(let analyzer):
            let time = event.timeNanoseconds
            let fromClient = outbound == state.clientIsOutbound
            if event.lostBefore > 0 { Self.add(analyzer.lost(fromClient: fromClient, time: time), to: &finished) }
            Self.add(feed(&state, outbound: outbound, bytes: event.payload, time: time), to: &finished)
            if event.missingBytes > 0, case .analyzer(let current) = state.reader {
                Self.add(current.lost(fromClient: fromClient, time: time), to: &finished)
            }
        }
        if case .ignored = state.reader { state.early = [] }
        return finished
    }

    /// The connection closed, or the capture stopped: records still open end now.
    public func close(_ state: ConnectionAnalysis, time: UInt64, end: ConnectionEnd = .closed) -> [any ProtocolRecord] {
        guard case .analyzer(let analyzer) = state.reader else { return [] }
        return analyzer.close(time: time, end: end)
    }

    /// Appends `records` to `finished`, taking the array as it is when
    /// `finished` is empty (nearly always): no copy of each record.
    private static func add(_ records: consuming [any ProtocolRecord], to finished: inout [any ProtocolRecord]) {
        if finished.isEmpty { finished = records } else { finished += records }
    }

    /// Feeds the analyzer, and the one the connection switched to, if it did.
    private func feed(_ state: inout ConnectionAnalysis, outbound: Bool, bytes: [UInt8], time: UInt64)
        -> [any ProtocolRecord]
    {
        guard case .analyzer(let analyzer) = state.reader, let clientIsOutbound = state.clientIsOutbound else {
            return []
        }
        var records = analyzer.feed(fromClient: outbound == clientIsOutbound, bytes, time: time)
        if analyzer.gaveUp { state.reader = .ignored }
        if let change = analyzer.takeSwitch() {
            state.reader = .analyzer(change.analyzer)
            if !change.rest.isEmpty {
                records += change.analyzer.feed(fromClient: change.restFromClient, change.rest, time: time)
            }
        }
        return records
    }

    /// Asks the detectors, in order, about the bytes held so far; the first
    /// that recognises them reads the connection. It is left alone when
    /// every detector rules it out (only once its orientation is known).
    private func decide(_ state: inout ConnectionAnalysis, event: DataEvent, connection: Connection) {
        let opening = ConnectionOpening(
            outbound: state.early.filter(\.outbound).flatMap(\.bytes),
            inbound: state.early.filter { !$0.outbound }.flatMap(\.bytes),
            clientIsOutbound: state.clientIsOutbound, joinedMidway: connection.origin == .mid,
            context: ProtocolContext(
                connection: connection.id, pid: connection.pid, comm: event.comm, overTLS: event.library != .socket))
        var possible = false
        for detector in detectors {
            switch detector.detect(opening) {
            case .found(let clientIsOutbound, let analyzer):
                state.clientIsOutbound = clientIsOutbound
                state.reader = .analyzer(analyzer)
                return
            case .possible:
                possible = true
            case .ruledOut:
                break
            }
        }
        if !possible && state.clientIsOutbound != nil { state.reader = .ignored }
    }
}
