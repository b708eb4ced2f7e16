/// The building blocks of the JSON Lines writer: JSON pieces appended as
/// bytes to an output buffer, with no `String` in between.
///
/// A busy capture renders tens of thousands of records a second; building
/// each as a String first cost more than everything else tlstap does per
/// event (allocations, reference counting, UTF-8 checks), so the records are
/// written straight into the output buffer. A data record is written through
/// one `ByteCursor` into room reserved once, as the many small appends of an
/// Array each check its uniqueness and capacity again.
///
/// `JSONWriter` is what these pieces are written to: an output buffer
/// (`Array`), or room reserved in one (`ByteCursor`).
protocol JSONWriter: ~Copyable {
    /// Appends text known at compile time (keys, punctuation), as it is.
    mutating func append(literal: StaticString)
    /// Appends an integer in decimal, with its sign.
    mutating func append(decimal value: some BinaryInteger)
    /// Appends `value` as a JSON string (RFC 8259): in quotes, with quotes,
    /// backslashes and control characters escaped. Other UTF-8 is kept as is.
    mutating func append(jsonString value: String)
}

extension JSONWriter where Self: ~Copyable {
    /// Appends a key, written with its punctuation (`,"pid":`), and a number.
    mutating func append(_ key: StaticString, decimal value: some BinaryInteger) {
        append(literal: key)
        append(decimal: value)
    }

    /// Appends a key, written with its punctuation (`,"comm":`), and a JSON string.
    mutating func append(_ key: StaticString, string value: String) {
        append(literal: key)
        append(jsonString: value)
    }
}

extension Array: JSONWriter where Element == UInt8 {
    /// Lets `render` write at most `maxCount` bytes after the end through a
    /// cursor; what it wrote is appended. Writing more traps (a bound
    /// computed wrong is a bug, never input).
    @inline(__always)
    mutating func append(atMost maxCount: Int, _ render: (inout ByteCursor) -> Void) {
        append(addingCapacity: maxCount) { output in
            output.withUnsafeMutableBufferPointer { buffer, initialized in
                var cursor = ByteCursor(UnsafeMutableBufferPointer(rebasing: buffer[initialized...]))
                render(&cursor)
                initialized += cursor.count
            }
        }
    }

    /// Appends text known at compile time (keys, punctuation), as it is.
    mutating func append(literal: StaticString) {
        literal.withUTF8Buffer { append(contentsOf: $0) }
    }

    /// Appends an integer in decimal, with its sign.
    mutating func append(decimal value: some BinaryInteger) {
        append(atMost: ByteCursor.maxDecimalCount) { $0.append(decimal: value) }
    }

    /// Appends an unsigned integer in lowercase hexadecimal, without a prefix.
    mutating func append(hex value: UInt64) {
        append(atMost: 16) { $0.append(hex: value) }
    }

    /// Appends `value` as a JSON string (RFC 8259): in quotes, with quotes,
    /// backslashes and control characters escaped. Other UTF-8 is kept as is.
    mutating func append(jsonString value: String) {
        append(atMost: ByteCursor.maxJSONStringCount(value)) { $0.append(jsonString: value) }
    }

    /// Appends the base64 of `bytes` (standard alphabet, padded), without quotes.
    mutating func append(base64 bytes: [UInt8]) {
        append(atMost: PayloadBase64.encodedLength(bytes.count)) { $0.append(base64: bytes) }
    }
}

/// Writes bytes into memory reserved beforehand (`Array.append(atMost:_:)`):
/// each append is a bounds check and a store or a copy.
struct ByteCursor: JSONWriter, ~Copyable {
    private let buffer: UnsafeMutableBufferPointer<UInt8>
    /// Bytes written so far.
    private(set) var count = 0

    init(_ buffer: UnsafeMutableBufferPointer<UInt8>) {
        self.buffer = buffer
    }

    /// Room for a `UInt64` or an `Int64` with its sign.
    static let maxDecimalCount = 20

    /// Room for `value` as a JSON string: each byte escaped (`\u00XX`) at worst, and the quotes.
    static func maxJSONStringCount(_ value: String) -> Int {
        value.utf8.count * 6 + 2
    }

    /// Where the next `length` bytes go.
    @inline(__always)
    private mutating func claim(_ length: Int) -> UnsafeMutablePointer<UInt8> {
        precondition(length <= buffer.count - count, "ByteCursor: the record outgrew the room reserved for it")
        defer { count += length }
        return buffer.baseAddress! + count
    }

