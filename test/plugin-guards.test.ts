// The plugin's guards over real TLS: every rejection code, modes, app.mtls.require(), route config,
// the global policy, every Policy field, enforce: false and the audit trail. A Fastify HTTPS
// server on 127.0.0.1 port 0, undici clients presenting certificates made while the tests run.
import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import type { Writable } from 'node:stream'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import fastifyAuth from '@fastify/auth'
import { Agent, request } from 'undici'
import fastifyMtls, { rejectionError, type ClientIdentity, type FastifyMtlsOptions, type MtlsRejection, type RejectionCode } from '../lib/index.js'
import { issue, makeChain, makeCrl, newKey, type Issued } from './helpers/pki.js'
import { logCapture, type Json } from './helpers/logs.js'

const HOUR = 60 * 60 * 1000
const DAY = 24 * HOUR
const now = Date.now()

// ---------------------------------------------------------------- PKI

const server = await makeChain({ kind: 'ec256', intermediates: 0, label: 'Server', leaf: { subject: 'CN=localhost', san: { dns: ['localhost'], ip: ['127.0.0.1'] }, extKeyUsage: ['serverAuth'] } })

// Fresh keys wherever a test pins or denies a key: pooled keys repeat across chains.
const fresh = async () => newKey('ec256', { fresh: true })

const partner = await makeChain({
  kind: 'ec256',
  label: 'Partner',
  root: { key: await fresh() },
  intermediate: { key: await fresh() },
  leaf: {
    subject: 'CN=svc,OU=payments,O=Partner',
    key: await fresh(),
    san: { dns: ['svc.partner.example'], uri: ['spiffe://partner.example/ns/prod/svc'], email: ['ops@partner.example'], ip: ['10.0.0.7'] }
  }
})
const partnerCa = partner.intermediates[0] as Issued
const other = await makeChain({
  kind: 'ec256',
  label: 'Other',
  root: { key: await fresh() },
  intermediate: { key: await fresh() },
  leaf: {
    subject: 'CN=svc,OU=sales,O=Other',
    key: await fresh(),
    san: { dns: ['svc.other.example'], uri: ['spiffe://other.example/ns/prod/svc'], email: ['ops@other.example'], ip: ['192.168.1.9'] }
  }
})
const stranger = await makeChain({ kind: 'ec256', intermediates: 0, label: 'Stranger' })

const byPartner = async (subject: string, extra: Partial<Parameters<typeof issue>[0]> = {}) =>
  issue({ subject, issuer: partnerCa, key: await newKey('ec256'), ...extra })

const intruder = await byPartner('CN=intruder,OU=sales,O=Partner', { key: await fresh() })
const expired = await byPartner('CN=expired,O=Partner', { notBefore: new Date(now - 10 * DAY), notAfter: new Date(now - DAY) })
const notYet = await byPartner('CN=not-yet,O=Partner', { notBefore: new Date(now + DAY), notAfter: new Date(now + 10 * DAY) })
const serverOnly = await byPartner('CN=server-only,O=Partner', { extKeyUsage: ['serverAuth'] })
const weak = await byPartner('CN=weak,O=Partner', { key: await newKey('rsa1024') })
const crlRevoked = await byPartner('CN=crl-revoked,O=Partner')
const deniedByFingerprint = await byPartner('CN=denied-fp,O=Partner', { key: await fresh() })
const deniedBySpki = await byPartner('CN=denied-spki,O=Partner', { key: await fresh() })
const deniedBySerial = await byPartner('CN=denied-serial,O=Partner', { key: await fresh() })
// root -> constrained CA (pathLen 0) -> sub CA -> leaf: the sub CA breaks the constraint
const constrained = await issue({ subject: 'CN=Partner Constrained CA,O=Fixture PKI', issuer: partner.root, key: await newKey('ec256'), ca: true, pathLen: 0 })
const subCa = await issue({ subject: 'CN=Partner Sub CA,O=Fixture PKI', issuer: constrained, key: await newKey('ec256'), ca: true })
const tooDeep = await issue({ subject: 'CN=too-deep,O=Partner', issuer: subCa, key: await newKey('ec256') })
// a second issuing CA whose only CRL is stale
const staleCa = await issue({ subject: 'CN=Partner Stale CA,O=Fixture PKI', issuer: partner.root, key: await newKey('ec256'), ca: true })
const staleLeaf = await issue({ subject: 'CN=stale,O=Partner', issuer: staleCa, key: await newKey('ec256') })

const crl = await makeCrl({ issuer: partnerCa, revoked: [{ serial: crlRevoked, reason: 1 }] })
const staleCrl = await makeCrl({ issuer: staleCa, thisUpdate: new Date(now - 10 * DAY), nextUpdate: new Date(now - DAY) })

