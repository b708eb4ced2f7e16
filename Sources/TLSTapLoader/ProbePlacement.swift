import CCapstone

/// Where a probe on an OpenSSL read or write function goes so that a hit
/// costs one trap, not two.
///
/// On x86-64 the kernel emulates a few instructions under a uprobe's
/// breakpoint: push of a register, call, jmp, conditional jumps and nop. Any
/// other instruction is copied out of line and single-stepped, a second
/// trap on every hit, and on a virtual machine the most expensive part of a
/// probe: on this project's test VM, nginx served 65,000 requests/s with
/// empty probes on the functions below and 10,000 with them on SSL_write
/// and SSL_read themselves.
///
/// `endbr64`, which CET-enabled builds put first in every function, is
/// single-stepped too, and so is the stack bound check every Go function
/// begins with: a probe then goes on the first emulated instruction after
/// them (`cheapEntryOffset`).
///
/// Debian's OpenSSL 3 compiles SSL_write, SSL_read and their `_ex` forms
/// into wrappers that begin with `sub $n,%rsp` and call one inner function
/// each (`ssl_write_internal(ssl, buf, num, [flags,] size_t *count)`, the
/// same for reads), which begins with a push. When a wrapper passes its
/// first three arguments through unchanged, that inner function is probed
/// instead: every call of SSL_write or SSL_write_ex goes through it once.
public enum ProbePlacement {
    /// A wrapper's call of its inner function, as file offsets.
    public struct InnerCall: Equatable, Sendable {
        /// The inner function's first instruction.
        public var callee: UInt64
        /// The instruction after the call: the return address of the wrapper's calls.
        public var returnSite: UInt64
        /// Which argument of the inner function is its `size_t *` count: 4, or
        /// 5 where a flags argument comes first (OpenSSL 3.2 and later).
        public var countArgument: Int
    }

    /// Where in a function whose code is `code` an entry probe costs one
    /// trap: at the first instruction the kernel emulates, if only
    /// instructions that change nothing the probes read come before it:
    /// `endbr64`, which CET builds put first in every function; cmp, test
    /// and nop, which set flags only; and lea, mov or sub into %r12 or
    /// %r13, which Go's stack bound check (`cmp 0x10(%r14),%rsp`, or with a
    /// large frame `lea -N(%rsp),%r12; cmp 0x10(%r14),%r12`) uses as scratch
    /// and no probe reads (C code saves them before it writes them). There
    /// the arguments and the return address are still those of the entry,
    /// so entry and return probes work unchanged.
    /// - Returns: the offset in `code` (0 when the first instruction is
    ///   emulated), or nil.
    public static func cheapEntryOffset(_ code: [UInt8]) -> UInt64? {
        if kernelEmulates(code) { return 0 }
        var handle: csh = 0
        guard cs_open(CS_ARCH_X86, CS_MODE_64, &handle) == CS_ERR_OK else { return nil }
        defer { cs_close(&handle) }
        cs_option(handle, CS_OPT_DETAIL, Int(CS_OPT_ON.rawValue))
        var instructions: UnsafeMutablePointer<cs_insn>?
        let count = code.withUnsafeBufferPointer { cs_disasm(handle, $0.baseAddress, $0.count, 0, 4, &instructions) }
        guard count > 0, let instructions else { return nil }
        defer { cs_free(instructions, count) }
        for index in 0..<count {
            let offset = Int(instructions[index].address)
            if index > 0, kernelEmulates(Array(code[offset...])) { return UInt64(offset) }
            guard changesNothingProbesRead(instructions[index]) else { return nil }
        }
        return nil
    }

    private static func changesNothingProbesRead(_ instruction: cs_insn) -> Bool {
        let id = x86_insn(rawValue: instruction.id)
        if [X86_INS_ENDBR64, X86_INS_CMP, X86_INS_TEST, X86_INS_NOP].contains(id) { return true }
        guard [X86_INS_LEA, X86_INS_MOV, X86_INS_SUB].contains(id), let detail = instruction.detail else {
            return false
        }
        let operands = Self.operands(of: detail.pointee.x86)
        return operands.first.map { $0.type == X86_OP_REG && ($0.reg == X86_REG_R12 || $0.reg == X86_REG_R13) } ?? false
    }

    /// Whether the kernel emulates the instruction `code` begins with, so a
    /// uprobe on it does not single-step (arch/x86/kernel/uprobes.c: push of
    /// a register, call and jmp with a relative target, conditional jumps, nop).
    public static func kernelEmulates(_ code: [UInt8]) -> Bool {
        guard let first = code.first else { return false }
        switch first {
        case 0x50...0x57, 0x90, 0xe8, 0xe9, 0xeb, 0x70...0x7f: return true
        case 0x41: return code.count > 1 && (0x50...0x57).contains(code[1])  // push %r8 to %r15
        case 0x0f: return code.count > 1 && (0x80...0x8f).contains(code[1])  // jcc rel32
        default: return false
        }
    }

    /// Where a register's value came from, followed through a wrapper's prologue.
    private enum Value: Equatable {
        case argument(x86_reg)  // what the caller passed in this register
        case stackAddress  // %rsp or an address in the wrapper's frame
        case other
    }

