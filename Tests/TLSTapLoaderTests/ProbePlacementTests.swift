import CTLSTapBPF
import Testing

@testable import TLSTapLoader

@Suite struct ProbePlacementTests {
    /// Debian 12's libssl.so.3 (OpenSSL 3.0), SSL_write at 0x35980: `sub
    /// $0x18,%rsp`, the stack guard, `test %edx,%edx; js`, `mov %rsp,%rcx`,
    /// `movslq %edx,%rdx`, `call 0x355a0`, then its return value handling.
    static let openSSL30Write: [UInt8] = [
        0x48, 0x83, 0xec, 0x18, 0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0x00, 0x00, 0x00, 0x48, 0x89, 0x44, 0x24, 0x08,
        0x31, 0xc0, 0x85, 0xd2, 0x78, 0x2f, 0x48, 0x89, 0xe1, 0x48, 0x63, 0xd2, 0xe8, 0xfd, 0xfb, 0xff, 0xff,
        0x85, 0xc0, 0x7e, 0x03, 0x8b, 0x04, 0x24,
    ]
    /// The same library's SSL_write_ex at 0x35a10: `sub $0x8,%rsp; call 0x355a0`, its count pointer passed through.
    static let openSSL30WriteEx: [UInt8] = [
        0x48, 0x83, 0xec, 0x08, 0xe8, 0x87, 0xfb, 0xff, 0xff, 0x31, 0xd2, 0x85, 0xc0,
    ]

    @Test func onlyInstructionsTheKernelEmulatesCountAsCheap() {
        #expect(ProbePlacement.kernelEmulates([0x55]))  // push %rbp
        #expect(ProbePlacement.kernelEmulates([0x41, 0x56]))  // push %r14
        #expect(ProbePlacement.kernelEmulates([0xe8, 0, 0, 0, 0]))  // call
        #expect(ProbePlacement.kernelEmulates([0x0f, 0x84, 0, 0, 0, 0]))  // je rel32
        #expect(ProbePlacement.kernelEmulates([0x90]))
        #expect(!ProbePlacement.kernelEmulates([0x48, 0x83, 0xec, 0x18]))  // sub $0x18,%rsp
        #expect(!ProbePlacement.kernelEmulates([0xf3, 0x0f, 0x1e, 0xfa]))  // endbr64
        #expect(!ProbePlacement.kernelEmulates([0x41, 0x89, 0xf8]))  // mov %edi,%r8d
        #expect(!ProbePlacement.kernelEmulates([0x0f, 0x1f, 0x44, 0x00, 0x00]))  // nopl: not the one-byte nop
        #expect(!ProbePlacement.kernelEmulates([]))
    }

    /// CET builds begin every function with endbr64, which the kernel single-steps.
    @Test func anEntryProbeGoesPastEndbr64OntoAnEmulatedInstruction() {
        #expect(ProbePlacement.cheapEntryOffset([0x55, 0x48, 0x89, 0xe5]) == 0)
        #expect(ProbePlacement.cheapEntryOffset([0xf3, 0x0f, 0x1e, 0xfa, 0x41, 0x57]) == 4)  // endbr64; push %r15
        #expect(ProbePlacement.cheapEntryOffset([0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0x83, 0xec, 0x18]) == nil)  // then sub
        #expect(ProbePlacement.cheapEntryOffset(Self.openSSL30Write) == nil)
    }

