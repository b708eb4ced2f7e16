import CompressNIO
import NIOCore
import TLSTapCore

/// One WebSocket message (RFC 6455): a data message, from its first frame
/// to the one with FIN, or one control frame (close, ping, pong).
public struct WebSocketMessage: ProtocolRecord, Equatable {
    public var connection: UInt64
    public var pid: UInt32
    public var comm: String
    public var fromClient: Bool
    /// The first frame's opcode: 1 text, 2 binary, 8 close, 9 ping, 10 pong.
    public var opcode: UInt8
    /// Whether its last frame had FIN (false when the connection closed or
    /// bytes were lost in the middle of it).
    public var complete = false
    public var frames = 0
    /// Whether its frames were masked (a client's must be).
    public var masked = false
    /// Whether it was compressed (permessage-deflate, RFC 7692); `payload`
    /// and `length` are then the decompressed bytes.
    public var compressed = false
    /// Payload bytes as sent (compressed, when it was).
    public var wireLength = 0
    /// Payload bytes of the message (decompressed, when it was compressed).
    public var length = 0
    /// The payload, unmasked and decompressed, up to the limit (`--max-body`).
    public var payload: [UInt8] = []
    /// A close frame's status code and reason.
    public var closeCode: Int?
    public var closeReason: String?
    public var startNanoseconds: UInt64 = 0
    public var endNanoseconds: UInt64 = 0
    /// Why it is not whole: "bytes lost", "connection closed", "not decompressible".
    public var note: String?

    /// A message with nothing in it yet, begun by a frame with `opcode`.
    public init(connection: UInt64, pid: UInt32, comm: String, fromClient: Bool, opcode: UInt8) {
        self.connection = connection
        self.pid = pid
        self.comm = comm
        self.fromClient = fromClient
        self.opcode = opcode
    }

    public var protocolName: String { "websocket" }

    /// "text", "binary", "close", "ping", "pong", or the number of a reserved opcode.
    public var opcodeName: String {
        switch opcode {
        case 1: "text"
        case 2: "binary"
        case 8: "close"
        case 9: "ping"
        case 10: "pong"
        default: "\(opcode)"
        }
    }

    /// The payload as text, when it is a text message whose kept bytes are
    /// UTF-8 (a cut one may end inside a character: then it is bytes).
    public var text: String? {
        guard opcode == 1 else { return nil }
        return String(validating: payload, as: UTF8.self)
    }

    public var attributes: [ProtocolField] { [ProtocolField("network.protocol.name", .string("websocket"))] }

    public var details: [ProtocolField] {
        var details = [
            ProtocolField("from", .string(fromClient ? "client" : "server")),
            ProtocolField("opcode", .string(opcodeName)),
            ProtocolField("fin", .boolean(complete)),
            ProtocolField("frames", .integer(frames)),
            ProtocolField("masked", .boolean(masked)),
            ProtocolField("length", .integer(length)),
        ]
        if compressed {
            details.append(ProtocolField("compressed", .string("permessage-deflate")))
            details.append(ProtocolField("wire_length", .integer(wireLength)))
        }
        if let closeCode { details.append(ProtocolField("close_code", .integer(closeCode))) }
        if let closeReason { details.append(ProtocolField("close_reason", .string(closeReason))) }
        if opcode != 8 {
            if let text {
                details.append(ProtocolField("text", .string(text)))
            } else {
                details.append(ProtocolField("payload", .bytes(payload)))
            }
        }
        if let note { details.append(ProtocolField("note", .string(note))) }
        return details
    }

    /// `client → server text "hello" (5 B, 1 frame, masked)`
    public var summary: String {
        var line = fromClient ? "websocket client → server " : "websocket server → client "
        line += opcodeName
        if let closeCode { line += " \(closeCode)" }
        if let closeReason, !closeReason.isEmpty { line += " \"\(closeReason)\"" }
        if opcode != 8, let text { line += " \"\(text)\"" }
        line += " (\(length) B"
        if compressed { line += ", \(wireLength) B compressed" }
        line += ", \(frames) frame\(frames == 1 ? "" : "s")"
        if masked { line += ", masked" }
        if !complete { line += ", no FIN" }
        if let note { line += "; \(note)" }
        return line + ")"
    }
}

