#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import TLSTapCore
import TLSTapHTTP

/// `--format json`: one JSON object per line.
///
/// The records have a fixed shape, so they are written directly into the
/// output buffer instead of through a generic encoder or a String: this is
/// the hottest path of a busy capture. Tests parse every line back with
/// Foundation's JSON parser.
public final class JSONLinesSink: EventSink {
    private let output: OutputFile

    public init(output: OutputFile) {
        self.output = output
    }

    public func write(_ event: DataEvent) throws(OutputError) {
        try output.append { Self.append(event, to: &$0) }
    }

    public func write(_ event: ConnectionEvent) throws(OutputError) {
        try output.append { Self.append(event, to: &$0) }
    }

    public func write(_ exchange: HTTPExchange) throws(OutputError) {
        try output.append { Self.append(exchange, to: &$0) }
    }

    public func writeLost(_ lost: LostCounts, timeNanoseconds: UInt64) throws(OutputError) {
        try output.append { line in
            line.append(literal: "{\"event\":\"lost\",\"time_ns\":")
            line.append(decimal: timeNanoseconds)
            line.append(literal: ",\"records\":")
            line.append(decimal: lost.records)
            line.append(literal: ",\"bytes\":")
            line.append(decimal: lost.bytes)
            line.append(literal: "}\n")
        }
    }

    public func flush() throws(OutputError) {
        try output.flush()
    }

    /// Appends the JSON line of a data event, newline included.
    static func append(_ event: DataEvent, to line: inout [UInt8]) {
        line.append(literal: "{\"event\":\"data\",\"time_ns\":")
        line.append(decimal: event.timeNanoseconds)
        line.append(literal: ",\"pid\":")
        line.append(decimal: event.pid)
        line.append(literal: ",\"tid\":")
        line.append(decimal: event.tid)
        line.append(literal: ",\"comm\":")
        line.append(jsonString: event.comm)
        line.append(literal: ",\"lib\":")
        line.append(jsonString: event.library.name)
        line.append(literal: ",\"func\":")
        line.append(jsonString: event.function.name)
        line.append(literal: ",\"dir\":")
        line.append(jsonString: event.direction.name)
        line.append(literal: ",\"ssl\":\"0x")
        line.append(hex: event.ssl)
        line.append(literal: "\",\"len\":")
        line.append(decimal: event.length)
        line.append(literal: ",\"fd\":")
        line.append(decimal: event.fd)
        if let connection = event.connection {
            line.append(literal: ",\"conn\":")
            line.append(decimal: connection.id)
            appendEndpoints(of: connection, to: &line)
        }
        if event.missingBytes > 0 {
            line.append(literal: ",\"lost_bytes\":")
            line.append(decimal: event.missingBytes)
        }
        line.append(literal: ",\"data\":\"")
        line.append(base64: event.payload)
        line.append(literal: "\"}\n")
    }

    /// `"local":…,"remote":…,"role":…`, after a comma.
    private static func appendEndpoints(of connection: Connection, to line: inout [UInt8]) {
        line.append(literal: ",\"local\":")
        line.append(jsonString: connection.local.description)
        line.append(literal: ",\"remote\":")
        line.append(jsonString: connection.remote.description)
        line.append(literal: ",\"role\":")
        line.append(jsonString: connection.role.rawValue)
    }
}

extension JSONLinesSink {
    /// Appends the JSON line of a connection's open or close, newline included.
    static func append(_ event: ConnectionEvent, to line: inout [UInt8]) {
        let (connection, time): (Connection, UInt64)
        switch event {
        case .opened(let opened, let at):
            (connection, time) = (opened, at)
            line.append(literal: "{\"event\":\"open\",\"time_ns\":")
        case .closed(let closed, let at):
            (connection, time) = (closed, at)
            line.append(literal: "{\"event\":\"close\",\"time_ns\":")
        }
        line.append(decimal: time)
        line.append(literal: ",\"conn\":")
        line.append(decimal: connection.id)
        line.append(literal: ",\"pid\":")
        line.append(decimal: connection.pid)
        line.append(literal: ",\"comm\":")
        line.append(jsonString: connection.comm)
        line.append(literal: ",\"fd\":")
        line.append(decimal: connection.fd)
        appendEndpoints(of: connection, to: &line)
        line.append(literal: ",\"seen_from\":")
        line.append(jsonString: connection.origin.rawValue)
        line.append(literal: ",\"opened_ns\":")
        line.append(decimal: connection.openedNanoseconds)
        if case .closed = event {
            line.append(literal: ",\"bytes_in\":")
            line.append(decimal: connection.bytesIn)
            line.append(literal: ",\"bytes_out\":")
            line.append(decimal: connection.bytesOut)
            line.append(literal: ",\"duration_ns\":")
            line.append(decimal: time >= connection.openedNanoseconds ? time - connection.openedNanoseconds : 0)
        }
        line.append(literal: "}\n")
    }
}

