import CTLSTapABI
import Foundation
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
    #expect(MemoryLayout<tlstap_process_record>.size == 48)
    #expect(MemoryLayout<tlstap_process_record>.offset(of: \.fd) == 12)
    #expect(MemoryLayout<tlstap_process_record>.offset(of: \.time_ns) == 16)
    #expect(MemoryLayout<tlstap_process_record>.offset(of: \.flags) == 24)
    #expect(MemoryLayout<tlstap_process_record>.offset(of: \.comm) == 32)
    #expect(MemoryLayout<tlstap_lost_counts>.size == 16)
    #expect(TLSTAP_CHUNK_MAX == 16 * 1024)
}

/// The enums shared with BPF: every constant of tlstap_abi.h's enum has a
/// Swift case with its value, and every Swift case a constant (the header is
/// read as the BPF side compiles it; the switches below are exhaustive, so a
/// new Swift case does not compile until it is named here).
@Suite struct ABIEnumTests {
    static let header: String = {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/CTLSTapABI/include/tlstap_abi.h").path
        return (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }()

    /// The constants of `enum name` in the header, comments left out.
    static func cEnum(_ name: String) -> [String: Int] {
        guard let start = header.range(of: "enum \(name) {"),
            let end = header[start.upperBound...].range(of: "};")
        else { return [:] }
        var body = String(header[start.upperBound..<end.lowerBound])
        while let open = body.range(of: "/*"), let close = body[open.upperBound...].range(of: "*/") {
            body.removeSubrange(open.lowerBound..<close.upperBound)
        }
        var constants: [String: Int] = [:]
        for entry in body.split(separator: ",") {
            let parts = entry.split(separator: "=").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            if parts.count == 2, let value = Int(parts[1]) { constants[parts[0]] = value }
        }
        return constants
    }

    /// Checks `cases` (Swift raw value by C name) against the header's enum;
    /// `without` are C constants with no Swift case, and why.
    static func check(_ name: String, _ cases: [String: Int], without: [String: String] = [:]) {
        let constants = cEnum(name)
        #expect(!constants.isEmpty, "enum \(name) not found in tlstap_abi.h")
        for (constant, value) in constants where without[constant] == nil {
            #expect(
                cases[constant] == value,
                "\(constant) = \(value) in C, \(cases[constant].map(String.init) ?? "no case") in Swift")
        }
        for constant in cases.keys { #expect(constants[constant] != nil, "\(constant) is not in enum \(name)") }
    }

    @Test func librariesMatch() {
        let cases = TLSLibrary.allCases.map { library -> (String, Int) in
            let name =
                switch library {
                case .openssl: "TLSTAP_LIB_OPENSSL"
                case .socket: "TLSTAP_LIB_SOCKET"
                case .gnutls: "TLSTAP_LIB_GNUTLS"
                case .boringssl: "TLSTAP_LIB_BORINGSSL"
                case .go: "TLSTAP_LIB_GO"
                case .nss: "TLSTAP_LIB_NSS"
                }
            return (name, Int(library.rawValue))
        }
        Self.check("tlstap_library", Dictionary(uniqueKeysWithValues: cases))
    }

    @Test func functionsMatch() {
        let cases = TLSFunction.allCases.map { function -> (String, Int) in
            let name =
                switch function {
                case .sslWrite: "TLSTAP_FUNC_SSL_WRITE"
                case .sslRead: "TLSTAP_FUNC_SSL_READ"
                case .sslWriteEx: "TLSTAP_FUNC_SSL_WRITE_EX"
                case .sslReadEx: "TLSTAP_FUNC_SSL_READ_EX"
                case .gnutlsRecordSend: "TLSTAP_FUNC_GNUTLS_RECORD_SEND"
                case .gnutlsRecordRecv: "TLSTAP_FUNC_GNUTLS_RECORD_RECV"
                case .goWrite: "TLSTAP_FUNC_GO_WRITE"
                case .goRead: "TLSTAP_FUNC_GO_READ"
                case .prWrite: "TLSTAP_FUNC_PR_WRITE"
                case .prRead: "TLSTAP_FUNC_PR_READ"
                case .prSend: "TLSTAP_FUNC_PR_SEND"
                case .prRecv: "TLSTAP_FUNC_PR_RECV"
                case .write: "TLSTAP_FUNC_SYS_WRITE"
                case .read: "TLSTAP_FUNC_SYS_READ"
                case .sendto: "TLSTAP_FUNC_SYS_SENDTO"
                case .recvfrom: "TLSTAP_FUNC_SYS_RECVFROM"
                case .writev: "TLSTAP_FUNC_SYS_WRITEV"
                case .readv: "TLSTAP_FUNC_SYS_READV"
                case .sendmsg: "TLSTAP_FUNC_SYS_SENDMSG"
                case .recvmsg: "TLSTAP_FUNC_SYS_RECVMSG"
                }
            return (name, Int(function.rawValue))
        }
        Self.check(
            "tlstap_function", Dictionary(uniqueKeysWithValues: cases),
            without: ["TLSTAP_FUNC_SSL_HANDSHAKE": "names a TLS object's fd; it carries no data, so no event"])
    }

    @Test func directionsMatch() {
        let cases = Direction.allCases.map { direction -> (String, Int) in
            let name =
                switch direction {
                case .outbound: "TLSTAP_DIR_OUT"
                case .inbound: "TLSTAP_DIR_IN"
                }
            return (name, Int(direction.rawValue))
        }
        Self.check("tlstap_direction", Dictionary(uniqueKeysWithValues: cases))
    }

    @Test func socketEventsMatch() {
        let cases = SocketEvent.Kind.allCases.map { kind -> (String, Int) in
            let name =
                switch kind {
                case .connect: "TLSTAP_SOCKET_CONNECT"
                case .accept: "TLSTAP_SOCKET_ACCEPT"
                case .mid: "TLSTAP_SOCKET_MID"
                case .close: "TLSTAP_SOCKET_CLOSE"
                case .unprobedTLS: "TLSTAP_SOCKET_UNPROBED_TLS"
                }
            return (name, Int(kind.rawValue))
        }
        let legacy = "a process event in captures saved before process records: decoded as a ProcessEvent"
        Self.check(
            "tlstap_socket_event", Dictionary(uniqueKeysWithValues: cases),
            without: [
                "TLSTAP_SOCKET_LEGACY_EXIT": legacy, "TLSTAP_SOCKET_LEGACY_EXEC": legacy,
                "TLSTAP_SOCKET_LEGACY_MAP": legacy,
            ])
    }

    @Test func processEventsMatch() {
        let cases = ProcessEvent.Kind.allCases.map { kind -> (String, Int) in
            let name =
                switch kind {
                case .exec: "TLSTAP_PROCESS_EXEC"
                case .mapCode: "TLSTAP_PROCESS_MAP"
                case .exit: "TLSTAP_PROCESS_EXIT"
                }
            return (name, Int(kind.rawValue))
        }
        Self.check("tlstap_process_event", Dictionary(uniqueKeysWithValues: cases))
    }

    /// The header the BPF side compiles is the one Swift imports: its
    /// constants, as the compiler sees them, agree with the text read above.
    @Test func theHeaderTextIsWhatTheCompilerSees() {
        #expect(Self.cEnum("tlstap_library")["TLSTAP_LIB_NSS"] == Int(TLSTAP_LIB_NSS.rawValue))
        #expect(Self.cEnum("tlstap_function")["TLSTAP_FUNC_PR_RECV"] == Int(TLSTAP_FUNC_PR_RECV.rawValue))
        #expect(
            Self.cEnum("tlstap_socket_event")["TLSTAP_SOCKET_UNPROBED_TLS"] == Int(TLSTAP_SOCKET_UNPROBED_TLS.rawValue))
    }
}
