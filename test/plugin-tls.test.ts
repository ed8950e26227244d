// The plugin over real TLS, protocol by protocol: HTTP/1.1 and HTTP/2, TLS 1.2 and 1.3,
// RSA / ECDSA / Ed25519 client keys, keep-alive, the curl command line, register-time
// checks of the server and the log line written when the TLS layer disagrees with the
// verifier. Session resumption is in plugin-tls-resumption.test.ts.
// Every test is a Fastify HTTPS (or HTTP/2) server on 127.0.0.1 port 0 and a real client.
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tls from 'node:tls'
import type { TLSSocket } from 'node:tls'
import { promisify } from 'node:util'
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import { Agent, request } from 'undici'
import fastifyMtls, { type TrustAnchorInput } from '../lib/index.js'
import { issue, makeChain, type Chain, type Issued } from './helpers/pki.js'

const execFileAsync = promisify(execFile)

const server = await makeChain({ kind: 'ec256', intermediates: 0, label: 'Server', leaf: { subject: 'CN=localhost', san: { dns: ['localhost'], ip: ['127.0.0.1'] }, extKeyUsage: ['serverAuth'] } })
const [ecPartner, rsaPartner, edPartner, rogue] = await Promise.all([
  makeChain({ kind: 'ec256', label: 'EC Partner', leaf: { subject: 'CN=ec-svc,O=Partner' } }),
  makeChain({ kind: 'rsa2048', label: 'RSA Partner', leaf: { subject: 'CN=rsa-svc,O=Partner' } }),
  makeChain({ kind: 'ed25519', label: 'Ed Partner', leaf: { subject: 'CN=ed-svc,O=Partner' } }),
  makeChain({ kind: 'ec256', label: 'Rogue', leaf: { subject: 'CN=rogue-svc,O=Rogue' } })
])

interface Pem { pem: string, key: string }
const presents = (c: Chain): Pem => ({ pem: c.chainPem, key: c.leaf.key.privateKeyPem })
const leafOnly = (c: Chain): Pem => ({ pem: c.leaf.pem, key: c.leaf.key.privateKeyPem })

interface LogLine { level: number, msg: string, [key: string]: unknown }

interface StartOptions {
  /** the plugin's options (ca defaults to the EC partner's root) */
  plugin?: Record<string, unknown>
  /** merged into the server's https options */
  https?: Record<string, unknown>
  http2?: boolean
  /** collect log lines from this level */
  logLevel?: 'info' | 'warn'
  routes?: (app: FastifyInstance) => void
}

/** What a route reports about its connection, read after the plugin's onRequest hook ran. */
function describe (req: FastifyRequest) {
  const socket = req.socket as TLSSocket
  return {
    cn: req.clientIdentity?.subject.attributes.CN?.[0] ?? null,
    httpVersion: req.raw.httpVersion,
    protocol: socket.getProtocol(),
    reused: socket.isSessionReused(),
    authorized: socket.authorized,
    port: socket.remotePort,
    chain: peerChain(socket)
  }
}

/** The CNs of getPeerCertificate(true), leaf first (Node links a self-signed root to itself). */
function peerChain (socket: TLSSocket): string[] {
  interface Peer { raw?: Buffer, subject?: { CN?: string }, issuerCertificate?: Peer }
  let c = socket.getPeerCertificate(true) as unknown as Peer | undefined
  const out: string[] = []
  const seen = new Set<Peer>()
  while (c?.raw !== undefined && !seen.has(c)) {
    seen.add(c)
    out.push(String(c.subject?.CN))
    c = c.issuerCertificate
  }
  return out
}

type Described = ReturnType<typeof describe>

async function start (t: Test, o: StartOptions = {}) {
  const logs: LogLine[] = []
  const stream = { write (line: string) { logs.push(JSON.parse(line) as LogLine) } }
  const options = {
    ...(o.logLevel === undefined ? {} : { logger: { level: o.logLevel, stream } }),
    ...(o.http2 === true ? { http2: true } : {}),
    https: { key: server.leaf.key.privateKeyPem, cert: server.leaf.pem, ca: ecPartner.root.pem, requestCert: true, rejectUnauthorized: false, ...o.https }
  }
  // one factory for HTTP/1.1 and HTTP/2: the routes below use only what both servers have
  const app = Fastify(options as FastifyServerOptions) as unknown as FastifyInstance
  t.teardown(() => app.close())
  await app.register(fastifyMtls, { ca: ecPartner.root.pem, ...o.plugin })
  app.get('/', async (req) => describe(req))
  o.routes?.(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as { port: number }).port
  return { app, port, url: `https://127.0.0.1:${port}`, logs }
}

