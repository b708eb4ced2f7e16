import TLSTapCore
import TLSTapHTTP

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// `--har FILE`: HTTP exchanges (HTTP/1.x and HTTP/2) as HAR 1.2.
///
/// Entries are written as they complete, between an opening written at the
/// start and a closing written by `finish()`, so memory does not grow with
/// the capture and the file is valid JSON once tlstap stops (SIGINT/SIGTERM
/// included). Each entry also carries `_pid`, `_comm` and `_conn`.
public final class HARSink: EventSink {
    private let file: OutputFile
    private var entries = 0
    private let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    public init(file: OutputFile, version: String) throws(OutputError) {
        self.file = file
        let creator = "{\"name\":\"tlstap\",\"version\":\"\(version)\"}"
        try file.write("{\"log\":{\"version\":\"1.2\",\"creator\":\(creator),\"pages\":[],\"entries\":[\n")
    }

    public func write(_ record: any ProtocolRecord) throws(OutputError) {
        guard let exchange = record as? HTTPExchange, let json = try? encoder.encode(Self.entry(exchange)) else {
            return
        }
        if entries > 0 { try file.write(",\n") }
        try file.write(json)
        entries += 1
    }

    public func flush() throws(OutputError) {
        try file.flush()
    }

    public func finish() throws(OutputError) {
        try file.write("\n]}}\n")
        try file.finish()
    }

    static func entry(_ exchange: HTTPExchange) -> HAREntry {
        let timings = Self.timings(exchange)
        let started = Date(timeIntervalSince1970: Double(exchange.startNanoseconds) / 1e9)
        let version = exchange.protocolVersion.isEmpty ? "HTTP/1.1" : exchange.protocolVersion
        let url = (exchange.scheme.isEmpty ? "https" : exchange.scheme) + "://" + exchange.authority + exchange.path
        var request = HAREntry.Request(
            method: exchange.method, url: url, httpVersion: version, headers: Self.headers(exchange.requestHeaders),
            cookies: Self.cookies(exchange.requestHeaders, header: "cookie"),
            queryString: Self.queryString(exchange.path),
            bodySize: exchange.requestCaptured ? exchange.requestBodyLength : -1)  // -1: "not available"
        if exchange.requestBodyLength > 0 || exchange.requestBody?.isEmpty == false {
            request.postData = HAREntry.PostData(
                mimeType: exchange.requestHeaders.first("content-type") ?? "",
                text: exchange.requestBody.map {
                    String(validating: $0, as: UTF8.self) ?? PayloadBase64.string($0)
                })
        }
        var content = HAREntry.Content(
            size: exchange.responseBody?.count ?? exchange.responseBodyLength,
            mimeType: exchange.responseHeaders.first("content-type") ?? "")
        if let body = exchange.responseBody {
            if let text = String(validating: body, as: UTF8.self) {
                content.text = text
            } else {
                content.text = PayloadBase64.string(body)
                content.encoding = "base64"
            }
        }
        if exchange.responseBody == nil || exchange.responseBodyDecodedFrom != nil {
            content.compression =
                (exchange.responseBody?.count ?? exchange.responseBodyLength)
                - exchange.responseBodyLength
        }
        let response = HAREntry.Response(
            status: exchange.status ?? 0, statusText: exchange.reason ?? "",
            httpVersion: exchange.responseVersion ?? version,
            headers: Self.headers(exchange.responseHeaders),
            cookies: Self.cookies(exchange.responseHeaders, header: "set-cookie"), content: content,
            redirectURL: exchange.responseHeaders.first("location") ?? "", bodySize: exchange.responseBodyLength)
        return HAREntry(
            startedDateTime: started.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)),
            time: timings.send + timings.wait + timings.receive, request: request, response: response,
            timings: timings, comment: exchange.noteText,
            pid: Int(exchange.pid), comm: exchange.comm, connection: Int(exchange.connection))
    }

    /// HAR 1.2 requires `send`, `wait` and `receive`, each non-negative
    /// (-1, "does not apply", is allowed only for the optional `blocked`,
    /// `dns`, `connect` and `ssl`, which tlstap leaves out), and makes an
    /// entry's `time` their sum. With the request captured, the whole
    /// latency is `wait`: tlstap does not tell the phases apart. Without
    /// it, the entry starts at the first response byte, `receive` is what
    /// was seen (up to the last response byte), and `send` and `wait`,
    /// unknown, are 0 with a comment that says so.
    static func timings(_ exchange: HTTPExchange) -> HAREntry.Timings {
        guard let latency = exchange.latencyNanoseconds else {
            let seen =
                exchange.endNanoseconds >= exchange.startNanoseconds
                ? exchange.endNanoseconds - exchange.startNanoseconds : 0
            return HAREntry.Timings(
                send: 0, wait: 0, receive: Double(seen) / 1e6,
                comment: HTTPExchange.requestNotCaptured + ": send and wait unknown, written 0")
        }
        return HAREntry.Timings(send: 0, wait: Double(latency) / 1e6, receive: 0)
    }

    static func headers(_ headers: [HTTPHeader]) -> [HAREntry.Pair] {
        headers.map { HAREntry.Pair(name: $0.name, value: $0.value) }
    }

    /// Cookies of `Cookie: a=1; b=2` or of each `Set-Cookie: a=1; Path=/`.
    static func cookies(_ headers: [HTTPHeader], header: String) -> [HAREntry.Pair] {
        headers.filter { $0.name.lowercased() == header }.flatMap { field -> [HAREntry.Pair] in
            let pairs =
                header == "cookie" ? field.value.split(separator: ";") : [field.value.split(separator: ";").first ?? ""]
            return pairs.compactMap { pair in
                guard let equals = pair.firstIndex(of: "=") else { return nil }
                return HAREntry.Pair(
                    name: String(pair[..<equals]).trimmed,
                    value: String(pair[pair.index(after: equals)...]).trimmed)
            }
        }
    }

    static func queryString(_ path: String) -> [HAREntry.Pair] {
        guard let items = URLComponents(string: "http://h" + path)?.queryItems else { return [] }
        return items.map { HAREntry.Pair(name: $0.name, value: $0.value ?? "") }
    }
}