/// Reads a connection that switched to WebSocket after an HTTP/1.1 `101`:
/// each side's frames, unmasked and (with permessage-deflate) decompressed,
/// into messages. Control frames between the frames of a data message are
/// messages of their own.
///
/// Frames have no marker to find again after a gap: once a side's bytes
/// were lost, its message in progress ends marked "bytes lost", and that
/// side is not read any further (a side's bytes that break the framing end
/// it the same way).
final class WebSocketAnalyzer: ProtocolAnalyzer {
    private var client: WebSocketStreamReader
    private var server: WebSocketStreamReader

    /// - Parameters:
    ///   - upgrade: the exchange whose `101` response switched the
    ///     connection: its `Sec-WebSocket-Extensions` say whether messages
    ///     are compressed.
    ///   - limits: payload bytes kept per message (`maxBodyBytes`).
    init(upgrade: HTTPExchange, limits: HTTPLimits) {
        let deflate = PerMessageDeflate(extensions: upgrade.responseHeaders.first("sec-websocket-extensions"))
        var template = WebSocketMessage(
            connection: upgrade.connection, pid: upgrade.pid, comm: upgrade.comm, fromClient: true, opcode: 0)
        client = WebSocketStreamReader(
            template: template, keep: limits.maxBodyBytes,
            inflater: deflate.map { MessageInflater(resetsPerMessage: $0.clientNoContextTakeover) })
        template.fromClient = false
        server = WebSocketStreamReader(
            template: template, keep: limits.maxBodyBytes,
            inflater: deflate.map { MessageInflater(resetsPerMessage: $0.serverNoContextTakeover) })
    }

    func feed(fromClient: Bool, _ bytes: [UInt8], time: UInt64) -> [any ProtocolRecord] {
        fromClient ? client.feed(bytes[...], time: time) : server.feed(bytes[...], time: time)
    }

    func lost(fromClient: Bool, time: UInt64) -> [any ProtocolRecord] {
        fromClient ? client.stop(time: time, note: "bytes lost") : server.stop(time: time, note: "bytes lost")
    }

    func close(time: UInt64, end: ConnectionEnd) -> [any ProtocolRecord] {
        client.stop(time: time, note: end.note) + server.stop(time: time, note: end.note)
    }

    var gaveUp: Bool { client.stopped && server.stopped }
}

/// The permessage-deflate extension's parameters (RFC 7692), as the
/// server's `101` accepted them.
struct PerMessageDeflate: Equatable {
    var clientNoContextTakeover = false
    var serverNoContextTakeover = false

    /// nil when `extensions` (a `Sec-WebSocket-Extensions` value) does not accept permessage-deflate.
    init?(extensions: String?) {
        guard let extensions else { return nil }
        for offer in extensions.split(separator: ",") {
            let parameters = offer.split(separator: ";").map { $0.trimmingASCIISpaces().lowercased() }
            guard parameters.first == "permessage-deflate" else { continue }
            clientNoContextTakeover = parameters.contains("client_no_context_takeover")
            serverNoContextTakeover = parameters.contains("server_no_context_takeover")
            return
        }
        return nil
    }
}

extension Substring {
    fileprivate func trimmingASCIISpaces() -> Substring {
        var trimmed = self
        while trimmed.first == " " || trimmed.first == "\t" { trimmed.removeFirst() }
        while trimmed.last == " " || trimmed.last == "\t" { trimmed.removeLast() }
        return trimmed
    }
}

/// Inflates one side's compressed messages (raw DEFLATE, each message's
/// end marked by the four bytes the sender took off), through zlib.
final class MessageInflater {
    private let zlib: ZlibDecompressor?
    private let resetsPerMessage: Bool
    /// Set once zlib failed: the side's later messages cannot be read either
    /// (they may refer to the window's earlier bytes).
    private(set) var failed = false

    init(resetsPerMessage: Bool) {
        zlib = try? ZlibDecompressor(algorithm: .deflate, windowSize: 15)
        failed = zlib == nil
        self.resetsPerMessage = resetsPerMessage
    }

