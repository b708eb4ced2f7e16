import TLSTapCore
import TLSTapHTTP

/// `--format http`: one line per exchange,
/// `12:00:01.234567 curl[1234] GET https://localhost:8443/api/items → 200 OK  2.10 ms  req 0 B  resp 512 B`,
/// coloured by status class on a terminal, plain when piped; and one line
/// per record of the protocols HTTP switches to (WebSocket messages).
public final class HTTPLineSink: EventSink {
    private let output: OutputFile
    private let diagnostics: OutputFile
    private let timestamps: TimestampStyle
    private let colors: Bool

    public init(output: OutputFile, diagnostics: OutputFile, timestamps: TimestampStyle, colors: Bool) {
        self.output = output
        self.diagnostics = diagnostics
        self.timestamps = timestamps
        self.colors = colors
    }

    public func write(_ record: any ProtocolRecord) throws(OutputError) {
        guard let exchange = record as? HTTPExchange else {
            return try output.write(TextSink.line(for: record, time: time(record.startNanoseconds)) + "\n")
        }
        try output.write(line(for: exchange) + "\n")
    }

    public func writeLost(_ lost: LostCounts, timeNanoseconds: UInt64) throws(OutputError) {
        try diagnostics.write(
            "tlstap: ring buffer full: lost \(lost.records) records (\(lost.bytes) bytes of payload); "
                + "a larger --ring-buffer-mib absorbs longer stalls\n")
        try diagnostics.flush()
    }

    public func flush() throws(OutputError) {
        try output.flush()
    }

    public func finish() throws(OutputError) {
        try output.finish()
        try diagnostics.finish()
    }

    /// A line's time, to the microsecond.
    private func time(_ nanoseconds: UInt64) -> String {
        String(timestamps.format(nanoseconds).dropLast(3))
    }

    func line(for exchange: HTTPExchange) -> String {
        let time = time(exchange.startNanoseconds)
        let url = exchange.url
        var status = exchange.status.map { "\($0)" } ?? "---"
        if let reason = exchange.reason, !reason.isEmpty { status += " " + reason }
        if let grpc = exchange.grpc, let code = grpc.status { status += " grpc-status \(code)" }
        if colors, let code = exchange.status {
            let color = code >= 500 ? "31" : code >= 400 ? "33" : code >= 300 ? "36" : "32"
            status = "\u{1b}[\(color)m\(status)\u{1b}[0m"
        }
        var line =
            "\(time) \(PayloadText.escapedName(exchange.comm))[\(exchange.pid)] "
            + PayloadText.escapedName(exchange.method) + " " + PayloadText.escapedName(url) + " → " + status
        // "? ms": the request was not captured, so its time is not known.
        line += "  " + (exchange.latencyNanoseconds.map { TextSink.milliseconds(Double($0) / 1e6) } ?? "?") + " ms"
        line += "  req \(exchange.requestBodyLength) B  resp \(exchange.responseBodyLength) B"
        if exchange.protocolVersion == "HTTP/2", let stream = exchange.stream { line += "  h2 stream \(stream)" }
        if let note = exchange.noteText { line += "  (\(note))" }
        return line
    }
}
