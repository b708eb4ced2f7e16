import NIOCore
import NIOHPACK
import Testing

@testable import TLSTapHTTP

@Suite struct HeaderRedactionTests {
    static let names: Set<String> = ["authorization", "cookie", "set-cookie", "x-private"]
    static let secret = "s3cr3t-Token-98765"

    /// A string's bytes as NIOHPACK's encoder writes them with Huffman coding.
    static func huffman(_ text: String) -> [UInt8] {
        var encoder = HPACKEncoder(allocator: ByteBufferAllocator(), useHuffmanEncoding: true)
        var buffer = ByteBuffer()
        var headers = HPACKHeaders()
        headers.add(name: "n", value: text, indexing: .nonIndexable)
        try! encoder.encode(headers: headers, to: &buffer)
        let bytes = Array(buffer.readableBytesView)
        return Array(bytes[HPACKFieldLayout(bytes).literalValues[0].range])
    }

    /// A one-field block holding `bytes` as a Huffman-coded value, decoded by NIOHPACK.
    static func decodeHuffman(_ bytes: [UInt8]) throws -> String {
        precondition(bytes.count < 127)
        var block = ByteBuffer(bytes: [0x00, 1, UInt8(ascii: "n"), 0x80 | UInt8(bytes.count)] + bytes)
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator())
        let headers = try decoder.decodeHeaders(from: &block)
        return try #require(headers.first(name: "n"))
    }

    @Test func aHuffmanMaskHasTheValuesOctetsAndDecodedLength() throws {
        var generator = SystemRandomNumberGenerator()
        let alphabets = [
            Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8), Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ-_.~+/=".utf8),
            Array("<>{}\\^`|#$@[]".utf8), Array(0...255).map(UInt8.init),
        ]
        for alphabet in alphabets {
            for length in 1...100 {
                let value = String(
                    decoding: (0..<length).map { _ in alphabet.randomElement(using: &generator)! },
                    as: UTF8.self)
                let coded = Self.huffman(value)
                guard coded.count < 127 else { continue }
                let mask = HuffmanMask.make(octets: coded.count, characters: value.utf8.count)
                #expect(mask.count == coded.count)
                let decoded = try Self.decodeHuffman(mask)
                #expect(decoded.utf8.count == value.utf8.count, "\(Array(value.utf8))")
                // A mask may look like a one-character value, or like a value of mask symbols alone.
                #expect(decoded != value || alphabet != alphabets[0] || length == 1)
            }
        }
        #expect(try Self.decodeHuffman(HuffmanMask.make(octets: 5, characters: 5)) == "*****")
    }

    @Test func theLayoutFindsEveryLiteralValue() {
        var encoder = HPACKEncoder(allocator: ByteBufferAllocator(), useHuffmanEncoding: false)
        var buffer = ByteBuffer()
        var headers = HPACKHeaders([(":method", "GET"), ("x-a", "one")])
        headers.add(name: "x-b", value: String(repeating: "v", count: 200), indexing: .neverIndexed)
        try! encoder.encode(headers: headers, to: &buffer)
        let block = Array(buffer.readableBytesView)
        let layout = HPACKFieldLayout(block)
        #expect(layout.complete)
        #expect(layout.fields.count == 3)
        #expect(layout.fields[0] == nil)  // :method GET is in the static table
        #expect(
            layout.literalValues.map { String(decoding: block[$0.range], as: UTF8.self) }
                == ["one", String(repeating: "v", count: 200)])
        let cut = HPACKFieldLayout(block.dropLast(10))
        #expect(!cut.complete)
        #expect(cut.literalValues.last?.range.upperBound == block.count - 10)
    }

    /// A client's and a server's streams: the preface, then two requests
    /// and answers whose credential fields are indexed the second time,
    /// a block split by CONTINUATION, and padding.
    static func conversation() -> (client: [UInt8], server: [UInt8]) {
        var client = HTTP2Writer()
        var server = HTTP2Writer()
        let request: [(String, String)] = [
            (":method", "GET"), (":scheme", "https"), (":authority", "example.test"), (":path", "/a"),
            ("authorization", "Bearer \(secret)"), ("cookie", "id=\(secret)"), ("x-private", secret),
            ("user-agent", "test/1"),
        ]
        let response: [(String, String)] = [(":status", "200"), ("set-cookie", "session=\(secret)"), ("server", "t")]
        var clientBytes = HTTP2FrameReader.preface + HTTP2Writer.settings
        clientBytes += client.headers(request, stream: 1, endStream: true, split: true)
        clientBytes += client.headers(request, stream: 3, endStream: true, padding: 4)
        var serverBytes = HTTP2Writer.settings + HTTP2Writer.settingsAck
        serverBytes += server.headers(response, stream: 1, endStream: false)
        serverBytes += HTTP2Writer.data(Array("body".utf8), stream: 1, endStream: true)
        serverBytes += server.headers(response, stream: 3, endStream: true)
        return (clientBytes, serverBytes)
    }

    /// Redacts `stream` fed in calls cut at `cuts`; checks every call comes out, in order, with its length.
    static func redact(_ stream: [UInt8], cuts: [Int], start: HTTP2HeaderRedactor.Start = .preface) -> [UInt8] {
        var redactor = HTTP2HeaderRedactor(names: names, start: start)
        var calls: [[UInt8]] = []
        var out: [[UInt8]] = []
        var previous = 0
        for cut in cuts + [stream.count] where cut > previous {
            calls.append(Array(stream[previous..<cut]))
            out += redactor.feed(calls[calls.count - 1])
            previous = cut
        }
        out += redactor.drain()
        #expect(out.map(\.count) == calls.map(\.count))
        return Array(out.joined())
    }

    /// The header blocks of a stream of frames, decoded by a fresh NIOHPACK decoder.
    static func decodedBlocks(_ stream: [UInt8], preface: Bool) throws -> [[HTTPHeader]] {
        var reader = HTTP2FrameReader(expectPreface: preface, maxFramePayload: 1 << 20)
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator())
        var blocks: [[HTTPHeader]] = []
        var block: [UInt8] = []
        let read = reader.feed(stream)
        let frames = try #require(read)
        for frame in frames where frame.type == 1 || frame.type == 9 {
            var fragment = frame.payload
            if frame.flags & 0x8 != 0 { fragment = fragment.dropFirst().dropLast(Int(fragment.first!)) }
            block += fragment
            guard frame.flags & 0x4 != 0 else { continue }
            var buffer = ByteBuffer(bytes: block)
            blocks.append(try decoder.decodeHeaders(from: &buffer).map { HTTPHeader($0.name, $0.value) })
            block = []
        }
        return blocks
    }

    @Test(arguments: [1, 7, 64, 100_000])
    func http2ValuesAreHiddenAtEverySplitAndTheBlocksStillDecode(callSize: Int) throws {
        let (client, server) = Self.conversation()
        for (stream, preface) in [(client, true), (server, false)] {
            let cuts = Array(stride(from: callSize, to: stream.count, by: callSize))
            let redacted = Self.redact(stream, cuts: cuts, start: preface ? .preface : .frame)
            #expect(redacted.count == stream.count)
            #expect(redacted.firstRange(of: Array(Self.secret.utf8)) == nil)
            let sent =
                preface ? ["Bearer \(Self.secret)", "id=\(Self.secret)", Self.secret] : ["session=\(Self.secret)"]
            // Each coded value is in the stream before (but one that CONTINUATION cuts in two), and not after.
            let present = sent.map(Self.huffman).filter { stream.firstRange(of: $0) != nil }
            #expect(present.count >= sent.count - 1)
            #expect(present.allSatisfy { redacted.firstRange(of: $0) == nil })
            let before = try Self.decodedBlocks(stream, preface: preface)
            let after = try Self.decodedBlocks(redacted, preface: preface)
            #expect(after.count == 2)
            for (original, hidden) in zip(before.joined(), after.joined()) {
                #expect(hidden.name == original.name)
                #expect(hidden.value.utf8.count == original.value.utf8.count)
                if Self.names.contains(original.name) {
                    #expect(!hidden.value.contains(Self.secret), "\(original.name)")
                    #expect(hidden.value.allSatisfy { "*x-0?~\\".contains($0) }, "\(hidden.value)")
                } else {
                    #expect(hidden.value == original.value)
                }
            }
        }
    }

    @Test func joinedMidwayAValueWhoseNameCameBeforeIsHidden() throws {
        var client = HTTP2Writer()
        _ = client.headers([(":method", "GET"), (":path", "/"), ("x-private", "first")], stream: 1, endStream: true)
        // The encoder now refers to "x-private" by its dynamic index, and gives a new value.
        let later = client.headers(
            [(":method", "GET"), (":path", "/b"), ("x-private", Self.secret)], stream: 3,
            endStream: true)
        #expect(later.firstRange(of: Self.huffman(Self.secret).dropLast()) != nil)
        let redacted = Self.redact(later, cuts: [], start: .frame)
        #expect(redacted.firstRange(of: Self.huffman(Self.secret).dropLast()) == nil)
        #expect(redacted.count == later.count)
        // Bytes from an unknown place, then frames: the first call is hidden whole, the second read.
        let unknown = Self.redact(Array(later.suffix(5)) + later, cuts: [5], start: .unknown)
        #expect(unknown.prefix(5).allSatisfy { $0 == UInt8(ascii: "*") })
        #expect(unknown.dropFirst(5).firstRange(of: Self.huffman(Self.secret).dropLast()) == nil)
    }

    @Test func aBlockCutShortByTheEndOfTheStreamIsHidden() {
        var client = HTTP2Writer()
        let frames = client.headers(
            [(":method", "GET"), ("x-private", Self.secret)], stream: 1, endStream: true,
            split: true)
        let firstFrame = 9 + (Int(frames[1]) << 8 | Int(frames[2]))
        var redactor = HTTP2HeaderRedactor(names: Self.names, start: .frame)
        #expect(redactor.feed(Array(frames.prefix(firstFrame))).isEmpty)  // held: the block goes on
        let out = Array(redactor.drain().joined())
        #expect(out.count == firstFrame)
        #expect(out.firstRange(of: Self.huffman(Self.secret).prefix(4)) == nil)
    }

    @Test func http1ValuesAreHiddenAtEverySplit() {
        let message = Array(
            ("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \(Self.secret)\r\nX-PRIVATE:\(Self.secret)\r\n"
                + "Accept: */*\r\n\r\n").utf8)
        let expected = Array(
            ("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: " + String(repeating: "*", count: 25) + "\r\nX-PRIVATE:"
                + String(repeating: "*", count: 18) + "\r\nAccept: */*\r\n\r\n").utf8)
        for callSize in 1...message.count {
            var redactor = HTTP1HeaderRedactor(names: Self.names)
            var out: [UInt8] = []
            for start in stride(from: 0, to: message.count, by: callSize) {
                var call = Array(message[start..<min(start + callSize, message.count)])
                redactor.redact(&call)
                out += call
            }
            #expect(out == expected, "calls of \(callSize)")
        }
        var redactor = HTTP1HeaderRedactor(names: Self.names)
        var afterGap = Array("en-rest\r\nAccept: x\r\n".utf8)
        redactor.gap()
        redactor.redact(&afterGap)
        #expect(afterGap == Array("*******\r\nAccept: x\r\n".utf8))
    }
}
