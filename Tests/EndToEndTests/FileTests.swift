import Foundation
import TestSupport
import Testing

extension EndToEnd {
    /// Files people open elsewhere: pcapng for tshark, HAR for HAR readers,
    /// JSON Lines with --write; all 0600, all redactable.
    @Suite struct FileTests {
        /// One curl run over HTTP/1.1 and one over HTTP/2 against nginx, with
        /// every file output at once.
        struct Capture {
            let workspace: URL
            let nginx: Nginx
            let run: (status: Int32, output: [UInt8], standardError: String)
            var pcapng: String { workspace.appendingPathComponent("capture.pcapng").path }
            var har: String { workspace.appendingPathComponent("capture.har").path }
            var jsonl: String { workspace.appendingPathComponent("capture.jsonl").path }

            var raw: String { workspace.appendingPathComponent("capture.tlstapraw").path }

            /// - Parameters:
            ///   - savesRaw: also `--save-raw` to `raw`.
            ///   - nginxConfig: more directives for nginx's server block.
            ///   - moreCommands: shell commands run after the two curls, given the workspace.
            init(
                extraArguments: [String] = [], curlArguments: String = "", savesRaw: Bool = false,
                nginxConfig: String = "", moreCommands: (URL) throws -> String = { _ in "" }
            ) throws {
                workspace = try Harness.makeWorkspace()
                nginx = try Nginx(workspace: workspace, serverConfig: nginxConfig)
                try String(repeating: "0123456789abcdef", count: 64).write(
                    to: workspace.appendingPathComponent("www/one-k.txt"), atomically: true, encoding: .utf8)
                let cert = workspace.appendingPathComponent("cert.pem").path
                let url = "https://localhost:\(nginx.port)/one-k.txt"
                let script =
                    "curl -sS --http1.1 --cacert '\(cert)' \(curlArguments) '\(url)?v=1' -o /dev/null && "
                    + "curl -sS --http2 --cacert '\(cert)' \(curlArguments) '\(url)?v=2' -o /dev/null"
                let more = try moreCommands(workspace)
                let fullScript = more.isEmpty ? script : script + " && " + more
                run = try Harness.run(
                    [
                        "--format", "json", "--pcapng", workspace.appendingPathComponent("capture.pcapng").path,
                        "--har", workspace.appendingPathComponent("capture.har").path,
                        "--write", workspace.appendingPathComponent("capture.jsonl").path,
                    ]
                        + (savesRaw ? ["--save-raw", workspace.appendingPathComponent("capture.tlstapraw").path] : [])
                        + extraArguments + ["--", "/bin/sh", "-c", fullScript])
            }

            func close() {
                nginx.stop()
                try? FileManager.default.removeItem(at: workspace)
            }
        }

        @Test func pcapngIsDissectedByTsharkWithByteIdenticalStreams() throws {
            let capture = try Capture()
            defer { capture.close() }
            #expect(capture.run.status == 0, "\(capture.run.standardError)")
            // No "Decode As": HTTP shows its server port as 80, and the real one in the comments.
            let http1 = try runProgram([
                "/usr/bin/tshark", "-r", capture.pcapng, "-Y", "http",
                "-T", "fields", "-e", "http.request.uri", "-e", "http.response.code",
            ])
            #expect(
                http1.standardOutput.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
                    == ["/one-k.txt?v=1", "200"], "\(http1.standardError)")
            let http2 = try runProgram([
                "/usr/bin/tshark", "-r", capture.pcapng, "-Y", "http2.type == 1",
                "-T", "fields", "-e", "http2.header.value",
            ])
            let h2Text = http2.standardOutput
            #expect(h2Text.contains("/one-k.txt?v=2"), "\(h2Text)\(http2.standardError)")
            #expect(h2Text.contains("200"))
            let comments = try runProgram([
                "/usr/bin/tshark", "-r", capture.pcapng, "-Y", "tcp.flags.syn == 1 && tcp.flags.ack == 0",
                "-T", "fields", "-e", "tcp.dstport", "-e", "frame.comment",
            ])
            let synLines = comments.standardOutput.split(separator: "\n")
            #expect(synLines.count == 2)
            #expect(
                synLines.allSatisfy {
                    $0.hasPrefix("80\t") && $0.contains(" server_port=\(capture.nginx.port) (shown as 80, ")
                }, "\(comments.standardOutput)")

