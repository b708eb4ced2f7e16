/// One header field as it appeared on the wire.
public struct HTTPHeader: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

extension Array where Element == HTTPHeader {
    /// The first value of a header, by case-insensitive name.
    public func first(_ name: String) -> String? {
        // Header names are ASCII tokens: compared without making lowercase copies (this runs on every message).
        let wanted = name.utf8
        return first { header in
            header.name.utf8.count == wanted.count
                && header.name.utf8.elementsEqual(wanted) { $0.asciiLowercased == $1.asciiLowercased }
        }?.value
    }
}

extension UInt8 {
    /// An ASCII capital letter as its lowercase letter; any other byte as it is.
    var asciiLowercased: UInt8 { (0x41...0x5a).contains(self) ? self | 0x20 : self }
}

/// What gRPC framing inside an HTTP/2 exchange said.
public struct GRPCCall: Sendable, Equatable {
    public var service: String
    public var method: String
    public var status: Int?
    public var message: String?
    public var requestMessageSizes: [Int] = []
    public var responseMessageSizes: [Int] = []

    public init(service: String, method: String) {
        self.service = service
        self.method = method
    }
}

/// A request and its response, as users think of them.
public struct HTTPExchange: Sendable, Equatable {
    public var connection: UInt64
    public var pid: UInt32
    public var comm: String
    /// "HTTP/1.0", "HTTP/1.1" or "HTTP/2": the request's (HTTP/1.x), or the
    /// response's when the request was not seen.
    public var protocolVersion: String
    /// The version an HTTP/1.x response gave for itself (a 1.1 request may
    /// get a 1.0 answer); nil without a response, and for HTTP/2.
    public var responseVersion: String?
    /// The HTTP/2 stream id.
    public var stream: UInt32?
    public var method: String = ""
    public var scheme: String = ""
    public var authority: String = ""
    public var path: String = ""
    /// nil when no response came (connection closed, stream reset).
    public var status: Int?
    public var reason: String?
    public var requestHeaders: [HTTPHeader] = []
    public var responseHeaders: [HTTPHeader] = []
    public var requestBodyLength = 0
    public var responseBodyLength = 0
    /// Captured body bytes (with --bodies), at most the configured cap.
    public var requestBody: [UInt8]?
    public var responseBody: [UInt8]?
    /// The Content-Encoding a captured body was decoded from (gzip, deflate, br).
    public var requestBodyDecodedFrom: String?
    public var responseBodyDecodedFrom: String?
    /// Wall-clock time of the first request byte; of the first response
    /// byte when the request was not captured.
    public var startNanoseconds: UInt64 = 0
    /// Wall-clock time of the last response byte (or of the end, without a response).
    public var endNanoseconds: UInt64 = 0
    /// Whether the request's head was seen. False when tlstap joined the
    /// connection while the request was under way (its first bytes on the
    /// connection, or an HTTP/2 stream's first frames, were the response's),
    /// or when the request was lost: then the exchange starts at the first
    /// response byte and has no latency.
    public var requestCaptured = true
    public var grpc: GRPCCall?
    /// Why the exchange ended oddly: "reset", "connection closed", "upgrade", "headers incomplete".
    public var note: String?

    public init(connection: UInt64, pid: UInt32, comm: String, protocolVersion: String) {
        self.connection = connection
        self.pid = pid
        self.comm = comm
        self.protocolVersion = protocolVersion
    }

    /// Counts request body bytes, keeping up to `limit` when bodies are captured.
    mutating func appendRequestBody<Bytes: Collection>(_ bytes: Bytes, limit: Int) where Bytes.Element == UInt8 {
        requestBodyLength += bytes.count
        Self.keep(bytes, in: &requestBody, limit: limit)
    }

    /// Counts response body bytes, keeping up to `limit` when bodies are captured.
    mutating func appendResponseBody<Bytes: Collection>(_ bytes: Bytes, limit: Int) where Bytes.Element == UInt8 {
        responseBodyLength += bytes.count
        Self.keep(bytes, in: &responseBody, limit: limit)
    }

    private static func keep<Bytes: Collection>(_ bytes: Bytes, in body: inout [UInt8]?, limit: Int)
    where Bytes.Element == UInt8 {
        guard var kept = body, kept.count < limit else { return }
        body = nil  // keep the array uniquely referenced while appending
        kept.append(contentsOf: bytes.prefix(limit - kept.count))
        body = kept
    }

    /// Replaces captured bodies by their decoded form where a Content-Encoding
    /// names a known coding and the bytes decode within `limit`.
    mutating func decodeBodies(limit: Int) {
        if let body = requestBody, let coding = requestHeaders.first("content-encoding"),
            let decoded = BodyDecoding.decode(body, contentEncoding: coding, limit: limit)
        {
            requestBody = decoded
            requestBodyDecodedFrom = coding
        }
        if let body = responseBody, let coding = responseHeaders.first("content-encoding"),
            let decoded = BodyDecoding.decode(body, contentEncoding: coding, limit: limit)
        {
            responseBody = decoded
            responseBodyDecodedFrom = coding
        }
    }

    /// First request byte to last response byte; nil when the request was
    /// not captured (its first byte's time is unknown).
    public var latencyNanoseconds: UInt64? {
        guard requestCaptured else { return nil }
        return endNanoseconds >= startNanoseconds ? endNanoseconds - startNanoseconds : 0
    }

    /// The note as outputs print it: "request not captured" when the
    /// request was not, then `note`, joined by "; "; nil when neither applies.
    public var noteText: String? {
        guard !requestCaptured else { return note }
        return note.map { Self.requestNotCaptured + "; " + $0 } ?? Self.requestNotCaptured
    }

    /// The text of `noteText` for an exchange whose request was not captured.
    public static let requestNotCaptured = "request not captured"
}

/// Limits that keep memory bounded on any input.
public struct HTTPLimits: Sendable {
    /// Largest request line + headers (or HTTP/2 header block) kept; larger ones are skipped.
    public var maxHeaderBytes = 64 * 1024
    /// Bytes of each body kept when bodies are captured; the rest is counted.
    public var maxBodyBytes = 1 << 20
    /// Whether bodies are captured at all (--bodies).
    public var captureBodies = false
    /// Buffered, unparsed bytes per connection direction before giving up on it.
    public var maxBufferedBytes = 256 * 1024

    public init(maxHeaderBytes: Int = 64 * 1024, maxBodyBytes: Int = 1 << 20, captureBodies: Bool = false) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
        self.captureBodies = captureBodies
    }
}
