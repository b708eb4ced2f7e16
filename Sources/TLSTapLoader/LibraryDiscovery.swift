import Glibc
import Synchronization
import TLSTapCore

/// A TLS library file to put probes in.
public struct LibraryTarget: Equatable, Sendable {
    /// The path tlstap opens: through /proc/PID/root for files a process maps,
    /// so that files in other mount namespaces are found too.
    public var path: String
    public var identity: FileIdentity
    public var library: TLSLibrary
    /// Why this file was chosen, for `tlstap check` and error messages.
    public var reason: String
    /// Prepended to every probed symbol (BoringSSL vendored with a prefix).
    public var symbolPrefix = ""
    /// For Go programs: where crypto/tls's Write and Read start and return.
    public var goFunctions: GoTLSFunctions?
}

/// Finds the TLS libraries to attach to: the ones the traced processes map,
/// and for scopes that include processes not yet started, the one the
/// dynamic loader would pick.
public enum LibraryDiscovery {
    /// Whether a file name is OpenSSL's libssl (any soname version).
    public static func isOpenSSL(path: String) -> Bool {
        library(ofFile: path) == .openssl
    }

    /// The TLS library a shared object's file name says it is, if any (`TLSStack.fileNamePrefix`).
    public static func library(ofFile path: String) -> TLSLibrary? {
        TLSStack.ofFile(named: path.split(separator: "/").last ?? "")?.library
    }

    /// The libcrypto that the libssl at `path` was built with: the one of
    /// the same version in the same directory, as every distribution
    /// installs them; nil for other files or when it is not there.
    public static func cryptoLibrary(besides path: String) -> String? {
        guard let slash = path.lastIndex(of: "/"), path[path.index(after: slash)...].hasPrefix("libssl.so") else {
            return nil
        }
        let name = path[path.index(after: slash)...]
        let crypto = String(path[...slash]) + "libcrypto" + name.dropFirst("libssl".count)
        return ProcFS.exists(crypto) ? crypto : nil
    }

    /// The TLS libraries in the dynamic loader's cache.
    public static func systemLibraries(cachePath: String = "/etc/ld.so.cache") -> [LibraryTarget] {
        guard let bytes = try? ProcFS.readBytes(cachePath) else { return [] }
        return LoaderCache.entries(bytes).compactMap { entry in
            guard let library = library(ofFile: entry.name) else { return nil }
            return target(
                path: entry.path, library: library,
                reason: "the dynamic loader's cache names it for \(entry.name)")
        }
    }

    /// The TLS libraries process `pid` maps.
    /// - Throws: when the process does not exist or its maps cannot be read.
    public static func libraries(mappedBy pid: Int32) throws(LoaderError) -> [LibraryTarget] {
        let maps: String
        do {
            maps = try ProcFS.readText("/proc/\(pid)/maps")
        } catch {
            throw ProcFS.exists("/proc/\(pid)") ? error : LoaderError("no process with PID \(pid) exists")
        }
        return ProcessMaps.mappedFiles(maps).compactMap { file in
            guard let library = library(ofFile: file.path) else { return nil }
            return target(
                path: "/proc/\(pid)/root" + file.path, library: library, reason: "process \(pid) maps \(file.path)")
        }
    }

    /// Remembers, per file, whether it embeds an OpenSSL-compatible library,
    /// so each executable or shared object is read once per run.
    private enum EmbeddedTLS {
        case none
        case openSSL(prefix: String, boringSSL: Bool)
        case go(GoTLSFunctions)
    }

    private static let embeddedCache = Mutex<[FileIdentity: EmbeddedTLS]>([:])

    /// `path` as a target if it carries a TLS library linked in: OpenSSL or
    /// BoringSSL (an executable such as node, or a shared object that is not
    /// libssl), or Go's crypto/tls.
    public static func embeddedTarget(path: String, reason: String) -> LibraryTarget? {
        guard let identity = ProcFS.fileIdentity(path) else { return nil }
        let found: EmbeddedTLS
        if let cached = embeddedCache.withLock({ $0[identity] }) {
            found = cached
        } else {
            if let openSSL = ELFSymbols.embeddedOpenSSL(inFile: path) {
                found = .openSSL(prefix: openSSL.prefix, boringSSL: openSSL.boringSSL)
            } else if let go = GoTLSFunctions.find(in: path) {
                found = .go(go)
            } else {
                found = .none
            }
            embeddedCache.withLock { $0[identity] = found }
        }
        switch found {
        case .none:
            return nil
        case .openSSL(let prefix, let boringSSL):
            var target = LibraryTarget(
                path: path, identity: identity, library: boringSSL ? .boringssl : .openssl,
                reason: reason + " (\(boringSSL ? "BoringSSL" : "OpenSSL") linked in)")
            target.symbolPrefix = prefix
            return target
        case .go(let functions):
            var target = LibraryTarget(
                path: path, identity: identity, library: .go,
                reason: reason
                    + " (Go crypto/tls, \(functions.all.reduce(0) { $0 + $1.returns.count }) return sites)")
            target.goFunctions = functions
            return target
        }
    }