extension JSONLinesSink {
    /// Appends the `{"event":"http"}` line of an exchange, newline included.
    static func append(_ exchange: HTTPExchange, to line: inout [UInt8]) {
        line.append(literal: "{\"event\":\"http\",\"time_ns\":")
        line.append(decimal: exchange.endNanoseconds)
        line.append(literal: ",\"conn\":")
        line.append(decimal: exchange.connection)
        line.append(literal: ",\"pid\":")
        line.append(decimal: exchange.pid)
        line.append(literal: ",\"comm\":")
        line.append(jsonString: exchange.comm)
        line.append(literal: ",\"protocol\":")
        line.append(jsonString: exchange.protocolVersion)
        if let stream = exchange.stream {
            line.append(literal: ",\"stream\":")
            line.append(decimal: stream)
        }
        line.append(literal: ",\"method\":")
        line.append(jsonString: exchange.method)
        line.append(literal: ",\"scheme\":")
        line.append(jsonString: exchange.scheme)
        line.append(literal: ",\"authority\":")
        line.append(jsonString: exchange.authority)
        line.append(literal: ",\"path\":")
        line.append(jsonString: exchange.path)
        line.append(literal: ",\"status\":")
        appendNumberOrNull(exchange.status, to: &line)
        line.append(literal: ",\"req_headers\":")
        appendHeaders(exchange.requestHeaders, to: &line)
        line.append(literal: ",\"resp_headers\":")
        appendHeaders(exchange.responseHeaders, to: &line)
        line.append(literal: ",\"req_body_len\":")
        line.append(decimal: exchange.requestBodyLength)
        line.append(literal: ",\"resp_body_len\":")
        line.append(decimal: exchange.responseBodyLength)
        line.append(literal: ",\"start_ns\":")
        line.append(decimal: exchange.startNanoseconds)
        line.append(literal: ",\"latency_ns\":")
        line.append(decimal: exchange.latencyNanoseconds)
        if let body = exchange.requestBody {
            line.append(literal: ",\"req_body\":\"")
            line.append(base64: body)
            line.append(literal: "\"")
        }
        if let coding = exchange.requestBodyDecodedFrom {
            line.append(literal: ",\"req_body_decoded_from\":")
            line.append(jsonString: coding)
        }
        if let body = exchange.responseBody {
            line.append(literal: ",\"resp_body\":\"")
            line.append(base64: body)
            line.append(literal: "\"")
        }
        if let coding = exchange.responseBodyDecodedFrom {
            line.append(literal: ",\"resp_body_decoded_from\":")
            line.append(jsonString: coding)
        }
        if let grpc = exchange.grpc {
            line.append(literal: ",\"grpc\":{\"service\":")
            line.append(jsonString: grpc.service)
            line.append(literal: ",\"method\":")
            line.append(jsonString: grpc.method)
            line.append(literal: ",\"status\":")
            appendNumberOrNull(grpc.status, to: &line)
            line.append(literal: ",\"message\":")
            if let message = grpc.message { line.append(jsonString: message) } else { line.append(literal: "null") }
            line.append(literal: ",\"req_messages\":")
            line.append(decimal: grpc.requestMessageSizes.count)
            line.append(literal: ",\"resp_messages\":")
            line.append(decimal: grpc.responseMessageSizes.count)
            line.append(literal: ",\"req_message_sizes\":")
            appendNumbers(grpc.requestMessageSizes, to: &line)
            line.append(literal: ",\"resp_message_sizes\":")
            appendNumbers(grpc.responseMessageSizes, to: &line)
            line.append(literal: "}")
        }
        if let note = exchange.note {
            line.append(literal: ",\"note\":")
            line.append(jsonString: note)
        }
        line.append(literal: "}\n")
    }

    private static func appendHeaders(_ headers: [HTTPHeader], to line: inout [UInt8]) {
        line.append(literal: "[")
        for (index, header) in headers.enumerated() {
            line.append(literal: index == 0 ? "[" : ",[")
            line.append(jsonString: header.name)
            line.append(literal: ",")
            line.append(jsonString: header.value)
            line.append(literal: "]")
        }
        line.append(literal: "]")
    }

    private static func appendNumbers(_ numbers: [some BinaryInteger], to line: inout [UInt8]) {
        line.append(literal: "[")
        for (index, number) in numbers.enumerated() {
            if index > 0 { line.append(literal: ",") }
            line.append(decimal: number)
        }
        line.append(literal: "]")
    }

    private static func appendNumberOrNull(_ number: (some BinaryInteger)?, to line: inout [UInt8]) {
        if let number { line.append(decimal: number) } else { line.append(literal: "null") }
    }
}
