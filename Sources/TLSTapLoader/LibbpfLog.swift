import CTLSTapBPF
import Logging
import Synchronization

/// Routes libbpf's own log into swift-log, so its messages carry tlstap's
/// formatting and level instead of going straight to stderr.
enum LibbpfLog {
    private static let logger = Mutex<Logger?>(nil)

    /// Sends libbpf's messages to `logger` from now on.
    static func route(to newLogger: Logger) {
        logger.withLock { $0 = newLogger }
        CTLSTapBPF_set_log_handler { level, message in
            guard let message else { return }
            let text = String(cString: message)
            LibbpfLog.logger.withLock { logger in
                // libbpf: 0 warning, 1 info, 2 debug (its object and relocation dump: trace).
                let swiftLevel: Logger.Level = level == 0 ? .warning : (level == 1 ? .info : .trace)
                logger?.log(level: swiftLevel, "\(text)")
            }
        }
    }
}
