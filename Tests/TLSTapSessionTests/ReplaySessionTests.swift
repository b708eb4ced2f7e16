import Foundation
import Logging
import TLSTapCore
import TLSTapHTTP
import TLSTapOutput
import TLSTapSession
import TestSupport
import Testing

/// The whole pipeline, without root: a committed capture (Python's urllib
/// posting 40,000 random bytes to a Python HTTPS server, which answers with
/// their SHA-256) replayed through `TraceSession` into real sinks, as
/// `tlstap replay` does.
@Suite struct ReplaySessionTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("TLSTapCoreTests/Fixtures/python-post-40000.tlstapraw").path

    static let logger = Logger(label: "tlstap-test") { _ in SwiftLogNoOpLogHandler() }

    /// A directory of its own for a test's files.
    static func workspace() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tlstap-session-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    static func jsonLines(_ path: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { line in
            try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        }
    }

    @Test func aReplayedCaptureBecomesEveryRecordTheLiveRunShowed() throws {
        let directory = try Self.workspace()
        defer { try? FileManager.default.removeItem(at: directory) }
        let json = directory.appendingPathComponent("out.jsonl").path
        let har = directory.appendingPathComponent("out.har").path
        let sink = TeeSink([
            JSONLinesSink(output: try OutputFile.create(path: json)),
            try HARSink(file: try OutputFile.create(path: har), version: "test"),
        ])
        let summary = try TraceSession.replay(
            path: Self.fixture, sink: sink, http: HTTPLimits(captureBodies: true), logger: Self.logger)
        #expect(summary.events == 4)
        #expect(summary.payloadBytes == 189 + 40_000 + 138 + 69)
        #expect(summary.exchanges == 1)
        #expect(summary.lost == .zero)
        #expect(summary.eventsWithoutConnection == 0 && summary.malformedRecords == 0)

        let records = try Self.jsonLines(json)
        #expect(records.map { $0["event"] as? String } == ["open", "data", "data", "data", "data", "http", "close"])
        #expect(Set(records.compactMap { $0["conn"] as? Int }) == [1])
        let data = records.filter { $0["event"] as? String == "data" }
        #expect(data.map { $0["len"] as? Int } == [189, 40_000, 138, 69])
        #expect(data.map { $0["dir"] as? String } == ["out", "out", "in", "in"])
        // The server hashed the body it received; the capture holds the same bytes.
        let body = try #require(Data(base64Encoded: data[1]["data"] as? String ?? ""))
        let answer = data[2...].compactMap { Data(base64Encoded: $0["data"] as? String ?? "") }.reduce(Data(), +)
        #expect(String(decoding: answer, as: UTF8.self).hasSuffix("got \(sha256Hex(Array(body)))\n"))
        let exchange = records[5]
        #expect(exchange["method"] as? String == "POST")
        #expect(exchange["path"] as? String == "/upload")
        #expect(exchange["status"] as? Int == 200)
        #expect(exchange["req_body_len"] as? Int == 40_000)
        #expect(exchange["req_body"] as? String == data[1]["data"] as? String)
        let close = records[6]
        #expect(close["bytes_out"] as? Int == 40_189 && close["bytes_in"] as? Int == 207)

        let log = try #require(
            JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: har))) as? [String: Any])
        let entries = try #require((log["log"] as? [String: Any])?["entries"] as? [[String: Any]])
        #expect(entries.count == 1)
        let request = try #require(entries.first?["request"] as? [String: Any])
        #expect(request["method"] as? String == "POST")
        #expect(request["url"] as? String == "https://localhost:45807/upload")
    }

    /// The capture's end, cut inside its last record: everything before is
    /// rendered, and the error says where reading stopped.
    @Test func aCutCaptureRendersWhatCameBeforeTheCut() throws {
        let directory = try Self.workspace()
        defer { try? FileManager.default.removeItem(at: directory) }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: Self.fixture))
        let cut = directory.appendingPathComponent("cut.tlstapraw").path
        try bytes.prefix(bytes.count - 10).write(to: URL(fileURLWithPath: cut))
        let json = directory.appendingPathComponent("out.jsonl").path
        do {
            _ = try TraceSession.replay(
                path: cut, sink: JSONLinesSink(output: try OutputFile.create(path: json)), http: HTTPLimits(),
                logger: Self.logger)
            Issue.record("a cut capture replayed without an error")
        } catch let error as ReplayError {
            guard case .truncated = error.reason else {
                Issue.record("\(error.reason)")
                return
            }
            #expect(error.summary?.events == 4)
        }
        let records = try Self.jsonLines(json)
        #expect(records.filter { $0["event"] as? String == "data" }.count == 4)
        // The exchange ends when the capture does, its response complete.
        #expect(records.first { $0["event"] as? String == "http" }?["status"] as? Int == 200)
    }

    /// `--events`: only the kinds asked for reach the output.
    @Test func onlyTheKindsAskedForAreRendered() throws {
        let directory = try Self.workspace()
        defer { try? FileManager.default.removeItem(at: directory) }
        let json = directory.appendingPathComponent("out.jsonl").path
        let sink = FilteringSink(JSONLinesSink(output: try OutputFile.create(path: json)), kinds: [.http, .conn])
        _ = try TraceSession.replay(path: Self.fixture, sink: sink, http: HTTPLimits(), logger: Self.logger)
        #expect(try Self.jsonLines(json).map { $0["event"] as? String } == ["open", "http", "close"])
    }
}
