import CTLSTapBPF
import Logging
import Synchronization

/// Routes libbpf's own log into swift-log, so its messages carry tlstap's
/// formatting and level instead of going straight to stderr.
///
/// A verifier log (many KiB, one message) goes out at debug level, shown
/// with --verbose; the line it ends on, the kernel's reason, is kept for the
/// load error (`takeRejection`).
enum LibbpfLog {
    private static let logger = Mutex<Logger?>(nil)
    private static let rejection = Mutex<String?>(nil)

    /// Sends libbpf's messages to `logger` from now on.
    static func route(to newLogger: Logger) {
        logger.withLock { $0 = newLogger }
        CTLSTapBPF_set_log_handler { level, message in
            guard let message else { return }
            let text = String(cString: message)
            let verifierLog = text.contains("-- BEGIN PROG LOAD LOG --")
            if verifierLog { LibbpfLog.rejection.withLock { $0 = LibbpfLog.reason(in: text) } }
            LibbpfLog.logger.withLock { logger in
                // libbpf: 0 warning, 1 info, 2 debug (its object and relocation dump: trace).
                let swiftLevel: Logger.Level =
                    verifierLog ? .debug : level == 0 ? .warning : (level == 1 ? .info : .trace)
                logger?.log(level: swiftLevel, "\(text)")
            }
        }
    }

    /// The program the kernel last refused and why, once: "PROGRAM: REASON".
    static func takeRejection() -> String? {
        rejection.withLock { found in
            defer { found = nil }
            return found
        }
    }

    /// "PROGRAM: REASON" from a verifier log message (`prog 'NAME': -- BEGIN
    /// PROG LOAD LOG --`, the log, `-- END PROG LOAD LOG --`): the last line
    /// of the log before the verifier's statistics.
    static func reason(in text: String) -> String? {
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: " \t") }
        let program = lines.first.flatMap { first in
            first.split(separator: "'", omittingEmptySubsequences: false).dropFirst().first.map(String.init)
        }
        let statistics = ["-- END PROG LOAD LOG --", "processed ", "verification time", "stack depth", "max_states"]
        let last = lines.dropFirst().last { line in
            !line.isEmpty && !statistics.contains { line.hasPrefix($0) }
        }
        guard let last else { return nil }
        return program.map { "\($0): \(last)" } ?? String(last)
    }
}
