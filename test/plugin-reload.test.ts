// app.mtls.reload(), crlMode, expiry warnings and status(), over real TLS: a Fastify HTTPS
// (or HTTP/2) server on 127.0.0.1 port 0, undici clients on kept-alive connections
// (connections: 1) and node:tls clients for handshake-level checks (the server certificate a
// new connection sees, TLS versions, session resumption). Each reload is followed by the
// next request on the SAME connection: a verdict is remembered per connection and must be
// re-judged by the current trust (epoch) on the next request.
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { connect, type ConnectionOptions, type Server as TlsServer, type TLSSocket } from 'node:tls'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import forge from 'node-forge'
import { Agent, request } from 'undici'
import fastifyMtls from '../lib/index.js'
import { issue, makeChain, makeCrl, newKey, type Chain, type Issued } from './helpers/pki.js'

const DAY = 24 * 60 * 60 * 1000
const now = Date.now()
const fresh = async () => newKey('ec256', { fresh: true })

// ---------------------------------------------------------------- PKI

const serverSan = { subject: 'CN=localhost', san: { dns: ['localhost'], ip: ['127.0.0.1'] }, extKeyUsage: ['serverAuth'] }
// two server CAs the clients trust: the swap goes from one server CA to the other
const server = await makeChain({ kind: 'ec256', intermediates: 0, label: 'Server', root: { key: await fresh() }, leaf: { ...serverSan, key: await fresh() } })
const server2 = await makeChain({ kind: 'ec256', intermediates: 0, label: 'Server Two', root: { key: await fresh() }, leaf: { ...serverSan, key: await fresh() } })
const serverRoots = [server.root.pem, server2.root.pem]

/** a client CA with its leaf directly under the root (a CRL from the root covers the leaves) */
const clientCa = async (label: string, cn: string): Promise<Chain> =>
  makeChain({ kind: 'ec256', intermediates: 0, label, root: { key: await fresh() }, leaf: { subject: `CN=${cn},O=${label}`, key: await fresh() } })
const byRoot = async (chain: Chain, cn: string, extra: Partial<Parameters<typeof issue>[0]> = {}): Promise<Issued> =>
  issue({ subject: `CN=${cn}`, issuer: chain.root, key: await fresh(), ...extra })

const caA = await clientCa('CA A', 'a-svc')
const caB = await clientCa('CA B', 'b-svc')
const caC = await clientCa('CA C', 'c1-svc')
const c2 = await byRoot(caC, 'c2-svc')
// root -> intermediate -> leaf, the intermediate not configured anywhere: the server learns it from full handshakes
const caI = await makeChain({ kind: 'ec256', intermediates: 1, label: 'CA I', root: { key: await fresh() }, intermediate: { key: await fresh() }, leaf: { subject: 'CN=i-svc,O=CA I', key: await fresh() } })
const intermediateI = caI.intermediates[0] as Issued

interface Pem { pem: string, key: string }
const presents = (c: Chain): Pem => ({ pem: c.chainPem, key: c.leaf.key.privateKeyPem })
const leafPem = (c: Issued): Pem => ({ pem: c.pem, key: c.key.privateKeyPem })

// ---------------------------------------------------------------- server and clients

interface LogLine { level: number, msg: string, [key: string]: unknown }

interface StartOptions {
  /** the plugin's options; ca defaults to CA A */
  plugin?: Record<string, unknown>
  /** merged into https */
  https?: Record<string, unknown>
  http2?: boolean
  routes?: (app: FastifyInstance) => void
}

async function start (t: Test, o: StartOptions = {}) {
  const logs: LogLine[] = []
  const stream = { write (line: string) { logs.push(JSON.parse(line) as LogLine) } }
  const app = Fastify({
    logger: { level: 'info', stream },
    ...(o.http2 === true ? { http2: true } : {}),
    https: { key: server.leaf.key.privateKeyPem, cert: server.leaf.pem, ca: caA.root.pem, requestCert: true, rejectUnauthorized: false, ...o.https }
  } as FastifyServerOptions) as unknown as FastifyInstance
  t.teardown(() => app.close())
  await app.register(fastifyMtls, { ca: caA.root.pem, ...o.plugin })
  app.get('/', async (req) => {
    const socket = req.raw.socket as TLSSocket
    return { cn: req.clientIdentity?.subject.attributes.CN?.[0] ?? null, port: socket.remotePort, reused: socket.isSessionReused(), protocol: socket.getProtocol() }
  })
  o.routes?.(app)
  // every new TLS connection the server accepts: "same connection" means this did not move
  let handshakes = 0
  app.server.on('secureConnection', () => { handshakes++ })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as { port: number }).port
  const tlsServer = app.server as unknown as TlsServer
  return { app, port, url: `https://127.0.0.1:${port}`, logs, handshakes: () => handshakes, ticketKeys: () => tlsServer.getTicketKeys() }
}

/** undici with one connection: sequential requests share it (keep-alive, or one HTTP/2 session) */
function agent (t: Test, cert?: Pem, o: { h2?: boolean } = {}): Agent {
  const a = new Agent({
    connections: 1,
    allowH2: o.h2 === true,
    connect: { ca: serverRoots, servername: 'localhost', ...(cert === undefined ? {} : { cert: cert.pem, key: cert.key }) }
  })
  t.teardown(() => a.close())
  return a
}

interface Reply { status: number, body: { cn?: string | null, port?: number, code?: string, statusCode?: number, reused?: boolean, protocol?: string } }

async function get (url: string, dispatcher: Agent): Promise<Reply> {
  const res = await request(url, { dispatcher })
  return { status: res.statusCode, body: await res.body.json() as Reply['body'] }
}

interface RawReply extends Reply {
  /** the client's view */
  reused: boolean
  /** the server certificate this connection saw */
  fingerprint256: string
  sessions: Buffer[]
}

/**
 * One HTTP/1.1 request on a new node:tls connection (Connection: close). Session tickets
 * arrive on full handshakes only (none on a resumed connection here), so a client resumes
 * with the ticket of its last full handshake.
 */
