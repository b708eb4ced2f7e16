import CTLSTapBPF
import TLSTapCore

/// A TLS stack tlstap probes, described in one place: the library it is
/// reported as, how its shared library's file is named, and which BPF
/// program goes on which of its functions. Its programs are in
/// `bpf/stacks/<stack>.bpf.h`; its `TLSLibrary` and `TLSFunction` values in
/// `tlstap_abi.h` (checked against the Swift enums by `ABIEnumTests`).
///
/// Stacks linked into a program (OpenSSL or BoringSSL in an executable,
/// Go's crypto/tls) are recognised by their symbols (`LibraryDiscovery`).
struct TLSStack: Sendable {
    let library: TLSLibrary
    /// The shared library's file name up to its version (`libssl.so` of
    /// `libssl.so.3`); nil for stacks that come only linked into programs.
    let fileNamePrefix: String?
    /// The entry and return programs per symbol, in a file of this stack.
    let probes: [ProbeSpec]

    /// A probe pair: the programs that go on one function.
    struct ProbeSpec: Sendable {
        /// Where the exit program goes.
        enum Exit: Sendable {
            /// A uretprobe: the kernel swaps the return address.
            case uretprobe
            /// An uprobe on each of the function's RET instructions (Go:
            /// a uretprobe breaks when the goroutine's stack moves).
            case atEachReturn
        }

        var symbol: String
        var enter: CTLSTapBPF_Program
        /// nil for functions whose arguments are all the program needs.
        var exit: CTLSTapBPF_Program?
        var exitAt = Exit.uretprobe
        /// Absent from older versions (OpenSSL < 1.1.1), so a miss is not an error.
        var optional: Bool = false
        /// A function that `symbol` only passes its call on to, with the
        /// same first three arguments and the same result, and that other
        /// calls reach directly: probed instead of `symbol`, covering both,
        /// when `symbol`'s entry would single-step and its own would not.
        var passedOnTo: String? = nil
    }

    static let openSSL = TLSStack(
        library: .openssl, fileNamePrefix: "libssl.so",
        probes: openSSLAPI(
            write: CTLSTapBPF_SSL_WRITE_ENTER, read: CTLSTapBPF_SSL_READ_ENTER, writeEx: CTLSTapBPF_SSL_WRITE_EX_ENTER,
            readEx: CTLSTapBPF_SSL_READ_EX_ENTER, handshake: CTLSTapBPF_SSL_HANDSHAKE_ENTER))

    /// BoringSSL: OpenSSL's API, with entry programs of its own that report
    /// it, found linked into programs, often with a symbol prefix.
    static let boringSSL = TLSStack(
        library: .boringssl, fileNamePrefix: nil,
        probes: openSSLAPI(
            write: CTLSTapBPF_BORINGSSL_WRITE_ENTER, read: CTLSTapBPF_BORINGSSL_READ_ENTER,
            writeEx: CTLSTapBPF_BORINGSSL_WRITE_EX_ENTER, readEx: CTLSTapBPF_BORINGSSL_READ_EX_ENTER,
            handshake: CTLSTapBPF_BORINGSSL_HANDSHAKE_ENTER))

    /// The OpenSSL API's probes, with one flavour's entry programs.
    private static func openSSLAPI(
        write: CTLSTapBPF_Program, read: CTLSTapBPF_Program, writeEx: CTLSTapBPF_Program,
        readEx: CTLSTapBPF_Program, handshake: CTLSTapBPF_Program
    ) -> [ProbeSpec] {
        [
            ProbeSpec(symbol: "SSL_write", enter: write, exit: CTLSTapBPF_SSL_WRITE_EXIT, optional: false),
            ProbeSpec(symbol: "SSL_read", enter: read, exit: CTLSTapBPF_SSL_READ_EXIT, optional: false),
            ProbeSpec(symbol: "SSL_write_ex", enter: writeEx, exit: CTLSTapBPF_SSL_WRITE_EXIT, optional: true),
            ProbeSpec(symbol: "SSL_read_ex", enter: readEx, exit: CTLSTapBPF_SSL_READ_EXIT, optional: true),
            // Sends no data: names the connection of programs that use memory BIOs (node) before their first write.
            ProbeSpec(
                symbol: "SSL_do_handshake", enter: handshake, exit: CTLSTapBPF_SSL_HANDSHAKE_EXIT, optional: true),
            // A freed object's socket is forgotten before its address is reused.
            ProbeSpec(symbol: "SSL_free", enter: CTLSTapBPF_OBJECT_FREE_ENTER, exit: nil, optional: true),
        ]
    }