interface AgentOptions { h2?: boolean, maxVersion?: 'TLSv1.2' | 'TLSv1.3', minVersion?: 'TLSv1.2' | 'TLSv1.3' }

/** An undici Agent with a single connection (pipelining 1), so sequential requests share it. */
function agent (t: Test, cert?: Pem, o: AgentOptions = {}): Agent {
  const a = new Agent({
    connections: 1,
    allowH2: o.h2 === true,
    connect: {
      ca: server.root.pem,
      servername: 'localhost',
      ...(cert === undefined ? {} : { cert: cert.pem, key: cert.key }),
      ...(o.maxVersion === undefined ? {} : { maxVersion: o.maxVersion }),
      ...(o.minVersion === undefined ? {} : { minVersion: o.minVersion })
    }
  })
  t.teardown(() => a.close())
  return a
}

async function get (url: string, dispatcher: Agent): Promise<{ status: number, body: Described & { code?: string } }> {
  const res = await request(url, { dispatcher })
  return { status: res.statusCode, body: await res.body.json() as Described & { code?: string } }
}

// ------------------------------------------------------------------ HTTP/1.1 and HTTP/2

t.test('HTTP/1.1: identity, and the route still reads the full peer chain after the plugin ran', async (t) => {
  const { url } = await start(t, {
    routes: (app) => app.get('/x509', async (req) => {
      (req.socket as TLSSocket).getPeerX509Certificate()
      return describe(req)
    })
  })
  const a = agent(t, presents(ecPartner))
  for (let i = 0; i < 2; i++) {
    const { status, body } = await get(url, a)
    t.equal(status, 200)
    t.equal(body.cn, 'ec-svc')
    t.equal(body.httpVersion, '1.1')
    // leaf, the intermediate the client sent, and the root Node completes from https.ca
    t.same(body.chain, ['ec-svc', 'EC Partner Intermediate CA 1', 'EC Partner Root CA'], `request ${i + 1}: getPeerCertificate(true) is not cut to the leaf`)
  }
  // the check above can fail: on Node 20 one getPeerX509Certificate() call cuts the chain for good
  // (lib/sources/tls.ts), which is what the plugin must never do to the application's socket
  const cut = await get(`${url}/x509`, agent(t, presents(ecPartner)))
  t.equal(cut.body.cn, 'ec-svc')
  if (process.versions.node.startsWith('20.')) t.same(cut.body.chain, ['ec-svc'], 'Node 20: getPeerX509Certificate() leaves the leaf alone in the chain')
})

t.test('HTTP/2: identity; several requests on one session verify once; full peer chain in the route', async (t) => {
  const { app, url } = await start(t, { http2: true })
  const before = app.mtls.status()
  const a = agent(t, presents(ecPartner), { h2: true })
  const first = await get(url, a)
  t.equal(first.status, 200)
  t.equal(first.body.httpVersion, '2.0', 'the request went over HTTP/2')
  t.equal(first.body.cn, 'ec-svc')
  t.same(first.body.chain, ['ec-svc', 'EC Partner Intermediate CA 1', 'EC Partner Root CA'])
  const rest = [
    ...await Promise.all(Array.from({ length: 5 }, async () => get(url, a))),
    await get(url, a),
    await get(url, a)
  ]
  for (const r of rest) {
    t.equal(r.status, 200)
    t.equal(r.body.httpVersion, '2.0')
    t.equal(r.body.cn, 'ec-svc')
    t.equal(r.body.port, first.body.port, 'same HTTP/2 session (same client port)')
  }
  const after = app.mtls.status()
  t.equal(after.verifications - before.verifications, 1, 'one verification for the session')
  t.equal(after.caches.connectionsSeen - before.caches.connectionsSeen, 1, 'one connection state for the session, not one per stream')

  // a second session with the same certificate: the positive cache answers
  const second = await get(url, agent(t, presents(ecPartner), { h2: true }))
  t.equal(second.status, 200)
  t.equal(second.body.cn, 'ec-svc')
  t.not(second.body.port, first.body.port)
  t.equal(app.mtls.status().verifications, after.verifications, 'positive cache hit')
  t.equal(app.mtls.status().caches.connectionsSeen, after.caches.connectionsSeen + 1)
})