    /// TLS libraries linked into process `pid`'s executable or into shared
    /// objects it maps that are not libssl/libgnutls themselves.
    public static func embeddedLibraries(of pid: Int32) -> [LibraryTarget] {
        var paths: [String] = []
        if let exe = executable(of: pid) { paths.append(exe) }
        if let maps = try? ProcFS.readText("/proc/\(pid)/maps") {
            paths += ProcessMaps.mappedFiles(maps).map(\.path)
                .filter { library(ofFile: $0) == nil && $0.contains(".so") && !isSystemRuntime($0) }
        }
        return paths.compactMap { path in
            embeddedTarget(path: "/proc/\(pid)/root" + path, reason: "process \(pid) runs or maps \(path)")
        }
    }

    /// The file process `pid` maps as code from `fd` (open while its mmap
    /// runs), as a target if it is a TLS library or has one linked in.
    public static func mappedTarget(pid: Int32, fd: Int32) -> LibraryTarget? {
        guard let file = openFile(of: pid, fd: fd) else { return nil }
        let path = "/proc/\(pid)/root" + file
        let reason = "process \(pid) maps \(file)"
        if let library = library(ofFile: file) { return target(path: path, library: library, reason: reason) }
        return isSystemRuntime(file) ? nil : embeddedTarget(path: path, reason: reason)
    }

    /// Every TLS library in process `pid`: the libssl/libgnutls files it
    /// maps and TLS linked into its executable or other shared objects, one
    /// target per file.
    /// - Throws: when the process does not exist or its maps cannot be read.
    public static func tlsLibraries(of pid: Int32) throws(LoaderError) -> [LibraryTarget] {
        distinct(try libraries(mappedBy: pid) + embeddedLibraries(of: pid))
    }

    /// The path of the program a process runs, as it sees it.
    public static func executable(of pid: Int32) -> String? {
        fileLink("/proc/\(pid)/exe")
    }

    /// The path of the file open on `fd` in process `pid`, as it sees it.
    public static func openFile(of pid: Int32, fd: Int32) -> String? {
        fileLink("/proc/\(pid)/fd/\(fd)")
    }

    /// Where a /proc link to an open file points, without " (deleted)";
    /// nil for what is not a file (a socket, a pipe).
    private static func fileLink(_ link: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = readlink(link, &buffer, buffer.count - 1)
        guard length > 0, buffer[0] == CChar(UInt8(ascii: "/")) else { return nil }
        var path = String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if path.hasSuffix(" (deleted)") { path.removeLast(" (deleted)".count) }
        return path
    }

    /// C and language runtimes, which never embed a TLS library: not worth reading.
    private static func isSystemRuntime(_ path: String) -> Bool {
        let name = path.split(separator: "/").last ?? ""
        return [
            "libc.so", "libm.so", "ld-linux", "libpthread", "libdl.so", "librt.so", "libgcc_s", "libstdc++",
            "libswiftCore", "libFoundation", "libdispatch", "libz.so", "libcrypto.so",
        ]
        .contains { name.hasPrefix($0) || name.contains($0) }
    }

    /// The PIDs of every process now running.
    public static func allProcesses() -> [Int32] {
        ((try? ProcFS.directoryEntries("/proc")) ?? []).compactMap { Int32($0) }
    }

    /// A process's comm, or nil if it is gone.
    public static func comm(of pid: Int32) -> String? {
        guard let text = try? ProcFS.readText("/proc/\(pid)/comm") else { return nil }
        return text.hasSuffix("\n") ? String(text.dropLast()) : text
    }

    /// Every distinct file (by device and inode) among `targets`, first reason kept.
    public static func distinct(_ targets: [LibraryTarget]) -> [LibraryTarget] {
        var seen = Set<FileIdentity>()
        return targets.filter { seen.insert($0.identity).inserted }
    }

    /// `path` as a target of `library`, if the file is there.
    public static func target(path: String, library: TLSLibrary, reason: String) -> LibraryTarget? {
        guard let identity = ProcFS.fileIdentity(path) else { return nil }
        return LibraryTarget(path: path, identity: identity, library: library, reason: reason)
    }
}
