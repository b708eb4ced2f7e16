import TLSTapCore
import TLSTapHTTP

/// The human-readable formats: a header line per event, then the payload,
/// either escaped text (`--format text`) or a hex dump (`--format hex`).
public final class TextSink: EventSink {
    /// How the payload is shown.
    public enum PayloadStyle: Sendable {
        /// Printable ASCII as is, CRLF and LF as line breaks, everything else `\xNN`.
        case escaped
        /// `offset  hex bytes  |ascii|`, 16 bytes a line.
        case hexDump
    }

    private let output: OutputFile
    private let diagnostics: OutputFile
    private let timestamps: TimestampStyle
    private let payloadStyle: PayloadStyle
    /// The connection of the last event shown, to print a connection line when it changes.
    private var currentConnection: UInt64?

    public init(output: OutputFile, diagnostics: OutputFile, timestamps: TimestampStyle, payload: PayloadStyle) {
        self.output = output
        self.diagnostics = diagnostics
        self.timestamps = timestamps
        self.payloadStyle = payload
    }

    public func write(_ event: DataEvent) throws(OutputError) {
        var text = ""
        if let connection = event.connection, connection.id != currentConnection {
            currentConnection = connection.id
            text += connectionLine(connection) + "\n"
        }
        text += header(event)
        try output.write(text)
        // The payload straight into the output's buffer: a large upload's text is rendered at disk speed.
        try output.append { bytes in
            switch payloadStyle {
            case .escaped: PayloadText.appendEscaped(event.payload, to: &bytes)
            case .hexDump: PayloadText.appendHexDump(event.payload, to: &bytes)
            }
        }
    }

    public func write(_ event: ConnectionEvent) throws(OutputError) {
        guard case .closed(let connection, let traffic, let time) = event else { return }
        let duration = Double(time >= connection.openedNanoseconds ? time - connection.openedNanoseconds : 0) / 1e6
        try output.write(
            connectionLine(connection) + " closed: \(traffic.bytesOut) bytes out, \(traffic.bytesIn) bytes in, "
                + "\(Self.milliseconds(duration)) ms\n")
        if currentConnection == connection.id { currentConnection = nil }
    }

    /// The text views show raw payloads, where HTTP reads as it is (its
    /// exchanges belong to `--format http` and JSON); a record of any other
    /// protocol gets a line, after the data that completed it:
    /// `12:00:01.234567 python3[1234] websocket client → server text "hi" (2 B, 1 frame, masked) conn=7`
    public func write(_ record: any ProtocolRecord) throws(OutputError) {
        guard !(record is HTTPExchange) else { return }
        try output.write(Self.line(for: record, time: timestamps.format(record.endNanoseconds)) + "\n")
    }

    /// A protocol record's line, after its `time` as the format shows times.
    static func line(for record: any ProtocolRecord, time: String) -> String {
        time + " " + PayloadText.escapedName(record.comm) + "[\(record.pid)] "
            + PayloadText.escapedLine(record.summary) + " conn=\(record.connection)"
    }

    /// `curl[1234] 127.0.0.1:50412 → 127.0.0.1:8443 client conn=7`
    func connectionLine(_ connection: Connection) -> String {
        PayloadText.escapedName(connection.comm) + "[\(connection.pid)] \(connection.local) → \(connection.remote) "
            + "\(connection.role.rawValue) conn=\(connection.id)"
            + (connection.origin == .mid ? " (joined mid-connection)" : "")
    }

    static func milliseconds(_ value: Double) -> String {
        let hundredths = Int((value * 100).rounded())
        let fraction = hundredths % 100
        return "\(hundredths / 100)." + (fraction < 10 ? "0" : "") + "\(fraction)"
    }

    public func writeLost(_ lost: LostCounts, timeNanoseconds: UInt64) throws(OutputError) {
        try diagnostics.write(
            "tlstap: ring buffer full at \(timestamps.format(timeNanoseconds)): lost \(lost.records) records "
                + "(\(lost.bytes) bytes of payload); a larger --ring-buffer-mib absorbs longer stalls\n")
        try diagnostics.flush()
    }

    public func flush() throws(OutputError) {
        try output.flush()
    }

    public func finish() throws(OutputError) {
        try output.finish()
        try diagnostics.finish()
    }

    /// `12:00:01.123456789 curl[1234/1234] openssl SSL_write out ssl=0x5581… 78 bytes`
    func header(_ event: DataEvent) -> String {
        var line = timestamps.format(event.timeNanoseconds) + " " + PayloadText.escapedName(event.comm)
        line += "[\(event.pid)/\(event.tid)] "
        line += "\(event.library.name) \(event.function.name) \(event.direction.name) "
        if event.library != .socket { line += "ssl=0x" + String(event.ssl, radix: 16) + " " }
        line += "\(event.length) bytes"
        if event.missingBytes > 0 { line += " (\(event.missingBytes) lost)" }
        if event.lostBefore > 0 { line += " (\(event.lostBefore) bytes lost before this call)" }
        return line + "\n"
    }
}

