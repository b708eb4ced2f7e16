import NIOCore
import NIOHPACK
import TLSTapCore

/// One HTTP/2 frame (RFC 9113 section 4.1).
struct HTTP2Frame {
    var type: UInt8
    var flags: UInt8
    var stream: UInt32
    var payload: ArraySlice<UInt8>
}

/// The 9 bytes in front of every HTTP/2 frame (RFC 9113 section 4.1).
struct HTTP2FrameHeader {
    var length: Int
    var type: UInt8
    var flags: UInt8
    var stream: UInt32
    var reservedBit: Bool

    /// The header at `offset`, if 9 bytes are there.
    init?(_ bytes: [UInt8], at offset: Int) {
        guard offset >= 0, bytes.count - offset >= 9 else { return nil }
        length = Int(bytes[offset]) << 16 | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2])
        type = bytes[offset + 3]
        flags = bytes[offset + 4]
        reservedBit = bytes[offset + 5] & 0x80 != 0
        stream =
            (UInt32(bytes[offset + 5]) << 24 | UInt32(bytes[offset + 6]) << 16 | UInt32(bytes[offset + 7]) << 8
                | UInt32(bytes[offset + 8])) & 0x7fff_ffff
    }

    /// Whether a well-behaved peer could have sent this header: a frame type
    /// of RFC 9113, only flags defined for it (senders leave the others
    /// unset), the stream and length its type requires, the reserved bit
    /// clear, and at most `maxPayload` bytes.
    func isWellFormed(maxPayload: Int) -> Bool {
        guard !reservedBit, length <= maxPayload else { return false }
        switch type {
        case 0: return stream != 0 && flags & ~0x09 == 0  // DATA: END_STREAM, PADDED
        case 1: return stream != 0 && flags & ~0x2d == 0  // HEADERS: END_STREAM, END_HEADERS, PADDED, PRIORITY
        case 2: return stream != 0 && flags == 0 && length == 5  // PRIORITY
        case 3: return stream != 0 && flags == 0 && length == 4  // RST_STREAM
        case 4: return stream == 0 && flags & ~0x1 == 0 && (flags == 1 ? length == 0 : length % 6 == 0)  // SETTINGS
        case 5: return stream != 0 && flags & ~0x0c == 0 && length >= 4  // PUSH_PROMISE
        case 6: return stream == 0 && flags & ~0x1 == 0 && length == 8  // PING
        case 7: return stream == 0 && flags == 0 && length >= 8  // GOAWAY
        case 8: return flags == 0 && length == 4  // WINDOW_UPDATE
        case 9: return stream != 0 && flags & ~0x4 == 0  // CONTINUATION
        default: return false
        }
    }
}

/// Cuts one direction's byte stream into frames, at any split.
struct HTTP2FrameReader {
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    private var buffer: [UInt8] = []
    private var prefaceLeft: Int
    /// Largest frame payload accepted; larger means the stream is not what we think.
    var maxFramePayload: Int

    init(expectPreface: Bool, maxFramePayload: Int) {
        prefaceLeft = expectPreface ? Self.preface.count : 0
        self.maxFramePayload = maxFramePayload
    }

    /// Bytes were lost: what is buffered belongs to a frame that cannot be completed.
    mutating func restart() {
        buffer = []
        prefaceLeft = 0
    }

    /// The frames completed by `bytes`, or nil if the stream is not HTTP/2.
    mutating func feed(_ bytes: [UInt8]) -> [HTTP2Frame]? {
        var input = bytes[...]
        if prefaceLeft > 0 {
            let expected = Self.preface[(Self.preface.count - prefaceLeft)...].prefix(input.count)
            guard input.prefix(expected.count).elementsEqual(expected) else { return nil }
            prefaceLeft -= expected.count
            input = input.dropFirst(expected.count)
        }
        buffer += input
        var frames: [HTTP2Frame] = []
        var offset = 0
        while let header = HTTP2FrameHeader(buffer, at: offset) {
            guard header.length <= maxFramePayload else { return nil }
            guard buffer.count - offset >= 9 + header.length else { break }
            frames.append(
                HTTP2Frame(
                    type: header.type, flags: header.flags, stream: header.stream,
                    payload: buffer[(offset + 9)..<(offset + 9 + header.length)]))
            offset += 9 + header.length
        }
        frames = frames.map { frame in
            var copy = frame
            copy.payload = Array(frame.payload)[...]
            return copy
        }
        buffer.removeFirst(offset)
        return frames
    }
}

