import NIOCore
import NIOHPACK

/// Overwrites the values of named headers in one direction of an HTTP/1.x
/// (or other line-based) stream, as its bytes go past, at the same length.
///
/// A line `Name: value` whose name is one of `names` gets every byte of its
/// value, after the spaces that open it, replaced by `*`; a CR is kept, so
/// the line still ends where it did. Lines are read across calls: a name or
/// a value split between two calls is still found. Every line counts, not
/// only those of a header section: a body that holds such a line gets it
/// hidden too.
public struct HTTP1HeaderRedactor {
    private enum Place {
        /// Reading a line's first bytes, a name up to its colon.
        case name
        /// Inside a redacted value; `started` once past its leading spaces.
        case value(started: Bool)
        /// In the rest of a line that needs nothing.
        case rest
    }

    private static let longestName = 64
    private let names: Set<[UInt8]>
    private var place = Place.name
    private var name: [UInt8] = []

    /// - Parameter names: the header names to redact, in lower case.
    public init(names: Set<String>) {
        self.names = Set(names.map { Array($0.utf8) })
    }

    /// Redacts the next bytes of the stream in place.
    public mutating func redact(_ bytes: inout [UInt8]) {
        for index in bytes.indices {
            let byte = bytes[index]
            if byte == 0x0a {
                place = .name
                name.removeAll(keepingCapacity: true)
                continue
            }
            switch place {
            case .name:
                if byte == UInt8(ascii: ":") {
                    place = names.contains(name) ? .value(started: false) : .rest
                } else if name.count < Self.longestName {
                    name.append(byte | (byte >= 0x41 && byte <= 0x5a ? 0x20 : 0))
                } else {
                    place = .rest
                }
            case .value(let started):
                if byte == 0x0d || (!started && byte == 0x20) { continue }
                place = .value(started: true)
                bytes[index] = UInt8(ascii: "*")
            case .rest:
                break
            }
        }
    }

    /// Bytes of the stream were lost: the line in progress may be a
    /// redacted value whose name was lost, so it is hidden up to its end.
    public mutating func gap() {
        place = .value(started: true)
    }
}

/// Overwrites the values of named headers in one direction of an HTTP/2
/// stream, in the HPACK header blocks of its HEADERS, PUSH_PROMISE and
/// CONTINUATION frames, at the same length, in a way that still decodes.
///
/// Bytes go in as the calls that carried them and come out as the same
/// calls, in order, once every header block they hold a part of is whole
/// and redacted; until then they are held (header blocks are small and
/// usually written in one call). A block is decoded with NIOHPACK, which
/// names every field (an HPACK decoder of its own follows the encoder's
/// dynamic table); where a field's name is redacted, or unknown (it refers
/// to a table entry from before tlstap read the stream), its literal value
/// is overwritten: a raw one with `*`, a Huffman-coded one with a string
/// of the same octets and decoded length (`HuffmanMask`), so the table
/// sizes of any decoder, Wireshark's included, stay the encoder's.
///
/// Where a block cannot be decoded (a frame in the middle of it, bytes
/// lost, a block larger than `maxBlockBytes`), every literal value in it is
/// overwritten, and the table starts again with unknown entries. After lost
/// bytes, whole calls are hidden until one begins with frames.
public struct HTTP2HeaderRedactor {
    /// Where the stream's first bytes are.
    public enum Start {
        /// At the client's connection preface.
        case preface
        /// At a frame header.
        case frame
        /// Somewhere unknown (joined midway inside a frame).
        case unknown
    }

    /// A header block whose frames have not all arrived.
    private struct OpenBlock {
        var stream: UInt32
        /// Where its first frame's header begins in the stream.
        var start: Int
        var bytes: [UInt8] = []
        /// Where each fragment's bytes are: (offset in `bytes`, offset in the stream).
        var fragments: [(block: Int, stream: Int)] = []
    }

    /// The largest header block held for decoding.
    static let maxBlockBytes = 256 * 1024

    private var values: HPACKValueRedactor
    private var held: [[UInt8]] = []
    /// The stream offset of `held`'s first byte.
    private var heldStart = 0
    private var streamEnd = 0
    /// Bytes not yet read as frames; they end at `streamEnd`.
    private var unread: [UInt8] = []
    private var prefaceLeft: Int
    private var resyncing: Bool
    /// Payload bytes left of a frame without a header block; `masked` if they are to be hidden.
    private var skip = 0
    private var skipMasked = false
    private var block: OpenBlock?

