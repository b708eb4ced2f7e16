import Foundation
import TestSupport
import Testing

extension EndToEnd {
    /// WebSocket over TLS from a real client and server: Python's websockets
    /// in one asyncio process (`Peers/websocket_peer.py`), traced with `--`,
    /// so each message is seen from both ends of its connection.
    @Suite struct WebSocketTests {
        /// What each end's connection carries, in order: (from, opcode,
        /// payload as text or bytes, frames).
        static let conversation: [(from: String, opcode: String, payload: [UInt8], frames: Int)] = [
            ("client", "text", Array("hello tlstap".utf8), 1),
            ("server", "text", Array("HELLO TLSTAP".utf8), 1),
            ("client", "binary", Array(0...255), 1),
            ("server", "binary", Array((0...255).reversed()), 1),
            // websockets sends an iterator's pieces as frames, then an empty final one.
            ("client", "text", Array("part one, part two".utf8), 3),
            ("server", "text", Array("PART ONE, PART TWO".utf8), 1),
            ("client", "ping", Array("are you there".utf8), 1),
            ("server", "pong", Array("are you there".utf8), 1),
            ("client", "close", [0x03, 0xe8] + Array("done".utf8), 1),
            ("server", "close", [0x03, 0xe8] + Array("done".utf8), 1),
        ]

        /// With permessage-deflate (the library's default: messages
        /// compressed, the window kept from message to message) and without.
        @Test(arguments: [true, false])
        func messagesOfARealClientAndServerAreShownInJSONAndText(compressed: Bool) throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let jsonl = workspace.appendingPathComponent("ws.jsonl").path
            let peer = Harness.packageRoot.appendingPathComponent("Tests/EndToEndTests/Peers/websocket_peer.py").path
            let run = try Harness.run(
                [
                    "--format", "text", "--write", jsonl, "--events", "http", "--events", "websocket", "--",
                    Harness.python, peer, workspace.appendingPathComponent("cert.pem").path,
                    workspace.appendingPathComponent("key.pem").path,
                ] + (compressed ? [] : ["--no-compression"]))
            #expect(run.status == 0, "\(run.standardError)")
            let records = try Harness.records(Array(try Data(contentsOf: URL(fileURLWithPath: jsonl))))
            let upgrades = records.filter { $0["event"] as? String == "http" }
            #expect(upgrades.count == 2, "the upgrade, seen by the client and by the server")
            #expect(upgrades.allSatisfy { $0["path"] as? String == "/chat" && $0["status"] as? Int == 101 })
            #expect(upgrades.allSatisfy { $0["note"] as? String == "upgrade" })
            let messages = records.filter { $0["event"] as? String == "websocket" }
            let connections = Set(messages.compactMap { $0["conn"] as? Int })
            #expect(connections.count == 2)
            #expect(Set(upgrades.compactMap { $0["conn"] as? Int }) == connections)
            for connection in connections.sorted() {
                let seen = messages.filter { $0["conn"] as? Int == connection }
                #expect(seen.map { $0["from"] as? String ?? "?" } == Self.conversation.map(\.from))
                #expect(seen.map { $0["opcode"] as? String ?? "?" } == Self.conversation.map(\.opcode))
                #expect(seen.map { $0["frames"] as? Int ?? 0 } == Self.conversation.map(\.frames))
                #expect(seen.map { Self.payload(of: $0) } == Self.conversation.map(\.payload))
                #expect(seen.allSatisfy { $0["fin"] as? Bool == true && $0["note"] == nil })
                #expect(seen.allSatisfy { ($0["masked"] as? Bool) == ($0["from"] as? String == "client") })
                let data = seen.filter { ["text", "binary"].contains($0["opcode"] as? String) }
                #expect(data.allSatisfy { ($0["compressed"] as? String == "permessage-deflate") == compressed })
                #expect(
                    seen.filter { $0["opcode"] as? String == "close" }.map { $0["close_code"] as? Int } == [1000, 1000])
            }
            let text = String(decoding: run.output, as: UTF8.self)
            let hello = "websocket client → server text \"hello tlstap\" (12 B"
            #expect(text.components(separatedBy: hello).count - 1 == 2, "\(text)")
            let close = "websocket server → client close 1000 \"done\" (6 B"
            #expect(text.components(separatedBy: close).count - 1 == 2, "\(text)")
        }

        /// A message's payload as sent: its text, its base64 bytes, or a
        /// close frame's code and reason.
        static func payload(of record: [String: Any]) -> [UInt8] {
            if let text = record["text"] as? String { return Array(text.utf8) }
            if let code = record["close_code"] as? Int {
                return [UInt8(code >> 8), UInt8(code & 0xff)] + Array((record["close_reason"] as? String ?? "").utf8)
            }
            return (record["payload_base64"] as? String).flatMap { Data(base64Encoded: $0) }.map { Array($0) } ?? []
        }
    }
}
