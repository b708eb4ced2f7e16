import CTLSTapABI
import TLSTapCore

/// Builds raw records the way BPF lays them out, for decoder and assembler tests.
enum ChunkBuilder {
    static func record(
        function: UInt8 = 1, direction: UInt8 = 1, pid: UInt32 = 100, tid: UInt32 = 101, callTime: UInt64 = 5_000,
        ssl: UInt64 = 0xabc0, total: UInt64, offset: UInt64 = 0, comm: String = "curl", payload: [UInt8],
        kind: UInt8 = 1, lostBefore: UInt32 = 0
    ) -> [UInt8] {
        var header = tlstap_chunk_header()
        header.kind = kind
        header.library = 1
        header.function = function
        header.direction = direction
        header.pid = pid
        header.tid = tid
        header.chunk_len = UInt32(payload.count)
        header.call_time_ns = callTime
        header.ssl = ssl
        header.total_len = total
        header.chunk_offset = offset
        header.lost_before = lostBefore
        withUnsafeMutableBytes(of: &header.comm) { buffer in
            for (index, byte) in comm.utf8.prefix(15).enumerated() { buffer[index] = byte }
        }
        return withUnsafeBytes(of: header) { Array($0) } + payload
    }

    /// The chunks BPF would send for one call of `payload.count` bytes.
    /// Every chunk carries `lostBefore`: BPF sets it on the first one that
    /// gets through, so a test that drops chunks decides which that is.
    static func chunks(
        of payload: [UInt8], chunkSize: Int, tid: UInt32 = 101, callTime: UInt64 = 5_000, lostBefore: UInt32 = 0
    ) -> [DataChunk] {
        stride(from: 0, to: payload.count, by: chunkSize).map { start in
            let piece = Array(payload[start..<min(start + chunkSize, payload.count)])
            let bytes = record(
                tid: tid, callTime: callTime, total: UInt64(payload.count), offset: UInt64(start),
                payload: piece, lostBefore: lostBefore)
            return try! bytes.withUnsafeBytes { try RecordDecoder.decode($0) }
        }
    }
}