    /// Inflates a compressed message's next bytes.
    /// - Parameter output: given each piece of decompressed bytes, in order.
    func inflate(_ bytes: some Collection<UInt8>, output: (ByteBuffer) -> Void) {
        guard let zlib, !failed, !bytes.isEmpty else { return }
        var input = ByteBuffer(bytes: bytes)
        while true {
            var piece = ByteBufferAllocator().buffer(capacity: 16 * 1024)
            let before = input.readableBytes
            do {
                try zlib.inflate(from: &input, to: &piece)
                output(piece)
                return
            } catch let error as CompressNIOError where error == .bufferOverflow {
                output(piece)  // more to come out
                if piece.readableBytes == 0 && input.readableBytes == before { return }
            } catch let error as CompressNIOError where error == .inputBufferOverflow {
                output(piece)  // all taken in: it needs the next bytes
                return
            } catch {
                failed = true
                return
            }
        }
    }

    /// The message ended: its tail (RFC 7692 section 7.2.2) goes in, and
    /// the window starts over if the sender does not keep it.
    func endMessage(output: (ByteBuffer) -> Void) {
        inflate([0x00, 0x00, 0xff, 0xff], output: output)
        if resetsPerMessage, !failed { failed = (try? zlib?.reset()) == nil }
    }
}

/// One side's frames, read into messages.
struct WebSocketStreamReader {
    private let template: WebSocketMessage
    private let keep: Int
    private let inflater: MessageInflater?
    /// The header of the next frame, while incomplete.
    private var header: [UInt8] = []
    /// The frame whose payload is being read.
    private var frame: Frame?
    /// A data message whose FIN has not come yet.
    private var message: WebSocketMessage?
    /// A control frame being read (between a data message's frames, too).
    private var control: WebSocketMessage?
    private(set) var stopped = false

    private struct Frame {
        var remaining: Int
        var mask: [UInt8]?
        var offset = 0
        var fin: Bool
        var isControl: Bool
        var compressed: Bool
    }

    init(template: WebSocketMessage, keep: Int, inflater: MessageInflater?) {
        self.template = template
        self.keep = keep
        self.inflater = inflater
    }

    /// Reads `bytes` that arrived at `time`.
    /// - Returns: the messages they completed.
    mutating func feed(_ bytes: ArraySlice<UInt8>, time: UInt64) -> [any ProtocolRecord] {
        guard !stopped else { return [] }
        var input = bytes
        var done: [any ProtocolRecord] = []
        while !input.isEmpty || frame?.remaining == 0 {
            if var current = frame {
                let taken = input.prefix(current.remaining)
                input = input.dropFirst(taken.count)
                take(payload: taken, of: &current)
                current.remaining -= taken.count
                frame = current
                if current.remaining == 0 {
                    frame = nil
                    if let finished = endFrame(current, time: time) { done.append(finished) }
                }
                continue
            }
            while header.count < 2 || header.count < Self.headerLength(header) {
                guard let byte = input.popFirst() else { return done }
                header.append(byte)
            }
            switch start(frameWith: header, time: time) {
            case .success(let started):
                frame = started
            case .failure(let error):
                return done + stop(time: time, note: error.reason)
            }
            header = []
        }
        return done
    }

    /// The length of the frame header that begins with `header` (at least
    /// its first two bytes).
    private static func headerLength(_ header: [UInt8]) -> Int {
        guard header.count >= 2 else { return 2 }
        let extended =
            switch header[1] & 0x7f {
            case 126: 2
            case 127: 8
            default: 0
            }
        return 2 + extended + (header[1] & 0x80 != 0 ? 4 : 0)
    }