t.test('HTTP/2: no certificate -> 401 FST_MTLS_CERT_MISSING; an untrusted one -> 401 FST_MTLS_CERT_UNTRUSTED', async (t) => {
  const { url } = await start(t, { http2: true })
  const none = await get(url, agent(t, undefined, { h2: true }))
  t.equal(none.status, 401)
  t.match(none.body, { code: 'FST_MTLS_CERT_MISSING', statusCode: 401 })
  const bad = await get(url, agent(t, presents(rogue), { h2: true }))
  t.equal(bad.status, 401)
  t.match(bad.body, { code: 'FST_MTLS_CERT_UNTRUSTED', statusCode: 401 })
})

t.test('HTTP/2 server with allowHTTP1: an HTTP/1.1 client is identified too', async (t) => {
  const { url } = await start(t, { http2: true, https: { allowHTTP1: true } })
  const h1 = await get(url, agent(t, presents(ecPartner)))
  t.equal(h1.status, 200)
  t.equal(h1.body.httpVersion, '1.1')
  t.equal(h1.body.cn, 'ec-svc')
  const h2 = await get(url, agent(t, presents(ecPartner), { h2: true }))
  t.equal(h2.status, 200)
  t.equal(h2.body.httpVersion, '2.0')
  t.equal(h2.body.cn, 'ec-svc')
})

// ------------------------------------------------------------------ TLS versions x key types

const partners: Array<[string, Chain, string]> = [
  ['RSA-2048', rsaPartner, 'rsa-svc'],
  ['ECDSA P-256', ecPartner, 'ec-svc'],
  ['Ed25519', edPartner, 'ed-svc']
]
const allRoots = [rsaPartner.root.pem, ecPartner.root.pem, edPartner.root.pem]

for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
  t.test(`${version}: RSA-2048, ECDSA P-256 and Ed25519 client keys over HTTP/1.1`, async (t) => {
    // the server pins the version; the client offers both
    const { app, url } = await start(t, { plugin: { ca: allRoots }, https: { ca: allRoots, minVersion: version, maxVersion: version } })
    for (const [name, chain, cn] of partners) {
      const before = app.mtls.status()
      const a = agent(t, presents(chain))
      for (let i = 0; i < 3; i++) {
        const { status, body } = await get(url, a)
        t.equal(status, 200, `${name} request ${i + 1}`)
        t.equal(body.cn, cn)
        t.equal(body.protocol, version)
      }
      const after = app.mtls.status()
      t.equal(after.verifications - before.verifications, 1, `${name}: one verification for three requests on one ${version} connection`)
      t.equal(after.caches.connectionsSeen - before.caches.connectionsSeen, 1)
    }
  })
}

t.test('the client caps the version: TLS 1.2 and TLS 1.3 over HTTP/2', async (t) => {
  const { url } = await start(t, { http2: true, plugin: { ca: allRoots }, https: { ca: allRoots } })
  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    for (const [name, chain, cn] of partners) {
      const { status, body } = await get(url, agent(t, presents(chain), { h2: true, maxVersion: version }))
      t.equal(status, 200, `${name} over ${version}`)
      t.equal(body.cn, cn)
      t.equal(body.protocol, version)
      t.equal(body.httpVersion, '2.0')
    }
  }
})

// ------------------------------------------------------------------ keep-alive

