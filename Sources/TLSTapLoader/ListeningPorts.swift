import TLSTapCore

/// Tells the role of a connection tlstap joined mid-stream that the kernel
/// could not place. The kernel names every connection accepted from a
/// listener with a backlog as the server's, so what is left is connected
/// sockets and, rarely, those accepted from a listener of backlog 0: if the
/// process's network namespace has a TCP socket listening on the
/// connection's local port, the process is the server, else the client.
public enum ListeningPorts {
    /// TCP state LISTEN in /proc/net/tcp (include/net/tcp_states.h).
    static let listenState = "0A"

    /// The role to report for a connection first seen in use.
    public static func role(_ socket: SocketEvent) -> ConnectionRole {
        guard let local = socket.local else { return .unknown }
        return ports(pid: socket.pid).contains(local.port) ? .server : .client
    }

    /// Local ports in LISTEN state in the process's network namespace, or in
    /// tlstap's own when the process is already gone.
    static func ports(pid: UInt32) -> Set<UInt16> {
        let directory = ProcFS.exists("/proc/\(pid)/net/tcp") ? "/proc/\(pid)/net" : "/proc/self/net"
        var ports = Set<UInt16>()
        for table in ["tcp", "tcp6"] {
            guard let text = try? ProcFS.readText("\(directory)/\(table)") else { continue }
            ports.formUnion(listeningPorts(inTable: text))
        }
        return ports
    }

    /// Parses a /proc/net/tcp table: `sl local_address rem_address st ...`, addresses as HEX:PORT.
    static func listeningPorts(inTable text: String) -> Set<UInt16> {
        var ports = Set<UInt16>()
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            guard fields.count > 3, fields[3] == listenState, let colon = fields[1].lastIndex(of: ":"),
                let port = UInt16(fields[1][fields[1].index(after: colon)...], radix: 16)
            else { continue }
            ports.insert(port)
        }
        return ports
    }
}