async function rawGet (port: number, options: ConnectionOptions = {}): Promise<RawReply> {
  const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: serverRoots, ...options })
  const sessions: Buffer[] = []
  const chunks: Buffer[] = []
  socket.on('session', (s: Buffer) => sessions.push(s))
  socket.on('data', (c: Buffer) => chunks.push(c))
  await once(socket, 'secureConnect')
  const reused = socket.isSessionReused()
  const fingerprint256 = socket.getPeerCertificate().fingerprint256
  socket.end('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  await once(socket, 'close')
  const text = Buffer.concat(chunks).toString('utf8')
  const status = /^HTTP\/1\.1 (\d{3}) /.exec(text)
  if (status === null) throw new Error(`not an HTTP/1.1 reply: ${JSON.stringify(text.slice(0, 80))}`)
  return { status: Number(status[1]), body: JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as Reply['body'], reused, fingerprint256, sessions }
}

/** A handshake only: what the client saw, or the error that ended it. */
async function handshake (port: number, options: ConnectionOptions = {}): Promise<{ ok: true, fingerprint256: string, protocol: string | null } | { ok: false, error: Error }> {
  const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: serverRoots, ...options })
  try {
    await once(socket, 'secureConnect')
    return { ok: true, fingerprint256: socket.getPeerCertificate().fingerprint256, protocol: socket.getProtocol() }
  } catch (err) {
    return { ok: false, error: err as Error }
  } finally {
    socket.destroy()
  }
}

const warnings = (logs: LogLine[], msg: RegExp): LogLine[] => logs.filter((l) => l.level === 40 && msg.test(l.msg))

// ---------------------------------------------------------------- CA rotation

t.test('CA rotation A -> A+B -> B: kept-alive connections are judged by the current trust on their next request', async (t) => {
  const { app, url, handshakes } = await start(t)
  const a = agent(t, presents(caA))
  const first = await get(url, a)
  t.equal(first.status, 200)
  t.equal(first.body.cn, 'a-svc')
  const b = agent(t, presents(caB))
  const early = await get(url, b)
  t.equal(early.status, 401, 'B is not trusted yet')
  t.equal(early.body.code, 'FST_MTLS_CERT_UNTRUSTED')
  const e0 = app.mtls.status().epoch
  t.equal(app.mtls.status().lastReload, null, 'no reload yet')

  // trust first: A+B
  const r1 = await app.mtls.reload({ ca: [caA.root.pem, caB.root.pem] })
  t.match(r1, { ok: true, changed: ['ca'], error: null })
  t.ok(Date.parse(r1.at) <= Date.now())
  let s = app.mtls.status()
  t.equal(s.epoch, e0 + 1, 'epoch +1')
  t.same(s.lastReload, r1)
  t.same(s.anchors.map((x) => x.fingerprint256), [caA.root.cert.fingerprint256, caB.root.cert.fingerprint256])
  let seen = handshakes()
  const kept = await get(url, a)
  t.equal(kept.status, 200, 'A keeps working through the reload')
  t.equal(kept.body.port, first.body.port, 'on the same connection')
  t.equal(handshakes(), seen, 'no new handshake')
  const bOk = await get(url, b)
  t.equal(bOk.status, 200, 'B works once trusted, on the connection it was refused on')
  t.equal(bOk.body.cn, 'b-svc')
  const bNew = await get(url, agent(t, presents(caB)))
  t.equal(bNew.status, 200, 'and on a new connection')

  // remove A
  const r2 = await app.mtls.reload({ ca: caB.root.pem })
  t.match(r2, { ok: true, changed: ['ca'], error: null })
  s = app.mtls.status()
  t.equal(s.epoch, e0 + 2, 'epoch +1 again')
  t.same(s.lastReload, r2)
  t.same(s.anchors.map((x) => x.name), ['O=Fixture PKI,CN=CA B Root CA'])
  seen = handshakes()
  const refused = await get(url, a)
  t.equal(refused.status, 401, 'A is refused on its next request')
  t.match(refused.body, { statusCode: 401, code: 'FST_MTLS_CERT_UNTRUSTED' })
  t.equal(handshakes(), seen, 'on the same kept-alive connection')
  const again = await get(url, a)
  t.equal(again.body.code, 'FST_MTLS_CERT_UNTRUSTED', 'and stays refused')
  const bKept = await get(url, b)
  t.equal(bKept.status, 200, 'B keeps working')
  t.equal(bKept.body.port, bOk.body.port, 'on its connection')
  t.equal(handshakes(), seen)
  const aNew = await get(url, agent(t, presents(caA)))
  t.equal(aNew.status, 401, 'A on a new connection: refused')
  t.equal(aNew.body.code, 'FST_MTLS_CERT_UNTRUSTED')
})

t.test('CA rotation over one HTTP/2 session: the next stream is judged by the current trust', async (t) => {
  const { app, url, handshakes } = await start(t, { http2: true, plugin: { ca: [caA.root.pem, caB.root.pem] }, https: { ca: [caA.root.pem, caB.root.pem] } })
  const a = agent(t, presents(caA), { h2: true })
  const b = agent(t, presents(caB), { h2: true })
  t.equal((await get(url, a)).status, 200)
  t.equal((await get(url, b)).status, 200)
  const seen = handshakes()
  await app.mtls.reload({ ca: caB.root.pem })
  const refused = await get(url, a)
  t.equal(refused.status, 401)
  t.equal(refused.body.code, 'FST_MTLS_CERT_UNTRUSTED')
  t.equal((await get(url, b)).status, 200)
  t.equal(handshakes(), seen, 'both on their HTTP/2 sessions')
})

// ---------------------------------------------------------------- broken reloads

