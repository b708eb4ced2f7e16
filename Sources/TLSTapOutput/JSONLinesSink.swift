import TLSTapCore
import TLSTapHTTP

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// `--format json`: one JSON object per line.
///
/// The records have a fixed shape, so they are written directly into the
/// output buffer instead of through a generic encoder or a String: this is
/// the hottest path of a busy capture. Tests parse every line back with
/// Foundation's JSON parser.
public final class JSONLinesSink: EventSink {
    private let output: OutputFile
    // A data line's repeated fields are rendered once into byte stores and
    // read where they lie: a copy of an array per record was a reference
    // count up and down, which showed in profiles of busy captures.

    /// The fields every data line of a connection repeats,
    /// `,"conn":…,"local":…,"remote":…,"role":…`, by connection; dropped
    /// when it closes. (Read per record, only from the writing thread, never
    /// while either is changed: the runtime's exclusivity check is skipped.)
    @exclusivity(unchecked) private var connectionFields: [UInt64: Range<Int>] = [:]
    @exclusivity(unchecked) private var connectionFieldBytes: [UInt8] = []
    /// Beyond this, the store starts over and fields are rendered anew.
    private let maxConnectionFieldBytes = 2 << 20
    /// `,"lib":…,"func":…,"dir":…` of every library, function and
    /// direction, rendered once into one table: read without hashing.
    private let callFieldsTable: [UInt8]
    private let callFieldsRanges: [Range<Int>]
    /// Held, not static: a static would be reached through a lazy
    /// initializer's check per record.
    private let callSlots = CallSlots()

    public init(output: OutputFile) {
        self.output = output
        var table: [UInt8] = []
        var ranges = [Range<Int>](repeating: 0..<0, count: callSlots.count)
        for library in TLSLibrary.allCases {
            for function in TLSFunction.allCases {
                for direction in Direction.allCases {
                    let start = table.count
                    Self.appendCallFields(library: library, function: function, direction: direction, to: &table)
                    ranges[callSlots.slot(library, function, direction)] = start..<table.count
                }
            }
        }
        callFieldsTable = table
        callFieldsRanges = ranges
    }

    /// A dense index for each library, function and direction, from their raw values.
    private struct CallSlots {
        let functions = Int(TLSFunction.allCases.map(\.rawValue).max()!) + 1
        let directions = Int(Direction.allCases.map(\.rawValue).max()!) + 1
        var count: Int { (Int(TLSLibrary.allCases.map(\.rawValue).max()!) + 1) * functions * directions }

        func slot(_ library: TLSLibrary, _ function: TLSFunction, _ direction: Direction) -> Int {
            (Int(library.rawValue) * functions + Int(function.rawValue)) * directions + Int(direction.rawValue)
        }
    }

    public func write(_ event: DataEvent) throws(OutputError) {
        let call = callFieldsRanges[callSlots.slot(event.library, event.function, event.direction)]
        var connection = 0..<0
        if let id = event.connection?.id {
            connection = connectionFields[id] ?? cacheFields(ofConnectionOf: event)
        }
        try output.append { line in
            callFieldsTable.withUnsafeBytes { table in
                connectionFieldBytes.withUnsafeBytes { connections in
                    Self.append(
                        event, callFields: UnsafeRawBufferPointer(rebasing: table[call]),
                        connectionFields: UnsafeRawBufferPointer(rebasing: connections[connection]), to: &line)
                }
            }
        }
    }

    public func write(_ event: ConnectionEvent) throws(OutputError) {
        if case .closed(let connection, _, _) = event { connectionFields[connection.id] = nil }
        try output.append { Self.append(event, to: &$0) }
    }

    /// - Returns: where the fields of `event`'s connection are kept.
    private func cacheFields(ofConnectionOf event: DataEvent) -> Range<Int> {
        guard let connection = event.connection else { return 0..<0 }
        if connectionFieldBytes.count >= maxConnectionFieldBytes {
            connectionFields.removeAll(keepingCapacity: true)
            connectionFieldBytes.removeAll(keepingCapacity: true)
        }
        let start = connectionFieldBytes.count
        connectionFieldBytes.append(",\"conn\":", decimal: connection.id)
        Self.appendEndpoints(of: connection, to: &connectionFieldBytes)
        let fields = start..<connectionFieldBytes.count
        connectionFields[connection.id] = fields
        return fields
    }

    public func write(_ record: any ProtocolRecord) throws(OutputError) {
        if let exchange = record as? HTTPExchange {
            try output.append { Self.append(exchange, to: &$0) }
        } else {
            try output.append { Self.append(record, to: &$0) }
        }
    }

