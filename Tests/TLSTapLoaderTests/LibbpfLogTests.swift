import Testing

@testable import TLSTapLoader

@Suite struct LibbpfLogTests {
    /// The end of the log Linux 5.10 gave for tlstap's programs: the reason
    /// is the line before the verifier's statistics, and the error names it.
    @Test func aVerifierLogGivesItsProgramAndTheLineItEndsOn() {
        let log = """
            prog 'probe_read_enter': -- BEGIN PROG LOAD LOG --
            ; int probe_read_enter(struct bpf_raw_tracepoint_args *ctx)
            0: (bf) r6 = r1
            ; regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
            131: (85) call unknown#158
            invalid func unknown#158
            processed 213 insns (limit 1000000) max_states_per_insn 0 total_states 17 peak_states 17 mark_read 8
            -- END PROG LOAD LOG --
            """
        #expect(LibbpfLog.reason(in: log) == "probe_read_enter: invalid func unknown#158")
        #expect(LibbpfLog.reason(in: "prog 'x': -- BEGIN PROG LOAD LOG --\n-- END PROG LOAD LOG --") == nil)
    }
}
