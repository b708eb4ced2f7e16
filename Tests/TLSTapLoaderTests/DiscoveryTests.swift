import Foundation
import Testing

@testable import TLSTapLoader

@Suite struct DiscoveryTests {
    @Test func mapsListEachFileOnceWithSpacesAndDeletedMarksHandled() {
        let maps = """
            55d0c0000000-55d0c0001000 r--p 00000000 fd:01 1234 /usr/bin/curl
            7f0000000000-7f0000001000 r--p 00000000 fd:01 5678 /usr/lib/x86_64-linux-gnu/libssl.so.3
            7f0000001000-7f0000002000 r-xp 00001000 fd:01 5678 /usr/lib/x86_64-linux-gnu/libssl.so.3
            7f0000003000-7f0000004000 r-xp 00000000 fd:01 91 /opt/my app/lib/libssl.so.1.1
            7f0000005000-7f0000006000 r-xp 00000000 fd:01 92 /tmp/libssl.so.3 (deleted)
            7f0000007000-7f0000008000 rw-p 00000000 00:00 0 [heap]
            7ffd00000000-7ffd00001000 rw-p 00000000 00:00 0
            """
        let files = ProcessMaps.mappedFiles(maps)
        #expect(
            files == [
                MappedFile(path: "/usr/bin/curl", inode: 1234),
                MappedFile(path: "/usr/lib/x86_64-linux-gnu/libssl.so.3", inode: 5678),
                MappedFile(path: "/opt/my app/lib/libssl.so.1.1", inode: 91),
                MappedFile(path: "/tmp/libssl.so.3", inode: 92),
            ])
        #expect(files.filter { LibraryDiscovery.isOpenSSL(path: $0.path) }.count == 3)
    }

    @Test func opensslFileNames() {
        #expect(LibraryDiscovery.isOpenSSL(path: "/lib/x86_64-linux-gnu/libssl.so.3"))
        #expect(LibraryDiscovery.isOpenSSL(path: "libssl.so"))
        #expect(!LibraryDiscovery.isOpenSSL(path: "/lib/libssl3.so"))  // NSS's, not OpenSSL's
        #expect(!LibraryDiscovery.isOpenSSL(path: "/lib/libcrypto.so.3"))
    }

    /// A cache built byte by byte in the documented layout.
    @Test func loaderCacheEntriesAreRead() {
        var bytes = Array("glibc-ld.so.cache1.1".utf8)
        func appendUInt32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
        appendUInt32(2)  // entries
        appendUInt32(0)  // string table size (unused by the reader)
        bytes += [0, 0, 0, 0]  // flags and padding
        appendUInt32(0)  // extension offset
        bytes += Array(repeating: 0, count: 12)
        let stringsStart = UInt32(48 + 2 * 24)
        let strings = [
            "libssl.so.3", "/lib/x86_64-linux-gnu/libssl.so.3", "libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6",
        ]
        var offsets: [UInt32] = []
        var position = stringsStart
        for string in strings {
            offsets.append(position)
            position += UInt32(string.utf8.count + 1)
        }
        for entry in 0..<2 {
            appendUInt32(0x303)  // flags
            appendUInt32(offsets[entry * 2])
            appendUInt32(offsets[entry * 2 + 1])
            appendUInt32(0)
            bytes += Array(repeating: 0, count: 8)
        }
        for string in strings { bytes += Array(string.utf8) + [0] }
        #expect(
            LoaderCache.entries(bytes) == [
                LoaderCache.Entry(name: "libssl.so.3", path: "/lib/x86_64-linux-gnu/libssl.so.3"),
                LoaderCache.Entry(name: "libc.so.6", path: "/lib/x86_64-linux-gnu/libc.so.6"),
            ])
        #expect(LoaderCache.entries(Array(bytes.prefix(30))).isEmpty)
        #expect(LoaderCache.entries(Array("not a cache".utf8)).isEmpty)
    }

    /// This machine's own cache: the loader must know libc.
    @Test func theSystemCacheNamesLibc() throws {
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: "/etc/ld.so.cache")))
        let entries = LoaderCache.entries(bytes)
        #expect(entries.contains { $0.name == "libc.so.6" && FileManager.default.fileExists(atPath: $0.path) })
    }

    @Test func capabilitiesAreReadFromStatus() {
        let root = "Name:\tx\nCapEff:\t000001ffffffffff\n"
        let bpfOnly = "CapEff:\t0000008000000000\n"  // CAP_BPF (39) without CAP_PERFMON (38)
        let none = "CapEff:\t0000000000000000\n"
        #expect(Privileges.missingForTracing(statusText: root).isEmpty)
        #expect(Privileges.missingForTracing(statusText: bpfOnly) == ["CAP_PERFMON"])
        #expect(Privileges.missingForTracing(statusText: none) == ["CAP_BPF", "CAP_PERFMON"])
    }

    @Test func exitStatusesReadAsAShellWould() {
        #expect(shellExitStatus(3 << 8) == 3)
        #expect(shellExitStatus(0) == 0)
        #expect(shellExitStatus(9) == 137)  // killed by SIGKILL
    }

    @Test func programsAreFoundInPath() {
        #expect(ChildProcess.resolve("sh") != nil)
        #expect(ChildProcess.resolve("/bin/sh") == "/bin/sh")
        #expect(ChildProcess.resolve("no-such-program-tlstap") == nil)
    }
}

@Suite struct ELFSymbolTests {
    @Test func opensslsOwnLibraryExportsItsFunctions() throws {
        let names = try #require(ELFSymbols.functionNames("/lib/x86_64-linux-gnu/libssl.so.3", tables: [11]))
        #expect(names.isSuperset(of: ["SSL_write", "SSL_read", "SSL_write_ex", "SSL_read_ex"]))
        let found = try #require(ELFSymbols.embeddedOpenSSL(inFile: "/lib/x86_64-linux-gnu/libssl.so.3"))
        #expect(found.prefix == "" && !found.boringSSL)
    }

    @Test func programsWithoutTLSAndNonELFFilesHaveNone() {
        #expect(ELFSymbols.embeddedOpenSSL(inFile: "/bin/ls") == nil)
        #expect(ELFSymbols.functionNames("/etc/hostname") == nil)
        #expect(ELFSymbols.functionNames("/no/such/file") == nil)
    }

    /// A vendored BoringSSL with prefixed names, as swift-nio-ssl builds it.
    @Test func prefixedBoringSSLIsRecognised() {
        let names: Set<String> = [
            "CNIOBoringSSL_SSL_write", "CNIOBoringSSL_SSL_read", "CNIOBoringSSL_SSL_CTX_set_grease_enabled",
            "other_function",
        ]
        let found = ELFSymbols.embeddedOpenSSL(in: names)
        #expect(found?.prefix == "CNIOBoringSSL_")
        #expect(found?.boringSSL == true)
        #expect(ELFSymbols.embeddedOpenSSL(in: ["MySSL_write", "MySSL_read"]) == nil)  // no separator: not a prefix
    }
}