/// Counts gRPC's length-prefixed messages (1 flag byte, 4 length bytes) in one
/// direction of a stream, across DATA frames.
struct GRPCMessageCounter {
    private var prefix: [UInt8] = []
    private var remaining = 0
    private(set) var sizes: [Int] = []

    mutating func feed(_ data: ArraySlice<UInt8>) {
        var input = data
        while !input.isEmpty {
            if remaining > 0 {
                let taken = min(remaining, input.count)
                remaining -= taken
                input = input.dropFirst(taken)
                continue
            }
            let needed = 5 - prefix.count
            prefix += input.prefix(needed)
            input = input.dropFirst(needed)
            if prefix.count == 5 {
                let length = Int(prefix[1]) << 24 | Int(prefix[2]) << 16 | Int(prefix[3]) << 8 | Int(prefix[4])
                sizes.append(length)
                remaining = length
                prefix = []
            }
        }
    }
}

/// Turns an HTTP/2 connection's two streams into exchanges: frames,
/// HEADERS + CONTINUATION decoded with NIOHPACK (one decoder per direction,
/// so the dynamic tables follow each encoder), interleaved streams, padding,
/// RST_STREAM, PUSH_PROMISE, and gRPC framing and trailers.
/// A class: it owns a connection's parsing state, which changes in place as bytes arrive.
final class HTTP2Connection {
    private enum FrameType: UInt8 {
        case data = 0
        case headers = 1
        case priority = 2
        case resetStream = 3
        case settings = 4
        case pushPromise = 5
        case ping = 6
        case goAway = 7
        case windowUpdate = 8
        case continuation = 9
    }

    private struct StreamState {
        var exchange: HTTPExchange
        /// Header fields left out: they refer to table entries tlstap never saw.
        var unknownFields = 0
        /// Whether each side sent END_STREAM. The exchange ends when both
        /// have (a server may answer before the request's body is all sent).
        var requestEnded = false
        var responseEnded = false
        var requestMessages = GRPCMessageCounter()
        var responseMessages = GRPCMessageCounter()
    }

    /// A header block split over HEADERS/PUSH_PROMISE and CONTINUATION frames.
    private struct PendingBlock {
        var stream: UInt32
        var fromClient: Bool
        var block: [UInt8]
        var endStream: Bool
    }

    private var clientFrames: HTTP2FrameReader
    private var serverFrames: HTTP2FrameReader
    private var requestDecoder = HPACKDecoder(allocator: ByteBufferAllocator())
    private var responseDecoder = HPACKDecoder(allocator: ByteBufferAllocator())
    private var streams: [UInt32: StreamState] = [:]
    private var pendingBlock: PendingBlock?
    /// Bytes of that side were lost: frames resume at the next frame found
    /// in its bytes. Holds the last bytes searched (a header may begin in
    /// one call and end in the next).
    private var clientResync: [UInt8]?
    private var serverResync: [UInt8]?
    /// The highest stream the client opened, to tell its next new stream
    /// when bytes before it were lost.
    private var highestClientStream: UInt32 = 0
    private let template: HTTPExchange
    private let limits: HTTPLimits
    private(set) var failed: String?

    /// Where tlstap began to read a connection.
    enum Start {
        /// At its beginning: the client's bytes open with the preface.
        case preface
        /// Midway (`HTTP2FrameRun` recognised it): the preface and earlier
        /// header blocks were never seen, so both HPACK dynamic tables hold
        /// entries tlstap does not know (see `resetTable`): a field that
        /// refers to one is left out, and its exchange is marked
        /// "headers incomplete" with how many. A side whose first bytes were found to be
        /// frames is read from its first byte; the other may begin inside a
        /// frame, and resumes at the first frame found, as after a gap.
        case midway(clientAtFrame: Bool, serverAtFrame: Bool)
    }

    /// The largest frame payload read until SETTINGS say less: the bytes
    /// buffered per direction (at least the default SETTINGS_MAX_FRAME_SIZE,
    /// 16,384), so frames of a peer that raised it in SETTINGS tlstap did
    /// not see (joined midway) are still read.
    static func maxFramePayload(_ limits: HTTPLimits) -> Int { max(16_384, limits.maxBufferedBytes) }

