import CTLSTapABI
import CTLSTapBPF
import TLSTapCore

/// Where a TLS library's probes go in a file: each function of its stack
/// at its symbol, past leading instructions the kernel would single-step
/// (`ProbePlacement`), or in the function a wrapper passes its call on to;
/// and the same places as `tlstap check` and bench/ list them.
public enum ProbeLayout {
    /// One place an entry probe and its return probe go.
    struct AttachPoint: Equatable {
        /// The function the probes go in, by its symbol (what libbpf looks up
        /// when `offset` is nil); nil for a function found by the call to it.
        var symbol: String?
        /// What the point covers, for `tlstap check` and messages: the
        /// symbol, or the functions it stands for ("SSL_write and
        /// SSL_write_ex, in the function they call").
        var label: String
        /// Another file than the target's (libcrypto, for BIO_write).
        var path: String? = nil
        /// nil: at `symbol`'s address; else at this file offset.
        var offset: UInt64?
        /// Where `symbol` begins in the file, when it is one and was found.
        var symbolOffset: UInt64? = nil
        var enter: CTLSTapBPF_Program
        var exit: CTLSTapBPF_Program?
        /// nil: `exit` is a uretprobe; else it is an uprobe at each of
        /// these file offsets, the function's RET instructions (Go).
        var returnInstructions: [UInt64]? = nil
        /// The function `offset` is in, when not `symbol` (Go's Write, entered in writeRecordLocked).
        var enteredIn: String? = nil
        /// Read by the programs in the function SSL_write and SSL_write_ex
        /// both call (TLSTAP_COOKIE_* in tlstap_abi.h); 0 for the others,
        /// whose programs know their library.
        var cookie: UInt64 = 0
        var optional: Bool
    }

    /// Where the probes for the library in `target` go: each function of
    /// its stack's `probes` at its symbol, except OpenSSL's write and read pairs,
    /// which go into the function both call where `ProbePlacement` finds one
    /// and the kernel has attach cookies.
    static func attachPoints(for target: LibraryTarget, features: KernelFeatures = .current) -> [AttachPoint] {
        let library = UInt64(target.library.rawValue)
        let specs = TLSStack.of(target.library).probes
        if let go = target.goFunctions { return goPoints(specs, go) }
        let symbols = (specs + [TLSStack.bioWriteProbe]).flatMap { [$0.symbol] + ($0.passedOnTo.map { [$0] } ?? []) }
            .map { target.symbolPrefix + $0 }
        let functions = ELFSymbols.functions(target.path, named: Set(symbols)) ?? [:]
        let cheapEntry = { (function: ELFSymbols.Function) in
            ELFSymbols.bytes(target.path, at: function.fileOffset, count: 16)
                .flatMap(ProbePlacement.cheapEntryOffset).map { function.fileOffset + $0 }
        }
        var points = specs.map { probe in
            let symbol = target.symbolPrefix + probe.symbol
            let entry = functions[symbol].flatMap(cheapEntry)
            if entry == nil, let callee = probe.passedOnTo.map({ target.symbolPrefix + $0 }),
                let calleeEntry = functions[callee].flatMap(cheapEntry)
            {
                return AttachPoint(
                    symbol: callee, label: "\(symbol) and \(callee), in the latter", offset: calleeEntry,
                    enter: probe.enter, exit: probe.exit, optional: probe.optional)
            }
            // Past leading instructions that only set flags (endbr64) when that spares the single step;
            // else at the symbol, found by libbpf.
            let start = functions[symbol]?.fileOffset
            let skip: UInt64? = if let entry, entry != start { entry } else { nil }
            return AttachPoint(
                symbol: symbol, label: symbol, offset: skip, symbolOffset: start, enter: probe.enter, exit: probe.exit,
                optional: probe.optional)
        }
        guard target.library == .openssl || target.library == .boringssl else { return points }
        if let bioWrite = bioWritePoint(for: target, functions: functions) {
            points.append(bioWrite)
        }
        guard features.attachCookies else { return points }
        let pairs = [
            ("SSL_write", CTLSTapBPF_SSL_WRITE_INNER_ENTER, CTLSTapBPF_SSL_WRITE_EXIT),
            ("SSL_read", CTLSTapBPF_SSL_READ_INNER_ENTER, CTLSTapBPF_SSL_READ_EXIT),
        ]
        for (name, enter, exit) in pairs {
            let plain = target.symbolPrefix + name
            let ex = plain + "_ex"
            guard let inner = innerFunction(of: plain, ex, functions, path: target.path) else { continue }
            var cookie = library | UInt64(inner.countArgument) << TLSTAP_COOKIE_COUNT_ARG_SHIFT
            if let site = inner.plainReturnSite {
                cookie |= TLSTAP_COOKIE_PLAIN_SITE_KNOWN | (site & 0xfff) << TLSTAP_COOKIE_PLAIN_SITE_SHIFT
            }
            let covered = inner.coversEx ? [plain, ex] : [plain]
            points.removeAll { point in point.symbol.map(covered.contains) ?? false }
            points.append(
                AttachPoint(
                    symbol: nil, label: covered.joined(separator: " and ") + ", in the function they call",
                    offset: inner.callee, enter: enter, exit: exit, cookie: cookie, optional: false))
        }
        return points
    }

