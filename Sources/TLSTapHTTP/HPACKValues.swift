import NIOCore
import NIOHPACK
import Synchronization

/// Where the literal values of an HPACK header block lie (RFC 7541
/// section 6), read from its structure without decoding a string: what
/// lets a value be overwritten in place, at its length.
struct HPACKFieldLayout {
    /// One literal value: its bytes in the block, and whether they are Huffman-coded.
    struct Value: Equatable {
        var range: Range<Int>
        var huffman: Bool
    }

    /// Per header field, in order: its literal value, or nil for an indexed
    /// field (name and value both from a table). Table size updates are not fields.
    private(set) var fields: [Value?] = []
    /// Whether the whole block was read; false if it ends inside a field or
    /// is malformed (then `fields` holds those before, and a last value
    /// that runs past the end is cut at it).
    private(set) var complete = true

    init(_ block: some Collection<UInt8>) {
        let bytes = Array(block)
        var offset = 0
        while offset < bytes.count {
            let first = bytes[offset]
            let prefixBits: Int
            switch first {
            case 0x80...:  // indexed field
                guard Self.integer(in: bytes, at: &offset, prefixBits: 7) != nil else {
                    complete = false
                    return
                }
                fields.append(nil)
                continue
            case 0x20..<0x40:  // dynamic table size update
                guard Self.integer(in: bytes, at: &offset, prefixBits: 5) != nil else {
                    complete = false
                    return
                }
                continue
            case 0x40..<0x80: prefixBits = 6  // literal, indexed after
            case 0x00..<0x20 where first & 0xf0 == 0x00 || first & 0xf0 == 0x10: prefixBits = 4  // not / never indexed
            default:
                complete = false
                return
            }
            guard let nameIndex = Self.integer(in: bytes, at: &offset, prefixBits: prefixBits) else {
                complete = false
                return
            }
            if nameIndex == 0 {
                guard let name = Self.string(in: bytes, at: &offset), name.range.upperBound <= bytes.count else {
                    complete = false
                    return
                }
                offset = name.range.upperBound
            }
            guard let value = Self.string(in: bytes, at: &offset) else {
                complete = false
                return
            }
            guard value.range.upperBound <= bytes.count else {
                fields.append(Value(range: value.range.lowerBound..<bytes.count, huffman: value.huffman))
                complete = false
                return
            }
            fields.append(value)
            offset = value.range.upperBound
        }
    }

    /// Every literal value found, in order.
    var literalValues: [Value] { fields.compactMap { $0 } }

    /// An integer with an N-bit prefix (RFC 7541 section 5.1), advancing `offset` past it.
    private static func integer(in bytes: [UInt8], at offset: inout Int, prefixBits: Int) -> Int? {
        guard offset < bytes.count else { return nil }
        let mask = (1 << prefixBits) - 1
        var value = Int(bytes[offset]) & mask
        offset += 1
        guard value == mask else { return value }
        var shift = 0
        while offset < bytes.count {
            let byte = bytes[offset]
            offset += 1
            value += Int(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
            if shift > 28 { return nil }
        }
        return nil
    }

    /// A string literal's header (RFC 7541 section 5.2): where its bytes
    /// are, which may run past the end of `bytes`. Advances `offset` to them.
    private static func string(in bytes: [UInt8], at offset: inout Int) -> Value? {
        guard offset < bytes.count else { return nil }
        let huffman = bytes[offset] & 0x80 != 0
        guard let length = integer(in: bytes, at: &offset, prefixBits: 7) else { return nil }
        return Value(range: offset..<(offset + length), huffman: huffman)
    }
}

extension HPACKDecoder {
    /// The name given to a table entry tlstap never saw.
    static let unknownName = "?"

    /// The largest table filled with stand-ins: the 64 KiB that browsers
    /// allow in their SETTINGS, 16 times the default.
    static let standInTableSize = 65_536

    /// A decoder whose dynamic table is full of entries named `unknownName`:
    /// one for a stream tlstap may not have read from its start (joined
    /// midway, or after lost bytes). The entries the encoder adds from here
    /// on push them out, oldest first, as they push out the encoder's own
    /// unknown entries, and take the same indices, newest first. So a field
    /// that refers to an entry from before decodes with the name `unknownName`
    /// instead of failing the whole block, and every other field decodes
    /// right. A real entry takes at least 33 bytes (a name of one byte, at
    /// least), so `size / 33` stand-ins cover every entry the encoder's
    /// table can hold, up to a table of `standInTableSize`. On a stream
    /// read from its start, none is ever referred to.
    ///
    /// A larger table gets only that many stand-ins: a field that refers to
    /// an unknown entry past them fails its block ("headers incomplete"),
    /// never decodes wrong. So a peer that raises the table to 1 MiB and
    /// then loses bytes over and over costs 2,000 entries per reset, not 30,000.
    /// - Parameter maxDynamicTableSize: the table size the encoder may use.
    static func forStreamJoinedMidway(maxDynamicTableSize: Int = HPACKDecoder.maxDynamicTableSize) -> HPACKDecoder {
        StandInTables.decoder(maxDynamicTableSize: maxDynamicTableSize)
    }

