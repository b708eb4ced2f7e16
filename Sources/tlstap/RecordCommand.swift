import ArgumentParser
import TLSTapOutput
import TLSTapSession

/// `tlstap record`: save the raw records now, render them later with
/// `tlstap replay`. The least a busy host pays for complete plaintext: the
/// ring buffer's pages go to the file as they lie, and nothing is decoded.
struct RecordCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "record",
        abstract: "Save TLS plaintext to a file, undecoded, for `tlstap replay` (the lightest way to capture).",
        discussion: """
            Takes the same scope as `tlstap trace` (-p, -c, --port, --host, -- COMMAND). Every record goes \
            to FILE as the kernel sent it; `tlstap replay FILE` renders it later in any format, on any machine.
            """
    )

    @Option(
        name: [.short, .long], help: ArgumentHelp("The file to save the capture to (mode 0600).", valueName: "file"))
    var output: String

    @Flag(name: [.short, .long], help: "Log what tlstap attaches to, and libbpf's messages.")
    var verbose = false

    @OptionGroup var scope: TraceScope

    func run() throws {
        let logger = TerminalLogHandler.logger(verbose: verbose)
        try scope.run(logger: logger) { captureScope in
            Capture(scope: captureScope, into: .recording(try RingCaptureFile(path: output)), logger: logger)
        }
    }
}

/// `tlstap replay FILE`: renders a capture `tlstap record` or `--save-raw` saved.
struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Render a capture saved by `tlstap record` (or `--save-raw`) as a live run would have.",
        discussion: "Needs no privileges and no kernel support: it reads only FILE."
    )

    @Argument(help: ArgumentHelp("The saved capture.", valueName: "file"))
    var file: String

    @OptionGroup var output: OutputOptions

    func run() throws {
        let logger = TerminalLogHandler.logger(verbose: output.verbose)
        let sink = try output.makeSink(runsCommand: false)
        let summary: TraceSummary
        do {
            summary = try TraceSession.replay(path: file, sink: sink, http: output.httpLimits, logger: logger)
        } catch let error as ReplayError {
            if let summary = error.summary { FileHandleOutput.standardError(summary.line + "\n") }
            TLSTapCommand.fail(error.description, code: 2)
        }
        FileHandleOutput.standardError(summary.line + "\n")
    }
}
