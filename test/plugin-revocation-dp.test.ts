// CRL distribution points through the plugin over real TLS (issue 4, point 2): `crlFetch` with
// a node:http server on 127.0.0.1 serving CRLs at the URLs the client certificates name.
// Fetched only for allow-listed URLs and only after the chain verified; cached; a failing
// distribution point makes the status unknown; a newer CRL takes effect once the fetcher has
// refreshed (driven by the fetcher's own timer: refreshBeforeSec makes the first CRL due on
// arrival, retrySec makes the retry quick, and the test waits for the log line of the new CRL).
// A Fastify HTTPS server on 127.0.0.1 port 0 per case; one undici Agent is one connection.
import t, { type Test } from 'tap'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import { Agent, request } from 'undici'
import fastifyMtls, { type FastifyMtlsOptions, type RejectionCode } from '../lib/index.js'
import { issue, makeChain, makeCrl, newKey, type Issued, type KeyPair } from './helpers/pki.js'

const HOUR = 3600e3
const now = Date.now()
const fresh = async (): Promise<KeyPair> => newKey('ec256', { fresh: true })

// ---------------------------------------------------------------- the CRL server

type Handler = (req: IncomingMessage, res: ServerResponse) => void
const routes = new Map<string, Handler>()
const hitCounts = new Map<string, number>()
const crlServer = createServer((req, res) => {
  const path = req.url ?? ''
  hitCounts.set(path, (hitCounts.get(path) ?? 0) + 1)
  const handler = routes.get(path)
  if (handler === undefined) res.writeHead(404).end()
  else handler(req, res)
})
crlServer.listen(0, '127.0.0.1')
await once(crlServer, 'listening')
const BASE = `http://127.0.0.1:${(crlServer.address() as AddressInfo).port}`
const ALLOW = [`${BASE}/crl/`]
t.teardown(() => {
  crlServer.closeAllConnections()
  crlServer.close()
})
const hits = (url: string): number => hitCounts.get(url.slice(BASE.length)) ?? 0
const serve = (url: string, handler: Handler): void => { routes.set(url.slice(BASE.length), handler) }
const body = (der: Buffer): Handler => (_req, res) => { res.writeHead(200, { 'content-type': 'application/pkix-crl' }).end(der) }

// ---------------------------------------------------------------- PKI

const serverPki = await makeChain({
  kind: 'ec256', intermediates: 0, label: 'Server', leaf: { subject: 'CN=localhost', san: { dns: ['localhost'], ip: ['127.0.0.1'] }, extKeyUsage: ['serverAuth'] }
})
const root = await issue({ subject: 'CN=DP Root CA,O=Fixture PKI', key: await fresh(), ca: true })
const int = await issue({ subject: 'CN=DP Issuing CA,O=Fixture PKI', issuer: root, key: await fresh(), ca: true })
const stranger = await makeChain({ kind: 'ec256', intermediates: 0, label: 'DP Stranger', root: { key: await fresh() } })

/** A client of `issuer` whose certificate names `dp` as its CRL distribution point. */
const client = async (cn: string, dp: string, issuer: Issued = int): Promise<Issued> =>
  issue({ subject: `CN=${cn},O=Clients`, issuer, key: await newKey('ec256'), crlDistributionPoints: [dp] })

// ---------------------------------------------------------------- server and clients

interface LogLine { level: number, msg: string, [key: string]: unknown }
const NEW_DP_CRL = 'fastify-mtls-auth: new CRL from a distribution point'

interface Started {
  app: FastifyInstance
  url: string
  logs: LogLine[]
  /** resolves once the log holds a line that `match` accepts as the `n`th; rejects after 10 s */
  logged: (match: (l: LogLine) => boolean, n?: number) => Promise<void>
}

