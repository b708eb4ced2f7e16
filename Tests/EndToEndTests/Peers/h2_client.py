#!/usr/bin/env python3
"""One HTTP/2 connection over TLS (python3-h2) that tlstap joins midway.

  h2_client.py HOST PORT CAFILE BEFORE AFTER GOFILE

Sends BEFORE GET requests, prints "connected", waits until GOFILE exists,
then sends AFTER more on the same connection, one at a time. Every request
has the same :authority, user-agent and x-trace, which HPACK indexes on the
first request: later ones refer to table entries made before GOFILE. Paths
are /files/f<i % 10>.txt. Prints "path status length" per response.
"""
import os
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events


def request(sock, connection, host, path):
    stream = connection.get_next_available_stream_id()
    connection.send_headers(stream, [(":method", "GET"), (":scheme", "https"), (":authority", host),
                                     (":path", path), ("user-agent", "h2-client/1"), ("x-trace", "abc")],
                            end_stream=True)
    sock.sendall(connection.data_to_send())
    status, length = None, 0
    while True:
        data = sock.recv(65536)
        if not data:
            raise SystemExit("closed")
        for event in connection.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                status = dict(event.headers)[b":status"].decode()
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                length += len(event.data)
                connection.acknowledge_received_data(event.flow_controlled_length, stream)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                sock.sendall(connection.data_to_send())
                print(path, status, length, flush=True)
                return
        sock.sendall(connection.data_to_send())


def main(host, port, cafile, before, after, go_file):
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["h2"])
    sock = context.wrap_socket(socket.create_connection((host, port)), server_hostname=host)
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()
    sock.sendall(connection.data_to_send())
    authority = "%s:%d" % (host, port)
    for i in range(before):
        request(sock, connection, authority, "/files/f%d.txt" % (i % 10))
    print("connected", flush=True)
    while not os.path.exists(go_file):
        time.sleep(0.05)
    for i in range(before, before + after):
        request(sock, connection, authority, "/files/f%d.txt" % (i % 10))
    connection.close_connection()
    sock.sendall(connection.data_to_send())
    sock.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
