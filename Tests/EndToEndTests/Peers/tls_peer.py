#!/usr/bin/env python3
"""TLS peers for tlstap's end-to-end tests, on loopback only.

  tls_peer.py server CERT KEY PORTFILE [--count N]
      HTTPS server: answers N POST or GET requests (default 1), then exits.
      The response body is "got <sha256 of the request body>\n".
      Writes its port to PORTFILE once listening.
  tls_peer.py client URL CAFILE SIZE SEED [BODYFILE]
      POSTs SIZE deterministic pseudo-random bytes (from SEED) with urllib,
      which drives OpenSSL through SSL_write_ex/SSL_read_ex.
      Prints the sha256 of the body it sent, then the response body; saves
      the body to BODYFILE if given.
  tls_peer.py threads URL CAFILE COUNT SIZE
      COUNT threads at once, each POSTing its own SIZE random bytes over its
      own connection; prints "INDEX SHA256" per thread.
  tls_peer.py late URL CAFILE GOFILE
      Connects (TLS handshake done), prints "connected", waits until GOFILE
      exists, then sends a GET and prints the response body.
  tls_peer.py closes URL CAFILE
      Four GETs in turn, each on a connection of its own, closed in a
      different way, and waits 0.6 s after each close: one the
      server reset after answering (/reset), one shut down for writing
      first, one closed while open, and one left for the exit to close.
      Prints "closed PATH TIME_NS" (wall clock) right before each close().
  tls_peer.py renames URL CAFILE
      Five GETs in turn, each on a connection of its own, under the thread
      names tlstap's -c sees: as started (/as-started), renamed with
      PR_SET_NAME to tlstaprenamed (/renamed), then to tlstapaway
      (/renamed-away), back to tlstaprenamed by writing /proc/self/comm
      (/written), and from a new thread, which inherits the name
      (/in-a-thread). Prints each response body.
  tls_peer.py moves URL CAFILE
      A GET (/before-the-move), then moves itself into its parent's cgroup
      v2 (tlstap's, when tlstap -- started it), and a second GET
      (/after-the-move).
"""
import hashlib
import http.server
import random
import ssl
import sys
import urllib.request


def body(size, seed):
    return random.Random(seed).randbytes(size)


class Server(http.server.HTTPServer):
    request_queue_size = 128
    # No client within this many seconds (tlstap failed to start, so the
    # test's client never ran): the server ends, and the test with it,
    # instead of holding the suite.
    timeout = 600

    def handle_timeout(self):
        sys.exit("tls_peer.py: no client came within %d s" % self.timeout)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        received = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.answer(received)

    def do_GET(self):
        self.answer(b"")

    def answer(self, received):
        reply = ("got %s\n" % hashlib.sha256(received).hexdigest()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
        if self.path == "/reset":  # close with a reset once the client has read the answer (a reset drops it)
            import socket
            import struct
            import time

            time.sleep(0.1)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

    def log_message(self, *args):
        pass


def serve(cert, key, port_file, count):
    server = Server(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.rename(port_file + ".tmp", port_file)
    for _ in range(count):
        server.handle_request()


def post(url, cafile, size, seed, body_file=None):
    data = body(size, seed)
    if body_file:
        with open(body_file, "wb") as f:
            f.write(data)
    context = ssl.create_default_context(cafile=cafile)
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(request, context=context) as response:
        answer = response.read()
    print(hashlib.sha256(data).hexdigest())
    sys.stdout.write(answer.decode())


def threads(url, cafile, count, size):
    import threading

    context = ssl.create_default_context(cafile=cafile)
    results = {}
    start = threading.Barrier(count)

    def one(index):
        data = random.Random(1000 + index).randbytes(size)
        start.wait()
        request = urllib.request.Request(url, data=data)
        with urllib.request.urlopen(request, context=context) as response:
            response.read()
        results[index] = hashlib.sha256(data).hexdigest()

    workers = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for index in sorted(results):
        print(index, results[index])


def late(url, cafile, go_file):
    import http.client
    import os
    import time
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    context = ssl.create_default_context(cafile=cafile)
    connection = http.client.HTTPSConnection(parts.hostname, parts.port, context=context)
    connection.connect()
    print("connected", flush=True)
    deadline = time.time() + 30
    while not os.path.exists(go_file) and time.time() < deadline:
        time.sleep(0.05)
    connection.request("GET", parts.path)
    sys.stdout.write(connection.getresponse().read().decode())


def closes(url, cafile, pause=0.6):
    import http.client
    import socket
    import time
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    context = ssl.create_default_context(cafile=cafile)
    for path in ["/reset", "/shutdown", "/close", "/exit"]:
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, context=context)
        connection.request("GET", path)
        sys.stdout.write(connection.getresponse().read().decode())
        if path == "/exit":
            break
        time.sleep(0.3)  # the reset arrives
        if path == "/shutdown":
            connection.sock.shutdown(socket.SHUT_WR)
        print("closed", path, time.time_ns(), flush=True)
        connection.sock.close()
        time.sleep(pause)
    time.sleep(pause)


def get_each(url, cafile, steps):
    """GETs each (path, then) of steps on a connection of its own, calling then() first."""
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    context = ssl.create_default_context(cafile=cafile)
    for path, then in steps:
        then()
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, context=context)
        connection.request("GET", path)
        sys.stdout.write(connection.getresponse().read().decode())
        connection.close()


def moves(url, cafile):
    import os

    def move():
        with open("/proc/self/mountinfo") as f:
            mount = next(line.split()[4] for line in f if line.split(" - ")[1].startswith("cgroup2 "))
        with open("/proc/%d/cgroup" % os.getppid()) as f:
            path = next(line.strip()[3:] for line in f if line.startswith("0::"))
        with open(mount + path.rstrip("/") + "/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))

    get_each(url, cafile, [("/before-the-move", lambda: None), ("/after-the-move", move)])


def renames(url, cafile):
    import ctypes
    import threading

    libc = ctypes.CDLL(None, use_errno=True)

    def named(name):
        return lambda: libc.prctl(15, name, 0, 0, 0)  # PR_SET_NAME

    def written():
        with open("/proc/self/comm", "w") as comm:
            comm.write("tlstaprenamed")

    get_each(url, cafile, [
        ("/as-started", lambda: None),
        ("/renamed", named(b"tlstaprenamed")),
        ("/renamed-away", named(b"tlstapaway")),
        ("/written", written),
    ])
    worker = threading.Thread(target=get_each, args=(url, cafile, [("/in-a-thread", lambda: None)]))
    worker.start()
    worker.join()


if __name__ == "__main__":
    if sys.argv[1] == "server":
        count = int(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[5] == "--count" else 1
        serve(sys.argv[2], sys.argv[3], sys.argv[4], count)
    elif sys.argv[1] == "client":
        post(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] if len(sys.argv) > 6 else None)
    elif sys.argv[1] == "threads":
        threads(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif sys.argv[1] == "late":
        late(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "closes":
        closes(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "renames":
        renames(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "moves":
        moves(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: see the docstring")
