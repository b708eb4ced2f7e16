import ArgumentParser
import Glibc
import TLSTapCore
import TLSTapLoader
import TLSTapOutput

@main
struct TLSTapCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tlstap",
        abstract: "See the plaintext that programs send and receive over TLS, live, with eBPF.",
        discussion: """
            tlstap puts uprobes on the read and write functions of OpenSSL, BoringSSL, GnuTLS, NSS and Go's crypto/tls, and prints the buffers after decryption and before encryption: no proxy, no certificates, no keys. Needs root (or CAP_BPF and CAP_PERFMON).

            Examples:
              tlstap                                trace every process on the host
              tlstap -p 1234 --format json          one process and its children, JSON
              tlstap -- curl https://example.org    run a command and trace it
              tlstap record -o cap.tlstap -p 1234   save the records undecoded
              tlstap replay cap.tlstap              and render them later
              tlstap demo                           a TLS conversation, traced
              tlstap check                          what this host supports
            """,
        version: TLSTapVersion.current,
        subcommands: [TraceCommand.self, RecordCommand.self, ReplayCommand.self, CheckCommand.self, DemoCommand.self],
        defaultSubcommand: TraceCommand.self
    )

    /// Parses, runs, and turns every error into one line and an exit code:
    /// 2 for bad input (flags, PIDs, output paths), 1 when tracing or writing
    /// failed, the command's own status in `-- COMMAND` mode.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let error as LoaderError {
            fail(error.description, code: 1)
        } catch let error as OutputError {
            // A file that cannot be created is bad input (a path); a write that fails later is not.
            if case .openFailed = error { fail(error.description, code: 2) }
            fail(error.description, code: 1)
        } catch {
            if exitCode(for: error) == .validationFailure {
                fail(message(for: error), code: 2)
            }
            exit(withError: error)
        }
    }

    static func fail(_ message: String, code: Int32) -> Never {
        FileHandleOutput.standardError("tlstap: \(message)\n")
        Glibc.exit(code)
    }
}

/// Writes straight to a descriptor, for the few lines outside the sinks.
enum FileHandleOutput {
    static func standardError(_ text: String) {
        var text = text
        text.withUTF8 { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }
}
