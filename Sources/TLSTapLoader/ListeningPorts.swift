import TLSTapCore

/// Tells the role of a connection tlstap joined mid-stream: if the process's
/// network namespace has a TCP socket listening on the connection's local
/// port, the process is most likely the server.
public enum ListeningPorts {
    /// TCP state LISTEN in /proc/net/tcp (include/net/tcp_states.h).
    static let listenState = "0A"

    /// The role to report for a connection first seen in use.
    public static func role(_ socket: SocketEvent) -> ConnectionRole {
        guard let local = socket.local else { return .unknown }
        let listening = ports(pid: socket.pid)
        if listening.isEmpty { return .unknown }
        return listening.contains(local.port) ? .server : .client
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