t.test('a broken reload is refused with FST_MTLS_RELOAD_INVALID and the old trust stays in force', async (t) => {
  const { app, url, port, handshakes } = await start(t)
  const a = agent(t, presents(caA))
  const first = await get(url, a)
  t.equal(first.status, 200)
  const epoch = app.mtls.status().epoch
  const garbageCert = '-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n'
  const otherKey = await fresh()
  const cases: Array<[string, unknown, RegExp]> = [
    ['a ca that does not parse', { ca: garbageCert }, /ca\[0\]: certificate #1 does not parse/],
    ['a ca bundle with one good and one broken certificate', { ca: caB.root.pem + garbageCert }, /ca\[0\]: certificate #2 does not parse/],
    ['a ca that is not PEM at all', { ca: 'hello' }, /ca\[0\]: no PEM "CERTIFICATE" block/],
    ['a private key given as ca', { ca: caB.root.key.privateKeyPem }, /ca\[0\]: unexpected PEM block "PRIVATE KEY"/],
    ['a key that does not match the cert', { key: otherKey.privateKeyPem, cert: server2.leaf.pem }, /key does not match cert/],
    ['a new key alone, not matching the current cert', { key: otherKey.privateKeyPem }, /key does not match cert/],
    ['a cert that does not parse', { key: server2.leaf.key.privateKeyPem, cert: 'not a certificate' }, /cert does not parse/],
    ['a key that does not parse', { key: 'not a key', cert: server2.leaf.pem }, /key does not load/],
    ['an unknown field', { cas: caB.root.pem }, /unknown field "cas"/],
    ['an empty object', {}, /nothing to reload/],
    ['not an object', 'ca.pem', /takes an object/],
    ['a deny entry that is not understood', { deny: ['nope'] }, /deny\[0\]/],
    ['a CRL that does not parse', { crl: '-----BEGIN X509 CRL-----\nMIIBAAAA\n-----END X509 CRL-----\n' }, /crl/]
  ]
  for (const [name, input, message] of cases) {
    await t.rejects(app.mtls.reload(input as Parameters<typeof app.mtls.reload>[0]), { code: 'FST_MTLS_RELOAD_INVALID', message }, name)
    const s = app.mtls.status()
    t.equal(s.epoch, epoch, `${name}: the epoch did not move`)
    t.match(s.lastReload, { ok: false, error: message }, `${name}: status().lastReload reports the refusal`)
    t.same(s.anchors.map((x) => x.fingerprint256), [caA.root.cert.fingerprint256], `${name}: the anchors are unchanged`)
    const seen = handshakes()
    const kept = await get(url, a)
    t.equal(kept.status, 200, `${name}: the kept-alive client still works`)
    t.equal(handshakes(), seen, `${name}: on its connection`)
    // the TLS context is untouched: the old certificate, and a new connection still works
    const hs = await handshake(port)
    t.ok(hs.ok && hs.fingerprint256 === server.leaf.cert.fingerprint256, `${name}: new connections see the old server certificate`)
    t.equal((await get(url, agent(t, presents(caA)))).status, 200, `${name}: A on a new connection still works`)
    t.equal((await get(url, agent(t, presents(caB)))).body.code, 'FST_MTLS_CERT_UNTRUSTED', `${name}: B is still not trusted`)
  }
  const refusal = app.mtls.status().lastReload
  t.equal(typeof refusal?.at, 'string')
  // a good reload after refusals goes through
  const ok = await app.mtls.reload({ ca: [caA.root.pem, caB.root.pem] })
  t.equal(ok.ok, true)
  t.equal(app.mtls.status().epoch, epoch + 1)
  t.equal((await get(url, agent(t, presents(caB)))).status, 200)
})

// ---------------------------------------------------------------- CRL and deny by reload

t.test('a CRL loaded by reload revokes a kept-alive client on its next request', async (t) => {
  const { app, url, handshakes } = await start(t, { plugin: { ca: caC.root.pem }, https: { ca: caC.root.pem } })
  const c1 = agent(t, presents(caC))
  const c2a = agent(t, leafPem(c2))
  t.equal((await get(url, c1)).status, 200)
  t.equal((await get(url, c2a)).status, 200)
  const epoch = app.mtls.status().epoch
  const crl = await makeCrl({ issuer: caC.root, revoked: [{ serial: caC.leaf, reason: 1 }] })
  const r = await app.mtls.reload({ crl: crl.pem })
  t.match(r, { ok: true, changed: ['crl'] })
  t.equal(app.mtls.status().epoch, epoch + 1)
  t.match(app.mtls.status().crls, [{ issuer: 'O=Fixture PKI,CN=CA C Root CA', revoked: 1, stale: false }])
  const seen = handshakes()
  const revoked = await get(url, c1)
  t.equal(revoked.status, 401, 'the listed client is refused on its next request')
  t.match(revoked.body, { statusCode: 401, code: 'FST_MTLS_CERT_REVOKED' })
  const other = await get(url, c2a)
  t.equal(other.status, 200, 'the other client is unaffected')
  t.equal(other.body.cn, 'c2-svc')
  t.equal(handshakes(), seen, 'both on their kept-alive connections')
  t.equal((await get(url, agent(t, presents(caC)))).body.code, 'FST_MTLS_CERT_REVOKED', 'and on a new connection')

  // a CRL that does not verify with its (configured) CA: refused, the CRL in force stays
  const forged = await makeCrl({ issuer: caC.root, revoked: [{ serial: c2 }], crlNumber: 2, signWith: await fresh() })
  await t.rejects(app.mtls.reload({ crl: forged.pem }), { code: 'FST_MTLS_RELOAD_INVALID', message: /crl\[0\]: the signature of the CRL from "O=Fixture PKI,CN=CA C Root CA" does not verify/ })
  t.equal(app.mtls.status().epoch, epoch + 1)
  t.equal((await get(url, c2a)).status, 200, 'the forged CRL did not revoke c2')
  t.equal((await get(url, c1)).body.code, 'FST_MTLS_CERT_REVOKED', 'the good CRL is still in force')

  // a newer CRL replaces the old one
  const newer = await makeCrl({ issuer: caC.root, revoked: [{ serial: c2 }], crlNumber: 3 })
  await app.mtls.reload({ crl: newer.der })
  t.equal((await get(url, c2a)).body.code, 'FST_MTLS_CERT_REVOKED', 'c2 revoked by the newer CRL')
  t.equal((await get(url, c1)).status, 200, 'c1 no longer listed (given fields replace)')
  t.equal(handshakes(), seen + 1)
})

t.test('deny by reload: the next request is 401 FST_MTLS_CERT_REVOKED', async (t) => {
  const { app, url, handshakes } = await start(t, { plugin: { ca: caC.root.pem }, https: { ca: caC.root.pem } })
  const c1 = agent(t, presents(caC))
  const c2a = agent(t, leafPem(c2))
  t.equal((await get(url, c1)).status, 200)
  t.equal((await get(url, c2a)).status, 200)
  const seen = handshakes()
  await app.mtls.reload({ deny: [c2.cert.fingerprint256] })
  const denied = await get(url, c2a)
  t.equal(denied.status, 401)
  t.match(denied.body, { statusCode: 401, code: 'FST_MTLS_CERT_REVOKED' })
  t.equal((await get(url, c1)).status, 200, 'others unaffected')
  await app.mtls.reload({ deny: [{ issuer: 'O=Fixture PKI,CN=CA C Root CA', serialNumber: caC.leaf.serialHex }] })
  t.equal((await get(url, c1)).body.code, 'FST_MTLS_CERT_REVOKED', 'deny by issuer and serial')
  t.equal((await get(url, c2a)).status, 200, 'the list was replaced: c2 is back')
  t.equal(handshakes(), seen, 'all on kept-alive connections')
})

// ---------------------------------------------------------------- server certificate swap

t.test('server certificate swap: new connections see the new certificate, server options survive', async (t) => {
  const { app, url, port, handshakes, ticketKeys } = await start(t, { https: { minVersion: 'TLSv1.3' } })
  const before = await handshake(port)
  t.ok(before.ok, 'TLS 1.3 handshake')
  t.equal(before.ok && before.fingerprint256, server.leaf.cert.fingerprint256, 'the old certificate')
  const tls12 = await handshake(port, { maxVersion: 'TLSv1.2' })
  t.equal(tls12.ok, false, 'minVersion TLSv1.3: a TLS 1.2-only client is refused')
  const a = agent(t, presents(caA))
  const first = await get(url, a)
  t.equal(first.status, 200)
  const keys = ticketKeys()

  const r = await app.mtls.reload({ key: server2.leaf.key.privateKeyPem, cert: server2.leaf.pem })
  t.match(r, { ok: true, changed: ['key', 'cert'], error: null })
  const after = await handshake(port)
  t.ok(after.ok)
  t.equal(after.ok && after.fingerprint256, server2.leaf.cert.fingerprint256, 'new connections see the new certificate')
  t.equal(after.ok && after.protocol, 'TLSv1.3')
  const seen = handshakes()
  const kept = await get(url, a)
  t.equal(kept.status, 200, 'the kept-alive connection keeps working')
  t.equal(kept.body.port, first.body.port)
  t.equal(handshakes(), seen)
  const stillRefused = await handshake(port, { maxVersion: 'TLSv1.2' })
  t.equal(stillRefused.ok, false, 'minVersion survived the reload: TLS 1.2 is still refused')
  t.ok(!stillRefused.ok && /version|protocol/i.test(`${stillRefused.error.message} ${(stillRefused.error as { code?: string }).code}`), 'a protocol version error')
  const fresh = await get(url, agent(t, presents(caA)))
  t.equal(fresh.status, 200, 'requestCert survived: a new client still sends its certificate')
  t.equal(fresh.body.cn, 'a-svc')
  const none = await rawGet(port)
  t.equal(none.status, 401, 'no certificate: 401')
  t.equal(none.body.code, 'FST_MTLS_CERT_MISSING')
  t.ok(ticketKeys().equals(keys), 'session-ticket keys kept')

  // a later reload of the CA starts from the swapped certificate, not the original one
  await app.mtls.reload({ ca: [caA.root.pem, caB.root.pem] })
  const later = await handshake(port)
  t.equal(later.ok && later.fingerprint256, server2.leaf.cert.fingerprint256, 'the swapped certificate stays after a CA reload')
  t.equal((await handshake(port, { maxVersion: 'TLSv1.2' })).ok, false, 'and so does minVersion')
  t.equal((await get(url, agent(t, presents(caB)))).status, 200)

  // back to the first server key and certificate, the same CA
  await app.mtls.reload({ key: server.leaf.key.privateKeyPem, cert: server.leaf.pem })
  const back = await handshake(port)
  t.equal(back.ok && back.fingerprint256, server.leaf.cert.fingerprint256)
})

t.test('server certificate swap on an HTTP/2 server: ALPN survives, the open session keeps working', async (t) => {
  const { app, url, port } = await start(t, { http2: true, https: { allowHTTP1: true } })
  const a = agent(t, presents(caA), { h2: true })
  const first = await get(url, a)
  t.equal(first.status, 200)
  await app.mtls.reload({ key: server2.leaf.key.privateKeyPem, cert: server2.leaf.pem })
  const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: serverRoots, ALPNProtocols: ['h2', 'http/1.1'] })
  t.teardown(() => socket.destroy())
  await once(socket, 'secureConnect')
  t.equal(socket.alpnProtocol, 'h2', 'h2 still negotiated')
  t.equal(socket.getPeerCertificate().fingerprint256, server2.leaf.cert.fingerprint256, 'the new certificate')
  socket.destroy()
  const kept = await get(url, a)
  t.equal(kept.status, 200, 'the open HTTP/2 session keeps working')
  t.equal(kept.body.cn, 'a-svc')
  t.equal(kept.body.port, first.body.port, 'on its session')
  t.equal((await get(url, agent(t, presents(caA), { h2: true }))).status, 200, 'a new session too')
})