    /// Go's functions, where `GoBinary` found their entry and RET instructions.
    private static func goPoints(_ specs: [TLSStack.ProbeSpec], _ go: GoTLSFunctions) -> [AttachPoint] {
        specs.compactMap { probe in
            guard let function = go.all.first(where: { $0.name == probe.symbol }) else { return nil }
            return AttachPoint(
                symbol: function.name, label: function.name, offset: function.entry, enter: probe.enter,
                exit: probe.exit, returnInstructions: function.returns, enteredIn: function.enteredIn,
                optional: probe.optional)
        }
    }

    /// BIO_write, in the target if it defines it (`functions`: OpenSSL or
    /// BoringSSL linked in), else in the libcrypto beside libssl; nil if
    /// neither does.
    private static func bioWritePoint(
        for target: LibraryTarget, functions: [String: ELFSymbols.Function]
    ) -> AttachPoint? {
        let symbol = target.symbolPrefix + TLSStack.bioWriteProbe.symbol
        let found: (path: String, function: ELFSymbols.Function)? =
            if let function = functions[symbol] {
                (target.path, function)
            } else if let crypto = LibraryDiscovery.cryptoLibrary(besides: target.path),
                let function = ELFSymbols.functions(crypto, named: [symbol])?[symbol]
            {
                (crypto, function)
            } else {
                nil
            }
        guard let found else { return nil }
        let start = found.function.fileOffset
        let cheapEntry = { (offset: UInt64) in
            ELFSymbols.bytes(found.path, at: offset, count: 16).flatMap(ProbePlacement.cheapEntryOffset).map {
                offset + $0
            }
        }
        let file = found.path == target.path ? nil : found.path
        if let entry = cheapEntry(start) {
            return AttachPoint(
                symbol: symbol, label: symbol, path: file, offset: entry, symbolOffset: start,
                enter: TLSStack.bioWriteProbe.enter, exit: nil, optional: false)
        }
        // OpenSSL 3's BIO_write begins with `sub rsp`, which the kernel would single-step on every record
        // (about 14 µs): the function it passes (bio, data, length) on to (bio_write_intern) is probed instead.
        let code = ELFSymbols.bytes(found.path, at: start, count: Int(min(max(found.function.size, 16), 96)))
        if let call = code.flatMap({ ProbePlacement.innerCall(in: $0, at: start) }), let entry = cheapEntry(call.callee)
        {
            return AttachPoint(
                symbol: nil, label: "\(symbol), in the function it calls", path: file, offset: entry,
                enter: TLSStack.bioWriteProbe.enter, exit: nil, optional: false)
        }
        return AttachPoint(
            symbol: symbol, label: symbol, path: file, offset: start, symbolOffset: start,
            enter: TLSStack.bioWriteProbe.enter, exit: nil, optional: false)
    }

