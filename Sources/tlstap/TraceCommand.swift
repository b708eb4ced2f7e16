import ArgumentParser
import TLSTapOutput
import TLSTapSession

/// The default command: trace the host, some processes, or a command.
struct TraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Trace TLS plaintext (the default command).",
        discussion: "Runs until Ctrl-C, or in `-- COMMAND` mode until the command and all it started have exited."
    )

    @Option(
        help: ArgumentHelp(
            "Also save the raw ring buffer records to FILE, for `tlstap replay`, bug reports and "
                + "test fixtures.", valueName: "file"))
    var saveRaw: String?

    @OptionGroup var output: OutputOptions

    @OptionGroup var scope: TraceScope

    func validate() throws {
        if saveRaw != nil && output.redacts {
            throw ValidationError(
                "--save-raw keeps every byte, credentials included, so it cannot be combined with --redact; "
                    + "save the raw capture alone and redact when replaying it (tlstap replay --redact)")
        }
    }

    func run() throws {
        let logger = TerminalLogHandler.logger(verbose: output.verbose)
        try scope.run(logger: logger) { captureScope in
            let sink = try output.makeSink(runsCommand: !captureScope.command.isEmpty)
            let destination = Capture.Destination.sink(
                sink, protocols: output.httpLimits, rawLog: try saveRaw.map(OutputFile.create))
            let capture = Capture(scope: captureScope, into: destination, logger: logger)
            capture.flushesEveryPoll = output.showsOnTerminal
            return capture
        }
    }
}
