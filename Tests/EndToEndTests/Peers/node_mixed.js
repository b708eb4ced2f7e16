// One node process that is an HTTPS server and its client, then an HTTP/2
// server and its client, for tlstap's end-to-end tests.
//
//   node node_mixed.js CERT KEY [COUNT] [--out FILE]
//
// 1. An https server on 127.0.0.1 (port 0) and COUNT (default 6) GETs to it
//    through a keep-alive Agent (one socket), paths /h1/0 ... /h1/COUNT-1,
//    all sent at once; then both are closed.
// 2. An http2 secure server and one client session on it, COUNT GETs as
//    concurrent streams, paths /h2/0 ...; then both are closed.
// Every answer is 200 with the body "path=<path>\n"; the client checks each.
// Prints one line per request ("h1 /h1/0 200 path=/h1/0") and "done", on
// stdout or into FILE (for `tlstap -- node ...`, whose stdout tlstap shares),
// and exits 0; any mismatch or error exits 1.
//
// Both ends of both connections run on node's one event-loop thread, which
// feeds OpenSSL through memory BIOs and writes each socket itself.
'use strict';
const fs = require('fs');
const https = require('https');
const http2 = require('http2');

const positional = process.argv.slice(2);
let outFile = null;
const outAt = positional.indexOf('--out');
if (outAt >= 0) [, outFile] = positional.splice(outAt, 2);
const [cert, key, countArgument] = positional;
const count = Number(countArgument || 6);
if (!cert || !key || positional.length > 3 || !(count > 0) || (outAt >= 0 && !outFile)) {
  process.stderr.write('usage: node_mixed.js CERT KEY [COUNT] [--out FILE]\n');
  process.exit(2);
}
const report = [];
const say = (line) => report.push(line);
const ca = fs.readFileSync(cert);
const options = { cert: ca, key: fs.readFileSync(key) };

function answer(request, response) {
  const body = `path=${request.url}\n`;
  request.resume();
  request.on('end', () => {
    response.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    response.end(body);
  });
}

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

function check(kind, path, status, body) {
  const line = `${kind} ${path} ${status} ${body.trimEnd()}`;
  say(line);
  if (status !== 200 || body !== `path=${path}\n`) throw new Error(`unexpected answer: ${line}`);
}

async function http1() {
  const server = https.createServer({ ...options, keepAlive: true }, answer);
  const port = await listen(server);
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca });
  const get = (path) =>
    new Promise((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, path, agent, servername: 'localhost' }, (response) => {
          let body = '';
          response.setEncoding('utf8');
          response.on('data', (chunk) => (body += chunk));
          response.on('end', () => resolve([path, response.statusCode, body]));
        })
        .on('error', reject);
    });
  const results = await Promise.all([...Array(count).keys()].map((i) => get(`/h1/${i}`)));
  for (const [path, status, body] of results) check('h1', path, status, body);
  agent.destroy();
  await new Promise((resolve) => server.close(resolve));
}

async function http2Exchanges() {
  const server = http2.createSecureServer(options, answer);
  const port = await listen(server);
  const session = http2.connect(`https://localhost:${port}`, { ca });
  session.on('error', fail);
  const get = (path) =>
    new Promise((resolve, reject) => {
      const stream = session.request({ ':path': path });
      let status = 0;
      let body = '';
      stream.setEncoding('utf8');
      stream.on('response', (headers) => (status = headers[':status']));
      stream.on('data', (chunk) => (body += chunk));
      stream.on('end', () => resolve([path, status, body]));
      stream.on('error', reject);
      stream.end();
    });
  const results = await Promise.all([...Array(count).keys()].map((i) => get(`/h2/${i}`)));
  for (const [path, status, body] of results) check('h2', path, status, body);
  await new Promise((resolve) => session.close(resolve));
  await new Promise((resolve) => server.close(resolve));
}

function flush() {
  const text = report.map((line) => line + '\n').join('');
  if (outFile) fs.writeFileSync(outFile, text);
  else process.stdout.write(text);
}

function fail(error) {
  flush();
  console.error(error);
  process.exit(1);
}

(async () => {
  await http1();
  await http2Exchanges();
  say('done');
  flush();
})().catch(fail);
