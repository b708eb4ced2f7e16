import TLSTapCore
import TLSTapHTTP

/// `--redact`: credential header values replaced in every output, names kept.
///
/// Exchanges get `[REDACTED]` as the value. Raw payloads (text, hex, JSON
/// data events, pcapng) get the value's bytes overwritten, at the same
/// length, so TCP streams in pcapng still reassemble and every byte count
/// stays true. Each direction of each TLS stream (a process's TLS object)
/// is read on its own, across calls: HTTP/2 ones (from the preface, or a
/// run of frames) by `HTTP2HeaderRedactor`, which overwrites the values in
/// HPACK header blocks so that they still decode, and holds a call back
/// until the header blocks in it are whole; every other one by
/// `HTTP1HeaderRedactor`, line by line. Values whose names are unknown
/// (HPACK entries from before tlstap joined) are hidden too.
public final class RedactingSink: EventSink {
    /// Headers always redacted.
    public static let defaultHeaders = [
        "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token",
    ]

    /// One direction of one TLS object's stream.
    private struct StreamKey: Hashable {
        var pid: UInt32
        var ssl: UInt64
        var outbound: Bool
    }

    private enum Redactor {
        case lines(HTTP1HeaderRedactor)
        case http2(HTTP2HeaderRedactor)
    }

    private struct Stream {
        var redactor: Redactor
        /// The connection its calls were on, once known (a TLS object's address may be reused).
        var connection: UInt64?
        /// Calls the HTTP/2 redactor holds, oldest first.
        var held: [DataEvent] = []
    }

    private let inner: EventSink
    private let names: Set<String>
    private var streams: [StreamKey: Stream] = [:]
    private var streamsOfConnection: [UInt64: Set<StreamKey>] = [:]

    /// - Parameter extraHeaders: more header names to redact (`--redact-header`).
    public init(_ inner: EventSink, extraHeaders: [String] = []) {
        self.inner = inner
        names = Set((Self.defaultHeaders + extraHeaders).map { $0.lowercased() })
    }

    public func write(_ event: DataEvent) throws(OutputError) {
        let key = StreamKey(pid: event.pid, ssl: event.ssl, outbound: event.direction == .outbound)
        if let known = streams[key]?.connection, let now = event.connection?.id, known != now {
            try end(key)  // the object now serves another connection
        }
        guard var stream = streams.removeValue(forKey: key) ?? makeStream(key, first: event.payload) else {
            return try inner.write(event)  // no bytes yet to tell the protocol by, and none to hide
        }
        if stream.connection == nil, let id = event.connection?.id {
            stream.connection = id
            streamsOfConnection[id, default: []].insert(key)
        }
        var released: [[UInt8]] = []
        switch stream.redactor {
        case .lines(var redactor):
            var redacted = event
            if event.lostBefore > 0 { redactor.gap() }
            redactor.redact(&redacted.payload)
            if event.missingBytes > 0 { redactor.gap() }
            stream.redactor = .lines(redactor)
            streams[key] = stream
            return try inner.write(redacted)
        case .http2(var redactor):
            if event.lostBefore > 0 { released += redactor.gap() }
            stream.held.append(event)
            released += redactor.feed(event.payload)
            if event.missingBytes > 0 { released += redactor.gap() }
            stream.redactor = .http2(redactor)
        }
        let ready = stream.held.prefix(released.count)
        stream.held.removeFirst(released.count)
        streams[key] = stream
        for (event, payload) in zip(ready, released) {
            var redacted = event
            redacted.payload = payload
            try inner.write(redacted)
        }
    }

    /// How a stream is read, from its first bytes: HTTP/2 from a preface or
    /// frames, or when the other direction is HTTP/2; lines otherwise. Nil
    /// while there are no bytes.
    private func makeStream(_ key: StreamKey, first payload: [UInt8]) -> Stream? {
        guard !payload.isEmpty else { return nil }
        switch HTTPStreamStart(payload) {
        case .http2Preface: return Stream(redactor: .http2(HTTP2HeaderRedactor(names: names, start: .preface)))
        case .http2Frames: return Stream(redactor: .http2(HTTP2HeaderRedactor(names: names, start: .frame)))
        default: break
        }
        var other = key
        other.outbound.toggle()
        if case .http2 = streams[other]?.redactor {
            return Stream(redactor: .http2(HTTP2HeaderRedactor(names: names, start: .unknown)))
        }
        return Stream(redactor: .lines(HTTP1HeaderRedactor(names: names)))
    }

    /// A stream ended: the calls it held come out.
    private func end(_ key: StreamKey) throws(OutputError) {
        guard let stream = streams.removeValue(forKey: key) else { return }
        if let id = stream.connection { streamsOfConnection[id]?.remove(key) }
        guard case .http2(var redactor) = stream.redactor else { return }
        for (event, payload) in zip(stream.held, redactor.drain()) {
            var redacted = event
            redacted.payload = payload
            try inner.write(redacted)
        }
    }

    public func write(_ event: ConnectionEvent) throws(OutputError) {
        if case .closed(let connection, _, _) = event, let keys = streamsOfConnection.removeValue(forKey: connection.id)
        {
            for key in keys.sorted(by: { ($0.ssl, $0.outbound ? 1 : 0) < ($1.ssl, $1.outbound ? 1 : 0) }) {
                try end(key)
            }
        }
        try inner.write(event)
    }

    public func write(_ record: any ProtocolRecord) throws(OutputError) {
        guard let exchange = record as? HTTPExchange else { return try inner.write(record) }
        var redacted = exchange
        redacted.requestHeaders = redact(exchange.requestHeaders)
        redacted.responseHeaders = redact(exchange.responseHeaders)
        try inner.write(redacted)
    }

    public func writeLost(_ lost: LostCounts, timeNanoseconds: UInt64) throws(OutputError) {
        try inner.writeLost(lost, timeNanoseconds: timeNanoseconds)
    }

    public func flush() throws(OutputError) {
        try inner.flush()
    }

    public func finish() throws(OutputError) {
        let holding = streams.filter { !$0.value.held.isEmpty }
            .sorted { $0.value.held[0].timeNanoseconds < $1.value.held[0].timeNanoseconds }
        for (key, _) in holding { try end(key) }
        try inner.finish()
    }

    func redact(_ headers: [HTTPHeader]) -> [HTTPHeader] {
        headers.map { names.contains($0.name.lowercased()) ? HTTPHeader($0.name, "[REDACTED]") : $0 }
    }
}
