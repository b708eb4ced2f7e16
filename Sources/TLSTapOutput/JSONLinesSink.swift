#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ExtrasBase64
import TLSTapCore
import TLSTapHTTP

/// `--format json`: one JSON object per line.
///
/// The records have a fixed shape, so they are written directly instead of
/// through a generic encoder: this is the hottest path of a busy capture.
/// Tests parse every line back with Foundation's JSON parser.
public final class JSONLinesSink: EventSink {
    private let output: OutputFile

    public init(output: OutputFile) {
        self.output = output
    }

    public func write(_ event: DataEvent) throws(OutputError) {
        try output.write(Self.line(for: event))
    }

    public func write(_ event: ConnectionEvent) throws(OutputError) {
        try output.write(Self.line(for: event))
    }

    public func write(_ exchange: HTTPExchange) throws(OutputError) {
        try output.write(Self.line(for: exchange))
    }

    public func writeLost(_ lost: LostCounts, timeNanoseconds: UInt64) throws(OutputError) {
        try output.write(
            "{\"event\":\"lost\",\"time_ns\":\(timeNanoseconds),\"records\":\(lost.records),\"bytes\":\(lost.bytes)}\n")
    }

    public func flush() throws(OutputError) {
        try output.flush()
    }

    /// The JSON line of a data event, newline included.
    public static func line(for event: DataEvent) -> String {
        var line = ""
        line.reserveCapacity(320 + event.payload.count * 4 / 3)  // one allocation for the whole line
        line += "{\"event\":\"data\",\"time_ns\":\(event.timeNanoseconds),\"pid\":\(event.pid),\"tid\":\(event.tid)"
        line += ",\"comm\":"
        JSONText.appendQuoted(event.comm, to: &line)
        line += ",\"lib\":\"\(event.library.name)\",\"func\":\"\(event.function.name)\",\"dir\":\"\(event.direction.name)\""
        line += ",\"ssl\":\"0x" + String(event.ssl, radix: 16) + "\",\"len\":\(event.length),\"fd\":\(event.fd)"
        if let connection = event.connection {
            line += ",\"conn\":\(connection.id),\"local\":\"\(connection.local)\",\"remote\":\"\(connection.remote)\""
            line += ",\"role\":\"\(connection.role.rawValue)\""
        }
        if event.missingBytes > 0 { line += ",\"lost_bytes\":\(event.missingBytes)" }
        line += ",\"data\":\""
        line += Base64.encodeToString(bytes: event.payload)
        line += "\"}\n"
        return line
    }
}

extension JSONLinesSink {
    /// The JSON line of a connection's open or close, newline included.
    public static func line(for event: ConnectionEvent) -> String {
        let (name, connection, time): (String, Connection, UInt64)
        switch event {
        case .opened(let opened, let at): (name, connection, time) = ("open", opened, at)
        case .closed(let closed, let at): (name, connection, time) = ("close", closed, at)
        }
        var line = "{\"event\":\"\(name)\",\"time_ns\":\(time),\"conn\":\(connection.id),\"pid\":\(connection.pid)"
        line += ",\"comm\":"
        JSONText.appendQuoted(connection.comm, to: &line)
        line += ",\"fd\":\(connection.fd),\"local\":\"\(connection.local)\",\"remote\":\"\(connection.remote)\""
        line += ",\"role\":\"\(connection.role.rawValue)\",\"seen_from\":\"\(connection.origin.rawValue)\""
        line += ",\"opened_ns\":\(connection.openedNanoseconds)"
        if case .closed = event {
            line += ",\"bytes_in\":\(connection.bytesIn),\"bytes_out\":\(connection.bytesOut)"
            line += ",\"duration_ns\":\(time >= connection.openedNanoseconds ? time - connection.openedNanoseconds : 0)"
        }
        return line + "}\n"
    }
}

