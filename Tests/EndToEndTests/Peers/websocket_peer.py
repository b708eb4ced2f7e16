"""A WebSocket server and its client over TLS, in one asyncio process.

Python's websockets library, as applications use it: TLS through asyncio
(OpenSSL with memory BIOs), permessage-deflate on unless --no-compression.
The client sends a text, a binary message, a text in two fragments and a
ping, then closes with 1000 "done"; the server answers each data message
(text upper-cased, bytes reversed).

Usage: websocket_peer.py CERT KEY [--no-compression]
"""

import asyncio
import ssl
import sys

import websockets


async def answer(websocket, path=None):
    async for message in websocket:
        if isinstance(message, str):
            await websocket.send(message.upper())
        else:
            await websocket.send(message[::-1])


async def main(cert, key, compression):
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=cert)
    async with websockets.serve(
        answer, "127.0.0.1", 0, ssl=server_context, compression=compression
    ) as server:
        port = server.sockets[0].getsockname()[1]
        async with websockets.connect(
            f"wss://localhost:{port}/chat", ssl=client_context, compression=compression
        ) as websocket:
            await websocket.send("hello tlstap")
            print(await websocket.recv())
            await websocket.send(bytes(range(256)))
            assert await websocket.recv() == bytes(reversed(range(256)))
            await websocket.send(iter(["part one, ", "part two"]))
            print(await websocket.recv())
            pong = await websocket.ping(b"are you there")
            await pong
            await websocket.close(code=1000, reason="done")


if __name__ == "__main__":
    compression = None if "--no-compression" in sys.argv else "deflate"
    asyncio.run(main(sys.argv[1], sys.argv[2], compression))
