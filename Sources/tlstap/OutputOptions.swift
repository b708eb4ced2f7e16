import ArgumentParser
import Glibc
import TLSTapCore
import TLSTapHTTP
import TLSTapOutput

extension OutputFormat: ExpressibleByArgument {}
extension EventKind: ExpressibleByArgument {}

/// Options shared by every command that renders events.
struct OutputOptions: ParsableArguments {
    @Option(
        name: [.short, .long], help: "Output format: text, hex, json (JSON Lines) or http (one line per exchange).")
    var format: OutputFormat = .text

    @Option(help: "Only these records, on stdout and in --write: data, conn, http, websocket, lost (repeatable).")
    var events: [EventKind] = []

    @Flag(
        name: [.short, .long],
        help: "Nothing on stdout: only the files asked for (--write, --pcapng, --har) and the summary.")
    var quiet = false

    @Flag(help: "Keep HTTP bodies in the http records (base64, capped by --max-body).")
    var bodies = false

    @Option(
        name: .customLong("max-body"), parsing: .unconditional,
        help: "Bytes of each body to keep with --bodies, and of each WebSocket message; the rest is counted.")
    var maxBody: Int = 1 << 20

    @Option(
        name: .customLong("write"), help: ArgumentHelp("Also write JSON Lines to FILE (mode 0600).", valueName: "file"))
    var jsonFile: String?

    @Option(
        help: ArgumentHelp(
            "Write the decrypted streams as pcapng to FILE (- for stdout, instead of --format).",
            valueName: "file"))
    var pcapng: String?

    @Option(help: ArgumentHelp("Write HTTP exchanges as HAR 1.2 to FILE (mode 0600).", valueName: "file"))
    var har: String?

    @Flag(
        help: """
            Hide credential header values (Authorization, Cookie, Set-Cookie, X-Api-Key, …) in every output: \
            http records and HAR, and payloads in text, hex, JSON and pcapng, HTTP/1 and HTTP/2 (HPACK) alike, \
            at the same length. Not with --save-raw.
            """)
    var redact = false

    @Option(
        name: .customLong("redact-header"),
        help: ArgumentHelp("Also redact this header (repeatable).", valueName: "name"))
    var redactHeaders: [String] = []

    @Flag(name: [.short, .long], help: "Log what tlstap attaches to, and libbpf's messages.")
    var verbose = false

    func validate() throws {
        guard maxBody >= 0 else { throw ValidationError("--max-body must be 0 or more bytes") }
        if quiet && pcapng == "-" {
            throw ValidationError("--quiet and --pcapng - cannot be combined: both are about stdout")
        }
    }

    /// The limits of protocol analysis (HTTP, WebSocket), or nil when no
    /// output shows its records.
    var httpLimits: HTTPLimits? {
        let shown =
            (events.isEmpty || events.contains { ![.data, .conn, .lost].contains($0) }) && pcapng != "-" && !quiet
        guard shown || jsonFile != nil || har != nil else { return nil }
        return HTTPLimits(maxBodyBytes: maxBody, captureBodies: bodies || har != nil)
    }

    /// Every sink the options ask for. Files are created here, so a bad
    /// path fails before any probe is attached.
    /// - Parameter runsCommand: tlstap runs a command, which inherits its stdout.
    func makeSink(runsCommand: Bool) throws(OutputError) -> EventSink {
        let diagnostics = OutputFile(descriptor: 2, name: "stderr", ownsDescriptor: false)
        let standardOutput = OutputFile.standardOutput(sharedWithCommand: runsCommand)
        var sinks: [EventSink] = []
        let narrowed = { (sink: EventSink) in events.isEmpty ? sink : FilteringSink(sink, kinds: Set(events)) }
        if pcapng == "-" {
            sinks.append(try PcapngSink(file: standardOutput, version: TLSTapVersion.current))
        } else if !quiet {
            let shown = format.makeSink(output: standardOutput, diagnostics: diagnostics, timestamps: .local())
            sinks.append(narrowed(shown))
        }
        if let jsonFile { sinks.append(narrowed(JSONLinesSink(output: try OutputFile.create(path: jsonFile)))) }
        if let pcapng, pcapng != "-" {
            sinks.append(try PcapngSink(file: try OutputFile.create(path: pcapng), version: TLSTapVersion.current))
        }
        if let har { sinks.append(try HARSink(file: try OutputFile.create(path: har), version: TLSTapVersion.current)) }
        let sink = sinks.count == 1 ? sinks[0] : TeeSink(sinks)  // none at all: --quiet without files
        return redacts ? RedactingSink(sink, extraHeaders: redactHeaders) : sink
    }

    /// Whether events are shown on a terminal: each line then goes out as
    /// soon as it is rendered, between the traced command's own.
    var showsOnTerminal: Bool { !quiet && pcapng != "-" && isatty(1) != 0 }

    /// Whether header values are redacted (`--redact` or `--redact-header`).
    var redacts: Bool { redact || !redactHeaders.isEmpty }
}