            // tshark's reassembled streams equal the bytes curl wrote and read.
            let events = try Harness.dataEvents(Array(try Data(contentsOf: URL(fileURLWithPath: capture.jsonl))))
            for (index, connection) in Set(events.compactMap(\.connection)).sorted().enumerated() {
                let follow = try runProgram([
                    "/usr/bin/tshark", "-r", capture.pcapng, "-q", "-z", "follow,tcp,raw,\(index)",
                ])
                let (sent, received) = Self.followedStreams(follow.standardOutput)
                let ours = events.filter { $0.connection == connection }
                #expect(sent == ours.joined(direction: "out"), "stream \(index), client to server")
                #expect(received == ours.joined(direction: "in"), "stream \(index), server to client")
            }
        }

        /// `tshark -z follow,tcp,raw` prints hex lines; server-to-client lines are indented.
        static func followedStreams(_ text: String) -> (sent: [UInt8], received: [UInt8]) {
            var sent: [UInt8] = []
            var received: [UInt8] = []
            var inBody = false
            for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
                if line.hasPrefix("Node 1:") {
                    inBody = true
                    continue
                }
                if line.hasPrefix("====") { if inBody { break } else { continue } }
                guard inBody, !line.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
                let hex = line.trimmingCharacters(in: .whitespaces)
                let bytes = stride(from: 0, to: hex.count - 1, by: 2).compactMap { offset -> UInt8? in
                    let start = hex.index(hex.startIndex, offsetBy: offset)
                    return UInt8(hex[start..<hex.index(start, offsetBy: 2)], radix: 16)
                }
                if line.hasPrefix("\t") { received += bytes } else { sent += bytes }
            }
            return (sent, received)
        }

        @Test func harIsReadBackByHaralyzerFieldByField() throws {
            let capture = try Capture(curlArguments: "-H 'Cookie: flavour=oat; size=large'")
            defer { capture.close() }
            #expect(capture.run.status == 0, "\(capture.run.standardError)")
            let reader = Harness.packageRoot.appendingPathComponent("Tests/EndToEndTests/Peers/read_har.py").path
            let read = try runProgram(["/usr/bin/env", "python3", reader, capture.har])
            #expect(read.status == 0, "\(read.standardError)")
            let lines = read.standardOutput.split(separator: "\n")
            let objects = try lines.map {
                try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
            }
            #expect((objects.first?["creator"] as? [String: Any])?["name"] as? String == "tlstap")
            let entries = Array(objects.dropFirst())
            #expect(entries.count == 2)
            let base = "https://localhost:\(capture.nginx.port)/one-k.txt"
            #expect(entries.map { $0["url"] as? String } == [base + "?v=1", base + "?v=2"])
            #expect(entries.map { $0["httpVersion"] as? String } == ["HTTP/1.1", "HTTP/2"])
            #expect(entries.allSatisfy { $0["method"] as? String == "GET" && $0["status"] as? Int == 200 })
            #expect(entries.allSatisfy { $0["bodySize"] as? Int == 1024 && $0["contentSize"] as? Int == 1024 })
            #expect(entries.allSatisfy { $0["text"] as? String == String(repeating: "0123456789abcdef", count: 64) })
            #expect(entries.allSatisfy { $0["comm"] as? String == "curl" })
            #expect(entries.map { ($0["query"] as? [String: String])?["v"] } == ["1", "2"])
            #expect(entries.allSatisfy { ($0["cookies"] as? [String: String]) == ["flavour": "oat", "size": "large"] })
            #expect(
                (entries.first?["requestHeaders"] as? [String: String])?["host"] == "localhost:\(capture.nginx.port)")
        }

        /// `--redact` over HTTP/1.1 and HTTP/2 (nginx) and gRPC (python3-h2):
        /// a request's Authorization, Cookie and a `--redact-header`, and a
        /// response's Set-Cookie, neither as sent nor Huffman-coded in any
        /// file of the run, and the pcapng still decodes in tshark, every
        /// header there with its value hidden at its length.
        @Test func redactLeavesNoCredentialInAnyOutput() throws {
            let secret = "s3cr3t-Token-98765"
            let sent = ["Bearer \(secret)", "id=\(secret)", secret, "session=\(secret)", "grpc-\(secret)"]
            var grpc: GRPCPeer?
            defer { grpc?.stop() }
            let capture = try Capture(
                extraArguments: ["--redact", "--redact-header", "X-Private"],
                curlArguments:
                    "-H 'Authorization: Bearer \(secret)' -H 'Cookie: id=\(secret)' -H 'X-Private: \(secret)'",
                nginxConfig: "add_header Set-Cookie 'session=\(secret)' always;",
                moreCommands: { workspace in
                    let peer = try GRPCPeer(workspace: workspace, responseHeaders: ["set-cookie:grpc-\(secret)"])
                    grpc = peer
                    let request = workspace.appendingPathComponent("request.bin")
                    try Data([0, 0, 0, 0, 3, 0x61, 0x62, 0x63]).write(to: request)
                    return "curl -sS --http2 --cacert '\(workspace.path)/cert.pem' -H 'content-type: application/grpc' "
                        + "-H 'x-private: \(secret)' -H 'authorization: Bearer \(secret)' --data-binary @\(request.path) "
                        + "-o /dev/null https://localhost:\(peer.port)/helloworld.Greeter/SayHello"
                })
            defer { capture.close() }
            #expect(capture.run.status == 0, "\(capture.run.standardError)")
            // Each value as sent and as HPACK's Huffman code (python3-hpack's encoder) writes it.
            let forms = try Self.secretForms(sent)
            for (name, bytes) in [
                ("stdout", capture.run.output),
                ("--write", Array(try Data(contentsOf: URL(fileURLWithPath: capture.jsonl)))),
                ("--pcapng", Array(try Data(contentsOf: URL(fileURLWithPath: capture.pcapng)))),
                ("--har", Array(try Data(contentsOf: URL(fileURLWithPath: capture.har)))),
            ] {
                #expect(!bytes.isEmpty, "\(name) is empty")
                try Self.expectNone(of: forms, in: bytes, name)
            }
            let har = try String(contentsOfFile: capture.har, encoding: .utf8)
            #expect(har.contains("\"name\":\"Authorization\",\"value\":\"[REDACTED]\""))
            #expect(har.contains("\"name\":\"X-Private\",\"value\":\"[REDACTED]\""))
            #expect(har.contains("\"name\":\"set-cookie\",\"value\":\"[REDACTED]\""))

            // tshark decodes every HTTP/2 header block; the hidden values keep their names and lengths.
            let headers = try runProgram([
                "/usr/bin/tshark", "-r", capture.pcapng, "-Y", "http2.type == 1", "-T", "fields",
                "-E", "occurrence=a", "-E", "aggregator=|", "-e", "http2.header.name", "-e", "http2.header.value",
            ])
            var seen: [String: [String]] = [:]
            for line in headers.standardOutput.split(separator: "\n") {
                let columns = line.split(separator: "\t", omittingEmptySubsequences: false)
                guard columns.count == 2 else { continue }
                for (name, value) in zip(columns[0].split(separator: "|"), columns[1].split(separator: "|")) {
                    seen[String(name), default: []].append(String(value))
                }
            }
            #expect(
                seen[":path"]?.contains("/one-k.txt?v=2") == true, "\(headers.standardOutput)\(headers.standardError)")
            #expect(seen[":path"]?.contains("/helloworld.Greeter/SayHello") == true)
            #expect(seen["grpc-status"] == ["0"])
            let grpcCalls = try runProgram([
                "/usr/bin/tshark", "-r", capture.pcapng, "-Y", "grpc", "-T", "fields", "-e", "grpc.message_length",
            ])
            #expect(grpcCalls.standardOutput.split(separator: "\n") == ["3", "3"], "\(grpcCalls.standardOutput)")
            for (name, value) in [
                ("authorization", sent[0]), ("cookie", sent[1]), ("x-private", sent[2]), ("set-cookie", sent[3]),
            ] {
                let values = seen[name] ?? []
                #expect(!values.isEmpty, "no \(name) in tshark's headers")
                #expect(
                    values.allSatisfy { $0.count == value.count || $0.count == sent[4].count }, "\(name): \(values)")
                #expect(values.allSatisfy { !$0.contains(secret) && $0.contains("***") }, "\(name): \(values)")
            }
        }

        /// Each value as sent and as HPACK's Huffman code writes it (python3-hpack's encoder).
        static func secretForms(_ values: [String]) throws -> [[UInt8]] {
            let coder =
                "import hpack.huffman as h, hpack.huffman_constants as c, sys\n"
                + "for v in sys.argv[1:]: print(h.HuffmanEncoder(c.REQUEST_CODES, c.REQUEST_CODES_LENGTH).encode(v.encode()).hex())"
            let coded = try runProgram([Harness.python, "-c", coder] + values).standardOutput.split(separator: "\n")
            #expect(coded.count == values.count)
            return values.map { Array($0.utf8) }
                + coded.map { hex in
                    stride(from: 0, to: hex.count, by: 2).map { UInt8(hex.dropFirst($0).prefix(2), radix: 16)! }
                }
        }

        /// Expects none of `forms` in an output's bytes, nor, for JSON Lines,
        /// in its data events' base64-coded payloads (each direction of each
        /// connection joined, so a value split between calls is found too).
        static func expectNone(of forms: [[UInt8]], in bytes: [UInt8], _ name: String) throws {
            for form in forms { #expect(bytes.firstRange(of: form) == nil, "\(form) appears in \(name)") }
            guard name == "stdout" || name == "--write" else { return }  // JSON Lines
            let events = try Harness.dataEvents(bytes)
            for connection in Set(events.map { $0.connection ?? -1 }) {
                let ours = events.filter { ($0.connection ?? -1) == connection }
                for direction in ["in", "out"] {
                    let stream = ours.joined(direction: direction)
                    for form in forms {
                        #expect(stream.firstRange(of: form) == nil, "\(form) appears in \(name)'s data, \(direction)")
                    }
                }
            }
        }

        @Test func filesArePrivateAndAnUnwritablePathFailsClearly() throws {
            let capture = try Capture()
            defer { capture.close() }
            for path in [capture.pcapng, capture.har, capture.jsonl] {
                let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
                #expect(mode == 0o600, "\(path)")
            }
            let readOnly = capture.workspace.appendingPathComponent("read-only")
            try FileManager.default.createDirectory(at: readOnly, withIntermediateDirectories: true)
            #expect(try runProgram(["/bin/mount", "-t", "tmpfs", "-o", "ro", "tmpfs", readOnly.path]).status == 0)
            defer { _ = try? runProgram(["/bin/umount", readOnly.path]) }
            let target = readOnly.appendingPathComponent("out.har").path
            let run = try Harness.run(["--har", target, "--", "/bin/true"])
            #expect(run.status == 2)
            #expect(run.standardError == "tlstap: cannot create \(target): Read-only file system\n")
        }
    }
}