    /// The inner function the wrapper whose code is `code` (at file offset
    /// `fileOffset`) calls, if it is a wrapper: straight-line code up to its
    /// first call, at most 16 instructions, that leaves the first three
    /// arguments as they came (the third may be sign-extended from int) and
    /// passes a count pointer, either the address of a local or its own
    /// fourth argument, as the call's fourth or fifth argument.
    public static func innerCall(in code: [UInt8], at fileOffset: UInt64) -> InnerCall? {
        var handle: csh = 0
        guard cs_open(CS_ARCH_X86, CS_MODE_64, &handle) == CS_ERR_OK else { return nil }
        defer { cs_close(&handle) }
        cs_option(handle, CS_OPT_DETAIL, Int(CS_OPT_ON.rawValue))
        var instructions: UnsafeMutablePointer<cs_insn>?
        let count = code.withUnsafeBufferPointer {
            cs_disasm(handle, $0.baseAddress, $0.count, fileOffset, 16, &instructions)
        }
        guard count > 0, let instructions else { return nil }
        defer { cs_free(instructions, count) }

        var values: [x86_reg: Value] = [:]
        for register in [X86_REG_RDI, X86_REG_RSI, X86_REG_RDX, X86_REG_RCX, X86_REG_R8] {
            values[register] = .argument(register)
        }
        for index in 0..<count {
            let instruction = instructions[index]
            guard let detail = instruction.detail else { return nil }
            let operands = Self.operands(of: detail.pointee.x86)
            switch x86_insn(rawValue: instruction.id) {
            case X86_INS_CALL:
                guard operands.count == 1, operands[0].type == X86_OP_IMM else { return nil }
                return innerCall(
                    values, callee: UInt64(bitPattern: operands[0].imm),
                    returnSite: instruction.address + UInt64(instruction.size))
            case X86_INS_RET, X86_INS_JMP:
                return nil
            default:
                break
            }
            let written = writtenRegisters(handle, instruction)
            for register in values.keys where written.contains(register) {
                values[register] = value(writtenBy: instruction, operands, into: register, current: values)
            }
        }
        return nil
    }

    private static func innerCall(_ values: [x86_reg: Value], callee: UInt64, returnSite: UInt64) -> InnerCall? {
        let passedThrough =
            values[X86_REG_RDI] == .argument(X86_REG_RDI) && values[X86_REG_RSI] == .argument(X86_REG_RSI)
            && values[X86_REG_RDX] == .argument(X86_REG_RDX)
        guard passedThrough else { return nil }
        let isCountPointer = { (value: Value?) in value == .stackAddress || value == .argument(X86_REG_RCX) }
        // A fifth argument set in the prologue wins: the fourth is then the flags.
        if values[X86_REG_R8] != .argument(X86_REG_R8) {
            return isCountPointer(values[X86_REG_R8])
                ? InnerCall(callee: callee, returnSite: returnSite, countArgument: 5) : nil
        }
        return isCountPointer(values[X86_REG_RCX])
            ? InnerCall(callee: callee, returnSite: returnSite, countArgument: 4) : nil
    }

    /// What `register` holds after `instruction` wrote it.
    private static func value(
        writtenBy instruction: cs_insn, _ operands: [cs_x86_op], into register: x86_reg, current: [x86_reg: Value]
    ) -> Value {
        guard operands.count == 2, operands[0].type == X86_OP_REG else { return .other }
        let source = operands[1]
        switch x86_insn(rawValue: instruction.id) {
        case X86_INS_MOV where source.type == X86_OP_REG && operands[0].reg == register:
            if source.reg == X86_REG_RSP { return .stackAddress }
            return current[source.reg] ?? .other
        case X86_INS_LEA
        where source.type == X86_OP_MEM && source.mem.base == X86_REG_RSP && source.mem.index == X86_REG_INVALID:
            return .stackAddress
        case X86_INS_MOVSXD where register == X86_REG_RDX && source.type == X86_OP_REG && source.reg == X86_REG_EDX:
            return current[X86_REG_RDX] ?? .other  // int num widened to size_t
        default:
            return .other
        }
    }

    /// The full 64-bit registers among the arguments' that `instruction` writes.
    private static func writtenRegisters(_ handle: csh, _ instruction: cs_insn) -> Set<x86_reg> {
        var read = [UInt16](repeating: 0, count: 64)
        var written = [UInt16](repeating: 0, count: 64)
        var readCount: UInt8 = 0
        var writtenCount: UInt8 = 0
        var copy = instruction
        guard cs_regs_access(handle, &copy, &read, &readCount, &written, &writtenCount) == CS_ERR_OK else {
            return Set(fullRegister.values)  // unknown: assume it clobbers them all
        }
        return Set(written.prefix(Int(writtenCount)).compactMap { fullRegister[x86_reg(rawValue: UInt32($0))] })
    }

    /// Each part of an argument register, mapped to the whole register.
    private static let fullRegister: [x86_reg: x86_reg] = [
        X86_REG_RDI: X86_REG_RDI, X86_REG_EDI: X86_REG_RDI, X86_REG_DI: X86_REG_RDI, X86_REG_DIL: X86_REG_RDI,
        X86_REG_RSI: X86_REG_RSI, X86_REG_ESI: X86_REG_RSI, X86_REG_SI: X86_REG_RSI, X86_REG_SIL: X86_REG_RSI,
        X86_REG_RDX: X86_REG_RDX, X86_REG_EDX: X86_REG_RDX, X86_REG_DX: X86_REG_RDX, X86_REG_DL: X86_REG_RDX,
        X86_REG_DH: X86_REG_RDX,
        X86_REG_RCX: X86_REG_RCX, X86_REG_ECX: X86_REG_RCX, X86_REG_CX: X86_REG_RCX, X86_REG_CL: X86_REG_RCX,
        X86_REG_CH: X86_REG_RCX,
        X86_REG_R8: X86_REG_R8, X86_REG_R8D: X86_REG_R8, X86_REG_R8W: X86_REG_R8, X86_REG_R8B: X86_REG_R8,
    ]

    private static func operands(of x86: cs_x86) -> [cs_x86_op] {
        withUnsafeBytes(of: x86.operands) { raw in
            Array(raw.bindMemory(to: cs_x86_op.self).prefix(Int(x86.op_count)))
        }
    }
}
