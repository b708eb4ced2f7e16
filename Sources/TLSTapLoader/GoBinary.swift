import CCapstone
import Glibc

/// Where to probe Go's crypto/tls in an executable: the entry of
/// `(*Conn).Write` and `(*Conn).Read`, and every RET instruction in them,
/// as file offsets. Go needs RET-site probes instead of uretprobes, whose
/// return trampolines break when the runtime moves a goroutine's stack;
/// capstone finds the RETs.
public struct GoTLSFunctions: Equatable, Sendable {
    public struct Function: Equatable, Sendable {
        public var name: String
        /// File offset of the entry probe: the first instruction the kernel
        /// emulates after the stack bound check (`ProbePlacement`), else the first.
        public var entry: UInt64
        /// File offsets of its RET instructions.
        public var returns: [UInt64]
    }

    public var write: Function
    public var read: Function

    static let writeSymbol = "crypto/tls.(*Conn).Write"
    static let readSymbol = "crypto/tls.(*Conn).Read"

    /// The functions in the Go executable at `path`, from its symbol table
    /// or, in a stripped executable, from Go's own function table; nil if
    /// it has neither (not Go, or no crypto/tls).
    public static func find(in path: String) -> GoTLSFunctions? {
        let wanted: Set = [writeSymbol, readSymbol]
        guard var symbols = ELFSymbols.functions(path, named: wanted) else { return nil }
        if symbols.count < wanted.count { symbols = ELFSymbols.goFunctions(path, named: wanted) ?? [:] }
        guard let write = symbols[writeSymbol], let read = symbols[readSymbol],
            let writeFunction = function(writeSymbol, write, path: path),
            let readFunction = function(readSymbol, read, path: path)
        else { return nil }
        return GoTLSFunctions(write: writeFunction, read: readFunction)
    }

    private static func function(_ name: String, _ symbol: ELFSymbols.Function, path: String) -> Function? {
        guard symbol.size > 0, symbol.size < 1 << 20,
            let code = ELFSymbols.bytes(path, at: symbol.fileOffset, count: Int(symbol.size))
        else { return nil }
        let returns = returnOffsets(code).map { symbol.fileOffset + $0 }
        let entry = symbol.fileOffset + (ProbePlacement.cheapEntryOffset(code) ?? 0)
        return returns.isEmpty ? nil : Function(name: name, entry: entry, returns: returns)
    }

    /// Offsets of RET instructions in x86-64 machine code.
    static func returnOffsets(_ code: [UInt8]) -> [UInt64] {
        var handle: csh = 0
        guard cs_open(CS_ARCH_X86, CS_MODE_64, &handle) == CS_ERR_OK else { return [] }
        defer { cs_close(&handle) }
        var instructions: UnsafeMutablePointer<cs_insn>?
        let count = code.withUnsafeBufferPointer { cs_disasm(handle, $0.baseAddress, $0.count, 0, 0, &instructions) }
        guard count > 0, let instructions else { return [] }
        defer { cs_free(instructions, count) }
        return (0..<count).compactMap { index in
            instructions[index].id == X86_INS_RET.rawValue ? instructions[index].address : nil
        }
    }
}