t.test('server certificate renewed with the same key: reload({ cert }) alone', async (t) => {
  const { app, port } = await start(t)
  const renewed = await issue({ ...serverSan, issuer: server.root, key: server.leaf.key, notAfter: new Date(now + 60 * DAY) })
  const r = await app.mtls.reload({ cert: renewed.pem })
  t.match(r, { ok: true, changed: ['cert'] })
  const hs = await handshake(port)
  t.equal(hs.ok && hs.fingerprint256, renewed.cert.fingerprint256)
  t.equal((await rawGet(port, { cert: caA.chainPem, key: caA.leaf.key.privateKeyPem })).status, 200)
})

t.test('labelled anchors across reloads', async (t) => {
  const labelled = (...names: Array<'a' | 'b'>) => names.map((n) => ({ name: n, cert: (n === 'a' ? caA : caB).root.pem }))
  const { app, url, logs } = await start(t, {
    plugin: { ca: labelled('a') },
    https: { ca: [caA.root.pem, caB.root.pem] },
    routes: (app) => app.get('/only-a', { config: { mtls: { anchor: 'a' } } }, async () => ({ ok: true }))
  })
  t.equal((await get(`${url}/only-a`, agent(t, presents(caA)))).status, 200)
  await app.mtls.reload({ ca: labelled('b', 'a') })
  t.equal((await get(`${url}/only-a`, agent(t, presents(caA)))).status, 200, 'the policy naming "a" still matches A')
  const b = await get(`${url}/only-a`, agent(t, presents(caB)))
  t.equal(b.status, 403, 'and not B')
  t.equal(b.body.code, 'FST_MTLS_FORBIDDEN')
  const whoB = await get(url, agent(t, presents(caB)))
  t.equal(whoB.status, 200, 'B is trusted under its label')

  // at register time a policy naming an unknown anchor is refused; a reload that renames or drops
  // a label a compiled policy names turns that route into a 403 for everyone, silently
  const before = logs.length
  const renamed = await app.mtls.reload({ ca: [{ name: 'b', cert: caB.root.pem }, { name: 'partner-a', cert: caA.root.pem }] })
    .then(() => 'applied', (err: { code: string }) => err.code)
  if (renamed === 'applied') {
    const aNow = await get(`${url}/only-a`, agent(t, presents(caA)))
    t.equal(aNow.status, 403, 'fail closed: A, now trusted as "partner-a", no longer matches { anchor: "a" }')
    t.equal(aNow.body.code, 'FST_MTLS_FORBIDDEN')
  }
  const warned = logs.slice(before).some((l) => l.level >= 40 && /"a"|anchor/.test(l.msg))
  t.ok(renamed === 'FST_MTLS_RELOAD_INVALID' || warned, 'a reload that takes away the label "a" a route policy names is refused or at least warned about')
  t.equal(renamed, 'FST_MTLS_RELOAD_INVALID', 'refused: the label is still named by a policy')
  t.match(app.mtls.status().lastReload?.error, /no anchor labelled "a"/)
})

