// Runs a command, traces its TLS plaintext, and prints each HTTP exchange
// and WebSocket message as it completes. As root: tlstap-example curl -s URL
import Logging
import TLSTap

final class Printer: EventSink {
    func write(_ record: any ProtocolRecord) {
        print("\(record.comm)[\(record.pid)] \(record.summary)")
    }
}

var logger = Logger(label: "capture")
logger.logLevel = .warning
let scope = Capture.Scope.command(Array(CommandLine.arguments.dropFirst()))
let outcome = try Capture(scope: scope, into: .sink(Printer()), logger: logger).run()
print("\(outcome.summary.events) calls captured, \(outcome.summary.lost.records) records lost")