async function start (t: Test, options: Partial<FastifyMtlsOptions>): Promise<Started> {
  const logs: LogLine[] = []
  const waiters = new Set<() => void>()
  const app = Fastify({
    logger: {
      level: 'info',
      stream: {
        write (line: string) {
          logs.push(JSON.parse(line) as LogLine)
          for (const w of waiters) w()
        }
      }
    },
    https: { key: serverPki.leaf.key.privateKeyPem, cert: serverPki.leaf.pem, ca: root.pem, requestCert: true, rejectUnauthorized: false }
  }) as unknown as FastifyInstance
  t.teardown(async () => app.close())
  await app.register(fastifyMtls, { ca: root.pem, expiryWarningDays: 0, ...options })
  app.get('/', async (req) => ({ cn: req.clientIdentity?.subject.attributes.CN?.[0] ?? null }))
  await app.listen({ host: '127.0.0.1', port: 0 })
  const logged = async (match: (l: LogLine) => boolean, n = 1): Promise<void> => new Promise((resolve, reject) => {
    const check = (): void => {
      if (logs.filter(match).length < n) return
      waiters.delete(check)
      clearTimeout(timer)
      resolve()
    }
    const timer = setTimeout(() => {
      waiters.delete(check)
      reject(new Error(`no such log line within 10 s (${n} wanted)`))
    }, 10_000)
    waiters.add(check)
    check()
  })
  return { app, url: `https://127.0.0.1:${(app.server.address() as AddressInfo).port}/`, logs, logged }
}

/** A new connection (one per Agent) presenting `leaf` and the CAs above it up to the root (excluded). */
function as (t: Test, leaf: Issued, ...chain: Issued[]): Agent {
  const a = new Agent({
    connections: 1,
    connect: { ca: serverPki.root.pem, servername: 'localhost', cert: [leaf, ...chain].map((c) => c.pem).join(''), key: leaf.key.privateKeyPem }
  })
  t.teardown(async () => a.close())
  return a
}

interface Reply { status: number, code: string | undefined, cn: string | null | undefined }

async function get (url: string, dispatcher: Agent): Promise<Reply> {
  const res = await request(url, { dispatcher })
  const json = await res.body.json() as { cn?: string | null, code?: string }
  return { status: res.statusCode, code: json.code, cn: json.cn }
}

const cnOf = (leaf: Issued): string | undefined => /^CN=([^,]+)/.exec(String(leaf.spec.subject))?.[1]
const ok = (leaf: Issued): Reply => ({ status: 200, code: undefined, cn: cnOf(leaf) })
const no = (code: RejectionCode): Reply => ({ status: 401, code, cn: undefined })

// ---------------------------------------------------------------- tests

t.test('an allow-listed distribution point: revoked and good clients, one download, status()', async (t) => {
  const dp = `${BASE}/crl/issuing.crl`
  const good = await client('dp-good', dp)
  const revoked = await client('dp-revoked', dp)
  serve(dp, body((await makeCrl({ issuer: int, revoked: [{ serial: revoked, reason: 1 }] })).der))
  const { url, app } = await start(t, { crlFetch: { allow: ALLOW } })
  t.same(app.mtls.status().crlDistributionPoints, [], 'nothing fetched before a client needs it')

  t.same(await get(url, as(t, revoked, int)), no('FST_MTLS_CERT_REVOKED'), 'a client on the fetched CRL: 401 FST_MTLS_CERT_REVOKED')
  t.same(await get(url, as(t, good, int)), ok(good), 'a good client: 200')
  t.same(await get(url, as(t, good, int)), ok(good), 'the good client on another new connection: 200')
  t.equal(hits(dp), 1, 'one request to the distribution point for three connections')

  t.match(app.mtls.status().crlDistributionPoints, [{ url: dp, crlNumber: '1', stale: false, lastError: null }], 'status() lists the URL and its CRL')
  t.equal(app.mtls.status().crlDistributionPoints?.length, 1)
})

t.test('a distribution point not on the allow-list is never requested, and the client needs no revocation status', async (t) => {
  const dp = `${BASE}/elsewhere/issuing.crl`
  serve(dp, body((await makeCrl({ issuer: int })).der))
  const elsewhere = await client('dp-elsewhere', dp)
  const { url, app } = await start(t, { crlFetch: { allow: ALLOW } })
  t.same(await get(url, as(t, elsewhere, int)), ok(elsewhere), '200')
  t.equal(hits(dp), 0, 'no request to it')
  t.same(app.mtls.status().crlDistributionPoints, [], 'and it is not in status()')
})

