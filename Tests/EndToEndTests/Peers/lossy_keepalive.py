#!/usr/bin/env python3
"""One keep-alive HTTPS connection whose middle part a stalled tlstap loses.

  lossy_keepalive.py CERT KEY COUNT SIZE PAUSEFILE GOFILE

A server thread and a client in one process, over loopback, speaking
hand-written HTTP/1.1 so that every byte is known. The client sends COUNT
requests `GET /big/I` (I = 0..COUNT-1), each answered with SIZE body
bytes, as fast as it can; creates PAUSEFILE; waits until GOFILE exists and
two more seconds; then sends `GET /final`, answered with 1000 bytes, and
closes. It prints one line, the bytes of every request it sent and of
every response it received:

  requests BYTES responses BYTES
"""
import os
import socket
import ssl
import sys
import threading
import time

FINAL_SIZE = 1000


def body(size):
    return (b"0123456789abcdef" * (size // 16 + 1))[:size]


def read_head(stream, pending):
    """Reads up to the blank line; returns (head, rest of what was read)."""
    while b"\r\n\r\n" not in pending:
        more = stream.recv(65536)
        if not more:
            return None, b""
        pending += more
    end = pending.index(b"\r\n\r\n") + 4
    return pending[:end], pending[end:]


def serve(listener, size):
    connection, _ = listener.accept()
    pending = b""
    while True:
        head, pending = read_head(connection, pending)
        if head is None:
            break
        path = head.split(b" ")[1]
        reply = body(size if path.startswith(b"/big/") else FINAL_SIZE)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(reply) + reply)
    connection.close()


def fetch(stream, path, sent_received):
    request = b"GET %s HTTP/1.1\r\nHost: loss.test\r\n\r\n" % path
    stream.sendall(request)
    head, rest = read_head(stream, b"")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    while len(rest) < length:
        rest += stream.recv(65536)
    sent_received[0] += len(request)
    sent_received[1] += len(head) + len(rest)


def main():
    cert, key, count, size, pause_file, go_file = sys.argv[1:7]
    count, size = int(count), int(size)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    listener = server_context.wrap_socket(socket.create_server(("127.0.0.1", 0)), server_side=True)
    server = threading.Thread(target=serve, args=(listener, size))
    server.start()
    client_context = ssl.create_default_context(cafile=cert)
    raw = socket.create_connection(listener.getsockname())
    stream = client_context.wrap_socket(raw, server_hostname="localhost")
    totals = [0, 0]
    for index in range(count):
        fetch(stream, b"/big/%d" % index, totals)
    open(pause_file, "w").close()
    while not os.path.exists(go_file):
        time.sleep(0.05)
    time.sleep(2)
    fetch(stream, b"/final", totals)
    stream.close()
    server.join()
    print("requests %d responses %d" % (totals[0], totals[1]))


main()
