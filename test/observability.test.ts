// Observability over real TLS: the counters of app.mtls.status(), their OpenTelemetry-shaped export
// app.mtls.metrics() and toPrometheus(), the log lines' field names, the identity bound to
// request.log, and the README's @fastify/rate-limit recipe keyed by client certificate. A Fastify
// HTTPS server on 127.0.0.1 port 0, undici clients presenting certificates made while the tests run.
import t, { type Test } from 'tap'
import type { Writable } from 'node:stream'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyAuth from '@fastify/auth'
import fastifyRateLimit from '@fastify/rate-limit'
import { Agent, request } from 'undici'
import fastifyMtls, { toPrometheus, type FastifyMtlsOptions, type MtlsMetric, type MtlsStatus, type RejectionCode } from '../lib/index.js'
import { issue, makeChain, newKey, type Issued } from './helpers/pki.js'
import { keyCount, logCapture } from './helpers/logs.js'

const DAY = 24 * 60 * 60 * 1000
const now = Date.now()

// ---------------------------------------------------------------- PKI

const server = await makeChain({ kind: 'ec256', intermediates: 0, label: 'Server', leaf: { subject: 'CN=localhost', san: { dns: ['localhost'], ip: ['127.0.0.1'] }, extKeyUsage: ['serverAuth'] } })
const partner = await makeChain({ kind: 'ec256', label: 'Partner', leaf: { subject: 'CN=svc,OU=payments,O=Partner', key: await newKey('ec256', { fresh: true }) } })
const partnerCa = partner.intermediates[0] as Issued
const stranger = await makeChain({ kind: 'ec256', intermediates: 0, label: 'Stranger' })
const byPartner = async (subject: string, extra: Partial<Parameters<typeof issue>[0]> = {}): Promise<Issued> =>
  issue({ subject, issuer: partnerCa, key: await newKey('ec256', { fresh: true }), ...extra })
const second = await byPartner('CN=second,OU=payments,O=Partner')
const outsider = await byPartner('CN=svc,OU=payments,O=Outsider')
const expired = await byPartner('CN=expired,O=Partner', { notBefore: new Date(now - 10 * DAY), notAfter: new Date(now - DAY) })
const expiringSoon = await byPartner('CN=soon,O=Partner', { notBefore: new Date(now - DAY), notAfter: new Date(now + 2 * DAY) })

const hexOf = (fingerprint: string): string => fingerprint.replace(/:/g, '')

// ---------------------------------------------------------------- clients and servers

const agents: Agent[] = []
t.teardown(async () => { await Promise.all(agents.map(async (a) => a.close())) })

function client (leaf?: Issued): Agent {
  const cert = leaf === undefined ? {} : { cert: leaf.pem + partnerCa.pem, key: leaf.key.privateKeyPem }
  // one connection per origin: the counts of connections and of reused verdicts are exact
  const a = new Agent({ connections: 1, connect: { ca: server.root.pem, servername: 'localhost', ...cert } })
  agents.push(a)
  return a
}

async function call (base: string, path: string, dispatcher: Agent): Promise<{ status: number, body: any }> {
  const res = await request(`${base}${path}`, { dispatcher })
  const text = await res.body.text()
  let body: unknown = text
  try { body = JSON.parse(text) } catch {}
  return { status: res.statusCode, body }
}

