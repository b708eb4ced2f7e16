#!/usr/bin/env python3
"""An HTTPS server on one asyncio event loop, for tlstap's end-to-end tests.

  asyncio_https.py CERT KEY PORTFILE

Listens on 127.0.0.1, port 0, and writes the port to PORTFILE (through a
rename). Reads HTTP/1.1 requests (request line, headers, a Content-Length
body), keep-alive, and answers each with 200 and the body
"path=<request path>\n", so every response differs.

asyncio's TLS (sslproto) drives OpenSSL through memory BIOs (SSLObject):
SSL_write and SSL_read run on the loop's one thread for every connection,
and the loop writes the ciphertext to each socket afterwards, itself.
"""
import asyncio
import os
import ssl
import sys


async def handle(reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            parts = line.decode("latin-1").split()
            if len(parts) != 3:
                return
            _, path, version = parts
            length = 0
            close = version == "HTTP/1.0"
            while True:
                header = await reader.readline()
                if header in (b"\r\n", b"\n", b""):
                    break
                name, _, value = header.decode("latin-1").partition(":")
                name = name.strip().lower()
                value = value.strip()
                if name == "content-length":
                    length = int(value)
                elif name == "connection":
                    close = value.lower() == "close"
            if length:
                await reader.readexactly(length)
            body = ("path=%s\n" % path).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s"
                % (len(body), b"Connection: close\r\n" if close else b"", body)
            )
            await writer.drain()
            if close:
                return
    except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def main(cert, key, port_file):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context, backlog=128)
    port = server.sockets[0].getsockname()[1]
    with open(port_file + ".tmp", "w") as f:
        f.write(str(port))
    os.rename(port_file + ".tmp", port_file)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: asyncio_https.py CERT KEY PORTFILE")
    try:
        asyncio.run(main(*sys.argv[1:]))
    except KeyboardInterrupt:
        pass
