import CTLSTapSIMD
import ExtrasBase64
import Testing

@testable import TLSTapOutput

/// The JSON writer's base64: AVX2 blocks and swift-extras-base64's tail
/// together give exactly the text swift-extras-base64 gives alone.
@Suite struct Base64Tests {
    /// Deterministic bytes that cover every 6-bit value at every position of a block.
    static func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
    }

    static func encoded(_ bytes: [UInt8]) -> [UInt8] {
        var line: [UInt8] = Array("x".utf8)
        line.append(base64: bytes)
        return Array(line.dropFirst())
    }

    @Test func everyLengthMatchesTheLibrary() {
        for count in Array(0...200) + [16_383, 16_384, 16_385, 65_536] {
            let input = Self.bytes(count, seed: UInt64(count))
            #expect(Self.encoded(input) == Base64.encodeToBytes(bytes: input.span), "\(count) bytes")
        }
        let alphabet = Array((0..<64).map { UInt8($0) << 2 } + (0..<64).map(UInt8.init))
        #expect(
            String(decoding: Self.encoded(alphabet), as: UTF8.self)
                == String(decoding: Base64.encodeToBytes(bytes: alphabet.span), as: UTF8.self))
    }

    /// HAR's binary bodies go through the same encoder, as a String.
    @Test func theStringFormIsTheSameText() {
        for count in [0, 1, 2, 3, 47, 48, 49, 1_000] {
            let input = Self.bytes(count, seed: UInt64(count) + 100)
            #expect(Array(PayloadBase64.string(input).utf8) == Base64.encodeToBytes(bytes: input.span), "\(count)")
        }
    }

    @Test func theVectorKernelRunsWhereTheCPUHasAVX2() throws {
        let input = Self.bytes(1_000, seed: 9)
        var output = [UInt8](repeating: 0, count: 1_400)
        let done = input.withUnsafeBufferPointer { tlstap_base64_encode_blocks($0.baseAddress, 1_000, &output) }
        guard tlstap_simd_avx2() != 0 else {
            print("Base64Tests: this CPU has no AVX2; the kernel encodes nothing and the library does it all")
            #expect(done == 0)
            return
        }
        // 41 blocks of 24 bytes: the 42nd would read past byte 1,000.
        #expect(done == 984)
        #expect(output[..<1_312] == Base64.encodeToBytes(bytes: input.span)[..<1_312])
    }
}
