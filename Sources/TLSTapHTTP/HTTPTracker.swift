import TLSTapCore

/// Turns the data events of every connection into HTTP exchanges.
///
/// Per connection, the protocol is recognised from its first bytes: the
/// HTTP/2 client preface, or an HTTP/1.x request line; or, where tlstap
/// joined a connection in use, a status line or HTTP/2 frames without a
/// preface (`decide`); anything else is raw and ignored from then on. Which
/// direction is the client's follows from the connection's role, or, when
/// tlstap joined mid-connection, from which side sent the request (or the
/// response). Parse errors mark a connection raw; they never stop tlstap.
/// Where the kernel lost bytes of a stream (an event's
/// `lostBefore`, or chunks missing from its own call), that side's parser
/// is told, and resumes at its next message. State is dropped when the
/// connection closes.
public struct HTTPTracker {
    private enum Parser {
        case undecided
        case http1(HTTP1Connection)
        case http2(HTTP2Connection)
        case raw
    }

    private struct ConnectionState {
        var parser = Parser.undecided
        /// Whether outbound bytes are the client's; nil until known.
        var clientIsOutbound: Bool?
        /// Bytes seen before the protocol was recognised, replayed after.
        var early: [(outbound: Bool, bytes: [UInt8], time: UInt64)] = []
        var earlyBytes = 0
    }

    private var connections: [UInt64: ConnectionState] = [:]
    private let limits: HTTPLimits

    public init(limits: HTTPLimits = HTTPLimits()) {
        self.limits = limits
    }

    /// Connections with parser state.
    public var count: Int { connections.count }

    /// The ids of the connections with parser state.
    public var connectionIDs: [UInt64] { connections.keys.sorted() }

    /// Feeds one data event (which must carry its connection).
    /// - Returns: the exchanges it completed.
    public mutating func feed(_ event: DataEvent) -> [HTTPExchange] {
        guard let connection = event.connection else { return [] }
        // Taken out of the dictionary while it changes, so its buffers are not copied.
        var state = connections.removeValue(forKey: connection.id) ?? ConnectionState()
        if state.clientIsOutbound == nil {
            switch connection.role {
            case .client: state.clientIsOutbound = true
            case .server: state.clientIsOutbound = false
            case .unknown: break
            }
        }
        let outbound = event.direction == .outbound
        var finished: [HTTPExchange] = []
        switch state.parser {
        case .raw:
            break
        case .undecided:
            state.early.append((outbound, event.payload, event.timeNanoseconds))
            state.earlyBytes += event.payload.count
            decide(&state, event: event)
            if case .undecided = state.parser, state.earlyBytes > limits.maxHeaderBytes { state.parser = .raw }
            if case .undecided = state.parser {
            } else {
                let early = state.early
                state.early = []
                state.earlyBytes = 0
                for chunk in early {
                    let done = feed(&state, outbound: chunk.outbound, bytes: chunk.bytes, time: chunk.time)
                    Self.add(done, to: &finished)
                }
            }
        default:
            let time = event.timeNanoseconds
            if event.lostBefore > 0 { Self.add(lost(&state, outbound: outbound, time: time), to: &finished) }
            Self.add(feed(&state, outbound: outbound, bytes: event.payload, time: time), to: &finished)
            if event.missingBytes > 0 { Self.add(lost(&state, outbound: outbound, time: time), to: &finished) }
        }
        if case .raw = state.parser { state.early = [] }
        connections[connection.id] = state
        return finishing(finished)
    }

    /// Appends `exchanges` to `finished`, taking the array as it is when
    /// `finished` is empty (nearly always): appending copies each exchange,
    /// every field's reference count up, and down again for the original.
    private static func add(_ exchanges: consuming [HTTPExchange], to finished: inout [HTTPExchange]) {
        if finished.isEmpty { finished = exchanges } else { finished += exchanges }
    }