    /// Checks a complete frame header against RFC 6455 and starts its frame
    /// (and its message, for a first or control frame).
    private mutating func start(frameWith header: [UInt8], time: UInt64) -> Result<Frame, WebSocketFramingError> {
        let fin = header[0] & 0x80 != 0
        let rsv1 = header[0] & 0x40 != 0
        let opcode = header[0] & 0x0f
        let masked = header[1] & 0x80 != 0
        var length = Int(header[1] & 0x7f)
        var at = 2
        if length >= 126 {
            let count = length == 126 ? 2 : 8
            var value: UInt64 = 0
            for byte in header[at..<at + count] { value = value << 8 | UInt64(byte) }
            guard value <= UInt64(Int.max) else {
                return .failure(WebSocketFramingError("not a WebSocket frame: length over 2^63"))
            }
            length = Int(value)
            at += count
        }
        let mask = masked ? Array(header[at..<at + 4]) : nil
        guard header[0] & 0x30 == 0, !rsv1 || inflater != nil else {
            return .failure(WebSocketFramingError("not a WebSocket frame: reserved bits set"))
        }
        let isControl = opcode & 0x08 != 0
        switch opcode {
        case 0:
            guard message != nil, !rsv1 else {
                return .failure(WebSocketFramingError("not a WebSocket frame: continuation of nothing"))
            }
        case 1, 2:
            guard message == nil else {
                return .failure(WebSocketFramingError("not a WebSocket frame: a message inside a message"))
            }
            var started = template
            started.opcode = opcode
            started.masked = masked
            started.compressed = rsv1
            started.startNanoseconds = time
            message = started
        case 8, 9, 10:
            guard fin, length <= 125, !rsv1 else {
                return .failure(WebSocketFramingError("not a WebSocket frame: bad control frame"))
            }
            var started = template
            started.opcode = opcode
            started.masked = masked
            started.startNanoseconds = time
            control = started
        default:
            return .failure(WebSocketFramingError("not a WebSocket frame: reserved opcode \(opcode)"))
        }
        let compressed = !isControl && (message?.compressed ?? false)
        if isControl { control?.frames += 1 } else { message?.frames += 1 }
        return .success(
            Frame(remaining: length, mask: mask, fin: fin, isControl: isControl, compressed: compressed))
    }

    /// A frame's payload bytes, unmasked, into its message.
    private mutating func take(payload: ArraySlice<UInt8>, of frame: inout Frame) {
        guard !payload.isEmpty else { return }
        var bytes = Array(payload)
        if let mask = frame.mask {
            for index in bytes.indices { bytes[index] ^= mask[(frame.offset + index) & 3] }
        }
        frame.offset += bytes.count
        if frame.isControl {
            control?.wireLength += bytes.count
            control?.length += bytes.count
            control?.payload += bytes
        } else if frame.compressed, let inflater {
            message?.wireLength += bytes.count
            inflater.inflate(bytes) { append(inflated: $0) }
        } else {
            message?.wireLength += bytes.count
            message?.length += bytes.count
            keepPayload(bytes)
        }
    }

    private mutating func append(inflated piece: ByteBuffer) {
        message?.length += piece.readableBytes
        keepPayload(piece.readableBytesView)
    }

    private mutating func keepPayload(_ bytes: some Collection<UInt8>) {
        guard var current = message, current.payload.count < keep else { return }
        message = nil  // keep the payload uniquely referenced while appending
        current.payload.append(contentsOf: bytes.prefix(keep - current.payload.count))
        message = current
    }

    /// A frame's last payload byte came: its message, if it ended.
    private mutating func endFrame(_ frame: Frame, time: UInt64) -> WebSocketMessage? {
        if frame.isControl {
            guard var finished = control else { return nil }
            control = nil
            finished.complete = true
            finished.endNanoseconds = time
            if finished.opcode == 8, finished.payload.count >= 2 {
                finished.closeCode = Int(finished.payload[0]) << 8 | Int(finished.payload[1])
                finished.closeReason = String(decoding: finished.payload.dropFirst(2), as: UTF8.self)
            }
            return finished
        }
        guard frame.fin, var finished = message else { return nil }
        if frame.compressed, let inflater {
            inflater.endMessage { append(inflated: $0) }
            finished = message ?? finished
            if inflater.failed { finished.note = "not decompressible" }
        }
        message = nil
        finished.complete = true
        finished.endNanoseconds = time
        return finished
    }

    /// The side is not read any further (bytes lost, framing broken, the
    /// connection closed): the messages in progress end with `note`.
    mutating func stop(time: UInt64, note: String) -> [any ProtocolRecord] {
        guard !stopped else { return [] }
        stopped = true
        var ended: [any ProtocolRecord] = []
        for var open in [message, control].compactMap({ $0 }) {
            open.endNanoseconds = time
            open.note = note
            ended.append(open)
        }
        message = nil
        control = nil
        frame = nil
        return ended
    }
}

/// Why a side's bytes are not WebSocket frames.
struct WebSocketFramingError: Error {
    let reason: String

    init(_ reason: String) {
        self.reason = reason
    }
}
