import ArgumentParser
import TLSTapLoader
import TLSTapSession

/// `tlstap demo`: the README's first command.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run a TLS server and client on loopback and show what tlstap captures from them."
    )

    @OptionGroup var output: OutputOptions

    func run() throws {
        let logger = TerminalLogHandler.logger(verbose: output.verbose)
        try Privileges.requireTracing()
        let sink = try output.makeSink(runsCommand: true)
        let outcome = try Demo(logger: logger).run(sink: sink, http: output.httpLimits) { line in
            FileHandleOutput.standardError(line + "\n")
        }
        FileHandleOutput.standardError(outcome.summary.line + "\n")
        guard outcome.clientStatus == 0 else {
            throw LoaderError("the demo's curl failed with status \(outcome.clientStatus)")
        }
        guard outcome.sawGreeting else {
            throw LoaderError("the demo ran, but tlstap did not capture the server's response")
        }
        FileHandleOutput.standardError("tlstap demo: captured the request and the response in plaintext\n")
    }
}