t.test('keep-alive: 20 requests on one connection verify once; a second connection hits the positive cache', async (t) => {
  const { app, url } = await start(t)
  const before = app.mtls.status()
  const a = agent(t, presents(ecPartner))
  const ports = new Set<number | undefined>()
  for (let i = 0; i < 20; i++) {
    const { status, body } = await get(url, a)
    t.equal(status, 200)
    t.equal(body.cn, 'ec-svc')
    ports.add(body.port)
  }
  t.equal(ports.size, 1, 'all 20 requests on one connection')
  const mid = app.mtls.status()
  t.equal(mid.verifications - before.verifications, 1, 'verified once')
  t.equal(mid.caches.connectionsSeen - before.caches.connectionsSeen, 1, 'one connection state')
  t.equal(mid.caches.positive - before.caches.positive, 1, 'one positive verdict cached')

  const other = await get(url, agent(t, presents(ecPartner)))
  t.equal(other.status, 200)
  t.equal(other.body.cn, 'ec-svc')
  t.notOk(ports.has(other.body.port), 'a new connection')
  const after = app.mtls.status()
  t.equal(after.verifications, mid.verifications, 'the second connection is answered from the positive cache')
  t.equal(after.caches.connectionsSeen - mid.caches.connectionsSeen, 1)
})

t.test('a new connection whose leaf has a cached verdict reads the leaf alone, not the chain', async (t) => {
  const { app, url, port } = await start(t, {
    routes: (app) => app.get('/cn', async (req) => ({ cn: req.clientIdentity?.subject.attributes.CN?.[0] ?? null }))
  })
  // getPeerCertificate(true) costs about 0.3 ms after a full handshake: read only on a cache miss
  const proto = tls.TLSSocket.prototype
  const original = proto.getPeerCertificate
  let chainReads = 0
  proto.getPeerCertificate = function (this: TLSSocket, detailed?: boolean) {
    if (detailed === true && this.localPort === port) chainReads++
    return original.call(this, detailed as boolean)
  } as typeof original
  t.teardown(() => { proto.getPeerCertificate = original })
  for (let i = 1; i <= 3; i++) {
    const res = await request(`${url}/cn`, { dispatcher: agent(t, presents(ecPartner)) })
    t.equal(res.statusCode, 200)
    t.same(await res.body.json(), { cn: 'ec-svc' })
    t.equal(chainReads, 1, `connection ${i}: the chain was read once, for the first connection's verification`)
  }
  t.equal(app.mtls.status().verifications, 1)
  t.equal(app.mtls.status().caches.connectionsSeen, 3)
})

