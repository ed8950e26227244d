// What reading the client's certificate from Node costs the server, per call, on a fresh
// connection (the first read after the handshake): the floor of what any plugin pays on a new
// connection before it can look up a cached verdict. Each connection gets one kind of read, in
// turn, so every figure is a first read.
//
//   npm run build && node bench/peer-read.mjs [--connections 900] [--resumed]
//
// --resumed: every connection resumes the first one's TLS 1.3 session (the server holds the
// leaf alone there), and the session read is timed on its own next to the others.
//
// leafFingerprint() is what the plugin calls after a full handshake (lib/sources/tls.ts: the
// leaf's bytes from the serialised session, hashed; the session's bytes zeroed);
// getPeerCertificate(false) is what it called before, and what it falls back to;
// getPeerX509Certificate() is what it calls on a resumed session (on a full handshake it would
// also drop the leaf from the chain Node reports to the application, nodejs/node#65579).
import { connect, createServer } from 'node:tls'
import { parseArgs } from 'node:util'
import { createDevPki, issueClient } from 'fastify-mtls-auth/pki'
import { leafFingerprint, sessionLeafFingerprint } from '../dist/sources/tls.js'

const { values } = parseArgs({ options: { connections: { type: 'string', default: '900' }, resumed: { type: 'boolean', default: false } } })
const resumed = values.resumed
const total = Number(values.connections)
if (!Number.isInteger(total) || total < 30) throw new Error('--connections must be an integer >= 30')

const pki = await createDevPki()
const client = await issueClient(pki, { cn: 'bench', o: 'Bench' })

const reads = {
  'leafFingerprint() (the plugin)': (s) => leafFingerprint(s),
  'getPeerCertificate(false)': (s) => s.getPeerCertificate(false).fingerprint256,
  'getPeerX509Certificate().fingerprint256': (s) => s.getPeerX509Certificate()?.fingerprint256,
  'getPeerCertificate(true)': (s) => s.getPeerCertificate(true).fingerprint256,
  ...(resumed ? { 'the session alone (sessionLeafFingerprint)': (s) => sessionLeafFingerprint(s) } : {})
}
const names = Object.keys(reads)
const times = Object.fromEntries(names.map((n) => [n, []]))
let i = 0
const server = createServer({ key: pki.server.key.privateKeyPem, cert: pki.server.pem, ca: pki.root.pem, requestCert: true, rejectUnauthorized: false }, (socket) => {
  if (socket.isSessionReused() !== resumed) {
    // the first connection of a --resumed run, which makes the session
    socket.end('x')
    return
  }
  const name = names[i++ % names.length]
  const t0 = process.hrtime.bigint()
  const fingerprint = reads[name](socket)
  times[name].push(Number(process.hrtime.bigint() - t0) / 1000)
  if (fingerprint !== client.fingerprint256) throw new Error(`${name} read ${fingerprint}`)
  socket.end('x')
})
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
const { port } = server.address()
let session
for (let k = 0; k < total + (resumed ? 1 : 0); k++) {
  await new Promise((resolve, reject) => {
    const c = connect({ port, host: '127.0.0.1', servername: 'localhost', key: client.key.privateKeyPem, cert: client.chainPem, ca: pki.root.pem, ...(resumed && session !== undefined ? { session } : {}) })
    c.on('session', (s) => { session ??= s })
    c.on('data', () => {})
    c.on('end', () => { c.end(); resolve() })
    c.on('error', reject)
  })
}
server.close()
const q = (v, p) => v[Math.min(v.length - 1, Math.floor(v.length * p))]
console.log(`node ${process.version}, ${total} ${resumed ? 'resumed' : 'full'} handshakes (ECDSA P-256, TLS 1.3), one read each, per call on a fresh connection:`)
for (const name of names) {
  const v = times[name].sort((a, b) => a - b)
  console.log(`  ${name.padEnd(42)} median ${q(v, 0.5).toFixed(1).padStart(6)} µs   p90 ${q(v, 0.9).toFixed(1).padStart(6)} µs`)
}
