import TLSTapCore
import TLSTapHTTP

/// `--redact`: credential header values replaced in every output, names kept.
///
/// Exchanges get `[REDACTED]` as the value. Raw payloads (text, hex, JSON
/// data events, pcapng) get the value's bytes overwritten with `*`, keeping
/// every length so TCP streams in pcapng still reassemble. Payload redaction
/// reads HTTP/1-style header lines (`Name: value`), so it covers HTTP/1.x
/// and plain-text protocols; HPACK-encoded HTTP/2 header blocks are binary
/// and are not rewritten.
public final class RedactingSink: EventSink {
    /// Headers always redacted.
    public static let defaultHeaders = [
        "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token",
    ]

    private let inner: EventSink
    private let names: Set<String>
    private let patterns: [[UInt8]]

    /// - Parameter extraHeaders: more header names to redact (`--redact-header`).
    public init(_ inner: EventSink, extraHeaders: [String] = []) {
        self.inner = inner
        names = Set((Self.defaultHeaders + extraHeaders).map { $0.lowercased() })
        patterns = names.map { Array($0.utf8) }
    }

    public func write(_ event: DataEvent) throws(OutputError) {
        var redacted = event
        redacted.payload = redact(event.payload)
        try inner.write(redacted)
    }

    public func write(_ event: ConnectionEvent) throws(OutputError) {
        try inner.write(event)
    }

    public func write(_ exchange: HTTPExchange) throws(OutputError) {
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
        try inner.finish()
    }

    func redact(_ headers: [HTTPHeader]) -> [HTTPHeader] {
        headers.map { names.contains($0.name.lowercased()) ? HTTPHeader($0.name, "[REDACTED]") : $0 }
    }

    /// Overwrites the values of matching `Name: value` lines, same length.
    func redact(_ payload: [UInt8]) -> [UInt8] {
        var bytes = payload
        var lineStart = 0
        while lineStart < bytes.count {
            let lineEnd = bytes[lineStart...].firstIndex(of: 0x0a) ?? bytes.count
            if let colon = bytes[lineStart..<lineEnd].firstIndex(of: UInt8(ascii: ":")), colon - lineStart <= 64,
                matches(bytes[lineStart..<colon])
            {
                var valueEnd = lineEnd
                if valueEnd > colon + 1 && bytes[valueEnd - 1] == 0x0d { valueEnd -= 1 }
                var index = colon + 1
                while index < valueEnd && bytes[index] == 0x20 { index += 1 }
                for position in index..<max(index, valueEnd) { bytes[position] = UInt8(ascii: "*") }
            }
            lineStart = lineEnd + 1
        }
        return bytes
    }

    private func matches(_ name: ArraySlice<UInt8>) -> Bool {
        patterns.contains { pattern in
            pattern.count == name.count && zip(pattern, name).allSatisfy { $0 == ($1 | 0x20) || $0 == $1 }
        }
    }
}
