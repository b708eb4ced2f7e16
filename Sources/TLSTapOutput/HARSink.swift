import Foundation
import TLSTapCore
import TLSTapHTTP

/// `--har FILE`: HTTP exchanges (HTTP/1.x and HTTP/2) as HAR 1.2.
///
/// Entries are written as they complete, between an opening written at the
/// start and a closing written by `finish()`, so memory does not grow with
/// the capture and the file is valid JSON once tlstap stops (SIGINT/SIGTERM
/// included). Each entry also carries `_pid`, `_comm` and `_conn`.
public final class HARSink: EventSink {
    private let file: OutputFile
    private var entries = 0
    private let timeFormatter: ISO8601DateFormatter = {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }()

    public init(file: OutputFile, version: String) throws(OutputError) {
        self.file = file
        let creator = "{\"name\":\"tlstap\",\"version\":\"\(version)\"}"
        try file.write("{\"log\":{\"version\":\"1.2\",\"creator\":\(creator),\"pages\":[],\"entries\":[\n")
    }

    public func write(_ event: DataEvent) throws(OutputError) {}

    public func write(_ event: ConnectionEvent) throws(OutputError) {}

    public func write(_ exchange: HTTPExchange) throws(OutputError) {
        guard let json = try? JSONSerialization.data(withJSONObject: entry(exchange), options: [.sortedKeys]) else {
            return
        }
        try file.write((entries == 0 ? "" : ",\n") + String(decoding: json, as: UTF8.self))
        entries += 1
    }

    public func writeLost(_ lost: LostCounts, timeNanoseconds: UInt64) throws(OutputError) {}

    public func flush() throws(OutputError) {
        try file.flush()
    }

    public func finish() throws(OutputError) {
        try file.write("\n]}}\n")
        try file.finish()
    }

    func entry(_ exchange: HTTPExchange) -> [String: Any] {
        let milliseconds = Double(exchange.latencyNanoseconds) / 1e6
        let started = Date(timeIntervalSince1970: Double(exchange.startNanoseconds) / 1e9)
        let version = exchange.protocolVersion.isEmpty ? "HTTP/1.1" : exchange.protocolVersion
        let url = (exchange.scheme.isEmpty ? "https" : exchange.scheme) + "://" + exchange.authority + exchange.path
        var request: [String: Any] = [
            "method": exchange.method, "url": url, "httpVersion": version,
            "headers": Self.headers(exchange.requestHeaders),
            "cookies": Self.cookies(exchange.requestHeaders, header: "cookie"),
            "queryString": Self.queryString(exchange.path), "headersSize": -1, "bodySize": exchange.requestBodyLength,
        ]
        if exchange.requestBodyLength > 0 || exchange.requestBody?.isEmpty == false {
            var postData: [String: Any] = ["mimeType": exchange.requestHeaders.first("content-type") ?? ""]
            if let body = exchange.requestBody {
                postData["text"] = String(validating: body, as: UTF8.self) ?? Data(body).base64EncodedString()
            }
            request["postData"] = postData
        }
        var content: [String: Any] = [
            "size": exchange.responseBody?.count ?? exchange.responseBodyLength,
            "mimeType": exchange.responseHeaders.first("content-type") ?? "",
        ]
        if let body = exchange.responseBody {
            if let text = String(validating: body, as: UTF8.self) {
                content["text"] = text
            } else {
                content["text"] = Data(body).base64EncodedString()
                content["encoding"] = "base64"
            }
        }
        if exchange.responseBody == nil || exchange.responseBodyDecodedFrom != nil {
            content["compression"] = (exchange.responseBody?.count ?? exchange.responseBodyLength)
                - exchange.responseBodyLength
        }
        let response: [String: Any] = [
            "status": exchange.status ?? 0, "statusText": exchange.reason ?? "", "httpVersion": version,
            "headers": Self.headers(exchange.responseHeaders),
            "cookies": Self.cookies(exchange.responseHeaders, header: "set-cookie"), "content": content,
            "redirectURL": exchange.responseHeaders.first("location") ?? "", "headersSize": -1,
            "bodySize": exchange.responseBodyLength,
        ]
        var entry: [String: Any] = [
            "startedDateTime": timeFormatter.string(from: started), "time": milliseconds, "request": request,
            "response": response, "cache": [String: Any](),
            "timings": ["send": 0, "wait": milliseconds, "receive": 0],
            "_pid": Int(exchange.pid), "_comm": exchange.comm, "_conn": Int(exchange.connection),
        ]
        if let note = exchange.note { entry["comment"] = note }
        return entry
    }

    static func headers(_ headers: [HTTPHeader]) -> [[String: String]] {
        headers.map { ["name": $0.name, "value": $0.value] }
    }

    /// Cookies of `Cookie: a=1; b=2` or of each `Set-Cookie: a=1; Path=/`.
    static func cookies(_ headers: [HTTPHeader], header: String) -> [[String: String]] {
        headers.filter { $0.name.lowercased() == header }.flatMap { field -> [[String: String]] in
            let pairs = header == "cookie" ? field.value.split(separator: ";") : [field.value.split(separator: ";").first ?? ""]
            return pairs.compactMap { pair in
                guard let equals = pair.firstIndex(of: "=") else { return nil }
                return ["name": String(pair[..<equals]).trimmed, "value": String(pair[pair.index(after: equals)...]).trimmed]
            }
        }
    }

    static func queryString(_ path: String) -> [[String: String]] {
        guard let items = URLComponents(string: "http://h" + path)?.queryItems else { return [] }
        return items.map { ["name": $0.name, "value": $0.value ?? ""] }
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
