#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import TLSTapCore

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

    public func writeLost(_ lost: LostCounts, timeNanoseconds: UInt64) throws(OutputError) {
        try output.write(
            "{\"event\":\"lost\",\"time_ns\":\(timeNanoseconds),\"records\":\(lost.records),\"bytes\":\(lost.bytes)}\n")
    }

    public func flush() throws(OutputError) {
        try output.flush()
    }

    /// The JSON line of a data event, newline included.
    public static func line(for event: DataEvent) -> String {
        var line = "{\"event\":\"data\",\"time_ns\":\(event.timeNanoseconds),\"pid\":\(event.pid),\"tid\":\(event.tid)"
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
        line += Data(event.payload).base64EncodedString()
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

/// JSON string quoting (RFC 8259): quotes, backslashes and control characters escaped.
public enum JSONText {
    public static func appendQuoted(_ value: String, to json: inout String) {
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
