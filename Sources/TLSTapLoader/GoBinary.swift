import CCapstone
import Glibc

/// Where to probe Go's crypto/tls in an executable, as file offsets:
/// `(*Conn).Write`, entered at `writeRecordLocked` (where its records start
/// out, bpf/stacks/go.bpf.h); `(*Conn).Read`; the client and server
/// handshakes where they are found; and every RET instruction of each. Go
/// needs RET-site probes instead of uretprobes, whose return trampolines
/// break when the runtime moves a goroutine's stack; capstone finds the RETs.
public struct GoTLSFunctions: Equatable, Sendable {
    public struct Function: Equatable, Sendable {
        public var name: String
        /// File offset of the entry probe: the first instruction the kernel
        /// emulates after the stack bound check (`ProbePlacement`), else the
        /// first; in `enteredIn` when that is set.
        public var entry: UInt64
        /// The function whose entry `entry` is, when it is not `name`.
        public var enteredIn: String? = nil
        /// File offsets of its RET instructions.
        public var returns: [UInt64]
    }

    public var write: Function
    public var read: Function
    /// `clientHandshake` and `serverHandshake`, those the executable has.
    public var handshakes: [Function]

    static let writeSymbol = "crypto/tls.(*Conn).Write"
    static let writeRecordSymbol = "crypto/tls.(*Conn).writeRecordLocked"
    static let readSymbol = "crypto/tls.(*Conn).Read"
    static let handshakeSymbols = ["crypto/tls.(*Conn).clientHandshake", "crypto/tls.(*Conn).serverHandshake"]

    /// Every function probed.
    var all: [Function] { [write, read] + handshakes }

    /// The functions in the Go executable at `path`, from its symbol table
    /// or, in a stripped executable, from Go's own function table; nil if
    /// it has neither (not Go, or no crypto/tls) or lacks one of Write,
    /// writeRecordLocked (Go 1.17 to 1.24 all have it) and Read.
    public static func find(in path: String) -> GoTLSFunctions? {
        let required: Set = [writeSymbol, writeRecordSymbol, readSymbol]
        let wanted = required.union(handshakeSymbols)
        guard var symbols = ELFSymbols.functions(path, named: wanted) else { return nil }
        if !required.isSubset(of: symbols.keys) { symbols = ELFSymbols.goFunctions(path, named: wanted) ?? [:] }
        let found = { (name: String) in symbols[name].flatMap { function(name, $0, path: path) } }
        guard let write = found(writeSymbol), let writeRecord = found(writeRecordSymbol), let read = found(readSymbol)
        else { return nil }
        let handshakes = handshakeSymbols.compactMap(found)
        return GoTLSFunctions(
            write: Function(
                name: writeSymbol, entry: writeRecord.entry, enteredIn: writeRecordSymbol, returns: write.returns),
            read: read, handshakes: handshakes)
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
