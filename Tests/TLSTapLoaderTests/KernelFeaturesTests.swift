import CTLSTapBPF
import Testing

@testable import TLSTapLoader

@Suite struct KernelFeaturesTests {
    /// Every program a stack names is in the BPF object, and BoringSSL's
    /// entry programs are its own: the library is told by the program, not
    /// by an attach cookie, which kernels before 5.15 do not have.
    @Test func everyStackProgramIsInTheObjectAndBoringSSLHasItsOwnEntries() throws {
        let skeleton = try #require(CTLSTapBPF_open())
        defer { CTLSTapBPF_destroy(skeleton, nil, 0) }
        for stack in TLSStack.all {
            for probe in stack.probes {
                for program in [probe.enter] + (probe.exit.map { [$0] } ?? []) {
                    let name = CTLSTapBPF_program_name(program).map { String(cString: $0) }
                    #expect(CTLSTapBPF_program(skeleton, program) != nil, "\(stack.library) \(name ?? "unnamed")")
                }
            }
        }
        let names = { (stack: TLSStack) in
            Set(stack.probes.compactMap { CTLSTapBPF_program_name($0.enter).map { String(cString: $0) } })
        }
        #expect(
            names(.boringSSL) == [
                "probe_boringssl_write_enter", "probe_boringssl_read_enter", "probe_boringssl_write_ex_enter",
                "probe_boringssl_read_ex_enter", "probe_boringssl_handshake_enter", "probe_object_free_enter",
            ])
        #expect(names(.openSSL).isDisjoint(with: names(.boringSSL).subtracting(["probe_object_free_enter"])))
    }

    /// What `tlstap check` says each missing feature costs.
    @Test func eachMissingFeatureSaysWhatItCosts() {
        #expect(KernelFeatures(bpfLoop: true, attachCookies: true, socketTracepoints: true).costs.isEmpty)
        let old = KernelFeatures(bpfLoop: false, attachCookies: false, socketTracepoints: false).costs
        #expect(old.count == 3)
        #expect(
            old.first
                == "no bpf_loop (Linux 5.17+): the bytes of one call past the first 4 MiB are not captured and are "
                + "counted as lost")
        #expect(old.dropFirst().first?.hasPrefix("no attach cookies (Linux 5.15+): ") == true)
        #expect(
            old.last
                == "no socket tracepoints (Linux 6.3+): every syscall of every process on the host, traced or not, "
                + "passes through tlstap's syscall hook (about 100-250 ns each)")
    }

    /// Tracepoints are looked up in the kernel's BTF: TCP's state change
    /// (Linux 4.16+) is there on every kernel tlstap runs on, a made-up one
    /// is not, and one missing name is enough to say no.
    @Test func tracepointsAreFoundInTheKernelsBTF() {
        #expect(KernelFeatures.hasTracepoints(["inet_sock_set_state", "sched_process_exec"]))
        #expect(!KernelFeatures.hasTracepoints(["tlstap_no_such_tracepoint"]))
        #expect(!KernelFeatures.hasTracepoints(["inet_sock_set_state", "tlstap_no_such_tracepoint"]))
        #expect(
            KernelFeatures.socketTracepointNames == [
                "sock_send_length", "sock_recv_length", "vm_unmapped_area", "tcp_destroy_sock",
            ])
    }
}
