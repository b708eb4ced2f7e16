import TLSTapCore

/// The HTTP protocols as the protocol layer sees them: detectors for the
/// ways an HTTP connection shows itself, and analyzers around the HTTP/1.x
/// and HTTP/2 parsers.
public enum HTTPProtocols {
    /// The detectors of every protocol tlstap reads, in the order they are
    /// asked; the protocols HTTP/1.1 may switch to (`upgrades`) come after a
    /// `101 Switching Protocols`.
    /// - Parameter upgrades: what reads a connection after an HTTP/1.1
    ///   upgrade, by the `Upgrade` token (lower case).
    public static func detectors(limits: HTTPLimits, upgrades: HTTPUpgrades = .standard) -> [any ProtocolDetector] {
        [
            HTTPRequestDetector(limits: limits, upgrades: upgrades),
            HTTPResponseDetector(limits: limits, upgrades: upgrades),
            HTTP2FramesDetector(limits: limits),
        ]
    }

    /// A tracker of every connection with these detectors.
    public static func tracker(limits: HTTPLimits = HTTPLimits()) -> ProtocolTracker {
        ProtocolTracker(detectors: detectors(limits: limits), maxOpeningBytes: limits.maxHeaderBytes)
    }

    /// An exchange of `context`'s connection with nothing in it yet.
    static func template(_ context: ProtocolContext) -> HTTPExchange {
        var template = HTTPExchange(
            connection: context.connection, pid: context.pid, comm: context.comm, protocolVersion: "")
        template.scheme = context.overTLS ? "https" : "http"
        return template
    }
}

/// What reads a connection after an HTTP/1.1 upgrade, by the `Upgrade`
/// token its `101` response named (lower case).
public struct HTTPUpgrades: Sendable {
    /// Makes the analyzer from the exchange that switched (its request and
    /// response heads) and the limits.
    public typealias Make = @Sendable (HTTPExchange, HTTPLimits) -> any ProtocolAnalyzer

    public var byToken: [String: Make]

    public init(_ byToken: [String: Make]) {
        self.byToken = byToken
    }

    /// WebSocket (RFC 6455).
    public static let standard = HTTPUpgrades(["websocket": { WebSocketAnalyzer(upgrade: $0, limits: $1) }])

    /// The analyzer for the protocol `exchange` switched to, if known.
    func analyzer(after exchange: HTTPExchange, limits: HTTPLimits) -> (any ProtocolAnalyzer)? {
        guard exchange.status == 101, let token = exchange.responseHeaders.first("upgrade") else { return nil }
        return byToken[token.lowercased()]?(exchange, limits)
    }
}

/// A client's first bytes: the HTTP/2 preface, or an HTTP/1.x request line.
struct HTTPRequestDetector: ProtocolDetector {
    let limits: HTTPLimits
    let upgrades: HTTPUpgrades

    func detect(_ opening: ConnectionOpening) -> ProtocolDetection {
        for clientOutbound in opening.orientations {
            switch Self.recognise(opening.client(outbound: clientOutbound)) {
            case .some(true):
                let http2 = HTTP2Connection(template: HTTPProtocols.template(opening.context), limits: limits)
                return .found(clientIsOutbound: clientOutbound, analyzer: HTTP2Analyzer(http2, limits: limits))
            case .some(false):
                let http1 = HTTP1Connection(
                    template: HTTPProtocols.template(opening.context), limits: limits,
                    joinedMidway: opening.joinedMidway)
                return .found(
                    clientIsOutbound: clientOutbound, analyzer: HTTP1Analyzer(http1, limits: limits, upgrades: upgrades)
                )
            case nil:
                break
            }
        }
        guard let clientOutbound = opening.clientIsOutbound else { return .possible }
        let client = opening.client(outbound: clientOutbound)
        return client.isEmpty || Self.mayStillBeHTTP(client) ? .possible : .ruledOut
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

    /// Whether more bytes could still make `bytes` a preface or a request line.
    static func mayStillBeHTTP(_ bytes: [UInt8]) -> Bool {
        if HTTP2FrameReader.preface.starts(with: bytes.prefix(HTTP2FrameReader.preface.count)) { return true }
        return bytes.firstIndex(of: 0x0a) == nil && bytes.count < 8 * 1024
            && bytes.prefix { $0 != 0x20 }.allSatisfy { (0x41...0x5a).contains($0) || $0 == 0x2d }
    }
}

/// A server's status line: tlstap joined an HTTP/1.x connection while a
/// request was under way.
struct HTTPResponseDetector: ProtocolDetector {
    let limits: HTTPLimits
    let upgrades: HTTPUpgrades

