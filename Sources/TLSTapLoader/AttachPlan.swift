/// Which library files to attach to, and for which process, given the scope.
///
/// With `-p --no-children`, probes go into the files each process maps and
/// fire only in that process, so nothing else on the host even traps. Other
/// scopes include processes that may start later: `-p` the children the
/// given processes fork (which a probe bound to their parent's PID does not
/// fire in), the others any process. The probes go into the files the
/// running candidates map (and, but for `-p`, the system's libssl), for all
/// processes, and the kernel-side filter decides.
public struct AttachPlan: Sendable {
    public struct Attachment: Sendable, Equatable {
        public var library: LibraryTarget
        /// -1 for every process.
        public var pid: Int32
    }

    public var attachments: [Attachment]
    /// Whether the scope's processes may still load a TLS library or start
    /// programs that have one (-p with children): no attachment yet is
    /// then no error.
    public var findsLater = false

    /// Plans the attachments for `filters`.
    /// - Throws: when a PID does not exist.
    public static func make(for filters: TraceFilters) throws(LoaderError) -> AttachPlan {
        if !filters.pids.isEmpty {
            var attachments: [Attachment] = []
            for pid in filters.pids {
                for library in try LibraryDiscovery.tlsLibraries(of: pid) {
                    attachments.append(Attachment(library: library, pid: filters.followChildren ? -1 : pid))
                }
            }
            guard filters.followChildren else { return AttachPlan(attachments: attachments) }
            let distinct = LibraryDiscovery.distinct(attachments.map(\.library))
            return AttachPlan(attachments: distinct.map { Attachment(library: $0, pid: -1) }, findsLater: true)
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