/// Renderings of payload bytes for terminals: nothing the terminal could
/// interpret (escape sequences, other control bytes) passes through raw.
public enum PayloadText {
    private static let hexDigits = Array("0123456789abcdef".utf8)
    private static let hexCharacters = Array("0123456789abcdef")

    /// A name a process chose for itself (its comm), printable on one line.
    public static func escapedName(_ name: String) -> String {
        var escaped = ""
        for byte in name.utf8 {
            if (0x20...0x7e).contains(byte) {
                escaped.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                escaped += "\\x" + String(hexCharacters[Int(byte >> 4)]) + String(hexCharacters[Int(byte & 0xf)])
            }
        }
        return escaped
    }

    /// A line that may hold text from the wire (a protocol record's
    /// summary), printable on one line: letters of any script are kept;
    /// control and format characters (line breaks, escape sequences,
    /// bidirectional overrides) are shown as `\xNN` of their UTF-8 bytes.
    public static func escapedLine(_ line: String) -> String {
        var escaped = ""
        for scalar in line.unicodeScalars {
            switch scalar.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .privateUse, .unassigned:
                for byte in String(scalar).utf8 {
                    escaped += "\\x" + String(hexCharacters[Int(byte >> 4)]) + String(hexCharacters[Int(byte & 0xf)])
                }
            default:
                escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }

    /// Appends the payload as escaped text, ending with a line break.
    public static func appendEscaped(_ payload: [UInt8], to text: inout String) {
        var bytes: [UInt8] = []
        appendEscaped(payload, to: &bytes)
        text += String(decoding: bytes, as: UTF8.self)
    }

    /// Appends the payload's escaped text as UTF-8, ending with a line break.
    public static func appendEscaped(_ payload: [UInt8], to bytes: inout [UInt8]) {
        bytes.reserveCapacity(bytes.count + payload.count + 16)
        var index = 0
        while index < payload.count {
            let byte = payload[index]
            switch byte {
            case UInt8(ascii: "\r") where index + 1 < payload.count && payload[index + 1] == UInt8(ascii: "\n"):
                break  // CRLF shows as a line break; hex shows the exact bytes
            case UInt8(ascii: "\n"), UInt8(ascii: "\t"), 0x20...0x7e:
                bytes.append(byte)
            case UInt8(ascii: "\r"):
                bytes.append(UInt8(ascii: "\\"))
                bytes.append(UInt8(ascii: "r"))
            default:
                bytes.append(UInt8(ascii: "\\"))
                bytes.append(UInt8(ascii: "x"))
                bytes.append(hexDigits[Int(byte >> 4)])
                bytes.append(hexDigits[Int(byte & 0xf)])
            }
            index += 1
        }
        if payload.isEmpty || bytes.last != UInt8(ascii: "\n") { bytes.append(UInt8(ascii: "\n")) }
    }

    /// Appends a hex dump: `0000  47 45 54 20 …  |GET …|`, 16 bytes a line.
    public static func appendHexDump(_ payload: [UInt8], to text: inout String) {
        var bytes: [UInt8] = []
        appendHexDump(payload, to: &bytes)
        text += String(decoding: bytes, as: UTF8.self)
    }

    /// Appends a hex dump's UTF-8: 79 bytes a line of 16.
    public static func appendHexDump(_ payload: [UInt8], to bytes: inout [UInt8]) {
        bytes.reserveCapacity(bytes.count + (payload.count + 15) / 16 * 79)
        for lineStart in stride(from: 0, to: payload.count, by: 16) {
            let line = payload[lineStart..<min(lineStart + 16, payload.count)]
            for shift in stride(from: 28, through: 0, by: -4) { bytes.append(hexDigits[(lineStart >> shift) & 0xf]) }
            bytes.append(0x20)
            bytes.append(0x20)
            for position in 0..<16 {
                if position == 8 { bytes.append(0x20) }
                if position < line.count {
                    let byte = line[lineStart + position]
                    bytes.append(hexDigits[Int(byte >> 4)])
                    bytes.append(hexDigits[Int(byte & 0xf)])
                } else {
                    bytes.append(0x20)
                    bytes.append(0x20)
                }
                bytes.append(0x20)
            }
            bytes.append(0x20)
            bytes.append(UInt8(ascii: "|"))
            for byte in line { bytes.append((0x20...0x7e).contains(byte) ? byte : UInt8(ascii: ".")) }
            bytes.append(UInt8(ascii: "|"))
            bytes.append(UInt8(ascii: "\n"))
        }
    }
}