    /// - Parameters:
    ///   - names: the header names to redact, in lower case.
    ///   - start: where the first bytes fed are.
    public init(names: Set<String>, start: Start) {
        values = HPACKValueRedactor(names: names)
        prefaceLeft = start == .preface ? HTTP2FrameReader.preface.count : 0
        resyncing = start == .unknown
    }

    /// Feeds the next call's bytes.
    /// - Returns: the calls now redacted and final, oldest first; every
    ///   call fed comes out once, in order.
    public mutating func feed(_ bytes: [UInt8]) -> [[UInt8]] {
        held.append(bytes)
        streamEnd += bytes.count
        if resyncing {
            guard HTTP2Connection.looksLikeFrames(bytes) else {
                overwrite(streamEnd - bytes.count, with: [UInt8](repeating: UInt8(ascii: "*"), count: bytes.count))
                return release(before: streamEnd)
            }
            resyncing = false
            values.forgetTable()
        }
        var input = bytes[...]
        if prefaceLeft > 0 {
            let taken = min(prefaceLeft, input.count)
            prefaceLeft -= taken
            input = input.dropFirst(taken)
        }
        unread += input
        return release(before: readFrames())
    }

    /// Bytes were lost right after those fed last: what is held comes out
    /// (an open block with every literal value hidden), and whole calls are
    /// hidden until one begins with frames.
    public mutating func gap() -> [[UInt8]] {
        let released = drain()
        resyncing = true
        return released
    }

    /// Everything held, now (the stream ended): an open block comes out
    /// with every literal value hidden.
    public mutating func drain() -> [[UInt8]] {
        if let open = block { abandon(open) }
        block = nil
        if let header = HTTP2FrameHeader(unread, at: 0), [1, 5, 9].contains(header.type) {
            // A frame that may hold values, cut short: all of it that came is hidden.
            let start = streamEnd - unread.count + 9
            overwrite(start, with: [UInt8](repeating: UInt8(ascii: "*"), count: max(0, streamEnd - start)))
        }
        unread = []
        skip = 0
        return release(before: streamEnd)
    }

    /// Reads the frames in `unread`, redacting every header block completed.
    /// - Returns: the stream offset from which bytes must stay held.
    private mutating func readFrames() -> Int {
        var offset = 0
        var unreadStart: Int { streamEnd - unread.count }
        var holdFrom = streamEnd
        while offset < unread.count || skip == 0 {
            if skip > 0 {
                let taken = min(skip, unread.count - offset)
                if skipMasked {
                    overwrite(unreadStart + offset, with: [UInt8](repeating: UInt8(ascii: "*"), count: taken))
                }
                skip -= taken
                offset += taken
                continue
            }
            guard let header = HTTP2FrameHeader(unread, at: offset) else { break }
            let frameStart = unreadStart + offset
            let carriesBlock = header.type == 1 || header.type == 5 || header.type == 9
            let continues = header.type == 9 && block?.stream == header.stream
            if let open = block, !continues {  // a block must go on in its CONTINUATION frames, at once
                abandon(open)
                block = nil
            }
            if !carriesBlock || (header.type == 9 && !continues) || header.length > Self.maxBlockBytes {
                // No block, or a CONTINUATION of a block not read: its payload is hidden if it may hold values.
                skip = header.length
                skipMasked = carriesBlock
                offset += 9
                continue
            }
            guard unread.count - offset >= 9 + header.length else {
                holdFrom = block?.start ?? frameStart
                break
            }
            var open = block ?? OpenBlock(stream: header.stream, start: frameStart)
            if let fragment = Self.fragment(of: header, payloadAt: offset + 9, in: unread) {
                open.fragments.append((open.bytes.count, unreadStart + fragment.lowerBound))
                open.bytes += unread[fragment]
            }
            offset += 9 + header.length
            if open.bytes.count > Self.maxBlockBytes {
                abandon(open)
                block = nil
            } else if header.flags & 0x4 != 0 {  // END_HEADERS
                for (range, replacement) in values.replacements(in: open.bytes) {
                    overwrite(range, of: open, with: replacement)
                }
                block = nil
            } else {
                block = open
            }
        }
        unread.removeFirst(min(offset, unread.count))
        return min(holdFrom, block?.start ?? streamEnd)
    }

    /// Where a HEADERS, PUSH_PROMISE or CONTINUATION frame's block fragment
    /// is in `bytes`: its payload without padding, priority fields or
    /// promised stream; nil if the padding is malformed.
    private static func fragment(of header: HTTP2FrameHeader, payloadAt start: Int, in bytes: [UInt8])
        -> Range<Int>?
    {
        var lower = start
        var upper = start + header.length
        if header.type != 9, header.flags & 0x8 != 0 {  // PADDED
            guard lower < upper, Int(bytes[lower]) < upper - lower else { return nil }
            upper -= Int(bytes[lower])
            lower += 1
        }
        if header.type == 1, header.flags & 0x20 != 0 { lower += 5 }  // PRIORITY
        if header.type == 5 { lower += 4 }  // the promised stream
        return lower <= upper ? lower..<upper : nil
    }