    func detect(_ opening: ConnectionOpening) -> ProtocolDetection {
        for clientOutbound in opening.orientations
        where Self.startsWithStatusLine(opening.server(outbound: clientOutbound)) {
            let http1 = HTTP1Connection(
                template: HTTPProtocols.template(opening.context), limits: limits, joinedMidway: true)
            return .found(
                clientIsOutbound: clientOutbound, analyzer: HTTP1Analyzer(http1, limits: limits, upgrades: upgrades))
        }
        guard let clientOutbound = opening.clientIsOutbound else { return .possible }
        // Joined midway, the client's bytes may be the rest of a request, and the server's tell.
        let server = opening.server(outbound: clientOutbound)
        return opening.joinedMidway && (server.isEmpty || Self.mayStillBeStatusLine(server)) ? .possible : .ruledOut
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
}

/// HTTP/2 frames without a preface (`HTTP2FrameRun`): the client's on a
/// connection seen from its start (their preface was lost), or either
/// side's on one tlstap joined midway. Not a server's alone on a new
/// connection: servers may send SETTINGS before the client's preface arrives.
struct HTTP2FramesDetector: ProtocolDetector {
    let limits: HTTPLimits

    func detect(_ opening: ConnectionOpening) -> ProtocolDetection {
        let maxPayload = HTTP2Connection.maxFramePayload(limits)
        let midway = opening.joinedMidway
        var framed: [(clientOutbound: Bool, start: HTTP2Connection.Start)] = []
        for clientOutbound in opening.orientations {
            let client = HTTP2FrameRun.verdict(
                opening.client(outbound: clientOutbound), fromClient: true, maxPayload: maxPayload)
            let server = HTTP2FrameRun.verdict(
                opening.server(outbound: clientOutbound), fromClient: false, maxPayload: maxPayload)
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
                (isFrames(opening.outbound) ? HTTP2FrameRun.sentByClient(opening.outbound) : nil)
                ?? (isFrames(opening.inbound) ? HTTP2FrameRun.sentByClient(opening.inbound).map { !$0 } : nil)
            framed.removeAll { $0.clientOutbound != outboundIsClient }
        }
        if framed.count == 1, let choice = framed.first {
            let http2 = HTTP2Connection(
                template: HTTPProtocols.template(opening.context), limits: limits, start: choice.start)
            return .found(clientIsOutbound: choice.clientOutbound, analyzer: HTTP2Analyzer(http2, limits: limits))
        }
        guard let clientOutbound = opening.clientIsOutbound else { return .possible }
        let client = HTTP2FrameRun.verdict(
            opening.client(outbound: clientOutbound), fromClient: true, maxPayload: maxPayload)
        let server = HTTP2FrameRun.verdict(
            opening.server(outbound: clientOutbound), fromClient: false, maxPayload: maxPayload)
        return client == .tooShort || (midway && server == .tooShort) ? .possible : .ruledOut
    }
}

/// Reads an HTTP/1.x connection, until it switches to another protocol.
final class HTTP1Analyzer: ProtocolAnalyzer {
    private let http1: HTTP1Connection
    private let limits: HTTPLimits
    private let upgrades: HTTPUpgrades
    private var switched: ProtocolSwitch?

    init(_ http1: HTTP1Connection, limits: HTTPLimits, upgrades: HTTPUpgrades) {
        self.http1 = http1
        self.limits = limits
        self.upgrades = upgrades
    }