    /// Every Go function begins with its stack bound check, `cmp
    /// 0x10(%r14),%rsp; jbe morestack`: the probe goes on the jbe.
    @Test func anEntryProbeGoesPastInstructionsThatOnlySetFlags() {
        #expect(ProbePlacement.cheapEntryOffset([0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x10, 0x01, 0x00, 0x00]) == 4)
        #expect(ProbePlacement.cheapEntryOffset([0x49, 0x3b, 0x66, 0x10, 0x76, 0x50]) == 4)  // jbe rel8
        // A larger frame: lea -0x68(%rsp),%r12; cmp 0x10(%r14),%r12; jbe (Go 1.19's crypto/tls.(*Conn).Write).
        #expect(
            ProbePlacement.cheapEntryOffset([
                0x4c, 0x8d, 0x64, 0x24, 0x98, 0x4d, 0x3b, 0x66, 0x10,
                0x0f, 0x86, 0x64, 0x07, 0x00, 0x00,
            ]) == 9)
        #expect(ProbePlacement.cheapEntryOffset([0x48, 0x85, 0xff, 0x74, 0x05]) == 3)  // test %rdi,%rdi; je
        #expect(ProbePlacement.cheapEntryOffset([0x0f, 0x1f, 0x44, 0x00, 0x00, 0x55]) == 5)  // nopl; push %rbp
        // A register written first: the arguments or the stack may differ after it.
        #expect(ProbePlacement.cheapEntryOffset([0x48, 0x89, 0xfb, 0x55]) == nil)  // mov %rdi,%rbx; push
        #expect(ProbePlacement.cheapEntryOffset([0x48, 0x8d, 0x7c, 0x24, 0x98, 0x55]) == nil)  // lea -0x68(%rsp),%rdi
        #expect(ProbePlacement.cheapEntryOffset([0x48, 0x83, 0x04, 0x24, 0x01, 0x55]) == nil)  // addq $1,(%rsp); push
    }

    /// A CET build of the same wrapper: endbr64 first changes nothing.
    @Test func endbr64DoesNotHideAWrapper() {
        #expect(
            ProbePlacement.innerCall(in: [0xf3, 0x0f, 0x1e, 0xfa] + Self.openSSL30Write, at: 0x3597c)
                == .init(callee: 0x355a0, returnSite: 0x359a3, countArgument: 4))
    }

    @Test func openSSL30WrappersLeadToTheirInnerFunction() {
        #expect(
            ProbePlacement.innerCall(in: Self.openSSL30Write, at: 0x35980)
                == .init(callee: 0x355a0, returnSite: 0x359a3, countArgument: 4))
        #expect(
            ProbePlacement.innerCall(in: Self.openSSL30WriteEx, at: 0x35a10)
                == .init(callee: 0x355a0, returnSite: 0x35a19, countArgument: 4))
    }

    /// OpenSSL 3.2 added a flags argument before the count pointer.
    @Test func aFlagsArgumentMovesTheCountToTheFifth() {
        // sub $0x18,%rsp; mov %rsp,%r8; xor %ecx,%ecx; movslq %edx,%rdx; call +0x100
        let write: [UInt8] = [
            0x48, 0x83, 0xec, 0x18, 0x49, 0x89, 0xe0, 0x31, 0xc9, 0x48, 0x63, 0xd2,
            0xe8, 0x00, 0x01, 0x00, 0x00,
        ]
        #expect(
            ProbePlacement.innerCall(in: write, at: 0x1000)
                == .init(callee: 0x1111, returnSite: 0x1011, countArgument: 5))
        // sub $0x8,%rsp; mov %rcx,%r8; xor %ecx,%ecx; call +0x100
        let writeEx: [UInt8] = [0x48, 0x83, 0xec, 0x08, 0x49, 0x89, 0xc8, 0x31, 0xc9, 0xe8, 0x00, 0x01, 0x00, 0x00]
        #expect(
            ProbePlacement.innerCall(in: writeEx, at: 0x2000)
                == .init(callee: 0x210e, returnSite: 0x200e, countArgument: 5))
    }

    @Test func codeThatIsNotSuchAWrapperIsLeftAlone() {
        // The buffer argument replaced before the call.
        let movedBuffer: [UInt8] = [0x48, 0x83, 0xec, 0x18, 0x48, 0x89, 0xd6, 0x48, 0x89, 0xe1, 0xe8, 0, 1, 0, 0]
        #expect(ProbePlacement.innerCall(in: movedBuffer, at: 0) == nil)
        // The fourth argument is the SSL object, not a count pointer.
        let notACount: [UInt8] = [0x48, 0x83, 0xec, 0x18, 0x48, 0x89, 0xf9, 0xe8, 0, 1, 0, 0]
        #expect(ProbePlacement.innerCall(in: notACount, at: 0) == nil)
        // No call before a return.
        let leaf: [UInt8] = [0x48, 0x83, 0xec, 0x18, 0x31, 0xc0, 0x48, 0x83, 0xc4, 0x18, 0xc3]
        #expect(ProbePlacement.innerCall(in: leaf, at: 0) == nil)
        // An indirect call.
        let indirect: [UInt8] = [0x48, 0x83, 0xec, 0x18, 0x48, 0x89, 0xe1, 0xff, 0xd0]
        #expect(ProbePlacement.innerCall(in: indirect, at: 0) == nil)
    }

    /// The system's libssl: where SSL_write itself would single-step, the
    /// plan probes the function it calls, once for both wrappers, and
    /// nothing at the wrappers.
    @Test func theSystemLibsslIsProbedWhereNoHitSingleSteps() throws {
        guard let libssl = LibraryDiscovery.systemLibraries().first(where: { $0.library == .openssl }) else {
            Issue.record("no libssl in the dynamic loader's cache: bootstrap installs it")
            return
        }
        let functions = try #require(ELFSymbols.functions(libssl.path, named: ["SSL_write", "SSL_read"]))
        let points = ProbeLayout.attachPoints(for: libssl)
        for name in ["SSL_write", "SSL_read"] {
            let function = try #require(functions[name])
            let code = try #require(ELFSymbols.bytes(libssl.path, at: function.fileOffset, count: 96))
            let inner = points.first { $0.label == "\(name) and \(name)_ex, in the function they call" }
            if ProbePlacement.kernelEmulates(code) {
                print("\(libssl.path): \(name) begins with an emulated instruction; it is probed itself")
                #expect(inner == nil)
                continue
            }
            let call = try #require(ProbePlacement.innerCall(in: code, at: function.fileOffset))
            let calleeCode = try #require(ELFSymbols.bytes(libssl.path, at: call.callee, count: 16))
            #expect(inner?.offset == call.callee + (try #require(ProbePlacement.cheapEntryOffset(calleeCode))))
            #expect(inner.map { $0.cookie >> 20 & 0xfff } == call.returnSite & 0xfff)
            #expect(!points.contains { $0.symbol == name || $0.symbol == name + "_ex" })
        }
    }

    /// Without attach cookies (kernels before 5.15) nothing goes into the
    /// inner function, whose programs read them: SSL_write, SSL_read and
    /// their _ex forms are probed themselves, and no point carries a cookie,
    /// which libbpf refuses to attach there.
    @Test func withoutAttachCookiesTheSystemLibsslIsProbedAtItsAPI() throws {
        guard let libssl = LibraryDiscovery.systemLibraries().first(where: { $0.library == .openssl }) else {
            Issue.record("no libssl in the dynamic loader's cache: bootstrap installs it")
            return
        }
        let points = ProbeLayout.attachPoints(
            for: libssl, features: KernelFeatures(bpfLoop: false, attachCookies: false, socketTracepoints: false))
        #expect(
            points.map(\.label).dropLast() == [
                "SSL_write", "SSL_read", "SSL_write_ex", "SSL_read_ex", "SSL_do_handshake", "SSL_free",
            ])
        // BIO_write's program reads no cookie: it goes where it would with them.
        #expect(points.last == ProbeLayout.attachPoints(for: libssl).first { $0.label.hasPrefix("BIO_write") })
        #expect(points.allSatisfy { $0.cookie == 0 })
        #expect(points.first { $0.label == "SSL_write" }?.enter == CTLSTapBPF_SSL_WRITE_ENTER)
    }
}

