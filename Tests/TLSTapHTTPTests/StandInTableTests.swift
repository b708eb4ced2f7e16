import NIOCore
import NIOHPACK
import Testing

@testable import TLSTapHTTP

/// The decoder a side starts again with after its table missed entries
/// (`HPACKDecoder.forStreamJoinedMidway`).
@Suite struct StandInTableTests {
    /// An indexed header field (RFC 7541 section 6.1) referring to `index`.
    static func indexed(_ index: Int) -> [UInt8] {
        guard index >= 127 else { return [0x80 | UInt8(index)] }
        var rest = index - 127
        var bytes: [UInt8] = [0xff]
        while rest >= 128 {
            bytes.append(UInt8(rest & 0x7f) | 0x80)
            rest >>= 7
        }
        return bytes + [UInt8(rest)]
    }

    /// A literal with incremental indexing and a new name: the block adds one entry.
    static func adding(name: String, value: String) -> [UInt8] {
        precondition(name.utf8.count < 127)
        var length = value.utf8.count - 127
        var lengthBytes: [UInt8] = [0x7f]
        while length >= 128 {
            lengthBytes.append(UInt8(length & 0x7f) | 0x80)
            length >>= 7
        }
        return [0x40, UInt8(name.utf8.count)] + Array(name.utf8) + lengthBytes + [UInt8(length)] + Array(value.utf8)
    }

    static func decode(_ block: [UInt8], with decoder: inout HPACKDecoder) throws -> [String] {
        var buffer = ByteBuffer(bytes: block)
        return try decoder.decodeHeaders(from: &buffer).map { "\($0.name): \($0.value)" }
    }

    /// A peer may raise the table to 1 MiB: entries it adds after the reset
    /// are followed past 64 KiB, exactly; the unknown ones before them get
    /// stand-ins for a 64 KiB table only (1,985 of 33 bytes), and a field
    /// referring past those fails its block instead of decoding wrong.
    @Test func aMebibyteTableFollowsNewEntriesAndStandsInFor64KiB() throws {
        var decoder = HPACKDecoder.forStreamJoinedMidway(maxDynamicTableSize: 1 << 20)
        let value = String(repeating: "v", count: 15_000)
        for name in ["a", "b", "c", "d", "e"] {  // 75,160 bytes of table, above 64 KiB
            #expect(try Self.decode(Self.adding(name: name, value: value), with: &decoder) == ["\(name): \(value)"])
        }
        // The dynamic table starts at index 62, newest first: e d c b a, then the stand-ins.
        #expect(try Self.decode(Self.indexed(66), with: &decoder) == ["a: \(value)"])
        #expect(try Self.decode(Self.indexed(67), with: &decoder) == ["\(HPACKDecoder.unknownName): "])
        #expect(try Self.decode(Self.indexed(67 + 1_984), with: &decoder) == ["\(HPACKDecoder.unknownName): "])
        #expect(throws: (any Error).self) { try Self.decode(Self.indexed(67 + 1_985), with: &decoder) }
    }

    /// At the default 4,096 bytes, every entry the encoder's table can hold has a stand-in.
    @Test func theDefaultTableGetsAStandInForEveryEntry() throws {
        var decoder = HPACKDecoder.forStreamJoinedMidway()
        #expect(try Self.decode(Self.indexed(62 + 123), with: &decoder) == ["\(HPACKDecoder.unknownName): "])
        #expect(throws: (any Error).self) { try Self.decode(Self.indexed(62 + 124), with: &decoder) }
    }
}