/** A raw TLS client speaking HTTP/1.1 by hand, so that the test holds the socket (to renegotiate). */
async function rawClient (port: number, cert: Pem, maxVersion: 'TLSv1.2' | 'TLSv1.3') {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: server.root.pem, cert: cert.pem, key: cert.key, maxVersion })
  await new Promise((resolve, reject) => { socket.once('secureConnect', resolve); socket.once('error', reject) })
  let buf = Buffer.alloc(0)
  let waiting: (() => void) | undefined
  socket.on('data', (chunk: Buffer) => { buf = Buffer.concat([buf, chunk]); waiting?.() })
  const get = async (path: string): Promise<{ status: number, body: { cn: string | null } }> => {
    socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`)
    for (;;) {
      const head = buf.indexOf('\r\n\r\n')
      const length = head === -1 ? undefined : Number(/content-length: *(\d+)/i.exec(buf.toString('latin1', 0, head))?.[1])
      if (head !== -1 && length !== undefined && buf.length >= head + 4 + length) {
        const status = Number(buf.toString('latin1', 9, 12))
        const body = JSON.parse(buf.toString('utf8', head + 4, head + 4 + length)) as { cn: string | null }
        buf = buf.subarray(head + 4 + length)
        return { status, body }
      }
      await new Promise<void>((resolve) => { waiting = resolve })
    }
  }
  return { socket, get }
}

t.test('TLS 1.2 keep-alive: the leaf is read once per connection, and again only after a renegotiation', async (t) => {
  const { app, port } = await start(t, {
    routes: (app) => app.get('/cn', async (req) => ({ cn: req.clientIdentity?.subject.attributes.CN?.[0] ?? null }))
  })
  // a renegotiation may bring another certificate, so a TLS 1.2 connection must notice one;
  // it does by the server's Finished message, not by reading the leaf on every request
  const proto = tls.TLSSocket.prototype
  const original = proto.getSession
  let leafReads = 0
  proto.getSession = function (this: TLSSocket) {
    if (this.localPort === port) leafReads++
    return original.call(this)
  }
  t.teardown(() => { proto.getSession = original })
  const c = await rawClient(port, presents(ecPartner), 'TLSv1.2')
  t.teardown(() => c.socket.destroy())
  for (let i = 1; i <= 5; i++) {
    const r = await c.get('/cn')
    t.equal(r.status, 200)
    t.equal(r.body.cn, 'ec-svc')
  }
  t.equal(leafReads, 1, 'five requests, one read of the leaf')
  const err = await new Promise<Error | null>((resolve) => c.socket.renegotiate({}, resolve))
  t.equal(err, null, 'the client renegotiated')
  for (let i = 1; i <= 3; i++) {
    const r = await c.get('/cn')
    t.equal(r.status, 200)
    t.equal(r.body.cn, 'ec-svc', 'the same certificate after the renegotiation')
  }
  t.equal(leafReads, 2, 'the new handshake was noticed once, and the leaf read again')
  t.equal(app.mtls.status().verifications, 1, 'the same leaf: the verdict holds')
  t.equal(app.mtls.status().caches.connectionsSeen, 1)

  // TLS 1.3 has no renegotiation: nothing is read after the first request
  leafReads = 0
  const c3 = await rawClient(port, presents(ecPartner), 'TLSv1.3')
  t.teardown(() => c3.socket.destroy())
  for (let i = 1; i <= 3; i++) t.equal((await c3.get('/cn')).status, 200)
  t.equal(leafReads, 1)
})

t.test('keep-alive with a rejected certificate: verified once per connection, rejected on every request', async (t) => {
  const { app, url } = await start(t)
  const before = app.mtls.status()
  const a = agent(t, presents(rogue))
  for (let i = 0; i < 5; i++) {
    const { status, body } = await get(url, a)
    t.equal(status, 401)
    t.equal(body.code, 'FST_MTLS_CERT_UNTRUSTED')
  }
  t.equal(app.mtls.status().verifications - before.verifications, 1)
})

// ------------------------------------------------------------------ curl

t.test('curl with --cert/--key: 200 with an identity; without: 401 FST_MTLS_CERT_MISSING', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mtls-curl-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const files = { ca: join(dir, 'server-ca.pem'), cert: join(dir, 'client-chain.pem'), key: join(dir, 'client-key.pem') }
  writeFileSync(files.ca, server.root.pem)
  writeFileSync(files.cert, ecPartner.chainPem)
  writeFileSync(files.key, ecPartner.leaf.key.privateKeyPem, { mode: 0o600 })

  const curl = async (port: number, extra: string[]) => {
    const { stdout } = await execFileAsync('curl', ['-sS', '--resolve', `localhost:${port}:127.0.0.1`, '--cacert', files.ca, ...extra, '-w', '\n%{http_code}', `https://localhost:${port}/`])
    const nl = stdout.lastIndexOf('\n')
    return { status: Number(stdout.slice(nl + 1)), body: JSON.parse(stdout.slice(0, nl)) as Described & { code?: string } }
  }

  for (const http2 of [false, true]) {
    const { port } = await start(t, { http2, https: { allowHTTP1: true } })
    const ok = await curl(port, ['--cert', files.cert, '--key', files.key])
    t.equal(ok.status, 200, `http2 server: ${http2}`)
    t.equal(ok.body.cn, 'ec-svc')
    t.equal(ok.body.httpVersion, http2 ? '2.0' : '1.1')
    t.same(ok.body.chain, ['ec-svc', 'EC Partner Intermediate CA 1', 'EC Partner Root CA'])
    const none = await curl(port, [])
    t.equal(none.status, 401)
    t.match(none.body, { statusCode: 401, code: 'FST_MTLS_CERT_MISSING', error: 'Unauthorized' })
  }
})

// ------------------------------------------------------------------ register-time checks of the server