    /// Decodes captured bodies of completed exchanges.
    private func finishing(_ exchanges: [HTTPExchange]) -> [HTTPExchange] {
        guard limits.captureBodies else { return exchanges }
        return exchanges.map { exchange in
            var decoded = exchange
            decoded.decodeBodies(limit: limits.maxBodyBytes)
            return decoded
        }
    }

    /// The connection closed: exchanges still open end now.
    public mutating func close(connection id: UInt64, time: UInt64) -> [HTTPExchange] {
        guard let state = connections.removeValue(forKey: id) else { return [] }
        switch state.parser {
        case .http1(let parser): return finishing(parser.close(time: time))
        case .http2(let parser): return finishing(parser.close(time: time))
        case .undecided, .raw: return []
        }
    }

    private func feed(_ state: inout ConnectionState, outbound: Bool, bytes: [UInt8], time: UInt64) -> [HTTPExchange] {
        guard let clientIsOutbound = state.clientIsOutbound else { return [] }
        let fromClient = outbound == clientIsOutbound
        switch state.parser {
        case .http1(let http1):
            return fromClient ? http1.feedRequest(bytes, time: time) : http1.feedResponse(bytes, time: time)
        case .http2(let http2):
            let done = http2.feed(fromClient: fromClient, bytes, time: time)
            if http2.failed != nil { state.parser = .raw }
            return done
        case .undecided, .raw:
            return []
        }
    }

    private func lost(_ state: inout ConnectionState, outbound: Bool, time: UInt64) -> [HTTPExchange] {
        guard let clientIsOutbound = state.clientIsOutbound else { return [] }
        switch state.parser {
        case .http1(let http1): return http1.lost(fromClient: outbound == clientIsOutbound, time: time)
        case .http2(let http2): return http2.lost(fromClient: outbound == clientIsOutbound, time: time)
        case .undecided, .raw: return []
        }
    }

    /// Recognises the protocol from a connection's first bytes: the
    /// client's HTTP/2 preface or HTTP/1 request line; a server's status
    /// line (tlstap joined while a request was under way); or, on a
    /// connection tlstap joined midway, HTTP/2 frames without a preface
    /// from either side (`HTTP2FrameRun`). The client's frames alone count
    /// on a connection seen from its start (their preface was lost), but
    /// not a server's: servers may send SETTINGS before the client's
    /// preface arrives.
    private func decide(_ state: inout ConnectionState, event: DataEvent) {
        guard let connection = event.connection else { return }
        var template = HTTPExchange(
            connection: connection.id, pid: connection.pid, comm: event.comm, protocolVersion: "")
        template.scheme = event.library == .socket ? "http" : "https"
        let midway = connection.origin == .mid
        let outbound = state.early.filter(\.outbound).flatMap(\.bytes)
        let inbound = state.early.filter { !$0.outbound }.flatMap(\.bytes)
        // Whether outbound bytes are the client's: known from the role, else either way.
        let candidates: [Bool] = state.clientIsOutbound.map { [$0] } ?? [true, false]
        for clientOutbound in candidates {
            switch Self.recognise(clientOutbound ? outbound : inbound) {
            case .some(true):
                state.clientIsOutbound = clientOutbound
                state.parser = .http2(HTTP2Connection(template: template, limits: limits))
                return
            case .some(false):
                state.clientIsOutbound = clientOutbound
                state.parser = .http1(HTTP1Connection(template: template, limits: limits, joinedMidway: midway))
                return
            case nil:
                break
            }
        }
        for clientOutbound in candidates where Self.startsWithStatusLine(clientOutbound ? inbound : outbound) {
            state.clientIsOutbound = clientOutbound
            state.parser = .http1(HTTP1Connection(template: template, limits: limits, joinedMidway: true))
            return
        }
        let maxPayload = HTTP2Connection.maxFramePayload(limits)
        var framed: [(clientOutbound: Bool, start: HTTP2Connection.Start)] = []
        for clientOutbound in candidates {
            let client = HTTP2FrameRun.verdict(
                clientOutbound ? outbound : inbound, fromClient: true, maxPayload: maxPayload)
            let server = HTTP2FrameRun.verdict(
                clientOutbound ? inbound : outbound, fromClient: false, maxPayload: maxPayload)
            if client == .frames || (midway && server == .frames) {
                framed.append(
                    (clientOutbound, .midway(clientAtFrame: client == .frames, serverAtFrame: server == .frames)))
            }
        }
        // Both ways fit only when the role is unknown: a side's first request or response header block tells.
        if framed.count == 2 {
            let isFrames = { (bytes: [UInt8]) in
                HTTP2FrameRun.verdict(bytes, fromClient: false, maxPayload: maxPayload) == .frames  // either side's
            }
            let outboundIsClient =
                (isFrames(outbound) ? HTTP2FrameRun.sentByClient(outbound) : nil)
                ?? (isFrames(inbound) ? HTTP2FrameRun.sentByClient(inbound).map { !$0 } : nil)
            framed.removeAll { $0.clientOutbound != outboundIsClient }
        }
        if framed.count == 1, let choice = framed.first {
            state.clientIsOutbound = choice.clientOutbound
            state.parser = .http2(HTTP2Connection(template: template, limits: limits, start: choice.start))
            return
        }
        // Nothing yet: give up when what came can start no HTTP (with the role known; else at the byte limit).
        guard let clientOutbound = state.clientIsOutbound else { return }
        let client = clientOutbound ? outbound : inbound
        let server = clientOutbound ? inbound : outbound
        let clientMay =
            client.isEmpty || Self.mayStillBeHTTP(client)
            || HTTP2FrameRun.verdict(client, fromClient: true, maxPayload: maxPayload) == .tooShort
        // Joined midway, the client's bytes may be the rest of a request, and the server's tell.
        let serverMay =
            midway
            && (server.isEmpty || Self.mayStillBeStatusLine(server)
                || HTTP2FrameRun.verdict(server, fromClient: false, maxPayload: maxPayload) == .tooShort)
        if !clientMay && !serverMay { state.parser = .raw }
    }