    public func writeLost(_ lost: LostCounts, timeNanoseconds: UInt64) throws(OutputError) {
        try output.append { line in
            line.append("{\"event\":\"lost\",\"time_ns\":", decimal: timeNanoseconds)
            line.append(",\"records\":", decimal: lost.records)
            line.append(",\"bytes\":", decimal: lost.bytes)
            line.append(literal: "}\n")
        }
    }

    public func flush() throws(OutputError) {
        try output.flush()
    }

    public func finish() throws(OutputError) {
        try output.finish()
    }

    /// Appends the JSON line of a data event, newline included, from its
    /// pre-rendered `callFields` (`appendCallFields`) and `connectionFields`
    /// (`,"conn":…` and its endpoints, or empty).
    static func append(
        _ event: DataEvent, callFields: UnsafeRawBufferPointer, connectionFields: UnsafeRawBufferPointer,
        to output: inout [UInt8]
    ) {
        let most =
            dataLineRoom + ByteCursor.maxJSONStringCount(event.comm) + callFields.count
            + connectionFields.count + PayloadBase64.encodedLength(event.payload.count)
        output.append(atMost: most) { line in
            line.append("{\"event\":\"data\",\"time_ns\":", decimal: event.timeNanoseconds)
            line.append(",\"pid\":", decimal: event.pid)
            line.append(",\"tid\":", decimal: event.tid)
            line.append(",\"comm\":", string: event.comm)
            line.append(bytes: callFields)
            line.append(literal: ",\"ssl\":\"0x")
            line.append(hex: event.ssl)
            line.append("\",\"len\":", decimal: event.length)
            if event.fd >= 0 { line.append(",\"fd\":", decimal: event.fd) }
            line.append(bytes: connectionFields)
            if event.lostBefore > 0 {
                line.append(",\"lost_before\":", decimal: event.lostBefore)
            }
            if event.missingBytes > 0 {
                line.append(",\"lost_bytes\":", decimal: event.missingBytes)
            }
            line.append(literal: ",\"data\":\"")
            line.append(base64: event.payload)
            line.append(literal: "\"}\n")
        }
    }

    /// Room for a data line's keys and punctuation (113 bytes) and its eight
    /// numbers (at most 20 digits each), besides its strings and payload.
    private static let dataLineRoom = 113 + 8 * ByteCursor.maxDecimalCount

    /// `,"lib":…,"func":…,"dir":…`: the same for every call of one function in one direction.
    static func appendCallFields(
        library: TLSLibrary, function: TLSFunction, direction: Direction, to line: inout [UInt8]
    ) {
        line.append(",\"lib\":", string: library.name)
        line.append(",\"func\":", string: function.name)
        line.append(",\"dir\":", string: direction.name)
    }

    /// `"local":…,"remote":…,"role":…`, after a comma.
    private static func appendEndpoints(of connection: Connection, to line: inout [UInt8]) {
        line.append(",\"local\":", string: connection.local.description)
        line.append(",\"remote\":", string: connection.remote.description)
        line.append(",\"role\":", string: connection.role.rawValue)
    }
}

extension JSONLinesSink {
    /// Appends the JSON line of a connection's open or close, newline included.
    static func append(_ event: ConnectionEvent, to line: inout [UInt8]) {
        let (connection, traffic, time): (Connection, ConnectionTraffic?, UInt64)
        switch event {
        case .opened(let opened, let at):
            (connection, traffic, time) = (opened, nil, at)
            line.append(literal: "{\"event\":\"open\",\"time_ns\":")
        case .closed(let closed, let carried, let at):
            (connection, traffic, time) = (closed, carried, at)
            line.append(literal: "{\"event\":\"close\",\"time_ns\":")
        }
        line.append(decimal: time)
        line.append(",\"conn\":", decimal: connection.id)
        line.append(",\"pid\":", decimal: connection.pid)
        line.append(",\"comm\":", string: connection.comm)
        line.append(",\"fd\":", decimal: connection.fd)
        appendEndpoints(of: connection, to: &line)
        line.append(",\"seen_from\":", string: connection.origin.rawValue)
        line.append(",\"opened_ns\":", decimal: connection.openedNanoseconds)
        if let traffic {
            line.append(",\"bytes_in\":", decimal: traffic.bytesIn)
            line.append(",\"bytes_out\":", decimal: traffic.bytesOut)
            line.append(
                ",\"duration_ns\":",
                decimal: time >= connection.openedNanoseconds ? time - connection.openedNanoseconds : 0)
        }
        line.append(literal: "}\n")
    }
}

