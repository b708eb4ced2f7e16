import ArgumentParser
import TLSTapOutput

extension OutputFormat: ExpressibleByArgument {}

/// Options shared by every command that renders events.
struct OutputOptions: ParsableArguments {
    @Option(name: [.short, .long], help: "Output format: text, hex or json (JSON Lines).")
    var format: OutputFormat = .text

    @Flag(name: [.short, .long], help: "Log what tlstap attaches to, and libbpf's messages.")
    var verbose = false

    func makeSink() -> EventSink {
        let diagnostics = OutputFile(descriptor: 2, name: "stderr", ownsDescriptor: false)
        return format.makeSink(output: .standardOutput(), diagnostics: diagnostics, timestamps: .local())
    }
}
