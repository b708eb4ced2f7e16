// An HTTPS server on node's event loop, for tlstap's end-to-end tests.
//
//   node event_loop_https.js CERT KEY PORTFILE [--h2]
//
// Listens on 127.0.0.1, port 0, and writes the port to PORTFILE (through a
// rename, so a reader never sees half of it). Answers every request with
// 200 and the body "path=<request path>\n", so every response differs;
// keep-alive stays on. With --h2 the server is http2.createSecureServer with
// allowHTTP1, so it answers HTTP/2 and HTTP/1.1 alike.
//
// node's TLS sockets feed OpenSSL through memory BIOs and write the socket
// themselves, from the one event-loop thread for every connection: the
// thread's next socket write after an SSL_write is not always that
// connection's.
'use strict';
const fs = require('fs');

const [cert, key, portFile, ...rest] = process.argv.slice(2);
if (!cert || !key || !portFile || rest.some((a) => a !== '--h2')) {
  process.stderr.write('usage: event_loop_https.js CERT KEY PORTFILE [--h2]\n');
  process.exit(2);
}
const h2 = rest.includes('--h2');
const options = { cert: fs.readFileSync(cert), key: fs.readFileSync(key) };

function answer(request, response) {
  const body = `path=${request.url}\n`;
  const finish = () => {
    response.writeHead(200, {
      'content-type': 'text/plain',
      'content-length': Buffer.byteLength(body),
    });
    response.end(body);
  };
  // Read any request body to its end before answering.
  request.on('data', () => {});
  request.on('end', finish);
  request.resume();
}

let server;
if (h2) {
  server = require('http2').createSecureServer({ ...options, allowHTTP1: true }, answer);
} else {
  server = require('https').createServer({ ...options, keepAlive: true, keepAliveTimeout: 30000 }, answer);
  server.keepAliveTimeout = 30000;
}
server.listen(0, '127.0.0.1', () => {
  fs.writeFileSync(portFile + '.tmp', String(server.address().port));
  fs.renameSync(portFile + '.tmp', portFile);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