    /// true: HTTP/2 preface; false: an HTTP/1 request line; nil: not (yet) either.
    static func recognise(_ bytes: [UInt8]) -> Bool? {
        if bytes.count >= HTTP2FrameReader.preface.count {
            if bytes.starts(with: HTTP2FrameReader.preface) { return true }
        }
        guard let newline = bytes.firstIndex(of: 0x0a) else { return nil }
        let line = bytes[..<newline]
        let parts = line.split(separator: 0x20)
        guard parts.count == 3, parts[0].allSatisfy({ (0x41...0x5a).contains($0) || $0 == 0x2d }),
            parts[2].starts(with: Array("HTTP/1.".utf8))
        else { return nil }
        return false
    }

    /// Whether `bytes` begin with a whole HTTP/1 status line.
    static func startsWithStatusLine(_ bytes: [UInt8]) -> Bool {
        guard let newline = bytes.firstIndex(of: 0x0a) else { return false }
        var line = bytes[..<newline]
        if line.last == 0x0d { line = line.dropLast() }
        return HTTP1StreamParser.isStartLine(line, kind: .responses)
    }

    /// Whether more bytes could still make `bytes` an HTTP/1 status line.
    static func mayStillBeStatusLine(_ bytes: [UInt8]) -> Bool {
        let version = Array("HTTP/1.".utf8)
        return bytes.firstIndex(of: 0x0a) == nil && bytes.count < 8 * 1024
            && version.prefix(bytes.count).elementsEqual(bytes.prefix(version.count))
    }

    /// Whether more bytes could still make `bytes` a preface or a request line.
    static func mayStillBeHTTP(_ bytes: [UInt8]) -> Bool {
        if HTTP2FrameReader.preface.starts(with: bytes.prefix(HTTP2FrameReader.preface.count)) { return true }
        return bytes.firstIndex(of: 0x0a) == nil && bytes.count < 8 * 1024
            && bytes.prefix { $0 != 0x20 }.allSatisfy { (0x41...0x5a).contains($0) || $0 == 0x2d }
    }
}
