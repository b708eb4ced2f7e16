import CTLSTapABI
import TLSTapCore
import Testing

/// The BPF side compiles against the same header and asserts the same
/// numbers with _Static_assert; this catches a Swift importer that sees
/// the struct differently.
@Test func chunkHeaderLayoutMatchesTheBPFSide() {
    #expect(MemoryLayout<tlstap_chunk_header>.size == 72)
    #expect(MemoryLayout<tlstap_chunk_header>.offset(of: \.pid) == 4)
    #expect(MemoryLayout<tlstap_chunk_header>.offset(of: \.tid) == 8)
    #expect(MemoryLayout<tlstap_chunk_header>.offset(of: \.chunk_len) == 12)
    #expect(MemoryLayout<tlstap_chunk_header>.offset(of: \.call_time_ns) == 16)
    #expect(MemoryLayout<tlstap_chunk_header>.offset(of: \.ssl) == 24)
    #expect(MemoryLayout<tlstap_chunk_header>.offset(of: \.total_len) == 32)
    #expect(MemoryLayout<tlstap_chunk_header>.offset(of: \.chunk_offset) == 40)
    #expect(MemoryLayout<tlstap_chunk_header>.offset(of: \.comm) == 48)
    #expect(MemoryLayout<tlstap_chunk_header>.offset(of: \.fd) == 64)
    #expect(MemoryLayout<tlstap_socket_record>.size == 80)
    #expect(MemoryLayout<tlstap_socket_record>.offset(of: \.fd) == 12)
    #expect(MemoryLayout<tlstap_socket_record>.offset(of: \.time_ns) == 16)
    #expect(MemoryLayout<tlstap_socket_record>.offset(of: \.local_addr) == 24)
    #expect(MemoryLayout<tlstap_socket_record>.offset(of: \.remote_addr) == 40)
    #expect(MemoryLayout<tlstap_socket_record>.offset(of: \.local_port) == 56)
    #expect(MemoryLayout<tlstap_socket_record>.offset(of: \.remote_port) == 58)
    #expect(MemoryLayout<tlstap_socket_record>.offset(of: \.comm) == 64)
    #expect(MemoryLayout<tlstap_lost_counts>.size == 16)
    #expect(TLSTAP_CHUNK_MAX == 16 * 1024)
}

/// The Swift socket event kinds are the C enum's values (tlstap_abi.h).
@Test func socketEventKindsMatchTheBPFSide() {
    let pairs: [(SocketEvent.Kind, tlstap_socket_event)] = [
        (.connect, TLSTAP_SOCKET_CONNECT), (.accept, TLSTAP_SOCKET_ACCEPT), (.mid, TLSTAP_SOCKET_MID),
        (.close, TLSTAP_SOCKET_CLOSE), (.exit, TLSTAP_SOCKET_EXIT), (.exec, TLSTAP_SOCKET_EXEC),
        (.mapCode, TLSTAP_SOCKET_MAP), (.unprobedTLS, TLSTAP_SOCKET_UNPROBED_TLS),
    ]
    for (kind, event) in pairs { #expect(UInt32(kind.rawValue) == event.rawValue, "\(kind)") }
}