    static let gnuTLS = TLSStack(
        library: .gnutls, fileNamePrefix: "libgnutls.so",
        probes: [
            // gnutls_record_send(s, data, size) is gnutls_record_send2(s, data, size, 0, 0) since GnuTLS 3.6.3.
            ProbeSpec(
                symbol: "gnutls_record_send", enter: CTLSTapBPF_GNUTLS_SEND_ENTER, exit: CTLSTapBPF_SSL_WRITE_EXIT,
                optional: false, passedOnTo: "gnutls_record_send2"),
            ProbeSpec(
                symbol: "gnutls_record_recv", enter: CTLSTapBPF_GNUTLS_RECV_ENTER, exit: CTLSTapBPF_SSL_READ_EXIT,
                optional: false),
            ProbeSpec(symbol: "gnutls_deinit", enter: CTLSTapBPF_OBJECT_FREE_ENTER, exit: nil, optional: true),
        ])

    /// NSS, through NSPR's I/O functions; the entry programs skip fds without an SSL layer.
    static let nss = TLSStack(
        library: .nss, fileNamePrefix: "libnspr4.so",
        probes: [
            ProbeSpec(
                symbol: "PR_Write", enter: CTLSTapBPF_PR_WRITE_ENTER, exit: CTLSTapBPF_SSL_WRITE_EXIT, optional: false),
            ProbeSpec(
                symbol: "PR_Send", enter: CTLSTapBPF_PR_SEND_ENTER, exit: CTLSTapBPF_SSL_WRITE_EXIT, optional: false),
            ProbeSpec(
                symbol: "PR_Read", enter: CTLSTapBPF_PR_READ_ENTER, exit: CTLSTapBPF_SSL_READ_EXIT, optional: false),
            ProbeSpec(
                symbol: "PR_Recv", enter: CTLSTapBPF_PR_RECV_ENTER, exit: CTLSTapBPF_SSL_READ_EXIT, optional: false),
        ])

    /// Go's crypto/tls: (*Conn).Write (entered where its records start) and
    /// Read, at their entry (past the stack bound check) and each RET, which
    /// `GoBinary` finds; the handshakes name the connection's socket early.
    static let go = TLSStack(
        library: .go, fileNamePrefix: nil,
        probes: [
            ProbeSpec(
                symbol: GoTLSFunctions.writeSymbol, enter: CTLSTapBPF_GO_WRITE_ENTER, exit: CTLSTapBPF_GO_WRITE_RETURN,
                exitAt: .atEachReturn),
            ProbeSpec(
                symbol: GoTLSFunctions.readSymbol, enter: CTLSTapBPF_GO_READ_ENTER, exit: CTLSTapBPF_GO_READ_RETURN,
                exitAt: .atEachReturn),
        ]
            + GoTLSFunctions.handshakeSymbols.map { symbol in
                ProbeSpec(
                    symbol: symbol, enter: CTLSTapBPF_GO_HANDSHAKE_ENTER, exit: CTLSTapBPF_GO_HANDSHAKE_RETURN,
                    exitAt: .atEachReturn, optional: true)
            })

    /// Plaintext TCP (`--plaintext`): syscalls, no library.
    static let socket = TLSStack(library: .socket, fileNamePrefix: nil, probes: [])

    static let all: [TLSStack] = [openSSL, boringSSL, gnuTLS, nss, go, socket]

    /// The stack reported as `library`.
    static func of(_ library: TLSLibrary) -> TLSStack {
        switch library {
        case .openssl: openSSL
        case .boringssl: boringSSL
        case .gnutls: gnuTLS
        case .nss: nss
        case .go: go
        case .socket: socket
        }
    }

    /// The stack whose shared library a file name names (any soname version), if any.
    static func ofFile(named name: Substring) -> TLSStack? {
        all.first { stack in stack.fileNamePrefix.map { name.hasPrefix($0) } ?? false }
    }

    /// Where memory-BIO programs' records are followed to their socket
    /// (bpf/bindings.bpf.h): in libcrypto beside libssl, or in the file
    /// that links OpenSSL or BoringSSL in.
    static let bioWriteProbe = ProbeSpec(
        symbol: "BIO_write", enter: CTLSTapBPF_BIO_WRITE_ENTER, exit: nil, optional: false)
}
