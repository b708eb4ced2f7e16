import Foundation
import Testing

@testable import TLSTapHTTP

/// Compressed bodies made by the standard tools (gzip, python's zlib, brotli
/// via curl's test data is not at hand, so a fixed brotli stream is used).
@Suite struct BodyDecodingTests {
    static let text = Array(String(repeating: "tlstap decodes bodies. ", count: 40).utf8)

    static func compress(_ program: String, _ arguments: [String]) throws -> [UInt8] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        input.fileHandleForWriting.write(Data(text))
        try input.fileHandleForWriting.close()
        let bytes = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Array(bytes)
    }

    @Test func gzipDecodes() throws {
        let gzip = try Self.compress("/bin/gzip", ["-c"])
        #expect(BodyDecoding.decode(gzip, contentEncoding: "gzip", limit: 1 << 20) == Self.text)
    }

    @Test func deflateDecodesZlibWrappedAndRaw() throws {
        let zlib = try Self.compress(
            "/usr/bin/python3",
            ["-c", "import sys,zlib; sys.stdout.buffer.write(zlib.compress(sys.stdin.buffer.read()))"])
        let raw = try Self.compress(
            "/usr/bin/python3",
            [
                "-c",
                "import sys,zlib; c=zlib.compressobj(wbits=-15); sys.stdout.buffer.write(c.compress(sys.stdin.buffer.read())+c.flush())",
            ])
        #expect(BodyDecoding.decode(zlib, contentEncoding: "deflate", limit: 1 << 20) == Self.text)
        #expect(BodyDecoding.decode(raw, contentEncoding: "deflate", limit: 1 << 20) == Self.text)
    }

    /// "hello" compressed by brotli 1.0.9 (`brotli -c`), as bytes.
    @Test func brotliDecodes() {
        let hello: [UInt8] = [0x0b, 0x02, 0x80, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x03]
        #expect(BodyDecoding.decode(hello, contentEncoding: "br", limit: 100) == Array("hello".utf8))
    }

    @Test func outputBeyondTheLimitOrBrokenInputIsNotDecoded() throws {
        let gzip = try Self.compress("/bin/gzip", ["-c"])
        #expect(BodyDecoding.decode(gzip, contentEncoding: "gzip", limit: 100) == nil)
        #expect(BodyDecoding.decode(Array(gzip.prefix(10)), contentEncoding: "gzip", limit: 1 << 20) == nil)
        #expect(BodyDecoding.decode([1, 2, 3], contentEncoding: "br", limit: 100) == nil)
        #expect(BodyDecoding.decode(Self.text, contentEncoding: "identity", limit: 1 << 20) == nil)
    }
}