extension JSONLinesSink {
    /// The `{"event":"http"}` line of an exchange, newline included.
    public static func line(for exchange: HTTPExchange) -> String {
        var line = "{\"event\":\"http\",\"time_ns\":\(exchange.endNanoseconds),\"conn\":\(exchange.connection)"
        line += ",\"pid\":\(exchange.pid),\"comm\":"
        JSONText.appendQuoted(exchange.comm, to: &line)
        line += ",\"protocol\":"
        JSONText.appendQuoted(exchange.protocolVersion, to: &line)
        if let stream = exchange.stream { line += ",\"stream\":\(stream)" }
        for (key, value) in [("method", exchange.method), ("scheme", exchange.scheme),
                             ("authority", exchange.authority), ("path", exchange.path)] {
            line += ",\"\(key)\":"
            JSONText.appendQuoted(value, to: &line)
        }
        line += ",\"status\":" + (exchange.status.map(String.init) ?? "null")
        line += ",\"req_headers\":"
        appendHeaders(exchange.requestHeaders, to: &line)
        line += ",\"resp_headers\":"
        appendHeaders(exchange.responseHeaders, to: &line)
        line += ",\"req_body_len\":\(exchange.requestBodyLength),\"resp_body_len\":\(exchange.responseBodyLength)"
        line += ",\"start_ns\":\(exchange.startNanoseconds),\"latency_ns\":\(exchange.latencyNanoseconds)"
        if let body = exchange.requestBody { line += ",\"req_body\":\"" + Base64.encodeToString(bytes: body) + "\"" }
        if let coding = exchange.requestBodyDecodedFrom {
            line += ",\"req_body_decoded_from\":"
            JSONText.appendQuoted(coding, to: &line)
        }
        if let body = exchange.responseBody { line += ",\"resp_body\":\"" + Base64.encodeToString(bytes: body) + "\"" }
        if let coding = exchange.responseBodyDecodedFrom {
            line += ",\"resp_body_decoded_from\":"
            JSONText.appendQuoted(coding, to: &line)
        }
        if let grpc = exchange.grpc {
            line += ",\"grpc\":{\"service\":"
            JSONText.appendQuoted(grpc.service, to: &line)
            line += ",\"method\":"
            JSONText.appendQuoted(grpc.method, to: &line)
            line += ",\"status\":" + (grpc.status.map(String.init) ?? "null") + ",\"message\":"
            if let message = grpc.message { JSONText.appendQuoted(message, to: &line) } else { line += "null" }
            line += ",\"req_messages\":\(grpc.requestMessageSizes.count),\"resp_messages\":\(grpc.responseMessageSizes.count)"
            line += ",\"req_message_sizes\":[" + grpc.requestMessageSizes.map(String.init).joined(separator: ",") + "]"
            line += ",\"resp_message_sizes\":[" + grpc.responseMessageSizes.map(String.init).joined(separator: ",") + "]}"
        }
        if let note = exchange.note {
            line += ",\"note\":"
            JSONText.appendQuoted(note, to: &line)
        }
        return line + "}\n"
    }

    private static func appendHeaders(_ headers: [HTTPHeader], to line: inout String) {
        line += "["
        for (index, header) in headers.enumerated() {
            line += index == 0 ? "[" : ",["
            JSONText.appendQuoted(header.name, to: &line)
            line += ","
            JSONText.appendQuoted(header.value, to: &line)
            line += "]"
        }
        line += "]"
    }
}

/// JSON string quoting (RFC 8259): quotes, backslashes and control characters escaped.
public enum JSONText {
    public static func appendQuoted(_ value: String, to json: inout String) {
        // Most names and header values need no escaping: append them whole.
        if value.utf8.allSatisfy({ $0 >= 0x20 && $0 != 0x22 && $0 != 0x5c && $0 != 0x7f }) {
            json += "\""
            json += value
            json += "\""
            return
        }
        json += "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": json += "\\\""
            case "\\": json += "\\\\"
            case "\n": json += "\\n"
            case "\r": json += "\\r"
            case "\t": json += "\\t"
            case "\u{0}"..."\u{1f}", "\u{7f}":
                let hex = String(scalar.value, radix: 16)
                json += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: json.unicodeScalars.append(scalar)
            }
        }
        json += "\""
    }
}