// ---------------------------------------------------------------- session resumption

t.test('TLS 1.3 session resumption across a reload: resumed, and judged by the current trust', async (t) => {
  t.test('a leaf issued by the root', async (t) => {
    const { app, port, ticketKeys } = await start(t)
    const full = await rawGet(port, { cert: caA.chainPem, key: caA.leaf.key.privateKeyPem })
    t.equal(full.status, 200)
    t.equal(full.reused, false)
    const keys = ticketKeys()
    await app.mtls.reload({ ca: [caA.root.pem, caB.root.pem] })
    t.ok(ticketKeys().equals(keys), 'ticket keys kept')
    const resumed = await rawGet(port, { cert: caA.chainPem, key: caA.leaf.key.privateKeyPem, session: full.sessions.at(-1) })
    t.equal(resumed.reused, true, 'client: isSessionReused()')
    t.equal(resumed.body.reused, true, 'server: resumed')
    t.equal(resumed.body.protocol, 'TLSv1.3')
    t.equal(resumed.status, 200, 'still trusted: identified')
    t.equal(resumed.body.cn, 'a-svc')
    await app.mtls.reload({ ca: caB.root.pem })
    const distrusted = await rawGet(port, { cert: caA.chainPem, key: caA.leaf.key.privateKeyPem, session: resumed.sessions.at(-1) ?? full.sessions.at(-1) })
    t.equal(distrusted.reused, true, 'resumed after A was removed')
    t.equal(distrusted.status, 401, 'judged by the current trust')
    t.equal(distrusted.body.code, 'FST_MTLS_CERT_UNTRUSTED')
  })

  t.test('a leaf under an intermediate the server learned from the full handshake', async (t) => {
    const { app, port } = await start(t, { plugin: { ca: caI.root.pem }, https: { ca: caI.root.pem } })
    const cert = { cert: caI.chainPem, key: caI.leaf.key.privateKeyPem }
    const full = await rawGet(port, cert)
    t.equal(full.status, 200)
    t.equal(app.mtls.status().caches.learnedIntermediates, 1)
    const before = await rawGet(port, { ...cert, session: full.sessions.at(-1) })
    t.equal(before.reused, true)
    t.equal(before.status, 200, 'resumed before any reload: identified')
    // a reload that has nothing to do with this client (a CA added)
    await app.mtls.reload({ ca: [caI.root.pem, caB.root.pem] })
    const resumed = await rawGet(port, { ...cert, session: before.sessions.at(-1) ?? full.sessions.at(-1) })
    t.equal(resumed.reused, true, 'resumed after the reload')
    // regression (found at 43fa5d6): the reload cleared the learned pool, and this was 401 FST_MTLS_CERT_UNTRUSTED
    t.equal(resumed.status, 200, 'still trusted: identified (the learned intermediates survive the reload)')
    t.equal(resumed.body.cn, 'i-svc')
    t.equal(app.mtls.status().caches.learnedIntermediates, 1)
    // removing the CA: the learned intermediate does not keep the client in
    await app.mtls.reload({ ca: caB.root.pem })
    const removed = await rawGet(port, { ...cert, session: full.sessions.at(-1) })
    t.equal(removed.reused, true)
    t.equal(removed.status, 401)
    t.equal(removed.body.code, 'FST_MTLS_CERT_UNTRUSTED')
    // and trusted again: the resumed session is identified without a full handshake
    await app.mtls.reload({ ca: caI.root.pem })
    const back = await rawGet(port, { ...cert, session: full.sessions.at(-1) })
    t.equal(back.reused, true)
    t.equal(back.status, 200)
    t.equal(back.body.cn, 'i-svc')
  })

  t.test('the intermediate configured in `intermediates`: resumed and identified after a reload', async (t) => {
    const { app, port } = await start(t, { plugin: { ca: caI.root.pem, intermediates: intermediateI.pem }, https: { ca: caI.root.pem } })
    const cert = { cert: caI.chainPem, key: caI.leaf.key.privateKeyPem }
    const full = await rawGet(port, cert)
    t.equal(full.status, 200)
    await app.mtls.reload({ ca: [caI.root.pem, caB.root.pem] })
    const resumed = await rawGet(port, { ...cert, session: full.sessions.at(-1) })
    t.equal(resumed.reused, true)
    t.equal(resumed.status, 200)
    t.equal(resumed.body.cn, 'i-svc')
    // revoking the intermediate by CRL reaches the resumed session too
    const crl = await makeCrl({ issuer: caI.root, revoked: [{ serial: intermediateI }] })
    await app.mtls.reload({ crl: crl.pem })
    const revoked = await rawGet(port, { ...cert, session: resumed.sessions.at(-1) ?? full.sessions.at(-1) })
    t.equal(revoked.reused, true)
    t.equal(revoked.status, 401)
    t.equal(revoked.body.code, 'FST_MTLS_CERT_REVOKED')
  })

  t.test('rotateTicketKeysOnReload: true forces a full handshake after a reload', async (t) => {
    const { app, port, ticketKeys } = await start(t, { plugin: { rotateTicketKeysOnReload: true } })
    const cert = { cert: caA.chainPem, key: caA.leaf.key.privateKeyPem }
    let full = await rawGet(port, cert)
    let keys = ticketKeys()
    await app.mtls.reload({ ca: [caA.root.pem, caB.root.pem] })
    t.notOk(ticketKeys().equals(keys), 'a CA reload: new ticket keys')
    let next = await rawGet(port, { ...cert, session: full.sessions.at(-1) })
    t.equal(next.reused, false, 'the old ticket is not accepted')
    t.equal(next.status, 200, 'the full handshake identifies the client')

    // "new session-ticket keys on every reload" (options.ts): a reload of deny or crl only
    full = next
    keys = ticketKeys()
    await app.mtls.reload({ deny: [caB.leaf.cert.fingerprint256] })
    // regression (found at 43fa5d6): only reloads that rebuilt the TLS context rotated the keys
    t.notOk(ticketKeys().equals(keys), 'a deny reload: new ticket keys')
    next = await rawGet(port, { ...cert, session: full.sessions.at(-1) })
    t.equal(next.reused, false, 'the old ticket is not accepted')
    t.equal(next.status, 200)
  })

  t.test('rotateTicketKeysOnReload with https.ticketKeys configured', async (t) => {
    const configured = randomBytes(48)
    const { app, port, ticketKeys } = await start(t, { plugin: { rotateTicketKeysOnReload: true }, https: { ticketKeys: configured } })
    const cert = { cert: caA.chainPem, key: caA.leaf.key.privateKeyPem }
    const full = await rawGet(port, cert)
    t.ok(ticketKeys().equals(configured))
    // setSecureContext() passes the server's remembered https.ticketKeys to the new context
    await app.mtls.reload({ ca: [caA.root.pem, caB.root.pem] })
    t.notOk(ticketKeys().equals(configured), 'new ticket keys')
    const next = await rawGet(port, { ...cert, session: full.sessions.at(-1) })
    t.equal(next.reused, false, 'the ticket from before the reload is not accepted')
    t.equal(next.status, 200)
  })
})

