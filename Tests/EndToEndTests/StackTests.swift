import Foundation
import Testing
import TestSupport

extension EndToEnd {
    /// TLS stacks other than OpenSSL's libssl.
    @Suite struct StackTests {
        /// wget uses GnuTLS: gnutls_record_send/recv, request and response byte-exact.
        @Test func wgetThroughGnuTLSIsCapturedByteExact() throws {
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let (server, port) = try Harness.startPythonServer(in: workspace)
            let output = workspace.appendingPathComponent("wget.out").path
            let run = try Harness.run([
                "--format", "json", "--", "/usr/bin/wget", "-q", "--ca-certificate",
                workspace.appendingPathComponent("cert.pem").path, "-O", output, "https://localhost:\(port)/via-gnutls",
            ])
            _ = server.wait()
            #expect(run.status == 0, "\(run.standardError)")
            let events = try Harness.dataEvents(run.output)
            #expect(!events.isEmpty)
            #expect(events.allSatisfy { $0.lib == "gnutls" && $0.comm == "wget" })
            #expect(Set(events.map(\.function)) == ["gnutls_record_send", "gnutls_record_recv"])
            #expect(events.allSatisfy { $0.remote == "127.0.0.1:\(port)" && $0.role == "client" })
            let request = String(decoding: events.joined(direction: "out"), as: UTF8.self)
            #expect(request.hasPrefix("GET /via-gnutls HTTP/1.1\r\n"))
            #expect(request.contains("\r\nHost: localhost:\(port)\r\n"))
            #expect(request.hasSuffix("\r\n\r\n"))
            let body = try String(contentsOfFile: output, encoding: .utf8)
            #expect(body == "got e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n")  // sha256 of nothing
            #expect(String(decoding: events.joined(direction: "in"), as: UTF8.self).hasSuffix("\r\n\r\n" + body))
        }
    }
}

extension EndToEnd.StackTests {
    /// node carries OpenSSL inside its executable: tlstap finds SSL_write and
    /// SSL_read in its symbols and attaches there before the command starts.
    @Test func nodeWithOpenSSLInsideItsExecutableIsCaptured() throws {
        let node = try #require(ChildProcessPath.resolve("node"), "node is part of this machine's image")
        let workspace = try Harness.makeWorkspace()
        defer { try? FileManager.default.removeItem(at: workspace) }
        let (server, port) = try Harness.startPythonServer(in: workspace)
        let script = "require('https').get({host: 'localhost', port: \(port), "
            + "path: '/from-node', ca: require('fs').readFileSync('\(workspace.path)/cert.pem')}, "
            + "r => { let body = ''; r.on('data', d => body += d); r.on('end', () => require('fs').writeFileSync('\(workspace.path)/node.out', body)) })"
        let run = try Harness.run(["--format", "json", "--", node, "-e", script])
        _ = server.wait()
        #expect(run.status == 0, "\(run.standardError)")
        let events = try Harness.dataEvents(run.output)
        #expect(events.allSatisfy { $0.lib == "openssl" && $0.comm == "node" })
        #expect(String(decoding: events.joined(direction: "out"), as: UTF8.self).hasPrefix("GET /from-node HTTP/1.1\r\n"))
        let body = try String(contentsOfFile: workspace.appendingPathComponent("node.out").path, encoding: .utf8)
        #expect(body.hasPrefix("got "))
        #expect(String(decoding: events.joined(direction: "in"), as: UTF8.self).hasSuffix(body))
    }
}

/// PATH lookup for the tests.
enum ChildProcessPath {
    static func resolve(_ program: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(program)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }
}