    init(template: HTTPExchange, limits: HTTPLimits, start: Start = .preface) {
        var template = template
        template.protocolVersion = "HTTP/2"
        self.template = template
        self.limits = limits
        let maxPayload = Self.maxFramePayload(limits)
        var expectPreface = true
        if case .midway(let clientAtFrame, let serverAtFrame) = start {
            expectPreface = false
            requestDecoder = .forStreamJoinedMidway()
            responseDecoder = .forStreamJoinedMidway()
            if !clientAtFrame { clientResync = [] }
            if !serverAtFrame { serverResync = [] }
        }
        clientFrames = HTTP2FrameReader(expectPreface: expectPreface, maxFramePayload: maxPayload)
        serverFrames = HTTP2FrameReader(expectPreface: false, maxFramePayload: maxPayload)
    }

    /// Whether `bytes` start with what looks like HTTP/2 frames: each header
    /// has a known type, a length within the default maximum frame size and
    /// a clear reserved bit, for the first two frames (or one, if that is all).
    static func looksLikeFrames(_ bytes: [UInt8], from start: Int = 0) -> Bool {
        var offset = start
        var frames = 0
        while frames < 2, let header = HTTP2FrameHeader(bytes, at: offset) {
            guard header.length <= 16_384, header.type <= 9, !header.reservedBit else { return false }
            offset += 9 + header.length
            frames += 1
        }
        return frames == 2 || (frames == 1 && offset == bytes.count)
    }

    /// Bytes one side sent at `time`.
    /// - Returns: the exchanges these bytes completed.
    func feed(fromClient: Bool, _ bytes: [UInt8], time: UInt64) -> [HTTPExchange] {
        guard failed == nil else { return [] }
        var bytes = bytes
        if let searched = fromClient ? clientResync : serverResync {
            let joined = searched + bytes
            let resumed = resumption(in: joined, callStart: searched.count, fromClient: fromClient)
            let left = resumed == nil ? Array(joined.suffix(8)) : nil
            if fromClient { clientResync = left } else { serverResync = left }
            guard let resumed else { return [] }
            bytes = Array(joined[resumed...])
        }
        let frames = fromClient ? clientFrames.feed(bytes) : serverFrames.feed(bytes)
        guard let frames else {
            failed = "not HTTP/2 framing"
            return []
        }
        var finished: [HTTPExchange] = []
        for frame in frames { finished += handle(frame, fromClient: fromClient, time: time) }
        return finished
    }

    /// Bytes one side sent were lost (the ring buffer was full) right
    /// before the bytes fed next from that side. Frames resume at the next
    /// frame found in that side's bytes (`resumption`). That side's header
    /// table missed entries (`resetTable`). Every stream open now may have
    /// lost bytes.
    func lost(fromClient: Bool, time: UInt64) -> [HTTPExchange] {
        guard failed == nil else { return [] }
        if fromClient {
            clientFrames.restart()
            clientResync = []
        } else {
            serverFrames.restart()
            serverResync = []
        }
        if pendingBlock?.fromClient == fromClient { pendingBlock = nil }
        resetTable(fromClient: fromClient)
        for id in streams.keys {
            streams[id]?.exchange.note = "bytes lost"
            // The request's END_STREAM may have been among them: its response's end ends the exchange.
            if fromClient { streams[id]?.requestEnded = true }
        }
        return []
    }

    /// Where frames resume in `bytes`, the bytes of one side after a gap
    /// (the last few searched before, then a call from `callStart` on), or
    /// nil if no frame begins in them.
    ///
    /// At the call's start if it begins with frames: whole calls were lost,
    /// and most programs write whole frames. Else at the first frame header
    /// that fits what the connection knows (a frame of an open stream, the
    /// client's next new stream, or a control frame of stream 0) and after
    /// which every header in `bytes` is well formed. nginx's frames cross
    /// its 16 KiB writes, so there a call after a gap begins inside a frame.
    /// Random payload bytes pass for such a header with a chance below 1 in
    /// 2^34 per position (length, type, flags, and a stream in the client's
    /// next million; a known stream's, far below that).
    private func resumption(in bytes: [UInt8], callStart: Int, fromClient: Bool) -> Int? {
        if Self.looksLikeFrames(bytes, from: callStart) { return callStart }
        let maxPayload = fromClient ? clientFrames.maxFramePayload : serverFrames.maxFramePayload
        var offset = 0
        while let header = HTTP2FrameHeader(bytes, at: offset) {
            if header.isWellFormed(maxPayload: maxPayload), fitsAfterGap(header, fromClient: fromClient),
                Self.wellFormedHeaders(in: bytes, from: offset + 9 + header.length, maxPayload: maxPayload)
            {
                return offset
            }
            offset += 1
        }
        return nil
    }

