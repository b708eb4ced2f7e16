/// Recognises HTTP/2 in the bytes of a connection tlstap joined midway,
/// where no preface comes: one side's first bytes must be a run of frame
/// headers a well-behaved peer on that side could have sent, each where the
/// one before ends.
///
/// A header must be well formed (`HTTP2FrameHeader.isWellFormed`: a type
/// of RFC 9113, only its flags, its stream and length rules, the reserved
/// bit clear), fit the side (a client sends HEADERS, DATA and CONTINUATION
/// only on the odd streams it opens, and never PUSH_PROMISE; a server sends
/// PUSH_PROMISE only on those), and a header block left open must go on in
/// a CONTINUATION of its stream. At least two headers must be seen, or one
/// frame that ends exactly where the bytes do. Random bytes pass for one
/// header with a chance of a few in a million (at most 1 in 300,000 with
/// 256 KiB frames), for two below 1 in 10^10; TLS records never do (their
/// first bytes read as a length over 1 MiB).
enum HTTP2FrameRun {
    /// What a side's first bytes are.
    enum Verdict: Equatable {
        /// A run of frames, as above.
        case frames
        /// Not HTTP/2 frames from that side.
        case notFrames
        /// Well formed so far, but too short to tell.
        case tooShort
    }

    /// What `bytes`, the first of one side, are.
    /// - Parameter maxPayload: the largest frame payload believed: the
    ///   default SETTINGS_MAX_FRAME_SIZE (16,384) unless the peer may have
    ///   raised it in the SETTINGS tlstap did not see.
    static func verdict(_ bytes: [UInt8], fromClient: Bool, maxPayload: Int) -> Verdict {
        var offset = 0
        var headers = 0
        var openBlock: UInt32?  // the stream whose header block awaits a CONTINUATION
        while let header = HTTP2FrameHeader(bytes, at: offset) {
            guard header.isWellFormed(maxPayload: maxPayload), fits(header, fromClient: fromClient) else {
                return .notFrames
            }
            let isContinuation = header.type == 9
            if let stream = openBlock, !isContinuation || header.stream != stream { return .notFrames }
            if isContinuation, openBlock == nil, headers > 0 { return .notFrames }
            let opensBlock = header.type == 1 || header.type == 5 || isContinuation
            openBlock = opensBlock && header.flags & 0x4 == 0 ? header.stream : nil
            headers += 1
            offset += 9 + header.length
        }
        if headers >= 2 || (headers == 1 && offset == bytes.count) { return .frames }
        // A partial header: its length and type are checked as soon as they are there.
        let left = bytes.count - offset
        if left >= 3 {
            let length = Int(bytes[offset]) << 16 | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2])
            if length > maxPayload || (left >= 4 && bytes[offset + 3] > 9) { return .notFrames }
        }
        return .tooShort
    }

    /// Whether the side (client or server) may send a frame of this type on this stream.
    private static func fits(_ header: HTTP2FrameHeader, fromClient: Bool) -> Bool {
        let clientStream = header.stream & 1 == 1
        switch header.type {
        case 0, 1, 9: return !fromClient || clientStream  // DATA, HEADERS, CONTINUATION
        case 5: return !fromClient && clientStream  // PUSH_PROMISE
        default: return true
        }
    }

    /// Which side sent `bytes`, frames from their start, as far as the
    /// first HEADERS tells: true if its block opens with a request's
    /// pseudo-header, false if with `:status`, nil if neither is known.
    static func sentByClient(_ bytes: [UInt8]) -> Bool? {
        var offset = 0
        while let header = HTTP2FrameHeader(bytes, at: offset) {
            if header.type == 1 {
                var start = offset + 9
                var end = min(start + header.length, bytes.count)
                if header.flags & 0x8 != 0 {  // PADDED: a pad length, then padding at the end
                    guard start < end else { return nil }
                    end -= min(Int(bytes[start]), end - start)
                    start += 1
                }
                if header.flags & 0x20 != 0 { start += 5 }  // PRIORITY: dependency and weight
                guard start < end else { return nil }
                return opensRequest(bytes[start..<end])
            }
            offset += 9 + header.length
        }
        return nil
    }

    /// Whether a header block opens with a request's pseudo-header (true:
    /// `:authority`, `:method`, `:path`, `:scheme`, static table entries 1
    /// to 7) or a response's (false: `:status`, 8 to 14), from the name
    /// index of its first field (RFC 7541 section 6); nil when that index
    /// is a dynamic entry, a literal name or another header (trailers).
    /// Pseudo-headers come first in a block (RFC 9113 section 8.3).
    static func opensRequest(_ block: ArraySlice<UInt8>) -> Bool? {
        var index = block.startIndex
        while index < block.endIndex, block[index] & 0xe0 == 0x20 {  // dynamic table size updates first
            if block[index] & 0x1f == 0x1f {
                index += 1
                while index < block.endIndex, block[index] & 0x80 != 0 { index += 1 }
            }
            index += 1
        }
        guard index < block.endIndex else { return nil }
        let first = block[index]
        let name: UInt8
        switch first {
        case 0x80...: name = first & 0x7f  // indexed field
        case 0x40...: name = first & 0x3f  // literal, indexed after
        default: name = first & 0x0f  // literal, not indexed or never indexed
        }
        switch name {
        case 1...7: return true
        case 8...14: return false
        default: return nil
        }
    }
}

/// What the first bytes of one direction of a stream say about HTTP: for
/// outputs that label a stream before any exchange is parsed (`--pcapng`).
public enum HTTPStreamStart: Equatable, Sendable {
    /// An HTTP/1.x request line: the sender is the client.
    case http1Request
    /// An HTTP/1.x status line: the sender is the server.
    case http1Response
    /// The HTTP/2 client preface: the sender is the client.
    case http2Preface
    /// HTTP/2 frames without a preface (joined midway); whether the client
    /// sent them, when their first header block tells.
    case http2Frames(fromClient: Bool?)

    /// What `bytes` begin with, or nil if not HTTP (or too few bytes to tell).
    public init?(_ bytes: [UInt8]) {
        let preface = HTTP2FrameReader.preface
        if bytes.count >= 4, bytes.prefix(preface.count).elementsEqual(preface.prefix(bytes.count)) {
            self = .http2Preface
            return
        }
        let lineEnd = bytes.prefix(8192).firstIndex(of: 0x0a) ?? 0
        let line = bytes[..<lineEnd].last == 0x0d ? bytes[..<(lineEnd - 1)] : bytes[..<lineEnd]
        if line.starts(with: Array("HTTP/1.".utf8)) {
            self = .http1Response
            return
        }
        if let space = line.firstIndex(of: 0x20), space > 0,
            line[..<space].allSatisfy({ (0x41...0x5a).contains($0) || $0 == 0x2d }),
            line.suffix(9).elementsEqual(" HTTP/1.1".utf8) || line.suffix(9).elementsEqual(" HTTP/1.0".utf8)
        {
            self = .http1Request
            return
        }
        let maxPayload = HTTP2Connection.maxFramePayload(HTTPLimits())
        let client = HTTP2FrameRun.verdict(bytes, fromClient: true, maxPayload: maxPayload) == .frames
        let server = HTTP2FrameRun.verdict(bytes, fromClient: false, maxPayload: maxPayload) == .frames
        guard client || server else { return nil }
        self = .http2Frames(fromClient: client && server ? HTTP2FrameRun.sentByClient(bytes) : client)
    }
}