extension JSONLinesSink {
    /// Appends the `{"event":"http"}` line of an exchange, newline included.
    static func append(_ exchange: HTTPExchange, to line: inout [UInt8]) {
        line.append("{\"event\":\"http\",\"time_ns\":", decimal: exchange.endNanoseconds)
        line.append(",\"conn\":", decimal: exchange.connection)
        line.append(",\"pid\":", decimal: exchange.pid)
        line.append(",\"comm\":", string: exchange.comm)
        line.append(",\"protocol\":", string: exchange.protocolVersion)
        if let answered = exchange.responseVersion, answered != exchange.protocolVersion {
            line.append(",\"response_protocol\":", string: answered)
        }
        if let stream = exchange.stream {
            line.append(",\"stream\":", decimal: stream)
        }
        line.append(",\"method\":", string: exchange.method)
        line.append(",\"scheme\":", string: exchange.scheme)
        line.append(",\"authority\":", string: exchange.authority)
        line.append(",\"path\":", string: exchange.path)
        line.append(literal: ",\"status\":")
        appendNumberOrNull(exchange.status, to: &line)
        line.append(literal: ",\"req_headers\":")
        appendHeaders(exchange.requestHeaders, to: &line)
        line.append(literal: ",\"resp_headers\":")
        appendHeaders(exchange.responseHeaders, to: &line)
        line.append(",\"req_body_len\":", decimal: exchange.requestBodyLength)
        line.append(",\"resp_body_len\":", decimal: exchange.responseBodyLength)
        line.append(",\"start_ns\":", decimal: exchange.startNanoseconds)
        line.append(literal: ",\"latency_ns\":")
        appendNumberOrNull(exchange.latencyNanoseconds, to: &line)  // null: the request was not captured
        appendBody(
            exchange.requestBody, ",\"req_body\":\"", decodedFrom: exchange.requestBodyDecodedFrom,
            ",\"req_body_decoded_from\":", to: &line)
        appendBody(
            exchange.responseBody, ",\"resp_body\":\"", decodedFrom: exchange.responseBodyDecodedFrom,
            ",\"resp_body_decoded_from\":", to: &line)
        if let grpc = exchange.grpc {
            line.append(",\"grpc\":{\"service\":", string: grpc.service)
            line.append(",\"method\":", string: grpc.method)
            line.append(literal: ",\"status\":")
            appendNumberOrNull(grpc.status, to: &line)
            line.append(literal: ",\"message\":")
            if let message = grpc.message { line.append(jsonString: message) } else { line.append(literal: "null") }
            line.append(",\"req_messages\":", decimal: grpc.requestMessageSizes.count)
            line.append(",\"resp_messages\":", decimal: grpc.responseMessageSizes.count)
            line.append(literal: ",\"req_message_sizes\":")
            appendNumbers(grpc.requestMessageSizes, to: &line)
            line.append(literal: ",\"resp_message_sizes\":")
            appendNumbers(grpc.responseMessageSizes, to: &line)
            line.append(literal: "}")
        }
        if let note = exchange.noteText {
            line.append(",\"note\":", string: note)
        }
        line.append(literal: "}\n")
    }

    /// A kept body in base64 under `key`, and the coding it was decoded from under `codingKey`.
    /// Appends the JSON line of any protocol record, from its details:
    /// `{"event":"websocket","time_ns":…,"conn":…,"pid":…,"comm":…,"start_ns":…,…}`;
    /// bytes are base64 (`"payload_base64":…`).
    static func append(_ record: any ProtocolRecord, to line: inout [UInt8]) {
        line.append(literal: "{\"event\":")
        line.append(jsonString: record.protocolName)
        line.append(",\"time_ns\":", decimal: record.endNanoseconds)
        line.append(",\"conn\":", decimal: record.connection)
        line.append(",\"pid\":", decimal: record.pid)
        line.append(",\"comm\":", string: record.comm)
        line.append(",\"start_ns\":", decimal: record.startNanoseconds)
        for field in record.details {
            line.append(literal: ",")
            switch field.value {
            case .string(let value):
                line.append(jsonString: field.name)
                line.append(":", string: value)
            case .integer(let value):
                line.append(jsonString: field.name)
                line.append(":", decimal: value)
            case .boolean(let value):
                line.append(jsonString: field.name)
                line.append(literal: value ? ":true" : ":false")
            case .bytes(let value):
                line.append(jsonString: field.name + "_base64")
                line.append(literal: ":\"")
                line.append(base64: value)
                line.append(literal: "\"")
            }
        }
        line.append(literal: "}\n")
    }

    private static func appendBody(
        _ body: [UInt8]?, _ key: StaticString, decodedFrom coding: String?, _ codingKey: StaticString,
        to line: inout [UInt8]
    ) {
        if let body {
            line.append(literal: key)
            line.append(base64: body)
            line.append(literal: "\"")
        }
        if let coding { line.append(codingKey, string: coding) }
    }

    private static func appendHeaders(_ headers: [HTTPHeader], to line: inout [UInt8]) {
        line.append(literal: "[")
        for (index, header) in headers.enumerated() {
            line.append(literal: index == 0 ? "[" : ",[")
            line.append(jsonString: header.name)
            line.append(",", string: header.value)
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
