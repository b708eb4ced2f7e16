/// Which library files to attach to, and for which process, given the scope.
///
/// With `-p`, probes go into the files each process maps and fire only in
/// that process, so nothing else on the host even traps. Other scopes
/// include processes that may start later, so the probes go into the
/// system's libssl and every libssl a running candidate maps, for all
/// processes, and the kernel-side filter decides.
public struct AttachPlan: Sendable {
    public struct Attachment: Sendable, Equatable {
        public var library: LibraryTarget
        /// -1 for every process.
        public var pid: Int32
    }

    public var attachments: [Attachment]

    /// Plans the attachments for `filters`.
    /// - Throws: when a PID does not exist.
    public static func make(for filters: TraceFilters) throws(LoaderError) -> AttachPlan {
        if !filters.pids.isEmpty {
            var attachments: [Attachment] = []
            for pid in filters.pids {
                for library in try LibraryDiscovery.tlsLibraries(of: pid) {
                    attachments.append(Attachment(library: library, pid: pid))
                }
            }
            return AttachPlan(attachments: attachments)
        }
        var libraries = LibraryDiscovery.systemLibraries()
        if filters.cgroupID == nil {
            let wanted = Set(filters.comms.map { String(decoding: $0.utf8.prefix(15), as: UTF8.self) })
            for pid in LibraryDiscovery.allProcesses() {
                if !wanted.isEmpty, !wanted.contains(LibraryDiscovery.comm(of: pid) ?? "") { continue }
                libraries += (try? LibraryDiscovery.tlsLibraries(of: pid)) ?? []
            }
        }
        return AttachPlan(attachments: LibraryDiscovery.distinct(libraries).map { Attachment(library: $0, pid: -1) })
    }
}