// ---------------------------------------------------------------- crlMode

t.test('crlMode: a stale CRL is soft-failed with one warning, hard-failed by default; a listed client is refused in both', async (t) => {
  const caD = await clientCa('CA D', 'd1-svc')
  const d2 = await byRoot(caD, 'd2-svc')
  const caE = await clientCa('CA E', 'e1-svc')
  const e2 = await byRoot(caE, 'e2-svc')
  const stale = await makeCrl({ issuer: caD.root, thisUpdate: new Date(now - 10 * DAY), nextUpdate: new Date(now - DAY), revoked: [{ serial: d2, reason: 1 }] })
  const current = await makeCrl({ issuer: caE.root, revoked: [{ serial: e2, reason: 1 }] })
  const ca = [caD.root.pem, caE.root.pem]
  const soft = /revocation status unknown, accepted/

  t.test('soft-fail', async (t) => {
    const { url, logs } = await start(t, { plugin: { ca, crl: [stale.pem, current.pem], crlMode: 'soft-fail' }, https: { ca } })
    const d1 = agent(t, presents(caD))
    for (let i = 0; i < 3; i++) {
      const r = await get(url, d1)
      t.equal(r.status, 200, `stale CRL, soft-fail: accepted (request ${i + 1})`)
      t.equal(r.body.cn, 'd1-svc')
    }
    t.equal((await get(url, agent(t, presents(caD)))).status, 200, 'and on a second connection')
    const lines = warnings(logs, soft)
    t.equal(lines.length, 1, 'one warn line, not one per request or connection')
    t.match(lines[0], { 'mtls.reason': /CRL is stale/ })
    t.equal((await get(url, agent(t, presents(caE)))).status, 200, 'a fresh CRL that does not list e1: accepted')
    const listed = await get(url, agent(t, leafPem(e2)))
    t.equal(listed.status, 401, 'listed in a current CRL: refused')
    t.equal(listed.body.code, 'FST_MTLS_CERT_REVOKED')
    const staleListed = await get(url, agent(t, leafPem(d2)))
    // regression (found at 43fa5d6): the stale CRL was set aside before its serials were looked up,
    // so a revoked client got in with the "revocation status unknown" warning
    t.equal(staleListed.status, 401, 'listed in the stale CRL: refused')
    t.equal(staleListed.body.code, 'FST_MTLS_CERT_REVOKED')
  })

  t.test('hard-fail (the default)', async (t) => {
    const { url, logs } = await start(t, { plugin: { ca, crl: [stale.pem, current.pem] }, https: { ca } })
    const unknown = await get(url, agent(t, presents(caD)))
    t.equal(unknown.status, 401)
    t.match(unknown.body, { statusCode: 401, code: 'FST_MTLS_REVOCATION_UNKNOWN' })
    t.equal(warnings(logs, soft).length, 0)
    t.equal((await get(url, agent(t, presents(caE)))).status, 200)
    const listed = await get(url, agent(t, leafPem(e2)))
    t.equal(listed.status, 401)
    t.equal(listed.body.code, 'FST_MTLS_CERT_REVOKED')
    const staleListed = await get(url, agent(t, leafPem(d2)))
    t.equal(staleListed.status, 401, 'listed in the stale CRL: refused')
    // regression (found at 43fa5d6): FST_MTLS_REVOCATION_UNKNOWN ("try again later")
    t.equal(staleListed.body.code, 'FST_MTLS_CERT_REVOKED', 'a listed certificate is FST_MTLS_CERT_REVOKED in every mode')
  })

  t.test('soft-fail switched by reload? no: a fresh CRL by reload makes the stale issuer known again', async (t) => {
    const { app, url, logs } = await start(t, { plugin: { ca, crl: [stale.pem], crlMode: 'soft-fail' }, https: { ca } })
    const d1 = agent(t, presents(caD))
    t.equal((await get(url, d1)).status, 200)
    t.equal(warnings(logs, soft).length, 1)
    const renewed = await makeCrl({ issuer: caD.root, revoked: [{ serial: d2 }], crlNumber: 2 })
    await app.mtls.reload({ crl: renewed.pem })
    t.equal((await get(url, d1)).status, 200)
    t.equal(warnings(logs, soft).length, 1, 'no new warning: the status is known now')
    t.equal((await get(url, agent(t, leafPem(d2)))).body.code, 'FST_MTLS_CERT_REVOKED')
    t.match(app.mtls.status().crls, [{ stale: false, revoked: 1 }])
  })
})

