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
        #expect(KernelFeatures(bpfLoop: true, attachCookies: true).costs.isEmpty)
        let old = KernelFeatures(bpfLoop: false, attachCookies: false).costs
        #expect(old.count == 2)
        #expect(
            old.first
                == "no bpf_loop (Linux 5.17+): the bytes of one call past the first 4 MiB are not captured and are "
                + "counted as lost")
        #expect(old.last?.hasPrefix("no attach cookies (Linux 5.15+): ") == true)
    }
}
