import CBrotli
import CompressNIO
import NIOCore

/// Undoes Content-Encoding (gzip, deflate, br) on captured bodies with the
/// libraries that implement them: zlib through CompressNIO, brotli through
/// Debian's libbrotlidec. Output is capped, so a small compressed body
/// cannot expand without bound.
public enum BodyDecoding {
    /// The decoded body, or nil when the encoding is unknown, the bytes do
    /// not decode (a truncated capture, say), or the result would exceed `limit`.
    public static func decode(_ body: [UInt8], contentEncoding: String, limit: Int) -> [UInt8]? {
        switch contentEncoding.lowercased().trimmed {
        case "gzip", "x-gzip": return zlib(body, algorithms: [.gzip()], limit: limit)
        // "deflate" is zlib-wrapped by the standard; some servers send it raw.
        case "deflate": return zlib(body, algorithms: [.zlib(), .deflate()], limit: limit)
        case "br": return brotli(body, limit: limit)
        default: return nil
        }
    }

    private static func zlib(_ body: [UInt8], algorithms: [CompressionAlgorithm], limit: Int) -> [UInt8]? {
        for algorithm in algorithms {
            var buffer = ByteBuffer(bytes: body)
            // A truncated stream decodes as far as it goes; nothing at all is a failure.
            if let decoded = try? buffer.decompress(with: algorithm, maxSize: limit), decoded.readableBytes > 0 {
                return Array(decoded.readableBytesView)
            }
        }
        return nil
    }

    private static func brotli(_ body: [UInt8], limit: Int) -> [UInt8]? {
        guard let decoder = BrotliDecoderCreateInstance(nil, nil, nil) else { return nil }
        defer { BrotliDecoderDestroyInstance(decoder) }
        var output: [UInt8] = []
        var window = [UInt8](repeating: 0, count: 64 * 1024)
        return body.withUnsafeBufferPointer { input -> [UInt8]? in
            var availableIn = input.count
            var nextIn = input.baseAddress
            while true {
                var availableOut = window.count
                let result = window.withUnsafeMutableBufferPointer { out -> BrotliDecoderResult in
                    var nextOut = out.baseAddress
                    return BrotliDecoderDecompressStream(decoder, &availableIn, &nextIn, &availableOut, &nextOut, nil)
                }
                output += window[..<(window.count - availableOut)]
                if output.count > limit { return nil }
                switch result {
                case BROTLI_DECODER_RESULT_SUCCESS: return output
                case BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT: continue
                default: return nil  // an error, or input ended early
                }
            }
        }
    }
}
