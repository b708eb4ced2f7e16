import ArgumentParser
import TLSTapHTTP
import TLSTapOutput

extension OutputFormat: ExpressibleByArgument {}
extension EventKind: ExpressibleByArgument {}

/// Options shared by every command that renders events.
struct OutputOptions: ParsableArguments {
    @Option(name: [.short, .long], help: "Output format: text, hex, json (JSON Lines) or http (one line per exchange).")
    var format: OutputFormat = .text

    @Option(help: "With --format json, only these records: data, conn, http, lost (repeatable).")
    var events: [EventKind] = []

    @Flag(help: "Keep HTTP bodies in the http records (base64, capped by --max-body).")
    var bodies = false

    @Option(name: .customLong("max-body"), help: "Bytes of each body to keep with --bodies; the rest is counted.")
    var maxBody: Int = 1 << 20

    @Flag(name: [.short, .long], help: "Log what tlstap attaches to, and libbpf's messages.")
    var verbose = false

    func validate() throws {
        guard maxBody >= 0 else { throw ValidationError("--max-body must be 0 or more bytes") }
        if !events.isEmpty && format != .json { throw ValidationError("--events goes with --format json") }
    }

    /// The HTTP parsing limits, or nil when the format shows no exchanges.
    var httpLimits: HTTPLimits? {
        guard format.showsExchanges && (events.isEmpty || events.contains(.http)) else { return nil }
        return HTTPLimits(maxBodyBytes: maxBody, captureBodies: bodies)
    }

    func makeSink() -> EventSink {
        let diagnostics = OutputFile(descriptor: 2, name: "stderr", ownsDescriptor: false)
        let sink = format.makeSink(output: .standardOutput(), diagnostics: diagnostics, timestamps: .local())
        return events.isEmpty ? sink : FilteringSink(sink, kinds: Set(events))
    }
}