extension ProbePlacementTests {
    /// GnuTLS: gnutls_record_send only passes its call on to
    /// gnutls_record_send2; where its own entry would single-step, the
    /// plan probes gnutls_record_send2 instead, which serves both.
    @Test func theSystemGnuTLSSendIsProbedWhereNoHitSingleSteps() throws {
        guard let gnutls = LibraryDiscovery.systemLibraries().first(where: { $0.library == .gnutls }) else {
            Issue.record("no libgnutls in the dynamic loader's cache: wget, which the tests need, brings it")
            return
        }
        let functions = try #require(
            ELFSymbols.functions(gnutls.path, named: ["gnutls_record_send", "gnutls_record_send2"]))
        let send = try #require(functions["gnutls_record_send"])
        let code = try #require(ELFSymbols.bytes(gnutls.path, at: send.fileOffset, count: 16))
        let points = ProbeLayout.attachPoints(for: gnutls)
        guard ProbePlacement.cheapEntryOffset(code) == nil, let send2 = functions["gnutls_record_send2"],
            let send2Code = ELFSymbols.bytes(gnutls.path, at: send2.fileOffset, count: 16),
            let entry = ProbePlacement.cheapEntryOffset(send2Code)
        else {
            print(
                "\(gnutls.path): gnutls_record_send is probed itself (its entry is cheap, or gnutls_record_send2's is not)"
            )
            #expect(points.contains { $0.symbol == "gnutls_record_send" })
            return
        }
        let point = points.first { $0.label == "gnutls_record_send and gnutls_record_send2, in the latter" }
        #expect(point?.offset == send2.fileOffset + entry)
        #expect(point?.enter == CTLSTapBPF_GNUTLS_SEND_ENTER)
        #expect(!points.contains { $0.symbol == "gnutls_record_send" })
    }
}