    /// Whether a well-formed header belongs to this connection as it is:
    /// a control frame of the connection, a frame of an open stream (not a
    /// CONTINUATION: the block it continues was dropped), or the HEADERS
    /// that opens the client's next stream.
    private func fitsAfterGap(_ header: HTTP2FrameHeader, fromClient: Bool) -> Bool {
        if header.stream == 0 { return true }
        switch FrameType(rawValue: header.type) {
        case .continuation, nil:
            return false
        case .headers where fromClient && streams[header.stream] == nil:
            return header.stream & 1 == 1 && header.stream > highestClientStream
                && header.stream - highestClientStream < 1 << 20
        case .pushPromise:
            return !fromClient && streams[header.stream] != nil
        default:
            return streams[header.stream] != nil
        }
    }

    /// Whether every whole frame header from `offset` on, frame after frame, is well formed.
    private static func wellFormedHeaders(in bytes: [UInt8], from offset: Int, maxPayload: Int) -> Bool {
        var offset = offset
        while let header = HTTP2FrameHeader(bytes, at: offset) {
            guard header.isWellFormed(maxPayload: maxPayload) else { return false }
            offset += 9 + header.length
        }
        return true
    }

    /// The connection closed (or the capture stopped: `note` says which):
    /// every open stream ends without its response.
    func close(time: UInt64, note: String = ConnectionEnd.closed.note) -> [HTTPExchange] {
        defer { streams = [:] }
        return streams.keys.sorted().compactMap { id in
            guard var exchange = streams[id]?.exchange else { return nil }
            exchange.endNanoseconds = time
            exchange.note = exchange.note ?? note
            return exchange
        }
    }

    private func handle(_ frame: HTTP2Frame, fromClient: Bool, time: UInt64) -> [HTTPExchange] {
        if let pending = pendingBlock, frame.type != FrameType.continuation.rawValue || frame.stream != pending.stream {
            pendingBlock = nil  // a header block must continue at once; drop the broken one
            resetTable(fromClient: pending.fromClient)
        }
        switch FrameType(rawValue: frame.type) {
        case .data:
            guard let data = Self.unpadded(frame) else { return [] }
            if fromClient {
                streams[frame.stream]?.exchange.appendRequestBody(data, limit: limits.maxBodyBytes)
                streams[frame.stream]?.requestMessages.feed(data)
            } else {
                streams[frame.stream]?.exchange.appendResponseBody(data, limit: limits.maxBodyBytes)
                streams[frame.stream]?.responseMessages.feed(data)
            }
            return frame.flags & 0x1 != 0 ? ended(frame.stream, fromClient: fromClient, time: time) : []
        case .headers:
            guard var fragment = Self.unpadded(frame) else { return [] }
            if frame.flags & 0x20 != 0 { fragment = fragment.dropFirst(5) }  // PRIORITY fields
            return startBlock(
                stream: frame.stream, fromClient: fromClient, fragment: fragment, flags: frame.flags,
                time: time)
        case .pushPromise:
            guard let payload = Self.unpadded(frame), payload.count >= 4 else { return [] }
            let promised =
                (UInt32(payload[payload.startIndex]) << 24 | UInt32(payload[payload.startIndex + 1]) << 16
                    | UInt32(payload[payload.startIndex + 2]) << 8 | UInt32(payload[payload.startIndex + 3]))
                & 0x7fff_ffff
            // The promise carries the pushed request's headers, encoded by the server.
            return startBlock(
                stream: promised, fromClient: false, fragment: payload.dropFirst(4),
                flags: frame.flags & 0x4, time: time, promise: true)
        case .continuation:
            guard var pending = pendingBlock, pending.stream == frame.stream else { return [] }
            pending.block += frame.payload
            guard pending.block.count <= limits.maxHeaderBytes else {
                pendingBlock = nil
                resetTable(fromClient: pending.fromClient)
                return []
            }
            if frame.flags & 0x4 == 0 {
                pendingBlock = pending
                return []
            }
            pendingBlock = nil
            return decodeBlock(pending, time: time, promise: false)
        case .resetStream:
            streams[frame.stream]?.exchange.note = "reset"
            return finish(frame.stream, time: time)
        case .settings:
            if frame.flags & 0x1 == 0 { applySettings(frame.payload, fromClient: fromClient) }
            return []
        case .goAway:
            // Streams above the last one the sender will process never complete.
            guard frame.payload.count >= 4 else { return [] }
            let bytes = Array(frame.payload.prefix(4))
            let last =
                (UInt32(bytes[0]) << 24 | UInt32(bytes[1]) << 16 | UInt32(bytes[2]) << 8 | UInt32(bytes[3]))
                & 0x7fff_ffff
            return streams.keys.filter { $0 > last }.sorted().flatMap { stream in
                if streams[stream]?.exchange.note == nil { streams[stream]?.exchange.note = "refused (GOAWAY)" }
                return finish(stream, time: time)
            }
        case .priority, .ping, .windowUpdate, nil:
            return []
        }
    }

