#!/usr/bin/env python3
"""A gRPC-shaped HTTP/2 server over TLS for tlstap's tests, with python3-h2.

  grpc_server.py CERT KEY PORTFILE [NAME:VALUE ...]

Answers one request: reads the request's length-prefixed messages, replies
with HEADERS (content-type application/grpc), one message per request
message (its bytes reversed), and trailers grpc-status 0, grpc-message "ok". Each NAME:VALUE is one more
response header.
Writes its port to PORTFILE once listening.
"""
import os
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events


def messages(data):
    found = []
    while len(data) >= 5:
        length = int.from_bytes(data[1:5], "big")
        found.append(data[5:5 + length])
        data = data[5 + length:]
    return found


def main(cert, key, port_file, extra_headers):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])
    listener = socket.create_server(("127.0.0.1", 0))
    with open(port_file + ".tmp", "w") as f:
        f.write(str(listener.getsockname()[1]))
    os.rename(port_file + ".tmp", port_file)
    raw, _ = listener.accept()
    sock = context.wrap_socket(raw, server_side=True)
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    connection.initiate_connection()
    sock.sendall(connection.data_to_send())
    bodies = {}
    while True:
        data = sock.recv(65536)
        if not data:
            return
        for event in connection.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                bodies[event.stream_id] = bodies.get(event.stream_id, b"") + event.data
                connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                stream = event.stream_id
                connection.send_headers(stream, [(":status", "200"), ("content-type", "application/grpc")] + extra_headers)
                reply = b"".join(b"\x00" + len(m).to_bytes(4, "big") + m[::-1] for m in messages(bodies.get(stream, b"")))
                connection.send_data(stream, reply)
                connection.send_headers(stream, [("grpc-status", "0"), ("grpc-message", "ok")], end_stream=True)
                connection.close_connection()
                sock.sendall(connection.data_to_send())
                # Read until the client closes: closing with its last frames
                # unread would reset the connection under it.
                sock.settimeout(5)
                try:
                    while sock.recv(65536):
                        pass
                except OSError:
                    pass
                sock.close()
                return
        sock.sendall(connection.data_to_send())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], [tuple(h.split(":", 1)) for h in sys.argv[4:]])
