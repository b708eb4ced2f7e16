#!/usr/bin/env python3
"""gRPC over TLS with grpcio, whose wheels embed BoringSSL without symbols:
a program whose TLS tlstap cannot probe.

  grpcio_peer.py server CERT KEY PORTFILE   serves /t.Echo/Reverse until killed
  grpcio_peer.py client CERT PORT COUNT     calls it COUNT times, prints the answers

No generated code: the method takes and returns raw bytes.
"""
import os
import sys
import time

import grpc


def serve(cert, key, port_file):
    server = grpc.server(__import__("concurrent.futures").futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request[::-1])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.Echo", {"Reverse": handler})])
    with open(cert, "rb") as c, open(key, "rb") as k:
        credentials = grpc.ssl_server_credentials([(k.read(), c.read())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    with open(port_file + ".tmp", "w") as f:
        f.write(str(port))
    os.rename(port_file + ".tmp", port_file)
    while True:
        time.sleep(3600)


def call(cert, port, count):
    with open(cert, "rb") as c:
        credentials = grpc.ssl_channel_credentials(root_certificates=c.read())
    with grpc.secure_channel("localhost:%s" % port, credentials) as channel:
        reverse = channel.unary_unary("/t.Echo/Reverse")
        for i in range(int(count)):
            print(reverse(b"hello %d" % i, timeout=10).decode(), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(*sys.argv[2:5])
    else:
        call(*sys.argv[2:5])
