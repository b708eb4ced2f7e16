import CLibbpf
import CTLSTapBPF
import Glibc

/// The BPF features tlstap uses where the kernel has them, and does without
/// where it does not (Linux 5.10 to 5.16), with what each absence costs.
/// Probed once, by loading tiny test programs.
public struct KernelFeatures: Sendable, Equatable {
    /// `bpf_loop` (5.17+): a call's chunks are sent however many there are.
    /// Without it they go in a loop the verifier walks to its end, so only
    /// the first `boundedCallBytes` of a call are sent.
    public var bpfLoop: Bool
    /// Attach cookies (5.15+): OpenSSL's probes go into the function that
    /// SSL_write and SSL_write_ex both call when their own first
    /// instruction would make every probe hit single-step. Without them the
    /// probes stay on SSL_write, SSL_read and their _ex forms: slower, and
    /// blind to calls that reach that function another way (an SSL BIO),
    /// which are reported as TLS tlstap cannot probe.
    public var attachCookies: Bool
    /// The socket layer's tracepoints (Linux 6.3+: sock_send_length,
    /// sock_recv_length; with vm_unmapped_area, tcp_destroy_sock and
    /// `bpfLoop`): tlstap hooks socket calls, the closes and the mmaps it
    /// needs, not every syscall of every process. Without them (or with
    /// --plaintext), sys_enter.
    public var socketTracepoints: Bool

    /// The largest call sent whole without `bpfLoop` (TLSTAP_BOUNDED_CHUNKS
    /// chunks of TLSTAP_CHUNK_MAX bytes, emit.bpf.h); the rest is counted lost.
    public static let boundedCallBytes = 256 * 16 * 1024

    /// The environment variable that hides features from tlstap, so that
    /// the code paths of older kernels run on a newer one (the tests use
    /// it): a comma-separated list of `bpf_loop`, `attach_cookies` and
    /// `socket_tracepoints`.
    public static let hidingVariable = "TLSTAP_KERNEL_WITHOUT"

    /// The features `TLSTAP_KERNEL_WITHOUT` names.
    static let hidden: Set<String> = Set(
        getenv(hidingVariable).map { String(cString: $0).split(separator: ",").map(String.init) } ?? [])

    /// This kernel's, less what `TLSTAP_KERNEL_WITHOUT` hides.
    public static let current: KernelFeatures = {
        let bpfLoop = !hidden.contains("bpf_loop") && hasHelper(BPF_FUNC_loop)
        return KernelFeatures(
            bpfLoop: bpfLoop,
            attachCookies: !hidden.contains("attach_cookies") && hasHelper(BPF_FUNC_get_attach_cookie),
            socketTracepoints: bpfLoop && !hidden.contains("socket_tracepoints")
                && CTLSTapBPF_kernel_has_socket_tracepoints())
    }()

    /// The BTF tracepoints `socketTracepoints` needs (the C loader's list).
    static let socketTracepointNames: [String] = (0...).lazy.map { CTLSTapBPF_socket_tracepoint($0) }
        .prefix { $0 != nil }.compactMap { $0.map { String(cString: $0) } }

    /// What each missing feature costs, one line each, for `tlstap check`
    /// and the log at start; empty when nothing is missing.
    public var costs: [String] {
        var costs: [String] = []
        if !bpfLoop {
            costs.append(
                "no bpf_loop (Linux 5.17+): the bytes of one call past the first \(Self.boundedCallBytes >> 20) MiB "
                    + "are not captured and are counted as lost")
        }
        if !attachCookies {
            costs.append(
                "no attach cookies (Linux 5.15+): OpenSSL's probes stay on SSL_write, SSL_read and their _ex forms, "
                    + "where the kernel may single-step them (slower calls), and calls through an SSL BIO (as openssl "
                    + "s_server makes) are not captured but named as TLS tlstap cannot probe")
        }
        if !socketTracepoints {
            costs.append(
                "no socket tracepoints (Linux 6.3+): every syscall of every process on the host, traced or not, "
                    + "passes through tlstap's syscall hook (about 100-250 ns each)")
        }
        return costs
    }

    /// The C loader's form.
    var forLoader: CTLSTapBPF_KernelFeatures {
        CTLSTapBPF_KernelFeatures(
            bpf_loop: bpfLoop, attach_cookies: attachCookies, socket_tracepoints: socketTracepoints)
    }

    private static func hasHelper(_ helper: bpf_func_id) -> Bool {
        libbpf_probe_bpf_helper(BPF_PROG_TYPE_KPROBE, helper, nil) == 1
    }

    /// Whether the kernel's BTF has every one of these BTF tracepoints.
    static func hasTracepoints(_ names: [String]) -> Bool {
        names.allSatisfy { CTLSTapBPF_kernel_has_tracepoint($0) }
    }
}