    /// A block that cannot be decoded: every literal value in it is hidden,
    /// and the table is no longer known.
    private mutating func abandon(_ open: OpenBlock) {
        for (range, replacement) in HPACKValueRedactor.hidingEveryValue(in: open.bytes) {
            overwrite(range, of: open, with: replacement)
        }
        values.forgetTable()
    }

    /// Writes `replacement` over the bytes at `range` of a block, wherever its fragments are in the stream.
    private mutating func overwrite(_ range: Range<Int>, of open: OpenBlock, with replacement: [UInt8]) {
        for (index, fragment) in open.fragments.enumerated() {
            let end = index + 1 < open.fragments.count ? open.fragments[index + 1].block : open.bytes.count
            let lower = max(range.lowerBound, fragment.block)
            let upper = min(range.upperBound, end)
            guard lower < upper else { continue }
            let part = replacement[(lower - range.lowerBound)..<(upper - range.lowerBound)]
            overwrite(fragment.stream + (lower - fragment.block), with: part)
        }
    }

    /// Writes `replacement` over held bytes from stream offset `start`.
    private mutating func overwrite(_ start: Int, with replacement: some Collection<UInt8>) {
        var callStart = heldStart
        var position = start
        var remaining = replacement[...]
        for index in held.indices {
            let callEnd = callStart + held[index].count
            while !remaining.isEmpty, position < callEnd, position >= callStart {
                held[index][position - callStart] = remaining.removeFirst()
                position += 1
            }
            callStart = callEnd
            if remaining.isEmpty { return }
        }
    }

    /// Hands over the held calls that end at or before `offset`.
    private mutating func release(before offset: Int) -> [[UInt8]] {
        var count = 0
        var end = heldStart
        while count < held.count, end + held[count].count <= offset {
            end += held[count].count
            count += 1
        }
        let released = Array(held.prefix(count))
        held.removeFirst(count)
        heldStart = end
        return released
    }
}

/// Decides, for one direction's complete HPACK header blocks, which literal
/// values to overwrite and with what.
struct HPACKValueRedactor {
    /// The table size followed: at least what any encoder is allowed
    /// (SETTINGS_HEADER_TABLE_SIZE is 4,096 unless raised). A larger table
    /// than the encoder's holds the same entries at the same indices.
    private static let tableSize = HPACKDecoder.standInTableSize

    private let names: Set<String>
    private var decoder = HPACKDecoder.forStreamJoinedMidway(maxDynamicTableSize: tableSize)

    init(names: Set<String>) {
        self.names = names
    }

    /// The table's entries from before now are unknown (a block was lost or could not be decoded).
    mutating func forgetTable() {
        decoder = HPACKDecoder.forStreamJoinedMidway(maxDynamicTableSize: Self.tableSize)
    }

    /// What to write where in `block` (a complete header block) to hide the
    /// values of redacted or unknown names.
    mutating func replacements(in block: [UInt8]) -> [(Range<Int>, [UInt8])] {
        let layout = HPACKFieldLayout(block)
        var buffer = ByteBuffer(bytes: block)
        guard let headers = try? decoder.decodeHeaders(from: &buffer) else {
            forgetTable()  // it may have added entries before it failed
            return Self.hidingEveryValue(in: block)
        }
        guard layout.complete, layout.fields.count == headers.count else { return Self.hidingEveryValue(in: block) }
        var found: [(Range<Int>, [UInt8])] = []
        for (field, header) in zip(layout.fields, headers) {
            guard let value = field else { continue }
            let name = header.name.lowercased()
            guard names.contains(name) || name == HPACKDecoder.unknownName else { continue }
            let replacement =
                value.huffman
                ? HuffmanMask.make(octets: value.range.count, characters: header.value.utf8.count)
                : [UInt8](repeating: UInt8(ascii: "*"), count: value.range.count)
            found.append((value.range, replacement))
        }
        return found
    }

    /// Every literal value of `block`, hidden, for a block that cannot be
    /// decoded: raw ones with `*`, Huffman-coded ones with `*` codes.
    static func hidingEveryValue(in block: [UInt8]) -> [(Range<Int>, [UInt8])] {
        HPACKFieldLayout(block).literalValues.map { value in
            (value.range, [UInt8](repeating: value.huffman ? 0xf9 : UInt8(ascii: "*"), count: value.range.count))
        }
    }
}