async function start (t: Test, options: Partial<FastifyMtlsOptions>, routes: (app: FastifyInstance) => void | Promise<void>, logs?: Writable): Promise<{ app: FastifyInstance, url: string }> {
  const app = Fastify({
    https: { key: server.leaf.key.privateKeyPem, cert: server.leaf.pem, ca: partner.root.pem, requestCert: true, rejectUnauthorized: false },
    ...(logs === undefined ? {} : { logger: { level: 'info', stream: logs } })
  }) as unknown as FastifyInstance
  await app.register(fastifyMtls, { ca: partner.root.pem, ...options })
  await routes(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(async () => app.close())
  const { port } = app.server.address() as { port: number }
  return { app, url: `https://127.0.0.1:${port}` }
}

function zeros (): Record<RejectionCode, number> {
  return {
    FST_MTLS_CERT_MISSING: 0,
    FST_MTLS_CERT_UNTRUSTED: 0,
    FST_MTLS_CERT_EXPIRED: 0,
    FST_MTLS_CERT_NOT_YET_VALID: 0,
    FST_MTLS_CHAIN_INVALID: 0,
    FST_MTLS_CERT_PURPOSE: 0,
    FST_MTLS_CERT_WEAK: 0,
    FST_MTLS_CERT_REVOKED: 0,
    FST_MTLS_REVOCATION_UNKNOWN: 0,
    FST_MTLS_CERT_MALFORMED: 0,
    FST_MTLS_FORWARDED_UNTRUSTED: 0,
    FST_MTLS_FORBIDDEN: 0,
    FST_MTLS_TOKEN_NOT_BOUND: 0
  }
}

function point (metrics: MtlsMetric[], name: string, attributes: Record<string, string>): number | undefined {
  const metric = metrics.find((m) => m.name === name)
  const found = metric?.points.filter((p) => JSON.stringify(p.attributes) === JSON.stringify(attributes)) ?? []
  return found.length === 1 ? found[0]?.value : undefined
}

/** Every number of status() has exactly one equal data point in metrics(), and nothing else is there. */
function agrees (t: Test, status: MtlsStatus, metrics: MtlsMetric[]): void {
  const expected = new Map<string, number>()
  const add = (name: string, attributes: Record<string, string>, value: number): void => { expected.set(`${name} ${JSON.stringify(attributes)}`, value) }
  add('mtls.requests', { 'mtls.outcome': 'accepted' }, status.requests.accepted)
  add('mtls.requests', { 'mtls.outcome': 'no_certificate' }, status.requests.withoutCertificate)
  add('mtls.requests', { 'mtls.outcome': 'exempt' }, status.requests.exempt)
  for (const [code, n] of Object.entries(status.requests.rejected)) add('mtls.requests', { 'mtls.outcome': 'rejected', 'mtls.code': code }, n)
  for (const [code, n] of Object.entries(status.requests.wouldReject)) add('mtls.requests', { 'mtls.outcome': 'would_reject', 'mtls.code': code }, n)
  for (const [code, n] of Object.entries(status.guards.rejected)) add('mtls.guard.rejections', { 'mtls.outcome': 'rejected', 'mtls.code': code }, n)
  for (const [code, n] of Object.entries(status.guards.wouldReject)) add('mtls.guard.rejections', { 'mtls.outcome': 'would_reject', 'mtls.code': code }, n)
  add('mtls.verifications', {}, status.verifications)
  add('mtls.verdict.reuses', { 'mtls.reuse': 'connection' }, status.verdictReuses.connection)
  add('mtls.verdict.reuses', { 'mtls.reuse': 'cache' }, status.verdictReuses.cache)
  add('mtls.connections', {}, status.caches.connectionsSeen)
  add('mtls.cache.entries', { 'mtls.cache': 'positive' }, status.caches.positive)
  add('mtls.cache.entries', { 'mtls.cache': 'negative' }, status.caches.negative)
  add('mtls.cache.entries', { 'mtls.cache': 'learned_intermediates' }, status.caches.learnedIntermediates)
  add('mtls.trust.epoch', {}, status.epoch)
  const actual = new Map<string, number>()
  for (const m of metrics) {
    if (m.name === 'mtls.anchor.expiry' || m.name === 'mtls.crl.next_update') continue
    for (const p of m.points) actual.set(`${m.name} ${JSON.stringify(p.attributes)}`, p.value)
  }
  t.same(Object.fromEntries(actual), Object.fromEntries(expected), 'metrics() holds exactly the numbers of status()')
  const anchors = metrics.find((m) => m.name === 'mtls.anchor.expiry')
  t.equal(anchors?.points.length, status.anchors.length, 'one expiry point per anchor')
  for (const a of status.anchors) {
    const seconds = point(metrics, 'mtls.anchor.expiry', { 'mtls.anchor': a.name, 'mtls.anchor.hash.sha256': a.fingerprint256.replace(/:/g, '') }) as number
    // computed from the same notAfter, a moment apart
    t.ok(Math.abs(seconds - (Date.parse(a.notAfter) - Date.now()) / 1000) < 60, `${a.name}: seconds until expiry`)
  }
}

// ---------------------------------------------------------------- counters

t.test('counters after a mix of outcomes, and the metrics export agrees with status()', async (t) => {
  const { app, url } = await start(t, { policy: { subject: { O: 'Partner' } } }, async (app) => {
    await app.register(fastifyAuth)
    app.get('/', async () => 'ok')
    app.get('/route-policy', { config: { mtls: { subject: { OU: 'top-secret' } } } }, async () => 'secret')
    app.get('/guarded', { onRequest: app.mtls.require({ subject: { CN: 'admin' } }) }, async () => 'admin')
    app.get('/bound', { preHandler: app.mtls.requireBoundToken({ claims: () => ({ cnf: { 'x5t#S256': 'not-this-certificate' } }) }) }, async () => 'bound')
    // @fastify/auth tries the guard, then lets everyone in: the guard's refusal is never sent, so never counted
    app.get('/either', { preHandler: app.auth([app.mtls.require({ subject: { CN: 'nobody' } }), async () => {}]) }, async () => 'either')
    app.get('/health', { config: { mtls: false } }, async () => 'up')
  })
  const start0 = app.mtls.status()
  t.same(start0.requests, { accepted: 0, withoutCertificate: 0, exempt: 0, rejected: zeros(), wouldReject: zeros() }, 'zero-filled at start')
  t.same(start0.guards, { rejected: zeros(), wouldReject: zeros() })

  const good = client(partner.leaf)
  const statuses: number[] = []
  // one keep-alive connection: verified once, then the connection's verdict answers
  for (const path of ['/', '/', '/', '/route-policy', '/guarded', '/bound', '/either']) statuses.push((await call(url, path, good)).status)
  t.same(statuses, [200, 200, 200, 403, 403, 401, 200])
  // another connection with the same certificate: the verdict cache answers
  t.equal((await call(url, '/', client(partner.leaf))).status, 200)
  const none = client()
  t.equal((await call(url, '/', none)).status, 401)
  t.equal((await call(url, '/health', none)).status, 200)
  t.equal((await call(url, '/', client(stranger.leaf))).status, 401)
  t.equal((await call(url, '/', client(expired))).status, 401)
  t.equal((await call(url, '/', client(outsider))).status, 403)

  const s = app.mtls.status()
  t.same(s.requests, {
    // '/' ×3, '/guarded', '/bound' and '/either' pass the hook; then the second connection's '/'
    accepted: 7,
    withoutCertificate: 0,
    exempt: 1,
    rejected: { ...zeros(), FST_MTLS_CERT_MISSING: 1, FST_MTLS_CERT_UNTRUSTED: 1, FST_MTLS_CERT_EXPIRED: 1, FST_MTLS_FORBIDDEN: 2 },
    wouldReject: zeros()
  }, 'requests by outcome and code')
  t.same(s.guards, { rejected: { ...zeros(), FST_MTLS_FORBIDDEN: 1, FST_MTLS_TOKEN_NOT_BOUND: 1 }, wouldReject: zeros() }, 'guard refusals as sent')
  // partner leaf, stranger, expired, outsider: one verification each
  t.equal(s.verifications, 4)
  t.same(s.verdictReuses, { connection: 6, cache: 1 })
  t.equal(s.caches.connectionsSeen, 6)
  t.not(s.requests.rejected, app.mtls.status().requests.rejected, 'status() hands out copies')

  const metrics = app.mtls.metrics()
  agrees(t, s, metrics)
  t.equal(point(metrics, 'mtls.requests', { 'mtls.outcome': 'rejected', 'mtls.code': 'FST_MTLS_CERT_EXPIRED' }), 1)
  for (const m of metrics) t.ok(m.description.length > 0 && m.unit.length > 0 && (m.kind === 'counter' || m.kind === 'gauge'), `${m.name}: described`)

  const text = toPrometheus(metrics)
  t.match(text, '# TYPE mtls_requests_total counter\n')
  t.match(text, '\nmtls_requests_total{mtls_outcome="accepted"} 7\n')
  t.match(text, '\nmtls_requests_total{mtls_outcome="rejected",mtls_code="FST_MTLS_FORBIDDEN"} 2\n')
  t.match(text, '\nmtls_guard_rejections_total{mtls_outcome="rejected",mtls_code="FST_MTLS_TOKEN_NOT_BOUND"} 1\n')
  t.match(text, '# TYPE mtls_anchor_expiry_seconds gauge\n')
  t.match(text, /\nmtls_anchor_expiry_seconds\{mtls_anchor="O=Fixture PKI,CN=Partner Root CA",mtls_anchor_hash_sha256="[0-9A-F]{64}"\} \d+\n/)
  t.match(text, '\nmtls_cache_entries{mtls_cache="positive"} ')
  // every line is a comment or `name{labels} value`
  for (const line of text.trimEnd().split('\n')) t.match(line, /^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+(\{([a-z_][a-z0-9_]*="([^"\\\n]|\\.)*",?)+\})? -?\d+)$/, 'exposition line')
})

t.test('enforce: false and optional mode: passed without certificate, would-reject by code, guards', async (t) => {
  const { app, url } = await start(t, { mode: 'optional', enforce: false, policy: { subject: { O: 'Partner' } } }, (app) => {
    app.get('/', async (req) => ({ cn: req.clientIdentity?.subject.attributes.CN?.[0] ?? null }))
    app.get('/guarded', { onRequest: app.mtls.require({ subject: { CN: 'admin' } }) }, async () => 'admin')
    app.get('/bound', { preHandler: app.mtls.requireBoundToken({ claims: () => undefined }) }, async () => 'bound')
  })
  const none = client()
  t.equal((await call(url, '/', none)).status, 200)
  t.equal((await call(url, '/', none)).status, 200)
  t.equal((await call(url, '/', client(outsider))).status, 200, 'would be 403')
  t.equal((await call(url, '/', client(expired))).status, 200, 'would be 401')
  const good = client(partner.leaf)
  t.same((await call(url, '/', good)).body, { cn: 'svc' })
  t.equal((await call(url, '/guarded', good)).status, 200, 'guard would refuse')
  t.equal((await call(url, '/bound', good)).status, 200, 'unbound token would be refused')
  // a guard without an identity: the request passed the hook without a certificate
  t.equal((await call(url, '/guarded', none)).status, 200)

  const s = app.mtls.status()
  t.same(s.requests, {
    accepted: 3,
    withoutCertificate: 3,
    exempt: 0,
    rejected: zeros(),
    wouldReject: { ...zeros(), FST_MTLS_FORBIDDEN: 1, FST_MTLS_CERT_EXPIRED: 1 }
  })
  t.same(s.guards, { rejected: zeros(), wouldReject: { ...zeros(), FST_MTLS_FORBIDDEN: 1, FST_MTLS_TOKEN_NOT_BOUND: 1, FST_MTLS_CERT_MISSING: 1 } })
  agrees(t, s, app.mtls.metrics())
})

t.test('two anchors with the same name (a key rollover): two series, told apart by hash', async (t) => {
  const rollover = await makeChain({ kind: 'ec256', intermediates: 0, label: 'Partner' })
  t.equal(rollover.root.cert.subject, partner.root.cert.subject, 'the same subject, another key')
  const { app } = await start(t, { ca: [partner.root.pem, rollover.root.pem] }, () => {})
  const anchors = app.mtls.metrics().find((m) => m.name === 'mtls.anchor.expiry')
  t.equal(anchors?.points.length, 2)
  t.equal(new Set(anchors?.points.map((p) => JSON.stringify(p.attributes))).size, 2, 'distinct attribute sets')
  const series = toPrometheus(app.mtls.metrics()).split('\n').filter((l) => l.startsWith('mtls_anchor_expiry_seconds{')).map((l) => l.slice(0, l.lastIndexOf(' ')))
  t.equal(series.length, 2)
  t.equal(new Set(series).size, 2, 'no duplicate series (Prometheus would drop one)')
})

t.test('toPrometheus: names, units and label escaping', async (t) => {
  const text = toPrometheus([
    { name: 'a.b-c', description: 'line one\nback\\slash', unit: 's', kind: 'gauge', points: [{ attributes: { 'x.y': 'q"uo\\te\nnl' }, value: -3 }] },
    { name: 'n.count', description: 'd', unit: '{thing}', kind: 'counter', points: [{ attributes: {}, value: 0 }] }
  ])
  t.equal(text, [
    '# HELP a_b_c_seconds line one\\nback\\\\slash',
    '# TYPE a_b_c_seconds gauge',
    'a_b_c_seconds{x_y="q\\"uo\\\\te\\nnl"} -3',
    '# HELP n_count_total d',
    '# TYPE n_count_total counter',
    'n_count_total 0',
    ''
  ].join('\n'))
})

// ---------------------------------------------------------------- log lines

t.test('log lines: the rejection line, the expiry warning, and the identity bound to request.log', async (t) => {
  const { stream, lines } = logCapture()
  const { app, url } = await start(t, {}, (app) => {
    app.get('/', async (req) => {
      req.log.info({ marker: 'handler' }, 'handler line')
      return 'ok'
    })
  }, stream)
  t.equal((await call(url, '/', client(expired))).status, 401)
  t.equal((await call(url, '/', client(partner.leaf))).status, 200)
  t.equal((await call(url, '/', client(expiringSoon))).status, 200)

  const rejection = lines.filter((l) => l['mtls.code'] !== undefined)
  t.equal(rejection.length, 1, 'one rejection line')
  t.match(rejection[0], {
    level: 40,
    msg: 'client certificate rejected',
    'mtls.code': 'FST_MTLS_CERT_EXPIRED',
    'mtls.reason': /expired|notAfter/i,
    'client.address': '127.0.0.1',
    'tls.client.subject': 'O=Partner,CN=expired',
    'tls.client.issuer': 'O=Fixture PKI,CN=Partner Intermediate CA 1',
    'tls.client.hash.sha256': hexOf(expired.cert.fingerprint256),
    'tls.client.serial_number': expired.serialHex,
    'tls.client.not_after': new Date(expired.cert.validTo).toISOString()
  })
  t.notOk('tls.client.hash.sha256' in (lines.find((l) => l.reqId === rejection[0]?.reqId && l.msg === 'request completed') ?? {}), 'no identity bound on a refused request')

  const handler = lines.filter((l) => l.marker === 'handler')
  t.equal(handler.length, 2)
  t.match(handler[0], { msg: 'handler line', 'tls.client.hash.sha256': hexOf(partner.leaf.cert.fingerprint256), 'tls.client.subject': 'O=Partner,OU=payments,CN=svc' })
  t.match(handler[1], { 'tls.client.hash.sha256': hexOf(expiringSoon.cert.fingerprint256), 'tls.client.subject': 'O=Partner,CN=soon' })
  // Fastify's own line at the end of the request carries it too, with the request's id
  const completed = lines.find((l) => l.reqId === handler[0]?.reqId && l.msg === 'request completed')
  t.match(completed, { 'tls.client.hash.sha256': hexOf(partner.leaf.cert.fingerprint256), 'tls.client.subject': 'O=Partner,OU=payments,CN=svc' })
  t.equal(JSON.stringify(completed).split('tls.client.hash.sha256').length, 2, 'bound once')

  // the fields are bound to each request's own logger, never to the server's
  app.log.info({ marker: 'server' }, 'server line')
  const serverLine = lines.find((l) => l.marker === 'server')
  t.ok(serverLine !== undefined && !('tls.client.hash.sha256' in serverLine) && !('tls.client.subject' in serverLine), 'server logger untouched')

  const soon = lines.filter((l) => l.msg === 'fastify-mtls-auth: a client certificate expires soon')
  t.equal(soon.length, 1)
  t.match(soon[0], {
    level: 40,
    'tls.client.subject': 'O=Partner,CN=soon',
    'tls.client.hash.sha256': hexOf(expiringSoon.cert.fingerprint256),
    'tls.client.not_after': new Date(expiringSoon.cert.validTo).toISOString()
  })

  // every field a plugin line uses is one of DESIGN.md's names or an mtls.* field of its own
  const ours = lines.filter((l) => typeof l.msg === 'string' && (l.msg.startsWith('fastify-mtls-auth') || l['mtls.code'] !== undefined))
  t.ok(ours.length >= 2)
  for (const l of ours) {
    for (const key of Object.keys(l)) {
      if (['level', 'time', 'pid', 'hostname', 'reqId', 'msg', 'err'].includes(key)) continue
      t.match(key, /^(mtls\.[a-z_]+|tls\.client\.(subject|issuer|hash\.sha256|serial_number|not_after)|client\.address)$/, `field ${key}`)
    }
  }
})

t.test('logIdentity: false leaves request.log as Fastify made it', async (t) => {
  const { stream, lines } = logCapture()
  const { url } = await start(t, { logIdentity: false }, (app) => {
    app.get('/', async (req) => {
      req.log.info({ marker: 'handler' }, 'handler line')
      return 'ok'
    })
  }, stream)
  t.equal((await call(url, '/', client(partner.leaf))).status, 200)
  const handler = lines.filter((l) => l.marker === 'handler')
  t.equal(handler.length, 1)
  t.notOk('tls.client.hash.sha256' in (handler[0] ?? {}))
  t.notOk('tls.client.subject' in (handler[0] ?? {}))
  await t.rejects(start(t, { logIdentity: 'yes' as unknown as boolean }, () => {}), { code: 'FST_MTLS_INVALID_OPTIONS' })
})

t.test('loggers shared between requests (a childLoggerFactory returning one logger, or a pool) never carry another request\'s client', async (t) => {
  for (const shares of ['the server logger', 'one child of it', 'a pool of two']) {
    const { stream, lines, raw } = logCapture()
    let pool: unknown[] | undefined
    let turn = 0
    const app = Fastify({
      https: { key: server.leaf.key.privateKeyPem, cert: server.leaf.pem, ca: partner.root.pem, requestCert: true, rejectUnauthorized: false },
      logger: { level: 'info', stream },
      childLoggerFactory: (logger) => {
        pool ??= shares === 'the server logger' ? [logger] : shares === 'one child of it' ? [logger.child({ component: 'http' })] : [logger.child({ pool: 0 }), logger.child({ pool: 1 })]
        return pool[turn++ % pool.length] as typeof logger
      }
    }) as unknown as FastifyInstance
    await app.register(fastifyMtls, { ca: partner.root.pem, mode: 'optional' })
    app.get('/', async (req) => {
      req.log.info({ marker: 'handler', caller: req.clientIdentity?.subject.rfc4514 ?? null }, 'handler line')
      return 'ok'
    })
    app.get('/open', { config: { mtls: false } }, async (req) => {
      req.log.info({ marker: 'handler', caller: null }, 'handler line')
      return 'ok'
    })
    await app.listen({ host: '127.0.0.1', port: 0 })
    t.teardown(async () => app.close())
    const url = `https://127.0.0.1:${(app.server.address() as { port: number }).port}`
    // accepted clients, with requests that bind nothing in between: an exempt route, no certificate, a refusal
    t.equal((await call(url, '/', client(partner.leaf))).status, 200)
    t.equal((await call(url, '/open', client(partner.leaf))).status, 200)
    t.equal((await call(url, '/', client())).status, 200)
    t.equal((await call(url, '/', client(second))).status, 200)
    t.equal((await call(url, '/', client(expired))).status, 401)
    t.equal((await call(url, '/', client(second))).status, 200)
    t.equal((await call(url, '/open', client(second))).status, 200)
    app.log.info({ marker: 'server' }, 'server line')
    const handler = lines.filter((l) => l.marker === 'handler')
    t.equal(handler.length, 6, `${shares}: six handler lines`)
    for (const line of handler) t.equal(line['tls.client.subject'], line.caller ?? undefined, `${shares}: a handler line names its own client (${String(line.caller)}), no other`)
    t.notOk('tls.client.subject' in (lines.find((l) => l.marker === 'server') ?? {}), `${shares}: the server logger is never bound`)
    t.same(raw.filter((l) => keyCount(l, 'tls.client.subject') > 1), [], `${shares}: no line carries the subject twice`)
  }
})

t.test('Fastify\'s default child logger is bound in place; with another request id label too', async (t) => {
  for (const label of ['reqId', 'request_id']) {
    const { stream, lines } = logCapture()
    const app = Fastify({
      https: { key: server.leaf.key.privateKeyPem, cert: server.leaf.pem, ca: partner.root.pem, requestCert: true, rejectUnauthorized: false },
      logger: { level: 'info', stream },
      requestIdLogLabel: label
    }) as unknown as FastifyInstance
    const made = new WeakMap<object, unknown>()
    app.addHook('onRequest', async (req) => { made.set(req, req.log) })
    await app.register(fastifyMtls, { ca: partner.root.pem })
    app.get('/', async (req) => {
      req.log.info({ marker: 'handler' }, 'handler line')
      return { inPlace: made.get(req) === req.log }
    })
    await app.listen({ host: '127.0.0.1', port: 0 })
    t.teardown(async () => app.close())
    const url = `https://127.0.0.1:${(app.server.address() as { port: number }).port}`
    const res = await call(url, '/', client(partner.leaf))
    t.same(res.body, { inPlace: true }, `${label}: request.log is still the logger Fastify made`)
    t.match(lines.find((l) => l.marker === 'handler'), { [label]: String, 'tls.client.subject': 'O=Partner,OU=payments,CN=svc' })
  }
})

t.test('a guard\'s refusal after the identity is bound to request.log: the subject and hash once', async (t) => {
  const { stream, raw, lines } = logCapture()
  const { url } = await start(t, {}, (app) => {
    app.get('/payments', { onRequest: app.mtls.require({ subject: { OU: 'nobody' } }) }, async () => 'ok')
  }, stream)
  t.equal((await call(url, '/payments', client(partner.leaf))).status, 403)
  const line = raw.find((l) => l.includes('client certificate rejected'))
  t.ok(line !== undefined, 'the rejection line')
  t.equal(keyCount(line ?? '', 'tls.client.subject'), 1)
  t.equal(keyCount(line ?? '', 'tls.client.hash.sha256'), 1)
  t.match(lines.find((l) => l.msg === 'client certificate rejected'), { 'tls.client.subject': 'O=Partner,OU=payments,CN=svc', 'tls.client.issuer': String, 'mtls.code': 'FST_MTLS_FORBIDDEN' })
})

// ---------------------------------------------------------------- @fastify/rate-limit recipe

t.test('README recipe: @fastify/rate-limit keyed by the client certificate, either registration order', async (t) => {
  for (const order of ['mtls first', 'rate-limit first', 'rate-limit first, hook: preHandler']) {
    const app = Fastify({ https: { key: server.leaf.key.privateKeyPem, cert: server.leaf.pem, ca: partner.root.pem, requestCert: true, rejectUnauthorized: false } })
    const rateLimit = async (): Promise<void> => {
      // as in the README, with max: 2 instead of 100
      await app.register(fastifyRateLimit, {
        max: 2,
        timeWindow: '1 minute',
        keyGenerator: (request) => request.clientIdentity?.fingerprint256 ?? request.ip,
        ...(order.endsWith('preHandler') ? { hook: 'preHandler' as const } : {})
      })
    }
    if (order.startsWith('rate-limit first')) await rateLimit()
    await app.register(fastifyMtls, { ca: partner.root.pem })
    if (order === 'mtls first') await rateLimit()
    app.get('/', async (req) => req.clientIdentity?.subject.attributes.CN?.[0])
    await app.listen({ host: '127.0.0.1', port: 0 })
    t.teardown(async () => app.close())
    const url = `https://127.0.0.1:${(app.server.address() as { port: number }).port}`

    const a = client(partner.leaf)
    const b = client(second)
    const seen: string[] = []
    for (const [who, agent] of [['A', a], ['A', a], ['B', b], ['A', a], ['B', b], ['B', b]] as const) {
      seen.push(`${who} ${(await call(url, '/', agent)).status}`)
    }
    // same address, one budget per certificate: A's third request is refused while B still has two
    t.same(seen, ['A 200', 'A 200', 'B 200', 'A 429', 'B 200', 'B 429'], order)
    // a client without a certificate is refused by the plugin before rate-limit counts it
    t.equal((await call(url, '/', client())).status, 401, `${order}: no certificate`)
  }
})
