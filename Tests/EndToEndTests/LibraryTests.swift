import Foundation
import TestSupport
import Testing

extension EndToEnd {
    /// tlstap as a library: README.md's example program (`Examples/capture`),
    /// built with the package, traces curl against nginx.
    @Suite struct LibraryTests {
        @Test func theReadmesExampleProgramCapturesAnExchange() throws {
            let example = Harness.builtBeside("tlstap-example")
            try #require(FileManager.default.isExecutableFile(atPath: example), "swift build makes \(example)")
            let workspace = try Harness.makeWorkspace()
            defer { try? FileManager.default.removeItem(at: workspace) }
            let nginx = try Nginx(workspace: workspace)
            defer { nginx.stop() }
            try "hello\n".write(
                to: workspace.appendingPathComponent("www/hello.txt"), atomically: true, encoding: .utf8)
            let run = try LaunchedProgram([
                example, "/usr/bin/curl", "-sS", "--http1.1", "--cacert",
                workspace.appendingPathComponent("cert.pem").path,
                "-o", "/dev/null", "https://localhost:\(nginx.port)/hello.txt",
            ]).waitForBytes()
            #expect(run.status == 0, "\(run.standardError)")
            let lines = String(decoding: run.output, as: UTF8.self).split(separator: "\n").map(String.init)
            #expect(lines.count == 2, "\(lines)")
            let exchange = try #require(lines.first)
            #expect(exchange.hasPrefix("curl["), "\(exchange)")
            #expect(exchange.hasSuffix("] GET https://localhost:\(nginx.port)/hello.txt → 200 OK"), "\(exchange)")
            #expect(lines.last == "2 calls captured, 0 records lost")
        }
    }
}
