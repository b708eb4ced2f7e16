import TLSTapCore

/// Which processes the kernel side traces. Every filter that is set must
/// match; an empty configuration traces the whole host.
public struct TraceFilters: Sendable, Equatable {
    /// Thread group ids (-p).
    public var pids: [Int32] = []
    /// With `pids`: also the processes they fork, from the moment they
    /// fork (`--no-children` turns it off). Their descendants alive at the
    /// start must be among `pids` (`ProcessTree.descendants(of:)`).
    public var followChildren = true
    /// Command names (-c), at most 15 bytes each, as the kernel keeps them.
    public var comms: [String] = []
    /// A cgroup v2 id (`tlstap -- COMMAND`).
    public var cgroupID: UInt64?
    /// Connections with one of these ports, local or remote (--port).
    public var ports: [UInt16] = []
    /// Connections with one of these addresses, local or remote (--host).
    public var hosts: [SocketAddress] = []
    /// Also capture unencrypted TCP payload of the traced processes (--plaintext).
    public var plaintext = false

    /// Whether the scope takes in programs that start later, whose probes
    /// must then be attached as they exec or map code: every scope but -p
    /// without its children.
    public var followsExecs: Bool { pids.isEmpty || followChildren }

    public init(
        pids: [Int32] = [], comms: [String] = [], cgroupID: UInt64? = nil, ports: [UInt16] = [],
        hosts: [SocketAddress] = []
    ) {
        self.pids = pids
        self.comms = comms
        self.cgroupID = cgroupID
        self.ports = ports
        self.hosts = hosts
    }
}