/// One entry of a HAR 1.2 log (http://www.softwareishard.com/blog/har-12-spec/),
/// with tlstap's `_pid`, `_comm` and `_conn`. Fields that are nil are left out.
struct HAREntry: Encodable {
    struct Pair: Encodable {
        var name: String
        var value: String
    }

    struct Request: Encodable {
        var method: String
        var url: String
        var httpVersion: String
        var headers: [Pair]
        var cookies: [Pair]
        var queryString: [Pair]
        var headersSize = -1
        var bodySize: Int
        var postData: PostData?
    }

    struct PostData: Encodable {
        var mimeType: String
        var text: String?
    }

    struct Response: Encodable {
        var status: Int
        var statusText: String
        var httpVersion: String
        var headers: [Pair]
        var cookies: [Pair]
        var content: Content
        var redirectURL: String
        var headersSize = -1
        var bodySize: Int
    }

    struct Content: Encodable {
        var size: Int
        var mimeType: String
        var text: String?
        var encoding: String?
        var compression: Int?
    }

    struct Timings: Encodable {
        var send: Double
        var wait: Double
        var receive: Double
        var comment: String?
    }

    var startedDateTime: String
    var time: Double
    var request: Request
    var response: Response
    var cache: [String: String] = [:]
    var timings: Timings
    var comment: String?
    var pid: Int
    var comm: String
    var connection: Int

    enum CodingKeys: String, CodingKey {
        case startedDateTime, time, request, response, cache, timings, comment
        case pid = "_pid"
        case comm = "_comm"
        case connection = "_conn"
    }
}

extension String {
    fileprivate var trimmed: String {
        var text = Substring(self)
        while text.first == " " { text = text.dropFirst() }
        while text.last == " " { text = text.dropLast() }
        return String(text)
    }
}
