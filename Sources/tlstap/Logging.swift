import Glibc
import Logging

/// Log lines on stderr as `tlstap: warning: …`, for a terminal user rather
/// than a log collector.
struct TerminalLogHandler: LogHandler {
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        FileHandleOutput.standardError("tlstap: \(event.level): \(event.message)\n")
    }

    /// The logger for a run: warnings and worse, or everything with --verbose.
    static func logger(verbose: Bool) -> Logger {
        Logger(label: "tlstap") { _ in TerminalLogHandler(logLevel: verbose ? .debug : .warning) }
    }
}