const spkiOf = (c: Issued): string => createHash('sha256').update(c.key.spkiDer).digest('base64')
const hexOf = (fingerprint: string): string => fingerprint.replace(/:/g, '')
// RFC 4514 prints the last RDN first
const PARTNER_CA_DN = 'O=Fixture PKI,CN=Partner Intermediate CA 1'

// ---------------------------------------------------------------- clients

const agents: Agent[] = []
t.teardown(async () => { await Promise.all(agents.map(async (a) => a.close())) })

function client (leaf?: Issued, ...chain: Issued[]): Agent {
  const cert = leaf === undefined ? {} : { cert: [leaf, ...chain].map((c) => c.pem).join(''), key: leaf.key.privateKeyPem }
  const a = new Agent({ connect: { ca: server.root.pem, servername: 'localhost', ...cert } })
  agents.push(a)
  return a
}

const as = {
  none: client(),
  good: client(partner.leaf, partnerCa),
  intruder: client(intruder, partnerCa),
  other: client(other.leaf, other.intermediates[0] as Issued),
  stranger: client(stranger.leaf),
  expired: client(expired, partnerCa),
  notYet: client(notYet, partnerCa),
  tooDeep: client(tooDeep, subCa, constrained),
  serverOnly: client(serverOnly, partnerCa),
  weak: client(weak, partnerCa),
  crlRevoked: client(crlRevoked, partnerCa),
  deniedByFingerprint: client(deniedByFingerprint, partnerCa),
  deniedBySpki: client(deniedBySpki, partnerCa),
  deniedBySerial: client(deniedBySerial, partnerCa),
  stale: client(staleLeaf, staleCa)
}

interface Reply { status: number, body: any, text: string, headers: IncomingHttpHeaders }

async function call (base: string, path: string, dispatcher: Agent, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await request(`${base}${path}`, { dispatcher, headers })
  const text = await res.body.text()
  let body: unknown = text
  try { body = JSON.parse(text) } catch {}
  return { status: res.statusCode, body, text, headers: res.headers }
}

// ---------------------------------------------------------------- servers

const WARN = 40
const ERROR = 50
const rejectionLines = (lines: Json[]): Json[] => lines.filter((l) => l.level === WARN && l['mtls.code'] !== undefined)

/** What a route replies: who the plugin says the client is. */
function who (identity: ClientIdentity | null): Json | null {
  if (identity === null) return null
  return { cn: identity.subject.attributes.CN?.[0] ?? null, ou: identity.subject.attributes.OU?.[0] ?? null, anchor: identity.trustAnchor.name }
}

interface StartOptions {
  options?: Partial<FastifyMtlsOptions>
  /** routes added before the plugin is registered */
  before?: (app: FastifyInstance) => void
  /** routes added after the plugin has loaded */
  routes?: (app: FastifyInstance) => void | Promise<void>
  logs?: Writable
}

