import CTLSTapSIMD
import ExtrasBase64

/// The building blocks of the JSON Lines writer: JSON pieces appended as
/// bytes to an output buffer, with no `String` in between.
///
/// A busy capture renders tens of thousands of records a second; building
/// each as a String first cost more than everything else tlstap does per
/// event (allocations, reference counting, UTF-8 checks), so the records are
/// written straight into the output buffer.
extension Array where Element == UInt8 {
    /// Appends text known at compile time (keys, punctuation), as it is.
    mutating func append(literal: StaticString) {
        literal.withUTF8Buffer { append(contentsOf: $0) }
    }

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

    /// Appends an unsigned integer in decimal.
    mutating func append(decimal value: UInt64) {
        append(value, radix: 10)
    }

    /// Appends an integer in decimal, with its sign.
    mutating func append(decimal value: some BinaryInteger) {
        if value < 0 { append(UInt8(ascii: "-")) }
        append(decimal: UInt64(value.magnitude))
    }

    /// Appends an unsigned integer in lowercase hexadecimal, without a prefix.
    mutating func append(hex value: UInt64) {
        append(value, radix: 16)
    }

    @inline(__always)
    private mutating func append(_ value: UInt64, radix: UInt64) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var start = digits.count
            var rest = value
            repeat {
                start -= 1
                let digit = UInt8(truncatingIfNeeded: rest % radix)
                digits[start] = digit < 10 ? UInt8(ascii: "0") &+ digit : UInt8(ascii: "a") &+ (digit &- 10)
                rest /= radix
            } while rest > 0
            append(contentsOf: UnsafeBufferPointer(rebasing: digits[start...]))
        }
    }

    /// Appends `value` as a JSON string (RFC 8259): in quotes, with quotes,
    /// backslashes and control characters escaped. Other UTF-8 is kept as is.
    mutating func append(jsonString value: String) {
        var value = value
        value.withUTF8 { utf8 in
            append(UInt8(ascii: "\""))
            // Most names, addresses and header values need no escaping: append them whole.
            if utf8.allSatisfy({ $0 >= 0x20 && $0 != 0x22 && $0 != 0x5c && $0 != 0x7f }) {
                append(contentsOf: utf8)
            } else {
                for byte in utf8 { append(jsonEscaped: byte) }
            }
            append(UInt8(ascii: "\""))
        }
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
            let hexDigits: StaticString = "0123456789abcdef"
            hexDigits.withUTF8Buffer { digits in
                append(digits[Int(byte >> 4)])
                append(digits[Int(byte & 0xf)])
            }
        default: append(byte)
        }
    }

    /// Appends the base64 of `bytes` (standard alphabet, padded), without quotes.
    ///
    /// Where the CPU has AVX2, a vector kernel (CTLSTapSIMD, several times
    /// faster) encodes whole 24-byte blocks; swift-extras-base64 encodes the
    /// rest, and all of it elsewhere.
    mutating func append(base64 bytes: [UInt8]) {
        append(addingCapacity: Base64.encodedLength(bytesCount: bytes.count)) { output in
            var vectorised = 0
            bytes.withUnsafeBufferPointer { input in
                output.withUnsafeMutableBufferPointer { buffer, initialized in
                    guard let input = input.baseAddress, let free = buffer.baseAddress else { return }
                    vectorised = tlstap_base64_encode_blocks(input, bytes.count, free + initialized)
                    initialized += vectorised / 3 * 4
                }
            }
            Base64.encode(bytes: bytes.span.extracting(vectorised...), into: &output)
        }
    }
}