t.test('register time: a server the plugin cannot read certificates from is refused', async (t) => {
  const tlsOptions = { key: server.leaf.key.privateKeyPem, cert: server.leaf.pem, ca: ecPartner.root.pem }
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['plain HTTP', {}, /https/],
    ['plain HTTP/2 (h2c)', { http2: true }, /https/],
    ['HTTPS without requestCert', { https: tlsOptions }, /requestCert: true/],
    ['HTTPS with requestCert: false', { https: { ...tlsOptions, requestCert: false } }, /requestCert: true/],
    ['HTTP/2 over TLS without requestCert', { http2: true, https: tlsOptions }, /requestCert: true/]
  ]
  for (const [name, options, message] of cases) {
    const app = Fastify(options as FastifyServerOptions)
    t.teardown(() => app.close())
    app.register(fastifyMtls, { ca: ecPartner.root.pem })
    await t.rejects(async () => { await app.ready() }, { code: 'FST_MTLS_INVALID_OPTIONS', message }, name)
  }
})

t.test('register time: https.ca is compared with the plugin\'s ca', async (t) => {
  const warnings = async (https: Record<string, unknown>, ca: TrustAnchorInput): Promise<LogLine[]> => {
    const lines: LogLine[] = []
    const app = Fastify({
      logger: { level: 'warn', stream: { write (l: string) { lines.push(JSON.parse(l) as LogLine) } } },
      https: { key: server.leaf.key.privateKeyPem, cert: server.leaf.pem, requestCert: true, rejectUnauthorized: false, ...https }
    } as FastifyServerOptions)
    t.teardown(() => app.close())
    await app.register(fastifyMtls, { ca })
    await app.ready()
    return lines.filter((l) => l.level === 40)
  }
  const ecRoot = 'EC Partner Root CA'
  const rogueRoot = 'Rogue Root CA'

  t.test('the same bundle: no warning', async (t) => {
    t.same(await warnings({ ca: ecPartner.root.pem }, ecPartner.root.pem), [])
    t.same(await warnings({ ca: [ecPartner.root.pem, rogue.root.pem] }, ecPartner.root.pem + rogue.root.pem), [], 'order and packaging do not matter')
    t.same(await warnings({ ca: Buffer.from(ecPartner.root.pem) }, [{ name: 'ec', cert: ecPartner.root.pem }]), [], 'Buffer vs labelled entry')
  })

  t.test('a different CA: a warning naming it', async (t) => {
    const [w] = await warnings({ ca: rogue.root.pem }, ecPartner.root.pem)
    t.ok(w, 'one warning')
    t.match(w?.msg, /https\.ca and the plugin's ca differ/)
    t.match(JSON.stringify(w?.['mtls.anchors_not_in_https_ca']), ecRoot)
    t.match(JSON.stringify(w?.['mtls.https_ca_not_anchors']), rogueRoot)
  })

  t.test('https.ca has an extra CA: the warning names only the extra one', async (t) => {
    const lines = await warnings({ ca: [ecPartner.root.pem, rogue.root.pem] }, ecPartner.root.pem)
    t.equal(lines.length, 1)
    t.same(lines[0]?.['mtls.anchors_not_in_https_ca'], [])
    t.match(JSON.stringify(lines[0]?.['mtls.https_ca_not_anchors']), rogueRoot)
    t.notMatch(JSON.stringify(lines[0]?.['mtls.https_ca_not_anchors']), ecRoot)
  })

  t.test('the plugin trusts a CA missing from https.ca: the warning names it', async (t) => {
    const lines = await warnings({ ca: ecPartner.root.pem }, [ecPartner.root.pem, rogue.root.pem])
    t.equal(lines.length, 1)
    t.match(JSON.stringify(lines[0]?.['mtls.anchors_not_in_https_ca']), rogueRoot)
    t.same(lines[0]?.['mtls.https_ca_not_anchors'], [])
  })

  t.test('no https.ca at all: a warning', async (t) => {
    const lines = await warnings({}, ecPartner.root.pem)
    t.equal(lines.length, 1)
    t.match(lines[0]?.msg, /no https\.ca/)
  })
})

// ------------------------------------------------------------------ the TLS layer's verdict, logged when it disagrees

const disagreements = (logs: LogLine[]): LogLine[] => logs.filter((l) => 'mtls.tls_authorized' in l)

t.test('TLS layer accepts, verifier rejects: one info line per connection', async (t) => {
  // the server's https.ca also holds the rogue root, so OpenSSL accepts the rogue client; the plugin does not trust it
  const { url, logs } = await start(t, { logLevel: 'info', https: { ca: [ecPartner.root.pem, rogue.root.pem] } })
  const a = agent(t, presents(rogue))
  for (let i = 0; i < 2; i++) {
    const { status, body } = await get(url, a)
    t.equal(status, 401)
    t.equal(body.code, 'FST_MTLS_CERT_UNTRUSTED')
  }
  let lines = disagreements(logs)
  t.equal(lines.length, 1, 'two requests on one connection: one line')
  t.match(lines[0], { level: 30, 'mtls.tls_authorized': true, 'mtls.verdict': 'FST_MTLS_CERT_UNTRUSTED', 'mtls.tls_error': '' })

  const again = await get(url, agent(t, presents(rogue)))
  t.equal(again.status, 401)
  lines = disagreements(logs)
  t.equal(lines.length, 2, 'a second connection (negative cache hit) logs its own line')

  // an agreeing client logs nothing
  const ok = await get(url, agent(t, presents(ecPartner)))
  t.equal(ok.status, 200)
  t.equal(disagreements(logs).length, 2)
})

t.test('TLS layer rejects, verifier accepts (intermediate configured in the plugin only): one info line', async (t) => {
  const { url, logs } = await start(t, { logLevel: 'info', plugin: { intermediates: ecPartner.intermediates.map((c) => c.pem) } })
  const a = agent(t, leafOnly(ecPartner))
  for (let i = 0; i < 2; i++) {
    const { status, body } = await get(url, a)
    t.equal(status, 200)
    t.equal(body.cn, 'ec-svc')
    t.equal(body.authorized, false, 'OpenSSL could not build the path')
  }
  const lines = disagreements(logs)
  t.equal(lines.length, 1)
  t.match(lines[0], { level: 30, 'mtls.tls_authorized': false, 'mtls.verdict': 'accepted', 'mtls.tls_error': /^UNABLE_TO_/ })
})

t.test('HTTP/2: the disagreement is logged once per session, not per stream', async (t) => {
  const { url, logs } = await start(t, { http2: true, logLevel: 'info', https: { ca: [ecPartner.root.pem, rogue.root.pem] } })
  const a = agent(t, presents(rogue), { h2: true })
  const replies = await Promise.all([get(url, a), get(url, a), get(url, a)])
  for (const r of replies) t.equal(r.body.code, 'FST_MTLS_CERT_UNTRUSTED')
  t.equal(disagreements(logs).length, 1)
})

// ------------------------------------------------------------------ learned intermediates (no resumption needed)

t.test('an intermediate learned from one client completes the leaf-only chain of another', async (t) => {
  const [sibling, cousin] = await Promise.all([
    issue({ subject: 'CN=sibling-svc,O=Partner', issuer: ecPartner.intermediates[0] }),
    issue({ subject: 'CN=cousin-svc,O=Partner', issuer: ecPartner.intermediates[0] })
  ])
  const withLeaf = (leaf: Issued): Pem => ({ pem: leaf.pem, key: leaf.key.privateKeyPem })
  const { app, url } = await start(t)
  const first = await get(url, agent(t, withLeaf(sibling)))
  t.equal(first.status, 401, 'nothing learned yet: the leaf alone does not reach the root')
  t.equal(first.body.code, 'FST_MTLS_CERT_UNTRUSTED')
  t.equal(app.mtls.status().caches.learnedIntermediates, 0)
  t.equal((await get(url, agent(t, presents(ecPartner)))).status, 200, 'a full chain teaches the pool its intermediate')
  t.equal(app.mtls.status().caches.learnedIntermediates, 1)

  const fresh = await get(url, agent(t, withLeaf(cousin)))
  t.equal(fresh.status, 200, 'a leaf never seen before: the learned intermediate completes the path')
  t.equal(fresh.body.cn, 'cousin-svc')

  // the leaf rejected before the pool learned: its negative verdict (10 s, keyed by the presented chain only)
  // does not know that the pool changed
  const retried = await get(url, agent(t, withLeaf(sibling)))
  t.equal(retried.status, 200, 'the retried leaf is accepted too')
  t.equal(retried.body.cn, 'sibling-svc')
})
