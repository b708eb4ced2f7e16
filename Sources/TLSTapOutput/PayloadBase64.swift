import CTLSTapSIMD
import ExtrasBase64

/// Base64 of captured payloads (standard alphabet, padded): the hottest
/// loop of a capture rendered as JSON. Where the CPU has AVX2, a vector
/// kernel (`CTLSTapSIMD`) encodes whole 24-byte blocks, and
/// swift-extras-base64 the rest; elsewhere swift-extras-base64 all of it.
/// The kernel took a 64 KiB event's rendering from 37.5 to 6.0 µs
/// (BENCHMARKS.md, "What each step bought", session 6).
enum PayloadBase64 {
    /// The length of the base64 of `count` bytes.
    static func encodedLength(_ count: Int) -> Int {
        Base64.encodedLength(bytesCount: count)
    }

    /// Writes the base64 of `bytes` at `output`, which has room for
    /// `encodedLength(bytes.count)` bytes.
    static func encode(_ bytes: [UInt8], into output: UnsafeMutablePointer<UInt8>) {
        let length = encodedLength(bytes.count)
        bytes.withUnsafeBufferPointer { input in
            guard let source = input.baseAddress else { return }
            let vectorised = tlstap_base64_encode_blocks(source, input.count, output)
            let done = vectorised / 3 * 4
            var rest = UnsafeMutableBufferPointer(start: output + done, count: length - done).mutableSpan
            _ = Base64.encode(bytes: UnsafeBufferPointer(rebasing: input[vectorised...]).span, into: &rest)
        }
    }

    /// The base64 of `bytes` as a string (HAR's bodies).
    static func string(_ bytes: [UInt8]) -> String {
        String(unsafeUninitializedCapacity: encodedLength(bytes.count)) { output in
            guard let start = output.baseAddress else { return 0 }
            encode(bytes, into: start)
            return encodedLength(bytes.count)
        }
    }
}