    func feed(fromClient: Bool, _ bytes: [UInt8], time: UInt64) -> [any ProtocolRecord] {
        let exchanges = fromClient ? http1.feedRequest(bytes, time: time) : http1.feedResponse(bytes, time: time)
        if let upgrade = http1.takeUpgrade(), let next = upgrades.analyzer(after: upgrade.exchange, limits: limits) {
            switched = ProtocolSwitch(analyzer: next, rest: upgrade.rest, restFromClient: false)
        }
        return exchanges.finished(limits)
    }

    func lost(fromClient: Bool, time: UInt64) -> [any ProtocolRecord] {
        http1.lost(fromClient: fromClient, time: time).finished(limits)
    }

    func close(time: UInt64, end: ConnectionEnd) -> [any ProtocolRecord] {
        http1.close(time: time, note: end.note).finished(limits)
    }

    func takeSwitch() -> ProtocolSwitch? {
        defer { switched = nil }
        return switched
    }
}

/// Reads an HTTP/2 connection.
final class HTTP2Analyzer: ProtocolAnalyzer {
    private let http2: HTTP2Connection
    private let limits: HTTPLimits

    init(_ http2: HTTP2Connection, limits: HTTPLimits) {
        self.http2 = http2
        self.limits = limits
    }

    func feed(fromClient: Bool, _ bytes: [UInt8], time: UInt64) -> [any ProtocolRecord] {
        http2.feed(fromClient: fromClient, bytes, time: time).finished(limits)
    }

    func lost(fromClient: Bool, time: UInt64) -> [any ProtocolRecord] {
        http2.lost(fromClient: fromClient, time: time).finished(limits)
    }

    func close(time: UInt64, end: ConnectionEnd) -> [any ProtocolRecord] {
        http2.close(time: time, note: end.note).finished(limits)
    }

    var gaveUp: Bool { http2.failed != nil }
}

extension Array where Element == HTTPExchange {
    /// Completed exchanges as records, their captured bodies decoded.
    fileprivate func finished(_ limits: HTTPLimits) -> [any ProtocolRecord] {
        guard !isEmpty else { return [] }
        guard limits.captureBodies else { return self }
        return map { exchange in
            var decoded = exchange
            decoded.decodeBodies(limit: limits.maxBodyBytes)
            return decoded
        }
    }
}

extension HTTPExchange: ProtocolRecord {
    public var protocolName: String { "http" }

    /// The exchange as OpenTelemetry's HTTP semantic conventions name its parts.
    public var attributes: [ProtocolField] {
        var attributes = [
            ProtocolField("network.protocol.name", .string("http")),
            ProtocolField(
                "network.protocol.version", .string(String(protocolVersion.dropFirst("HTTP/".count)))),
        ]
        if !method.isEmpty { attributes.append(ProtocolField("http.request.method", .string(method))) }
        if !scheme.isEmpty { attributes.append(ProtocolField("url.scheme", .string(scheme))) }
        if !authority.isEmpty { attributes.append(ProtocolField("server.address", .string(authority))) }
        if !path.isEmpty { attributes.append(ProtocolField("url.path", .string(path))) }
        if let status { attributes.append(ProtocolField("http.response.status_code", .integer(status))) }
        if let grpc {
            attributes.append(ProtocolField("rpc.system", .string("grpc")))
            attributes.append(ProtocolField("rpc.service", .string(grpc.service)))
            attributes.append(ProtocolField("rpc.method", .string(grpc.method)))
            if let code = grpc.status { attributes.append(ProtocolField("rpc.grpc.status_code", .integer(code))) }
        }
        return attributes
    }

    public var details: [ProtocolField] {
        var details = [
            ProtocolField("method", .string(method)), ProtocolField("url", .string(url)),
        ]
        if let status { details.append(ProtocolField("status", .integer(status))) }
        if let note = noteText { details.append(ProtocolField("note", .string(note))) }
        return details
    }

    /// `GET https://example.com/ → 200 OK`
    public var summary: String {
        var status = status.map { "\($0)" } ?? "---"
        if let reason, !reason.isEmpty { status += " " + reason }
        return "\(method) \(url) → \(status)"
    }

    /// The request's URL as far as it is known: `https://example.com/path`.
    public var url: String { (scheme.isEmpty ? "" : scheme + "://") + authority + path }
}