async function start (t: Test, s: StartOptions = {}): Promise<{ app: FastifyInstance, url: string }> {
  const app = Fastify({
    https: { key: server.leaf.key.privateKeyPem, cert: server.leaf.pem, ca: partner.root.pem, requestCert: true, rejectUnauthorized: false },
    ...(s.logs === undefined ? {} : { logger: { level: 'info', stream: s.logs } })
  }) as unknown as FastifyInstance
  s.before?.(app)
  await app.register(fastifyMtls, { ca: partner.root.pem, ...s.options })
  app.get('/', async (req) => ({ who: who(req.clientIdentity) }))
  await s.routes?.(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(async () => app.close())
  const { port } = app.server.address() as { port: number }
  return { app, url: `https://127.0.0.1:${port}` }
}

/** Fastify's error body for a rejection code, exactly. */
function errorBody (code: RejectionCode): Json {
  const error = rejectionError(code)
  return { statusCode: error.statusCode, code, error: error.statusCode === 401 ? 'Unauthorized' : 'Forbidden', message: error.message }
}

function rejected (t: Test, r: Reply, code: RejectionCode, what: string, todo?: string): void {
  const extra = todo === undefined ? {} : { todo }
  const expected = errorBody(code)
  t.equal(r.status, expected.statusCode, `${what}: status ${expected.statusCode as number}`, extra)
  t.same(r.body, expected, `${what}: ${code} body`, extra)
}

const OU_PAYMENTS = { subject: { OU: 'payments' } }

// ---------------------------------------------------------------- rejection codes

t.test('every rejection code the TLS source produces, with its status and body', async (t) => {
  const { url } = await start(t, {
    options: {
      crl: [crl.pem, staleCrl.pem],
      deny: [
        hexOf(deniedByFingerprint.cert.fingerprint256).toLowerCase(),
        spkiOf(deniedBySpki),
        { issuer: PARTNER_CA_DN, serialNumber: deniedBySerial.serialHex }
      ]
    },
    routes: (app) => {
      app.get('/secret', { config: { mtls: { subject: { OU: 'top-secret-unit' } } } }, async () => 'secret')
      app.get('/issuer', async (req) => req.clientIdentity?.issuer.rfc4514)
    }
  })

  const ok = await call(url, '/', as.good)
  t.equal(ok.status, 200, 'the CRL and the deny list leave a good certificate alone')
  t.same(ok.body, { who: { cn: 'svc', ou: 'payments', anchor: 'O=Fixture PKI,CN=Partner Root CA' } })
  t.equal((await call(url, '/issuer', as.good)).text, PARTNER_CA_DN, 'the deny entry names the issuer as identity.issuer.rfc4514 prints it')

  const cases: Array<[keyof typeof as, RejectionCode, string]> = [
    ['none', 'FST_MTLS_CERT_MISSING', 'no certificate'],
    ['stranger', 'FST_MTLS_CERT_UNTRUSTED', 'a certificate from an unknown CA'],
    ['expired', 'FST_MTLS_CERT_EXPIRED', 'a leaf past notAfter (the TLS layer lets it through)'],
    ['notYet', 'FST_MTLS_CERT_NOT_YET_VALID', 'a leaf before notBefore'],
    ['tooDeep', 'FST_MTLS_CHAIN_INVALID', 'a sub CA under a pathLen 0 CA'],
    ['serverOnly', 'FST_MTLS_CERT_PURPOSE', 'a serverAuth-only EKU'],
    ['weak', 'FST_MTLS_CERT_WEAK', 'an RSA-1024 leaf (the TLS layer accepts the handshake)'],
    ['crlRevoked', 'FST_MTLS_CERT_REVOKED', 'listed in the issuing CA\'s CRL'],
    ['deniedByFingerprint', 'FST_MTLS_CERT_REVOKED', 'deny by fingerprint'],
    ['deniedBySpki', 'FST_MTLS_CERT_REVOKED', 'deny by SPKI hash'],
    ['deniedBySerial', 'FST_MTLS_CERT_REVOKED', 'deny by { issuer, serialNumber }'],
    ['stale', 'FST_MTLS_REVOCATION_UNKNOWN', 'the issuing CA\'s only CRL is stale']
  ]
  for (const [name, code, what] of cases) rejected(t, await call(url, '/', as[name]), code, what)

  const forbidden = await call(url, '/secret', as.good)
  rejected(t, forbidden, 'FST_MTLS_FORBIDDEN', 'a route policy that does not match')
  t.notMatch(forbidden.text, /top-secret-unit|OU/, 'the client is not told what the policy expects')
  t.notMatch(forbidden.text, /payments|svc/, 'nor what its own certificate says')
})

t.test('maxChainLength: 2 refuses a path through an intermediate (CHAIN_INVALID)', async (t) => {
  const { url } = await start(t, { options: { maxChainLength: 2 } })
  rejected(t, await call(url, '/', as.good), 'FST_MTLS_CHAIN_INVALID', 'leaf + intermediate + root is 3 certificates')
})

// ---------------------------------------------------------------- optional mode, guards, route config

t.test('optional mode, app.mtls.require(), @fastify/auth and route config', async (t) => {
  const apiKey = async (req: FastifyRequest): Promise<void> => {
    if (req.headers['x-api-key'] !== 'let-me-in') throw Object.assign(new Error('API key required'), { statusCode: 401 })
  }
  const { url } = await start(t, {
    options: { mode: 'optional', wwwAuthenticate: 'Mutual realm="api"' },
    // registered before the plugin: the plugin's onRoute hook never sees it
    before: (app) => {
      app.get('/before', { config: { mtls: OU_PAYMENTS } }, async (req) => ({ who: who(req.clientIdentity) }))
    },
    routes: async (app) => {
      await app.register(fastifyAuth)
      const reply = async (req: FastifyRequest) => ({ who: who(req.clientIdentity) })
      app.get('/guard/on-request', { onRequest: app.mtls.require(OU_PAYMENTS) }, reply)
      app.get('/guard/pre-handler', { preHandler: app.mtls.require(OU_PAYMENTS) }, reply)
      app.get('/guard/any', { onRequest: app.mtls.require() }, reply)
      app.get('/auth', { onRequest: app.auth([app.mtls.require(OU_PAYMENTS), apiKey]) }, reply)
      app.get('/after', { config: { mtls: OU_PAYMENTS } }, reply)
      app.get('/any', { config: { mtls: true } }, reply)
      app.get('/exempt', { config: { mtls: false } }, reply)
    }
  })

  t.test('no certificate: 200 with clientIdentity null', async (t) => {
    const r = await call(url, '/', as.none)
    t.equal(r.status, 200)
    t.same(r.body, { who: null })
    t.equal(r.headers['www-authenticate'], undefined, 'no challenge on a 200')
    t.same((await call(url, '/', as.good)).body, { who: { cn: 'svc', ou: 'payments', anchor: 'O=Fixture PKI,CN=Partner Root CA' } }, 'a good certificate gets an identity')
  })

  t.test('a presented certificate that fails is still refused', async (t) => {
    rejected(t, await call(url, '/', as.expired), 'FST_MTLS_CERT_EXPIRED', 'expired')
    rejected(t, await call(url, '/', as.stranger), 'FST_MTLS_CERT_UNTRUSTED', 'untrusted')
  })

  for (const path of ['/guard/on-request', '/guard/pre-handler']) {
    t.test(`app.mtls.require() as ${path.slice(7)}`, async (t) => {
      const missing = await call(url, path, as.none)
      rejected(t, missing, 'FST_MTLS_CERT_MISSING', 'no identity')
      t.equal(missing.headers['www-authenticate'], 'Mutual realm="api"', 'the 401 carries the configured challenge')
      const mismatch = await call(url, path, as.intruder)
      rejected(t, mismatch, 'FST_MTLS_FORBIDDEN', 'OU sales')
      t.equal(mismatch.headers['www-authenticate'], undefined, 'no challenge on a 403')
      t.notMatch(mismatch.text, /payments/, 'the expected OU is not echoed')
      const match = await call(url, path, as.good)
      t.equal(match.status, 200)
      t.same(match.body, { who: { cn: 'svc', ou: 'payments', anchor: 'O=Fixture PKI,CN=Partner Root CA' } })
    })
  }

  t.test('app.mtls.require() without a policy: any verified identity', async (t) => {
    rejected(t, await call(url, '/guard/any', as.none), 'FST_MTLS_CERT_MISSING', 'no identity')
    t.equal((await call(url, '/guard/any', as.intruder)).status, 200)
  })

  t.test('composes with @fastify/auth (OR)', async (t) => {
    const key = { 'x-api-key': 'let-me-in' }
    t.equal((await call(url, '/auth', as.good)).status, 200, 'the certificate strategy passes')
    const byKey = await call(url, '/auth', as.none, key)
    t.equal(byKey.status, 200, 'no certificate, but the other strategy passes')
    t.same(byKey.body, { who: null })
    t.equal(byKey.headers['www-authenticate'], undefined, 'a 200 carries no certificate challenge')
    t.equal((await call(url, '/auth', as.intruder, key)).status, 200, 'policy mismatch, but the other strategy passes')
    t.equal((await call(url, '/auth', as.none)).status, 401, 'both fail: refused')
    t.equal((await call(url, '/auth', as.intruder)).status, 401, 'both fail: refused (the last strategy\'s error)')
  })

  for (const path of ['/before', '/after']) {
    t.test(`config: { mtls: policy } on a route registered ${path.slice(1)} the plugin`, async (t) => {
      rejected(t, await call(url, path, as.none), 'FST_MTLS_CERT_MISSING', 'optional mode, but the route needs an identity')
      rejected(t, await call(url, path, as.intruder), 'FST_MTLS_FORBIDDEN', 'OU sales')
      const match = await call(url, path, as.good)
      t.equal(match.status, 200)
      t.same(match.body, { who: { cn: 'svc', ou: 'payments', anchor: 'O=Fixture PKI,CN=Partner Root CA' } })
    })
  }

  t.test('config: { mtls: true } needs any identity in optional mode', async (t) => {
    rejected(t, await call(url, '/any', as.none), 'FST_MTLS_CERT_MISSING', 'no identity')
    const r = await call(url, '/any', as.intruder)
    t.equal(r.status, 200)
    t.same(r.body, { who: { cn: 'intruder', ou: 'sales', anchor: 'O=Fixture PKI,CN=Partner Root CA' } })
  })

  t.test('config: { mtls: false } exempts the route', async (t) => {
    const none = await call(url, '/exempt', as.none)
    t.equal(none.status, 200)
    t.same(none.body, { who: null })
    const good = await call(url, '/exempt', as.good)
    t.equal(good.status, 200)
    t.same(good.body, { who: null }, 'clientIdentity stays null even with a good certificate')
  })
})

t.test('config: { mtls: false } exempts a route from required mode, even for a failing certificate', async (t) => {
  const { url } = await start(t, {
    routes: (app) => { app.get('/health', { config: { mtls: false } }, async (req) => ({ who: who(req.clientIdentity) })) }
  })
  rejected(t, await call(url, '/', as.none), 'FST_MTLS_CERT_MISSING', 'the rest of the app needs a certificate')
  for (const [name, dispatcher] of [['no certificate', as.none], ['an untrusted certificate', as.stranger], ['a good certificate', as.good]] as const) {
    const r = await call(url, '/health', dispatcher)
    t.equal(r.status, 200, `${name}: 200`)
    t.same(r.body, { who: null }, `${name}: clientIdentity null`)
  }
})

t.test('an invalid route config', async (t) => {
  t.test('added after the plugin has loaded: the route registration throws FST_MTLS_INVALID_OPTIONS', async (t) => {
    const app = Fastify({ https: { key: server.leaf.key.privateKeyPem, cert: server.leaf.pem, ca: partner.root.pem, requestCert: true, rejectUnauthorized: false } })
    t.teardown(async () => app.close())
    await app.register(fastifyMtls, { ca: partner.root.pem })
    t.throws(() => app.get('/bad', { config: { mtls: { dns: /foo/ } } }, async () => 'x'),
      { code: 'FST_MTLS_INVALID_OPTIONS', message: /route GET \/bad: policy\.dns: .*anchored with \^ and \$/ })
  })

  t.test('added in a plugin registered after it: ready() rejects with FST_MTLS_INVALID_OPTIONS', async (t) => {
    const app = Fastify({ https: { key: server.leaf.key.privateKeyPem, cert: server.leaf.pem, ca: partner.root.pem, requestCert: true, rejectUnauthorized: false } })
    t.teardown(async () => app.close())
    app.register(fastifyMtls, { ca: partner.root.pem })
    app.register(async (child) => {
      child.get('/bad', { config: { mtls: { dns: /foo/ } } }, async () => 'x')
    })
    await t.rejects(async () => app.ready(), { code: 'FST_MTLS_INVALID_OPTIONS', message: /route GET \/bad: policy\.dns: .*anchored/ })
  })

  t.test('added before the plugin: not seen at ready(); the request fails closed', async (t) => {
    const { app, url } = await start(t, {
      before: (app) => { app.get('/bad', { config: { mtls: { dns: /secret-dns-pattern/ } } }, async () => 'x') }
    })
    t.ok(app.hasRoute({ method: 'GET', url: '/bad' }), 'ready() resolved with the route in place')
    const r = await call(url, '/bad', as.good)
    t.equal(r.status, 500, 'refused, not served')
    t.equal(r.body.code, 'FST_MTLS_INVALID_OPTIONS')
    t.notMatch(r.text, /secret-dns-pattern/, 'the reply does not echo the route policy')
  })
})

// ---------------------------------------------------------------- global policy

t.test('a global policy: 403 for non-matching identities on every route except exempt ones', async (t) => {
  const { url } = await start(t, {
    options: { policy: OU_PAYMENTS },
    routes: (app) => {
      app.get('/other', async (req) => ({ who: who(req.clientIdentity) }))
      app.get('/narrow', { config: { mtls: { subject: { CN: 'svc' } } } }, async (req) => ({ who: who(req.clientIdentity) }))
      app.get('/health', { config: { mtls: false } }, async (req) => ({ who: who(req.clientIdentity) }))
    }
  })
  for (const path of ['/', '/other', '/narrow']) {
    const r = await call(url, path, as.intruder)
    rejected(t, r, 'FST_MTLS_FORBIDDEN', `intruder on ${path}`)
    t.notMatch(r.text, /payments/, 'the expected OU is not echoed')
    t.equal((await call(url, path, as.good)).status, 200, `good on ${path}`)
  }
  const health = await call(url, '/health', as.intruder)
  t.equal(health.status, 200, 'the exempt route')
  t.same(health.body, { who: null })
})

// ---------------------------------------------------------------- every policy field

t.test('every Policy field through a real request', async (t) => {
  const { stream, lines } = logCapture()
  const fieldPolicies: Record<string, FastifyMtlsOptions['policy'] & object> = {
    anchor: { anchor: 'acme-anchor-label' },
    subject: { subject: { CN: 'svc', OU: 'payments', O: 'Partner' } },
    issuer: { issuer: { CN: 'Partner Intermediate CA 1', O: 'Fixture PKI' } },
    dns: { dns: '*.partner.example' },
    uri: { uri: 'spiffe://partner.example/ns/*/svc' },
    email: { email: /^[a-z]+@partner\.example$/ },
    ip: { ip: '10.0.0.0/8' },
    spiffeId: { spiffeId: 'spiffe://partner.example/**' },
    fingerprint256: { fingerprint256: hexOf(partner.leaf.cert.fingerprint256).toLowerCase() },
    spkiSha256: { spkiSha256: spkiOf(partner.leaf) },
    issuerSpkiSha256: { issuerSpkiSha256: spkiOf(partnerCa).replace(/\+/g, '-').replace(/\//g, '_').replace(/=$/, '') },
    checkSync: { check: (identity, req) => identity.san.dns.includes('svc.partner.example') && req.headers['x-check'] !== 'no' },
    checkAsync: { check: async (identity) => { await Promise.resolve(); return identity.subject.attributes.O?.[0] === 'Partner' } },
    anyOf: { anyOf: [{ dns: 'nothing.example' }, { email: 'ops@partner.example', anchor: 'acme-anchor-label' }] }
  }
  const { url } = await start(t, {
    logs: stream,
    options: { ca: [{ name: 'acme-anchor-label', cert: partner.root.pem }, { name: 'other-anchor-label', cert: other.root.pem }] },
    routes: (app) => {
      for (const [name, policy] of Object.entries(fieldPolicies)) {
        app.get(`/f/${name}`, { config: { mtls: policy } }, async (req) => ({ who: who(req.clientIdentity) }))
      }
      app.get('/f/checkThrows', { config: { mtls: { check: () => { throw new Error('sync check exploded') } } } }, async () => 'never')
      app.get('/f/checkRejects', { config: { mtls: { check: async () => { throw new Error('async check exploded') } } } }, async () => 'never')
    }
  })
  t.equal((await call(url, '/', as.other)).status, 200, 'the other CA is trusted too')

  for (const name of Object.keys(fieldPolicies)) {
    const match = await call(url, `/f/${name}`, as.good)
    t.equal(match.status, 200, `${name}: match`)
    t.same(match.body, { who: { cn: 'svc', ou: 'payments', anchor: 'acme-anchor-label' } }, `${name}: the identity`)
    const mismatch = await call(url, `/f/${name}`, as.other)
    rejected(t, mismatch, 'FST_MTLS_FORBIDDEN', `${name}: mismatch`)
    t.notMatch(mismatch.text, /anchor-label|partner|payments|Partner/, `${name}: no policy value in the reply`)
  }
  rejected(t, await call(url, '/f/checkSync', as.good, { 'x-check': 'no' }), 'FST_MTLS_FORBIDDEN', 'check sees the request')

  for (const [path, message] of [['/f/checkThrows', 'sync check exploded'], ['/f/checkRejects', 'async check exploded']] as const) {
    rejected(t, await call(url, path, as.good), 'FST_MTLS_FORBIDDEN', `${path}: a failing check counts as no match`)
    const logged = lines.find((l) => l.level === ERROR && l.err?.message === message)
    t.ok(logged, `${path}: an error line`)
    t.match(logged?.msg, /check threw/)
  }
})

// ---------------------------------------------------------------- enforce: false

t.test('enforce: false lets failures through and logs what would be rejected', async (t) => {
  const { stream, lines } = logCapture()
  const { url } = await start(t, {
    logs: stream,
    options: { enforce: false },
    routes: (app) => {
      app.get('/strict', { config: { mtls: OU_PAYMENTS } }, async (req) => ({ who: who(req.clientIdentity) }))
      app.get('/guarded', { onRequest: app.mtls.require(OU_PAYMENTS) }, async (req) => ({ who: who(req.clientIdentity) }))
    }
  })
  const cases: Array<[string, string, Agent, RejectionCode, Json | null]> = [
    ['an untrusted certificate', '/', as.stranger, 'FST_MTLS_CERT_UNTRUSTED', null],
    ['an expired certificate', '/', as.expired, 'FST_MTLS_CERT_EXPIRED', null],
    ['no certificate', '/', as.none, 'FST_MTLS_CERT_MISSING', null],
    ['a route policy mismatch', '/strict', as.intruder, 'FST_MTLS_FORBIDDEN', { cn: 'intruder', ou: 'sales', anchor: 'O=Fixture PKI,CN=Partner Root CA' }],
    ['a guard mismatch', '/guarded', as.intruder, 'FST_MTLS_FORBIDDEN', { cn: 'intruder', ou: 'sales', anchor: 'O=Fixture PKI,CN=Partner Root CA' }]
  ]
  for (const [what, path, dispatcher, code, identity] of cases) {
    const before = lines.length
    const r = await call(url, path, dispatcher)
    t.equal(r.status, 200, `${what}: let through`)
    t.same(r.body, { who: identity }, `${what}: clientIdentity ${identity === null ? 'null' : 'set'}`)
    const line = rejectionLines(lines.slice(before))[0]
    t.equal(line?.['mtls.code'], code, `${what}: logged as ${code}`)
    t.match(line?.msg, /would be rejected/, `${what}: the warn line says "would be rejected"`)
  }
  t.equal((await call(url, '/strict', as.good)).status, 200)
})

// ---------------------------------------------------------------- audit

t.test('audit: log lines, hooks and the WWW-Authenticate option', async (t) => {
  const { stream, lines } = logCapture()
  const seen: { authenticated: Array<[ClientIdentity, FastifyRequest]>, rejected: Array<[MtlsRejection, FastifyRequest]> } = { authenticated: [], rejected: [] }
  let hooks: 'record' | 'throw' | 'reject' = 'record'
  const hook = async <A>(list: A[], item: A): Promise<void> => {
    if (hooks === 'reject') throw new Error('hook rejected')
    list.push(item)
  }
  const { url } = await start(t, {
    logs: stream,
    options: {
      wwwAuthenticate: 'Mutual realm="api"',
      // plain functions: a sync throw must be caught as well as a rejected promise
      onAuthenticated: (identity, req) => {
        if (hooks === 'throw') throw new Error('hook threw synchronously')
        return hook(seen.authenticated, [identity, req])
      },
      onRejected: (rejection, req) => {
        if (hooks === 'throw') throw new Error('hook threw synchronously')
        return hook(seen.rejected, [rejection, req])
      }
    },
    routes: (app) => {
      app.get('/strict', { config: { mtls: OU_PAYMENTS } }, async () => 'ok')
      app.get('/guarded', { onRequest: app.mtls.require(OU_PAYMENTS) }, async () => 'ok')
    }
  })

  t.test('a rejection writes a warn line with the OpenTelemetry fields', async (t) => {
    const before = lines.length
    const r = await call(url, '/', as.stranger)
    rejected(t, r, 'FST_MTLS_CERT_UNTRUSTED', 'stranger')
    t.equal(r.headers['www-authenticate'], 'Mutual realm="api"', 'the 401 carries the configured challenge')
    const found = rejectionLines(lines.slice(before))
    t.equal(found.length, 1, 'one line')
    const line = found[0] as Json
    t.equal(line.level, WARN)
    t.equal(line.msg, 'client certificate rejected')
    t.equal(line['mtls.code'], 'FST_MTLS_CERT_UNTRUSTED')
    t.type(line['mtls.reason'], 'string')
    t.ok((line['mtls.reason'] as string).length > 0, 'mtls.reason says what failed')
    t.equal(line['tls.client.subject'], 'O=Fixture PKI,CN=Stranger leaf')
    t.equal(line['tls.client.issuer'], 'O=Fixture PKI,CN=Stranger Root CA')
    t.equal(line['tls.client.hash.sha256'], hexOf(stranger.leaf.cert.fingerprint256))
    t.equal(line['tls.client.serial_number'], stranger.leaf.serialHex)
    t.equal(line['tls.client.not_after'], new Date(stranger.leaf.cert.validTo).toISOString())
    t.match(line['client.address'], /^(::ffff:)?127\.0\.0\.1$/)
  })

  t.test('a 403 carries no challenge and is logged with the certificate', async (t) => {
    const before = lines.length
    const r = await call(url, '/strict', as.intruder)
    rejected(t, r, 'FST_MTLS_FORBIDDEN', 'route policy')
    t.equal(r.headers['www-authenticate'], undefined)
    const line = rejectionLines(lines.slice(before))[0]
    t.equal(line?.['mtls.code'], 'FST_MTLS_FORBIDDEN')
    t.equal(line?.['tls.client.subject'], 'O=Partner,OU=sales,CN=intruder')
    t.match(line?.['mtls.reason'], /GET \/strict/)
  })

  t.test('a guard 403 is logged with the certificate too', async (t) => {
    const before = lines.length
    const r = await call(url, '/guarded', as.intruder)
    rejected(t, r, 'FST_MTLS_FORBIDDEN', 'guard')
    const line = rejectionLines(lines.slice(before))[0]
    t.equal(line?.['mtls.code'], 'FST_MTLS_FORBIDDEN')
    t.equal(line?.['tls.client.subject'], 'O=Partner,OU=sales,CN=intruder', 'tls.client.subject')
    t.equal(line?.['tls.client.hash.sha256'], hexOf(intruder.cert.fingerprint256), 'tls.client.hash.sha256')
    const rejection = seen.rejected.at(-1)?.[0]
    t.equal(rejection?.identity?.subject.attributes.CN?.[0], 'intruder', 'onRejected gets the identity')
    t.not(rejection?.certificate, null, 'onRejected gets the certificate summary')
  })

  t.test('onAuthenticated and onRejected get the right arguments', async (t) => {
    seen.authenticated.length = 0
    seen.rejected.length = 0
    const ok = await call(url, '/', as.good)
    t.equal(ok.status, 200)
    t.equal(ok.headers['www-authenticate'], undefined, 'no challenge on a 200')
    t.equal(seen.authenticated.length, 1, 'onAuthenticated once')
    const [identity, req] = seen.authenticated[0] as [ClientIdentity, FastifyRequest]
    t.equal(identity.fingerprint256, partner.leaf.cert.fingerprint256)
    t.equal(identity.subject.rfc4514, 'O=Partner,OU=payments,CN=svc')
    t.equal(req.url, '/')
    t.equal(req.clientIdentity, identity, 'the request already carries the identity')
    t.equal(seen.rejected.length, 0, 'onRejected not called for a success')

    await call(url, '/', as.expired)
    await call(url, '/strict', as.intruder)
    t.equal(seen.rejected.length, 2, 'onRejected once per rejection')
    const [expiredRejection, expiredReq] = seen.rejected[0] as [MtlsRejection, FastifyRequest]
    t.match(expiredRejection, {
      code: 'FST_MTLS_CERT_EXPIRED',
      statusCode: 401,
      message: rejectionError('FST_MTLS_CERT_EXPIRED').message,
      identity: null,
      enforced: true,
      certificate: {
        subject: 'O=Partner,CN=expired',
        issuer: PARTNER_CA_DN,
        fingerprint256: expired.cert.fingerprint256,
        serialNumber: expired.serialHex
      }
    })
    t.type(expiredRejection.reason, 'string')
    t.equal(expiredReq.url, '/')
    const [forbidden, forbiddenReq] = seen.rejected[1] as [MtlsRejection, FastifyRequest]
    t.match(forbidden, { code: 'FST_MTLS_FORBIDDEN', statusCode: 403, enforced: true, certificate: { subject: 'O=Partner,OU=sales,CN=intruder' } })
    t.equal(forbidden.identity?.fingerprint256, intruder.cert.fingerprint256, 'the identity that the policy refused')
    t.equal(forbiddenReq.url, '/strict')

    await call(url, '/', as.none)
    t.match(seen.rejected[2]?.[0], { code: 'FST_MTLS_CERT_MISSING', statusCode: 401, identity: null, certificate: null })
  })

  for (const mode of ['throw', 'reject'] as const) {
    t.test(`hooks that ${mode === 'throw' ? 'throw' : 'reject'}: an error line, the outcome unchanged`, async (t) => {
      hooks = mode
      t.teardown(() => { hooks = 'record' })
      const message = mode === 'throw' ? 'hook threw synchronously' : 'hook rejected'
      let before = lines.length
      t.equal((await call(url, '/', as.good)).status, 200, '200 stays 200')
      let err = lines.slice(before).find((l) => l.level === ERROR)
      t.equal(err?.err?.message, message)
      t.match(err?.msg, /onAuthenticated threw; the outcome is unchanged/)

      before = lines.length
      const r = await call(url, '/', as.stranger)
      rejected(t, r, 'FST_MTLS_CERT_UNTRUSTED', '401 stays 401')
      t.equal(r.headers['www-authenticate'], 'Mutual realm="api"')
      err = lines.slice(before).find((l) => l.level === ERROR)
      t.equal(err?.err?.message, message)
      t.match(err?.msg, /onRejected threw; the outcome is unchanged/)
    })
  }
})

t.test('rejectionLogLimit: 2 lines a minute, then the suppressed count', async (t) => {
  const { stream, lines } = logCapture()
  // The rejection log reads its clock once, when the plugin registers: move that clock, not a timer.
  const realNow = Date.now
  let skew = 0
  Date.now = () => realNow() + skew
  let url: string
  try {
    ({ url } = await start(t, { logs: stream, options: { rejectionLogLimit: 2 } }))
  } finally {
    Date.now = realNow
  }
  for (let i = 0; i < 5; i++) rejected(t, await call(url, '/', as.stranger), 'FST_MTLS_CERT_UNTRUSTED', `rejection ${i + 1}`)
  const first = rejectionLines(lines)
  t.equal(first.length, 2, 'only 2 lines for 5 rejections within a minute')
  t.notOk(first.some((l) => 'mtls.suppressed' in l))

  skew = 61_000
  rejected(t, await call(url, '/', as.stranger), 'FST_MTLS_CERT_UNTRUSTED', 'a minute later')
  const later = rejectionLines(lines).slice(2)
  t.equal(later.length, 1, 'logging again')
  t.equal(later[0]?.['mtls.suppressed'], 3, 'with the count of lines left out')
})