    /// The inner function to probe for the pair `plain` and `ex`, if `plain`
    /// would single-step and is a wrapper of one whose entry does not.
    private static func innerFunction(
        of plain: String, _ ex: String, _ functions: [String: ELFSymbols.Function], path: String
    ) -> (callee: UInt64, countArgument: Int, plainReturnSite: UInt64?, coversEx: Bool)? {
        let code = { (function: ELFSymbols.Function) in
            ELFSymbols.bytes(path, at: function.fileOffset, count: Int(min(max(function.size, 16), 96)))
        }
        guard let plainFunction = functions[plain], let plainCode = code(plainFunction),
            ProbePlacement.cheapEntryOffset(plainCode) == nil,
            let call = ProbePlacement.innerCall(in: plainCode, at: plainFunction.fileOffset),
            let calleeCode = ELFSymbols.bytes(path, at: call.callee, count: 16),
            let calleeEntry = ProbePlacement.cheapEntryOffset(calleeCode).map({ call.callee + $0 })
        else { return nil }
        let exCall = functions[ex].flatMap { function in
            code(function).flatMap { ProbePlacement.innerCall(in: $0, at: function.fileOffset) }
        }
        guard let exCall, exCall.callee == call.callee, exCall.countArgument == call.countArgument else {
            // SSL_write_ex keeps its own probe; if it calls the inner function too, the inner call replaces it.
            return (calleeEntry, call.countArgument, nil, false)
        }
        // Calls from the two wrappers are told apart by the return address's page offset.
        let distinct = call.returnSite & 0xfff != exCall.returnSite & 0xfff
        return (calleeEntry, call.countArgument, distinct ? call.returnSite : nil, true)
    }

    /// Where the probes for `target` go, as `tlstap check` lists them:
    /// `symbol @ 0xFILEOFFSET (entry|return)`.
    public static func probePoints(for target: LibraryTarget, features: KernelFeatures = .current) -> [String] {
        attachPoints(for: target, features: features).flatMap { point in
            guard let offset = point.offset ?? point.symbolOffset else { return ["\(point.label): not in this file"] }
            if let returns = point.returnInstructions {
                let entry = point.enteredIn.map { "entry, in \($0)" } ?? "entry"
                return ["\(point.label) @ 0x\(String(offset, radix: 16)) (\(entry))"]
                    + returns.map { "\(point.label) @ 0x\(String($0, radix: 16)) (RET)" }
            }
            let path = point.path ?? target.path
            let note = point.symbolOffset.map { skipped(from: $0, to: offset, in: path) } ?? ""
            let file = point.path.map { " in \($0)" } ?? ""
            return [
                "\(point.label)\(file) @ 0x\(String(offset, radix: 16)) (entry\(note)"
                    + (point.exit == nil ? ")" : " and uretprobe)")
            ]
        }
    }

    /// How `tlstap check` says what an entry probe at `offset` skipped of the function at `start`.
    private static func skipped(from start: UInt64, to offset: UInt64, in path: String) -> String {
        guard offset > start, offset - start < 16 else { return "" }
        let code = ELFSymbols.bytes(path, at: start, count: Int(offset - start)) ?? []
        return code == [0xf3, 0x0f, 0x1e, 0xfa]
            ? ", past its endbr64" : ", past \(offset - start) bytes that only set flags"
    }

    /// The entry and return probes of `target` as lines a C libbpf program
    /// can attach from (bench/'s floor and bare consumer):
    /// `FILE OFFSET COOKIE ENTRY-PROGRAM RETURN-PROGRAM`, offsets and cookies
    /// in hex. Functions probed at their RET instructions (Go) are not listed.
    public static func attachPlanLines(for target: LibraryTarget, features: KernelFeatures = .current) -> [String] {
        attachPoints(for: target, features: features).compactMap { point in
            guard let offset = point.offset ?? point.symbolOffset, let exitProgram = point.exit,
                point.returnInstructions == nil,
                let enter = CTLSTapBPF_program_name(point.enter), let exit = CTLSTapBPF_program_name(exitProgram)
            else { return nil }
            return "\(target.path) 0x\(String(offset, radix: 16)) 0x\(String(point.cookie, radix: 16)) "
                + "\(String(cString: enter)) \(String(cString: exit))"
        }
    }
}