// ---------------------------------------------------------------- register time

t.test('register time', async (t) => {
  const httpsFor = (ca: string | string[]) => ({ key: server.leaf.key.privateKeyPem, cert: server.leaf.pem, ca, requestCert: true, rejectUnauthorized: false })
  const build = (t: Test, https: Record<string, unknown>, lines: LogLine[] = []) => {
    const app = Fastify({ logger: { level: 'info', stream: { write (l: string) { lines.push(JSON.parse(l) as LogLine) } } }, https } as FastifyServerOptions)
    t.teardown(() => app.close())
    return app
  }

  t.test('a CRL whose signature does not verify with its configured CA: FST_MTLS_INVALID_OPTIONS', async (t) => {
    const forged = await makeCrl({ issuer: caC.root, signWith: await fresh() })
    const app = build(t, httpsFor(caC.root.pem))
    app.register(fastifyMtls, { ca: caC.root.pem, crl: forged.pem })
    await t.rejects(async () => { await app.ready() }, { code: 'FST_MTLS_INVALID_OPTIONS', message: /crl\[0\]: the signature of the CRL from "O=Fixture PKI,CN=CA C Root CA" does not verify with that CA's key/ })
  })

  t.test('a CRL from a CA that is not configured: a warning', async (t) => {
    const lines: LogLine[] = []
    const crl = await makeCrl({ issuer: intermediateI })
    const app = build(t, httpsFor(caA.root.pem), lines)
    await app.register(fastifyMtls, { ca: caA.root.pem, crl: crl.pem })
    await app.ready()
    const w = warnings(lines, /crl\[0\]: its issuer "O=Fixture PKI,CN=CA I Intermediate CA 1" is neither in ca nor in intermediates/)
    t.equal(w.length, 1)
    t.equal(lines.filter((l) => l.level >= 40).length, 1, 'nothing else')
  })

  t.test('an https.pfx server is refused, naming pfx', async (t) => {
    const rsa = await issue({ subject: 'CN=localhost', key: await newKey('rsa2048'), san: { dns: ['localhost'] }, extKeyUsage: ['serverAuth'] })
    const p12 = forge.pkcs12.toPkcs12Asn1(forge.pki.privateKeyFromPem(rsa.key.privateKeyPem), [forge.pki.certificateFromPem(rsa.pem)], 'secret', { algorithm: '3des' })
    const pfx = Buffer.from(forge.asn1.toDer(p12).getBytes(), 'binary')
    const app = build(t, { pfx, passphrase: 'secret', ca: caA.root.pem, requestCert: true, rejectUnauthorized: false })
    app.register(fastifyMtls, { ca: caA.root.pem })
    await t.rejects(async () => { await app.ready() }, { code: 'FST_MTLS_INVALID_OPTIONS', message: /https\.pfx is not supported/ })
  })

  t.test('expiryWarningDays: 20, an anchor and a server certificate expiring in 10 days, warned at start and after a reload', async (t) => {
    const shortRoot = await issue({ subject: 'CN=Short Root CA,O=Fixture PKI', key: await fresh(), ca: true, notAfter: new Date(now + 10 * DAY) })
    const shortServer = await issue({ ...serverSan, issuer: server.root, key: await fresh(), notAfter: new Date(now + 10 * DAY) })
    const lines: LogLine[] = []
    const app = build(t, { ...httpsFor([caA.root.pem, shortRoot.pem]), cert: shortServer.pem, key: shortServer.key.privateKeyPem }, lines)
    // everything else here lives 30 days
    await app.register(fastifyMtls, { ca: [caA.root.pem, shortRoot.pem], expiryWarningDays: 20 })
    await app.ready()
    const anchor = () => warnings(lines, /a trust anchor expires soon/)
    const serverCert = () => warnings(lines, /the server certificate expires soon/)
    t.equal(anchor().length, 1, 'the anchor at start')
    t.match(anchor()[0], { 'mtls.anchor': 'O=Fixture PKI,CN=Short Root CA', 'mtls.anchor_not_after': shortRoot.spec.notAfter.toISOString().replace(/\.\d{3}Z$/, '.000Z') })
    t.equal(serverCert().length, 1, 'the server certificate at start')
    await app.mtls.reload({ deny: [] })
    t.equal(anchor().length, 2, 'again after a reload')
    t.equal(serverCert().length, 2)
    await app.mtls.reload({ key: server.leaf.key.privateKeyPem, cert: server.leaf.pem })
    t.equal(anchor().length, 3)
    t.equal(serverCert().length, 2, 'a long-lived server certificate swapped in: no warning')
    await app.mtls.reload({ ca: caA.root.pem })
    t.equal(anchor().length, 3, 'the short-lived anchor removed: no warning')
  })

  t.test('a client certificate expiring within the window: one warning, not one per request', async (t) => {
    const soon = await byRoot(caA, 'soon-svc', { notAfter: new Date(now + 10 * DAY) })
    const { app, url, logs } = await start(t, { plugin: { expiryWarningDays: 20 } })
    const expiring = () => warnings(logs, /a client certificate expires soon/)
    const a = agent(t, leafPem(soon))
    for (let i = 0; i < 3; i++) t.equal((await get(url, a)).status, 200)
    t.equal((await get(url, agent(t, leafPem(soon)))).status, 200, 'a second connection')
    t.equal(expiring().length, 1)
    t.match(expiring()[0], { 'tls.client.subject': 'CN=soon-svc' })
    await app.mtls.reload({ deny: [] })
    t.equal((await get(url, a)).status, 200, 'verified again after a reload')
    t.equal(expiring().length, 1, 'still one line')
    t.equal((await get(url, agent(t, presents(caA)))).status, 200)
    t.equal(expiring().length, 1, 'a long-lived certificate: no line')
  })
})

// ---------------------------------------------------------------- status()

t.test('status(): anchors and CRLs', async (t) => {
  const crlC = await makeCrl({ issuer: caC.root, revoked: [{ serial: caC.leaf }, { serial: c2 }], crlNumber: 7, thisUpdate: new Date(now - 3600e3), nextUpdate: new Date(now + 7 * DAY) })
  const staleB = await makeCrl({ issuer: caB.root, thisUpdate: new Date(now - 10 * DAY), nextUpdate: new Date(now - DAY) })
  const ca = [{ name: 'partner-a', cert: caA.root.pem }, caB.root.pem, caC.root.pem]
  const { app } = await start(t, { plugin: { ca, crl: [crlC.pem, staleB.der] }, https: { ca: [caA.root.pem, caB.root.pem, caC.root.pem] } })
  const iso = (c: Issued) => new Date(c.cert.validTo).toISOString()
  const s = app.mtls.status()
  t.same(s.anchors, [
    { name: 'partner-a', fingerprint256: caA.root.cert.fingerprint256, notAfter: iso(caA.root) },
    { name: 'O=Fixture PKI,CN=CA B Root CA', fingerprint256: caB.root.cert.fingerprint256, notAfter: iso(caB.root) },
    { name: 'O=Fixture PKI,CN=CA C Root CA', fingerprint256: caC.root.cert.fingerprint256, notAfter: iso(caC.root) }
  ])
  t.equal(s.crls.length, 2)
  t.match(s.crls, [
    { issuer: 'O=Fixture PKI,CN=CA C Root CA', stale: false, revoked: 2 },
    { issuer: 'O=Fixture PKI,CN=CA B Root CA', stale: true, revoked: 0 }
  ])
  // dates to the second (CRL times are UTCTime)
  for (const [i, [thisUpdate, nextUpdate]] of [[now - 3600e3, now + 7 * DAY], [now - 10 * DAY, now - DAY]].entries()) {
    t.ok(Math.abs(Date.parse(s.crls[i]?.thisUpdate ?? '') - (thisUpdate as number)) < 1000, `crls[${i}].thisUpdate`)
    t.ok(Math.abs(Date.parse(s.crls[i]?.nextUpdate ?? '') - (nextUpdate as number)) < 1000, `crls[${i}].nextUpdate`)
  }
  t.match(s, { mode: 'required', enforce: true, lastReload: null })

  const noNext = await makeCrl({ issuer: caC.root, nextUpdate: null })
  await app.mtls.reload({ ca: caB.root.pem + caC.root.pem, crl: [noNext.pem] })
  const after = app.mtls.status()
  t.same(after.anchors.map((a) => a.name), ['O=Fixture PKI,CN=CA B Root CA', 'O=Fixture PKI,CN=CA C Root CA'])
  t.match(after.crls, [{ issuer: 'O=Fixture PKI,CN=CA C Root CA', nextUpdate: null, stale: true, revoked: 0 }])
  t.equal(after.crls.length, 1)
  t.match(after.lastReload, { ok: true, changed: ['ca', 'crl'], error: null })
  await app.mtls.reload({ crl: [] })
  t.same(app.mtls.status().crls, [], 'CRLs removed by an empty list')
})

// ---------------------------------------------------------------- serialised reloads

t.test('reloads are serialised: started together, they complete in order', async (t) => {
  const { app, url } = await start(t)
  const a = agent(t, presents(caA))
  const b = agent(t, presents(caB))
  t.equal((await get(url, a)).status, 200)
  const e0 = app.mtls.status().epoch
  const order: string[] = []
  const p1 = app.mtls.reload({ ca: [caA.root.pem, caB.root.pem] }).then((r) => { order.push('first'); return r })
  const p2 = app.mtls.reload({ ca: caB.root.pem }).then((r) => { order.push('second'); return r })
  const [r1, r2] = await Promise.all([p1, p2])
  t.same(order, ['first', 'second'])
  t.equal(app.mtls.status().epoch, e0 + 2, 'epoch +2')
  t.same(app.mtls.status().lastReload, r2, 'the last one is the last reported')
  t.ok(r1.at <= r2.at)
  t.same(app.mtls.status().anchors.map((x) => x.fingerprint256), [caB.root.cert.fingerprint256], 'the second one wins')
  t.equal((await get(url, a)).body.code, 'FST_MTLS_CERT_UNTRUSTED')
  t.equal((await get(url, b)).status, 200)

  // a refused reload in the middle of the queue neither stops nor reorders it
  const settled: string[] = []
  const q = [
    app.mtls.reload({ ca: [caA.root.pem, caB.root.pem] }).then(() => settled.push('ok 1')),
    app.mtls.reload({ ca: 'nope' }).catch((err: { code: string }) => settled.push(err.code)),
    app.mtls.reload({ deny: [caB.leaf.cert.fingerprint256] }).then(() => settled.push('ok 2'))
  ]
  await Promise.all(q)
  t.same(settled, ['ok 1', 'FST_MTLS_RELOAD_INVALID', 'ok 2'])
  t.equal(app.mtls.status().epoch, e0 + 4)
  t.match(app.mtls.status().lastReload, { ok: true, changed: ['deny'] })
  t.equal((await get(url, a)).status, 200, 'A trusted again by the first')
  t.equal((await get(url, b)).body.code, 'FST_MTLS_CERT_REVOKED', 'B denied by the third')
})