t.test('an allow-listed distribution point that answers 500', async (t) => {
  const dp = `${BASE}/crl/broken.crl`
  serve(dp, (_req, res) => { res.writeHead(500).end() })
  const broken = await client('dp-broken', dp)
  const hard = await start(t, { crlFetch: { allow: ALLOW } })
  t.same(await get(hard.url, as(t, broken, int)), no('FST_MTLS_REVOCATION_UNKNOWN'), 'hard-fail: 401 FST_MTLS_REVOCATION_UNKNOWN')
  t.match(hard.app.mtls.status().crlDistributionPoints, [{ url: dp, crlNumber: null, stale: true, lastError: 'HTTP 500' }])

  const soft = await start(t, { crlFetch: { allow: ALLOW }, crlMode: 'soft-fail' })
  t.same(await get(soft.url, as(t, broken, int)), ok(broken), 'crlMode soft-fail: 200')
  t.match(soft.logs.filter((l) => l.level === 40 && /revocation status unknown/.test(l.msg)), [{ 'mtls.reason': /no CRL from its allow-listed distribution point is available/ }], 'with a warning line')
  t.equal(hits(dp), 2, 'one request per server')
})

t.test('a client from an untrusted CA naming an allow-listed distribution point: UNTRUSTED, no request', async (t) => {
  const dp = `${BASE}/crl/stranger.crl`
  serve(dp, body((await makeCrl({ issuer: stranger.root })).der))
  const intruder = await client('dp-stranger', dp, stranger.root)
  const { url, app } = await start(t, { crlFetch: { allow: ALLOW } })
  t.same(await get(url, as(t, intruder)), no('FST_MTLS_CERT_UNTRUSTED'), '401 FST_MTLS_CERT_UNTRUSTED')
  t.equal(hits(dp), 0, 'the distribution point got no request')
  t.same(app.mtls.status().crlDistributionPoints, [])
})

t.test('a newer CRL from the distribution point takes effect once the fetcher has refreshed', async (t) => {
  const dp = `${BASE}/crl/update.crl`
  const later = await client('dp-later-revoked', dp)
  // the first CRL is due for refresh on arrival (nextUpdate - refreshBeforeSec is past), so the
  // fetcher asks again after retrySec; every answer after the first is the newer CRL
  const first = await makeCrl({ issuer: int, crlNumber: 1, thisUpdate: new Date(now - 100 * HOUR), nextUpdate: new Date(now + HOUR) })
  const second = await makeCrl({ issuer: int, crlNumber: 2, thisUpdate: new Date(now - 60e3), revoked: [{ serial: later, reason: 1 }] })
  let served = 0
  serve(dp, (req, res) => { body(served++ === 0 ? first.der : second.der)(req, res) })
  const { url, app, logged } = await start(t, { crlFetch: { allow: ALLOW, refreshBeforeSec: 7200, retrySec: 0.05 } })
  const a = as(t, later, int)
  t.same(await get(url, a), ok(later), 'accepted while the first CRL is held')
  const epoch = app.mtls.status().epoch
  await logged((l) => l.msg === NEW_DP_CRL, 2)
  t.ok(app.mtls.status().epoch > epoch, 'the new CRL bumped the trust epoch')
  t.same(await get(url, a), no('FST_MTLS_CERT_REVOKED'), 'the same kept-alive connection, next request: 401 FST_MTLS_CERT_REVOKED')
  t.same(await get(url, as(t, later, int)), no('FST_MTLS_CERT_REVOKED'), 'a new connection: 401 FST_MTLS_CERT_REVOKED')
  t.equal(hits(dp), 2, 'two downloads: the first CRL and its refresh')
  t.match(app.mtls.status().crlDistributionPoints, [{ url: dp, crlNumber: '2', stale: false, lastError: null }])
})

t.test('a reload while a CRL download is in flight: the next request on that connection is judged by the new trust', async (t) => {
  const dp = `${BASE}/crl/slow.crl`
  const slow = await client('dp-slow', dp)
  const der = (await makeCrl({ issuer: int })).der
  let arrive = (): void => {}
  let release = (): void => {}
  const arrived = new Promise<void>((resolve) => { arrive = resolve })
  const gate = new Promise<void>((resolve) => { release = resolve })
  serve(dp, (req, res) => {
    arrive()
    gate.then(() => body(der)(req, res), () => {})
  })
  const { url, app } = await start(t, { crlFetch: { allow: ALLOW } })
  const a = as(t, slow, int)
  const first = get(url, a)
  await arrived
  // the client is denied while its CRL is being downloaded
  await app.mtls.reload({ deny: [slow.cert.fingerprint256] })
  release()
  await first
  t.same(await get(url, a), no('FST_MTLS_CERT_REVOKED'), 'the same connection, next request: 401 FST_MTLS_CERT_REVOKED')
  t.same(await get(url, as(t, slow, int)), no('FST_MTLS_CERT_REVOKED'), 'a new connection: 401 FST_MTLS_CERT_REVOKED')
})