    /// Builds what `forStreamJoinedMidway` returns: decodes a block of stand-ins.
    fileprivate static func buildingStandIns(maxDynamicTableSize: Int) -> HPACKDecoder {
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator(), maxDynamicTableSize: maxDynamicTableSize)
        let listLimit = decoder.maxHeaderListSize
        decoder.maxHeaderListSize = .max
        // "Literal with incremental indexing, new name": 0x40, a one-byte name, an empty value.
        let entry: [UInt8] = [0x40, 1, UInt8(ascii: "?"), 0]
        let count = min(maxDynamicTableSize, standInTableSize) / 33
        var block = ByteBuffer(bytes: Array([[UInt8]](repeating: entry, count: count).joined()))
        _ = try? decoder.decodeHeaders(from: &block)
        decoder.maxHeaderListSize = listLimit
        return decoder
    }
}

/// Stand-in decoders (`HPACKDecoder.forStreamJoinedMidway`), built once per
/// table size and copied after. A side's table is reset after every loss
/// and every undecodable block, and building one decodes an entry per 33
/// bytes of table; a copy shares the built table until its encoder adds an
/// entry (copy on write).
private enum StandInTables {
    /// Table sizes kept: SETTINGS may name any, but peers use two or three.
    static let sizesKept = 8
    static let built = Mutex<[Int: HPACKDecoder]>([:])

    static func decoder(maxDynamicTableSize size: Int) -> HPACKDecoder {
        if let decoder = built.withLock({ $0[size] }) { return decoder }
        let decoder = HPACKDecoder.buildingStandIns(maxDynamicTableSize: size)
        built.withLock { if $0.count < sizesKept { $0[size] = decoder } }
        return decoder
    }
}

/// A Huffman-coded string (RFC 7541 appendix B) that stands in for a
/// redacted one: the same number of octets, decoding to the same number of
/// characters, so a decoder's dynamic table keeps the sizes the real
/// encoder's has and later blocks still decode in Wireshark. Mostly `*`
/// (an 8-bit code); shorter codes (`x`, `-`, `0`) or longer ones (`?`,
/// `~`, `\`, tab, DEL, 0x16: ASCII, one byte each) make the bit count fit.
enum HuffmanMask {
    private struct Symbol {
        var code: UInt32
        var bits: Int
    }

    private static let star = Symbol(code: 0xf9, bits: 8)
    /// Replacements for `*` that shorten the string, most first.
    private static let shorter = [
        Symbol(code: 0x00, bits: 5), Symbol(code: 0x16, bits: 6), Symbol(code: 0x79, bits: 7),
    ]
    /// Replacements for `*` that lengthen it, most first.
    private static let longer = [
        Symbol(code: 0x3fff_fffe, bits: 30), Symbol(code: 0xfff_fffc, bits: 28), Symbol(code: 0xff_ffea, bits: 24),
        Symbol(code: 0x7fff0, bits: 19), Symbol(code: 0x1ffd, bits: 13), Symbol(code: 0x3fc, bits: 10),
    ]

    /// `octets` bytes that decode to `characters` characters; where no such
    /// string exists, `octets` bytes of `*` codes.
    static func make(octets: Int, characters: Int) -> [UInt8] {
        let fallback = [UInt8](repeating: 0xf9, count: octets)
        let most = 8 * octets
        let least = most - 7  // padding is shorter than an octet
        guard characters > 0, least > 0 else { return characters == 0 && octets == 0 ? [] : fallback }
        var symbols = [Symbol](repeating: star, count: characters)
        var bits = 8 * characters
        var index = characters - 1  // the stars come first, where a reader looks
        while bits > most, index >= 0 {
            let cut = shorter.first { bits - (8 - $0.bits) >= least } ?? shorter[shorter.count - 1]
            symbols[index] = cut
            bits -= 8 - cut.bits
            index -= 1
        }
        while bits < least, index >= 0 {
            guard let grow = longer.first(where: { bits + $0.bits - 8 <= most }) else { break }
            symbols[index] = grow
            bits += grow.bits - 8
            index -= 1
        }
        guard (least...most).contains(bits) else { return fallback }
        var output: [UInt8] = []
        output.reserveCapacity(octets)
        var pending: UInt64 = 0
        var pendingBits = 0
        for symbol in symbols {
            pending = pending << symbol.bits | UInt64(symbol.code)
            pendingBits += symbol.bits
            while pendingBits >= 8 {
                pendingBits -= 8
                output.append(UInt8(truncatingIfNeeded: pending >> pendingBits))
            }
        }
        if pendingBits > 0 {  // padded with the most significant bits of EOS: ones
            output.append(UInt8(truncatingIfNeeded: pending << (8 - pendingBits)) | UInt8(0xff >> pendingBits))
        }
        return output
    }
}