    private var promisedStreams = Set<UInt32>()

    private func startBlock(
        stream: UInt32, fromClient: Bool, fragment: ArraySlice<UInt8>, flags: UInt8, time: UInt64,
        promise: Bool = false
    ) -> [HTTPExchange] {
        let block = PendingBlock(
            stream: stream, fromClient: fromClient, block: Array(fragment),
            endStream: flags & 0x1 != 0)
        if promise { promisedStreams.insert(stream) }
        if flags & 0x4 == 0 {  // END_HEADERS not set: CONTINUATION follows
            pendingBlock = block
            return []
        }
        return decodeBlock(block, time: time, promise: promise)
    }

    private func decodeBlock(_ block: PendingBlock, time: UInt64, promise: Bool) -> [HTTPExchange] {
        let isPromise = promise || (promisedStreams.contains(block.stream) && streams[block.stream] == nil)
        let decodesRequest = block.fromClient || isPromise
        var headers: [HTTPHeader] = []
        var unknownFields = 0
        var undecodable = false
        var buffer = ByteBuffer(bytes: block.block)
        do {
            let decoded =
                block.fromClient
                ? try requestDecoder.decodeHeaders(from: &buffer) : try responseDecoder.decodeHeaders(from: &buffer)
            // A field whose name is a table entry tlstap never saw is left out, and counted.
            headers = decoded.filter { $0.name != HPACKDecoder.unknownName }.map { HTTPHeader($0.name, $0.value) }
            unknownFields = decoded.count - headers.count
        } catch {
            // Not HPACK (or past the table's stand-ins); it may have added entries before failing.
            resetTable(fromClient: block.fromClient)
            undecodable = true
        }
        if isPromise { promisedStreams.remove(block.stream) }
        if block.fromClient { highestClientStream = max(highestClientStream, block.stream) }

        var state = streams[block.stream] ?? StreamState(exchange: template)
        if streams[block.stream] == nil {
            state.exchange.stream = block.stream
            // A stream that opens with the server's HEADERS: its request was sent before tlstap joined (or was lost).
            state.exchange.requestCaptured = decodesRequest
            state.exchange.startNanoseconds = time
            state.exchange.endNanoseconds = time
            if limits.captureBodies {
                state.exchange.requestBody = []
                state.exchange.responseBody = []
            }
        }
        state.unknownFields += unknownFields
        if undecodable {
            state.exchange.note = Self.headersIncomplete
        } else if state.unknownFields > 0, state.exchange.note?.hasPrefix(Self.headersIncomplete) ?? true {
            let fields = state.unknownFields == 1 ? "1 field refers" : "\(state.unknownFields) fields refer"
            state.exchange.note = "\(Self.headersIncomplete): \(fields) to HPACK table entries tlstap never saw"
        }
        if decodesRequest {
            apply(requestHeaders: headers, to: &state.exchange)
        } else {
            apply(responseHeaders: headers, to: &state.exchange)
        }
        streams[block.stream] = state
        if isPromise || !state.exchange.requestCaptured { streams[block.stream]?.requestEnded = true }
        return block.endStream && !isPromise ? ended(block.stream, fromClient: block.fromClient, time: time) : []
    }