    mutating func append(_ byte: UInt8) {
        claim(1).pointee = byte
    }

    mutating func append(bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress else { return }
        claim(bytes.count).update(from: source.assumingMemoryBound(to: UInt8.self), count: bytes.count)
    }

    mutating func append(contentsOf bytes: [UInt8]) {
        bytes.withUnsafeBytes { append(bytes: $0) }
    }

    /// Appends text known at compile time (keys, punctuation), as it is.
    mutating func append(literal: StaticString) {
        append(bytes: UnsafeRawBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    /// Appends an integer in decimal, with its sign.
    mutating func append(decimal value: some BinaryInteger) {
        if value < 0 { append(UInt8(ascii: "-")) }
        append(decimal: UInt64(value.magnitude))
    }

    /// Appends an unsigned integer in decimal, two digits at a time.
    mutating func append(decimal value: UInt64) {
        // log10 from log2 (1233 / 4096 ≈ log10(2)), then one comparison.
        let estimate = ((64 - (value | 1).leadingZeroBitCount) * 1233) >> 12
        let digits = max(1, estimate + (value >= Self.powersOfTen[estimate] ? 1 : 0))
        let end = claim(digits) + digits
        var position = end
        var rest = value
        Self.digitPairs.withUTF8Buffer { pairs in
            while rest >= 100 {
                let pair = Int(rest % 100) * 2
                rest /= 100
                position -= 2
                position[0] = pairs[pair]
                position[1] = pairs[pair + 1]
            }
            if rest >= 10 {
                position -= 2
                position[0] = pairs[Int(rest) * 2]
                position[1] = pairs[Int(rest) * 2 + 1]
            } else {
                position -= 1
                position[0] = UInt8(ascii: "0") &+ UInt8(rest)
            }
        }
    }

    /// 10^0 through 10^19.
    private static let powersOfTen: [UInt64] = (0..<20).map { power in
        (0..<power).reduce(UInt64(1)) { product, _ in product * 10 }
    }

    private static let digitPairs: StaticString = """
        00010203040506070809101112131415161718192021222324252627282930313233343536373839\
        40414243444546474849505152535455565758596061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899
        """

    /// Appends an unsigned integer in lowercase hexadecimal, without a prefix.
    mutating func append(hex value: UInt64) {
        let digits = max(1, (64 - value.leadingZeroBitCount + 3) / 4)
        let start = claim(digits)
        Self.hexDigits.withUTF8Buffer { hex in
            var rest = value
            for index in (0..<digits).reversed() {
                start[index] = hex[Int(truncatingIfNeeded: rest & 0xf)]
                rest >>= 4
            }
        }
    }

    private static let hexDigits: StaticString = "0123456789abcdef"

    /// Appends `value` as a JSON string (RFC 8259): in quotes, with quotes,
    /// backslashes and control characters escaped. Other UTF-8 is kept as is.
    mutating func append(jsonString value: String) {
        var value = value
        value.withUTF8 { utf8 in
            append(UInt8(ascii: "\""))
            // Most names, addresses and header values need no escaping: append them whole.
            if !Self.needsEscaping(UnsafeRawBufferPointer(utf8)) {
                append(bytes: UnsafeRawBufferPointer(utf8))
            } else {
                for byte in utf8 { append(jsonEscaped: byte) }
            }
            append(UInt8(ascii: "\""))
        }
    }

    /// Whether any byte is a control character, a quote, a backslash or DEL.
    static func needsEscaping(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.contains { $0 < 0x20 || $0 == 0x22 || $0 == 0x5c || $0 == 0x7f }
    }

    private mutating func append(jsonEscaped byte: UInt8) {
        switch byte {
        case UInt8(ascii: "\""): append(literal: "\\\"")
        case UInt8(ascii: "\\"): append(literal: "\\\\")
        case UInt8(ascii: "\n"): append(literal: "\\n")
        case UInt8(ascii: "\r"): append(literal: "\\r")
        case UInt8(ascii: "\t"): append(literal: "\\t")
        case 0..<0x20, 0x7f:
            append(literal: "\\u00")
            Self.hexDigits.withUTF8Buffer { digits in
                append(digits[Int(byte >> 4)])
                append(digits[Int(byte & 0xf)])
            }
        default: append(byte)
        }
    }

    /// Appends the base64 of `bytes` (standard alphabet, padded), without quotes.
    mutating func append(base64 bytes: [UInt8]) {
        PayloadBase64.encode(bytes, into: claim(PayloadBase64.encodedLength(bytes.count)))
    }
}