    private func apply(requestHeaders headers: [HTTPHeader], to exchange: inout HTTPExchange) {
        let isTrailer = !exchange.requestHeaders.isEmpty
        exchange.requestHeaders += headers
        guard !isTrailer else { return }
        exchange.method = headers.first(":method") ?? exchange.method
        exchange.scheme = headers.first(":scheme") ?? exchange.scheme
        exchange.authority = headers.first(":authority") ?? exchange.authority
        exchange.path = headers.first(":path") ?? exchange.path
        if headers.first("content-type")?.hasPrefix("application/grpc") == true {
            let parts = exchange.path.split(separator: "/", omittingEmptySubsequences: true)
            exchange.grpc = GRPCCall(
                service: parts.first.map(String.init) ?? "",
                method: parts.dropFirst().first.map(String.init) ?? "")
        }
    }

    private func apply(responseHeaders headers: [HTTPHeader], to exchange: inout HTTPExchange) {
        if exchange.status == nil, let status = headers.first(":status").flatMap({ Int($0) }) {
            if (100...199).contains(status) { return }  // interim
            exchange.status = status
        }
        exchange.responseHeaders += headers
        if exchange.grpc != nil {
            if let status = headers.first("grpc-status").flatMap({ Int($0) }) { exchange.grpc?.status = status }
            if let message = headers.first("grpc-message") { exchange.grpc?.message = message }
        }
    }

    /// One side of a stream sent END_STREAM: the exchange ends if the other has too.
    private func ended(_ stream: UInt32, fromClient: Bool, time: UInt64) -> [HTTPExchange] {
        guard var state = streams[stream] else { return [] }
        if fromClient { state.requestEnded = true } else { state.responseEnded = true }
        state.exchange.endNanoseconds = time
        streams[stream] = state
        return state.requestEnded && state.responseEnded ? finish(stream, time: time) : []
    }

    private func finish(_ stream: UInt32, time: UInt64) -> [HTTPExchange] {
        guard let state = streams.removeValue(forKey: stream) else { return [] }
        var exchange = state.exchange
        exchange.endNanoseconds = time
        if exchange.grpc != nil {
            exchange.grpc?.requestMessageSizes = state.requestMessages.sizes
            exchange.grpc?.responseMessageSizes = state.responseMessages.sizes
        }
        return [exchange]
    }

    /// That side's dynamic table missed entries: bytes were lost, a header
    /// block was dropped or failed to decode, or tlstap joined midway. Its
    /// decoder starts again with a table of stand-ins for the entries it
    /// never saw (`HPACKDecoder.forStreamJoinedMidway`); the entries the
    /// encoder adds from here on take the same indices as in the real table.
    /// So every field decodes, but one that refers to an older entry: that
    /// one is left out of the headers and counted in the exchange's note,
    /// never decoded to a wrong header.
    private func resetTable(fromClient: Bool) {
        if fromClient {
            requestDecoder = .forStreamJoinedMidway(maxDynamicTableSize: requestDecoder.maxDynamicTableLength)
        } else {
            responseDecoder = .forStreamJoinedMidway(maxDynamicTableSize: responseDecoder.maxDynamicTableLength)
        }
    }

    /// The note of an exchange with header fields tlstap could not decode.
    static let headersIncomplete = "headers incomplete"

    private func applySettings(_ payload: ArraySlice<UInt8>, fromClient: Bool) {
        var offset = payload.startIndex
        while offset + 6 <= payload.endIndex {
            let identifier = UInt16(payload[offset]) << 8 | UInt16(payload[offset + 1])
            let value =
                Int(payload[offset + 2]) << 24 | Int(payload[offset + 3]) << 16
                | Int(payload[offset + 4]) << 8 | Int(payload[offset + 5])
            switch identifier {
            case 0x1:  // HEADER_TABLE_SIZE: bounds the *other* side's encoder (capped: memory stays bounded)
                let size = min(value, 1 << 20)
                if fromClient {
                    responseDecoder.maxDynamicTableLength = size
                } else {
                    requestDecoder.maxDynamicTableLength = size
                }
            case 0x5:  // MAX_FRAME_SIZE: what the *other* side may send
                let allowed = min(value, Self.maxFramePayload(limits))
                if fromClient { serverFrames.maxFramePayload = allowed } else { clientFrames.maxFramePayload = allowed }
            default:
                break
            }
            offset += 6
        }
    }

    /// The frame payload without its padding, or nil if the padding is malformed.
    private static func unpadded(_ frame: HTTP2Frame) -> ArraySlice<UInt8>? {
        guard frame.flags & 0x8 != 0 else { return frame.payload }
        guard let padLength = frame.payload.first, Int(padLength) < frame.payload.count else { return nil }
        return frame.payload.dropFirst().dropLast(Int(padLength))
    }
}
