// RFC 8705 certificate-bound access tokens: app.mtls.requireBoundToken() over real TLS with real
// signed JWTs (@fastify/jwt, ES256 and HS256). A token is accepted only when its cnf["x5t#S256"] is
// the base64url SHA-256 thumbprint of the certificate the request was authenticated with; every
// other shape is 401 FST_MTLS_TOKEN_NOT_BOUND with a Bearer invalid_token challenge, never a 500.
// Also: the claims getter, @fastify/auth in both relations, and the forwarded source (the
// thumbprint is that of the forwarded certificate the plugin verified, nothing else).
// Shared fixtures: test/helpers/forwarded.ts (PKI, apps on 127.0.0.1 port 0, undici clients).
import t, { type Test } from 'tap'
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fastifyAuth from '@fastify/auth'
import fastifyJwt from '@fastify/jwt'
import type { MtlsRejection } from '../lib/index.js'
import { issue, newKey, type Issued } from './helpers/pki.js'
import {
  alice, bob, call, closeAgents, edgeProxy, logCapture, nginxEncode, partner, partnerCa, rejected, start, tlsAgent, xfcc, XFCC,
  type Json, type Reply
} from './helpers/forwarded.js'

declare module 'fastify' {
  interface FastifyRequest {
    tokenClaims?: unknown
  }
}

t.teardown(closeAgents)

const BEARER = 'Bearer error="invalid_token", error_description="the token is not bound to this client certificate"'
const ERROR = 50

const sha256 = (c: Issued): Buffer => createHash('sha256').update(c.der).digest()
const thumb = (c: Issued): string => sha256(c).toString('base64url')

// A certificate whose thumbprint has a '-' or '_': its standard-base64 form differs from the base64url one.
let carol: Issued
do {
  carol = await issue({ subject: 'CN=carol,OU=sales,O=Partner', issuer: partnerCa, key: await newKey('ec256') })
} while (!/[-_]/.test(thumb(carol)))

/** A token refusal: 401 FST_MTLS_TOKEN_NOT_BOUND, the Fastify error body, the Bearer challenge. */
function notBound (t: Test, r: Reply, what: string, todo?: string): void {
  rejected(t, r, 'FST_MTLS_TOKEN_NOT_BOUND', what, todo)
  t.equal(r.headers['www-authenticate'], BEARER, `${what}: the RFC 6750 Bearer challenge`, todo === undefined ? {} : { todo })
}

const b64json = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url')
const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

// ---------------------------------------------------------------- direct TLS, ES256 tokens

const es256 = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const jwtKeys = {
  private: es256.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  public: es256.publicKey.export({ type: 'spki', format: 'pem' }) as string
}
/** A compact ES256 JWS made by hand (the signature in the IEEE P1363 form JWS asks for). */
function es256Token (payload: Json, key: KeyObject): string {
  const input = `${b64json({ alg: 'ES256', typ: 'JWT' })}.${b64json(payload)}`
  return `${input}.${sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`
}
const rejections: MtlsRejection[] = []
const logs = logCapture()

const verifyJwt = async (request: FastifyRequest): Promise<void> => { await request.jwtVerify() }
const reply = async (request: FastifyRequest): Promise<Json> => ({
  sub: (request.user as Json | null)?.sub ?? null,
  cn: request.clientIdentity?.subject.attributes.CN?.[0] ?? null,
  thumbprint: request.clientIdentity?.thumbprintSha256 ?? null,
  source: request.clientIdentity?.source ?? null
})

const direct = await start(t, {
  transport: 'https',
  logs: logs.stream,
  options: { mode: 'optional', intermediates: partnerCa.pem, wwwAuthenticate: 'Mutual realm="api"', onRejected: (r) => { rejections.push(r) } },
  routes: async (app) => {
    await app.register(fastifyJwt, { secret: jwtKeys, sign: { algorithm: 'ES256', expiresIn: 300 }, verify: { algorithms: ['ES256'] } })
    await app.register(fastifyAuth)
    const bound = app.mtls.requireBoundToken()
    app.get('/bound', { preHandler: [verifyJwt, bound] }, reply)
    app.get('/bound/on-request', { onRequest: [verifyJwt, bound] }, reply)
    // the guard without a verified token: no claims
    app.get('/unverified', { preHandler: bound }, reply)
    // claims kept somewhere else than request.user
    app.get('/getter', {
      preHandler: [
        async (request) => { request.tokenClaims = app.jwt.verify(String(request.headers['x-access-token'])) },
        app.mtls.requireBoundToken({ claims: (request) => request.tokenClaims })
      ]
    }, reply)
    app.get('/getter/throws', {
      preHandler: app.mtls.requireBoundToken({ claims: () => { throw new Error('claims store down: sekrit-detail') } })
    }, reply)
    app.get('/getter/raw-token', {
      preHandler: app.mtls.requireBoundToken({ claims: (request) => request.headers.authorization?.slice(7) })
    }, reply)

    // @fastify/auth: the certificate guard and the token check
    const tokenCheck = async function (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply): Promise<void> {
      await request.jwtVerify()
      await bound.call(this, request, reply)
    }
    app.get('/and', { preHandler: app.auth([app.mtls.require({ subject: { OU: 'sales' } }), tokenCheck], { relation: 'and' }) }, reply)
    app.get('/or', { preHandler: app.auth([app.mtls.require({ subject: { OU: 'payments' } }), tokenCheck], { relation: 'or' }) }, reply)
  }
})
const app = direct.app
const url = direct.url

/** An ES256 token signed by the app's key, with `extra` claims. */
const token = (extra: Json): string => app.jwt.sign({ sub: 'partner-client', ...extra })
const boundTo = (c: Issued): string => token({ cnf: { 'x5t#S256': thumb(c) } })

const as = {
  none: tlsAgent(),
  alice: tlsAgent(alice, [partnerCa]),
  bob: tlsAgent(bob, [partnerCa]),
  carol: tlsAgent(carol, [partnerCa]),
  svc: tlsAgent(partner.leaf, [partnerCa])
}

t.test('the thumbprint is the base64url SHA-256 of the DER certificate', async (t) => {
  const r = await call(url, '/', { dispatcher: as.alice })
  t.equal(r.status, 200)
  const seen = await call(url, '/bound', { dispatcher: as.alice, headers: bearer(boundTo(alice)) })
  t.equal(seen.body.thumbprint, thumb(alice))
  t.match(seen.body.thumbprint, /^[A-Za-z0-9_-]{43}$/)
  t.match(thumb(carol), /[-_]/, 'the carol fixture has a base64url-only character')
})

t.test('a token bound to the calling certificate: 200', async (t) => {
  for (const [agent, cert, cn] of [[as.alice, alice, 'alice'], [as.bob, bob, 'bob'], [as.carol, carol, 'carol'], [as.svc, partner.leaf, 'svc']] as const) {
    for (const path of ['/bound', '/bound/on-request']) {
      const r = await call(url, path, { dispatcher: agent, headers: bearer(boundTo(cert)) })
      t.equal(r.status, 200, `${cn} ${path}`)
      t.same(r.body, { sub: 'partner-client', cn, thumbprint: thumb(cert), source: 'tls' }, `${cn} ${path}: the verified claims and identity`)
      t.equal(r.headers['www-authenticate'], undefined, 'no challenge on a 200')
    }
  }
  const extra = token({ cnf: { 'x5t#S256': thumb(alice), kid: 'extra-member' }, scope: 'claims:read' })
  t.equal((await call(url, '/bound', { dispatcher: as.alice, headers: bearer(extra) })).status, 200, 'other cnf members and claims alongside x5t#S256')
})

t.test('a token bound to another certificate: 401 FST_MTLS_TOKEN_NOT_BOUND', async (t) => {
  rejections.length = 0
  for (const path of ['/bound', '/bound/on-request']) {
    notBound(t, await call(url, path, { dispatcher: as.bob, headers: bearer(boundTo(alice)) }), `alice's token presented by bob (${path})`)
  }
  notBound(t, await call(url, '/bound', { dispatcher: as.alice, headers: bearer(boundTo(bob)) }), "bob's token presented by alice")
  notBound(t, await call(url, '/bound', { dispatcher: as.alice, headers: bearer(boundTo(partnerCa)) }), 'bound to the issuing CA')
  t.same(rejections.map((r) => [r.code, r.reason, r.identity?.subject.attributes.CN?.[0]]), [
    ['FST_MTLS_TOKEN_NOT_BOUND', 'the token is bound to another certificate', 'bob'],
    ['FST_MTLS_TOKEN_NOT_BOUND', 'the token is bound to another certificate', 'bob'],
    ['FST_MTLS_TOKEN_NOT_BOUND', 'the token is bound to another certificate', 'alice'],
    ['FST_MTLS_TOKEN_NOT_BOUND', 'the token is bound to another certificate', 'alice']
  ], 'reported with the identity and the reason')

  // one connection, two tokens: judged per request
  const one = tlsAgent(alice, [partnerCa])
  t.equal((await call(url, '/bound', { dispatcher: one, headers: bearer(boundTo(alice)) })).status, 200)
  notBound(t, await call(url, '/bound', { dispatcher: one, headers: bearer(boundTo(bob)) }), 'the next request on the same connection')
  t.equal((await call(url, '/bound', { dispatcher: one, headers: bearer(boundTo(alice)) })).status, 200)
})

t.test('every malformed binding: 401 FST_MTLS_TOKEN_NOT_BOUND, never a 500', async (t) => {
  const raw = sha256(carol)
  const b64u = thumb(carol)
  const std = raw.toString('base64')
  // 43 characters carry 258 bits: the last character's two low bits are unused
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const nonCanonical = b64u.slice(0, 42) + alphabet[alphabet.indexOf(b64u[42]!) ^ 1]!
  t.same(Buffer.from(nonCanonical, 'base64url'), raw, 'the non-canonical form decodes to the same bytes')
  const x5t = (v: unknown): Json => ({ cnf: { 'x5t#S256': v } })
  const cases: Array<[string, Json, string?]> = [
    ['padded base64url (=)', x5t(b64u + '=')],
    ['standard base64, padded', x5t(std)],
    ['standard base64 without padding (+ /)', x5t(std.replace(/=+$/, ''))],
    ['hex of the hash', x5t(raw.toString('hex'))],
    ['upper-case hex of the hash', x5t(raw.toString('hex').toUpperCase())],
    ['31 bytes', x5t(raw.subarray(0, 31).toString('base64url'))],
    ['33 bytes', x5t(Buffer.concat([raw, Buffer.from([0])]).toString('base64url'))],
    ['64 bytes (SHA-512 length)', x5t(Buffer.concat([raw, raw]).toString('base64url'))],
    ['non-canonical trailing bits', x5t(nonCanonical)],
    ['surrounding whitespace', x5t(` ${b64u}`)],
    ['a trailing newline', x5t(`${b64u}\n`)],
    ['an empty string', x5t('')],
    ['a number', x5t(12345)],
    ['an array holding the thumbprint', x5t([b64u])],
    ['an object', x5t({ value: b64u })],
    ['null', x5t(null)],
    ['true', x5t(true)],
    ['cnf missing', {}],
    ['cnf a string (the thumbprint itself)', { cnf: b64u }],
    ['cnf a number', { cnf: 1 }],
    ['cnf null', { cnf: null }],
    ['cnf an array of the binding', { cnf: [{ 'x5t#S256': b64u }] }],
    ['cnf empty', { cnf: {} }],
    ['x5t#S256 at the top level, not in cnf', { 'x5t#S256': b64u }],
    ['legacy cnf.x5t (SHA-1 of the same certificate)', { cnf: { x5t: createHash('sha1').update(carol.der).digest('base64url') } }],
    ['cnf.jkt (DPoP key binding)', { cnf: { jkt: b64u } }],
    ['cnf.jwk', { cnf: { jwk: { kty: 'EC', crv: 'P-256', x: b64u, y: b64u } } }],
    ['cnf["X5T#S256"] (member names are case-sensitive)', { cnf: { 'X5T#S256': b64u } }],
    ['cnf["x5t#s256"]', { cnf: { 'x5t#s256': b64u } }],
    ['the thumbprint upper-cased', x5t(b64u.toUpperCase())],
    ['cnf.__proto__ carrying the binding', JSON.parse(`{"cnf":{"__proto__":{"x5t#S256":"${b64u}"}}}`) as Json]
  ]
  rejections.length = 0
  for (const [what, claims] of cases) {
    const r = await call(url, '/bound', { dispatcher: as.carol, headers: bearer(token(claims)) })
    notBound(t, r, what)
  }
  t.equal(rejections.length, cases.length, 'each one reported')
  const reasons = new Map(cases.map(([what], i) => [what, rejections[i]?.reason]))
  t.match(reasons.get('legacy cnf.x5t (SHA-1 of the same certificate)'), /SHA-1/, 'the reason names the SHA-1 thumbprint')
  t.match(reasons.get('cnf.jkt (DPoP key binding)'), /DPoP/, 'the reason names DPoP')
  t.match(reasons.get('cnf missing'), /no cnf claim/)
  t.match(reasons.get('padded base64url (=)'), /base64url \(unpadded\)/)
  t.equal((await call(url, '/bound', { dispatcher: as.carol, headers: bearer(boundTo(carol)) })).status, 200, 'and the right value still passes')
})

t.test('the token is verified first: a bad token is the JWT plugin\'s 401', async (t) => {
  // an ES256 token with the right binding, signed by a key the app does not know
  const stolenKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
  const forged = es256Token({ sub: 'x', cnf: { 'x5t#S256': thumb(alice) }, exp: Math.floor(Date.now() / 1000) + 60 }, stolenKey)
  t.equal((await call(url, '/bound', { dispatcher: as.alice, headers: bearer(es256Token({ sub: 'x', cnf: { 'x5t#S256': thumb(alice) } }, es256.privateKey)) })).status, 200,
    'the same token signed by the app\'s key (hand-made): accepted')
  const f = await call(url, '/bound', { dispatcher: as.alice, headers: bearer(forged) })
  t.same([f.status, f.body.code], [401, 'FST_JWT_AUTHORIZATION_TOKEN_INVALID'], 'signed by another key')
  // the app's own token with its payload rebound to another certificate
  const parts = boundTo(alice).split('.')
  const tampered = `${parts[0]}.${b64json({ sub: 'x', cnf: { 'x5t#S256': thumb(bob) } })}.${parts[2]}`
  const r = await call(url, '/bound', { dispatcher: as.bob, headers: bearer(tampered) })
  t.same([r.status, r.body.code], [401, 'FST_JWT_AUTHORIZATION_TOKEN_INVALID'], 'a payload rebound to another certificate breaks the signature')
  const none = await call(url, '/bound', { dispatcher: as.alice })
  t.equal(none.status, 401)
  t.equal(none.body.code, 'FST_JWT_NO_AUTHORIZATION_IN_HEADER')
  const expired = es256Token({ cnf: { 'x5t#S256': thumb(alice) }, iat: Math.floor(Date.now() / 1000) - 3600, exp: Math.floor(Date.now() / 1000) - 3000 }, es256.privateKey)
  const late = await call(url, '/bound', { dispatcher: as.alice, headers: bearer(expired) })
  t.equal(late.status, 401)
  t.equal(late.body.code, 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED', 'a bound but expired token')
})

t.test('no certificate at all (optional mode): 401 FST_MTLS_CERT_MISSING', async (t) => {
  const r = await call(url, '/bound', { dispatcher: as.none, headers: bearer(boundTo(alice)) })
  rejected(t, r, 'FST_MTLS_CERT_MISSING', 'a valid bound token without the certificate')
  t.equal(r.headers['www-authenticate'], 'Mutual realm="api"', 'the configured challenge, not the Bearer one')
  t.equal((await call(url, '/', { dispatcher: as.none })).status, 200, 'unguarded routes stay open in optional mode')
})

t.test('the guard without verified claims: TOKEN_NOT_BOUND', async (t) => {
  rejections.length = 0
  notBound(t, await call(url, '/unverified', { dispatcher: as.alice, headers: bearer(boundTo(alice)) }), 'request.user never set (no jwtVerify)')
  t.match(rejections[0]?.reason, /no token claims/)
  notBound(t, await call(url, '/getter/raw-token', { dispatcher: as.alice, headers: bearer(boundTo(alice)) }), 'a getter returning the undecoded token string')
})

t.test('a claims getter reading from elsewhere', async (t) => {
  const r = await call(url, '/getter', { dispatcher: as.alice, headers: { 'x-access-token': boundTo(alice) } })
  t.equal(r.status, 200)
  t.same(r.body, { sub: null, cn: 'alice', thumbprint: thumb(alice), source: 'tls' }, 'request.user untouched')
  notBound(t, await call(url, '/getter', { dispatcher: as.alice, headers: { 'x-access-token': boundTo(bob), ...bearer(boundTo(alice)) } }),
    'the getter\'s claims decide, not an Authorization header')
  notBound(t, await call(url, '/getter', { dispatcher: as.bob, headers: { 'x-access-token': boundTo(alice) } }), 'bound to another certificate')
})

t.test('a claims getter that throws: TOKEN_NOT_BOUND and an error log line', async (t) => {
  const before = logs.lines.length
  const r = await call(url, '/getter/throws', { dispatcher: as.alice, headers: bearer(boundTo(alice)) })
  notBound(t, r, 'the getter threw')
  t.notMatch(r.text, /sekrit|claims store/, 'the error stays in the log')
  const errors = logs.lines.slice(before).filter((l) => l.level === ERROR)
  t.equal(errors.length, 1, 'one error line')
  t.match(errors[0], { msg: 'fastify-mtls-auth: the claims getter threw; treated as no claims', err: { message: 'claims store down: sekrit-detail' } })
  t.ok(logs.lines.slice(before).some((l) => l['mtls.code'] === 'FST_MTLS_TOKEN_NOT_BOUND'), 'and the rejection line')
})

t.test('requireBoundToken(options) is checked when the route is declared', async (t) => {
  for (const [options, what] of [['user', 'a string'], [null, 'null'], [{ claims: 'user' }, 'claims a string'], [{ claims: 1 }, 'claims a number']] as const) {
    t.throws(() => app.mtls.requireBoundToken(options as never), { code: 'FST_MTLS_INVALID_OPTIONS' }, what)
  }
  t.type(app.mtls.requireBoundToken({}), 'function', 'an empty object: the default getter')
})

t.test('@fastify/auth, relation "and": the certificate policy and the bound token', async (t) => {
  const ok = await call(url, '/and', { dispatcher: as.alice, headers: bearer(boundTo(alice)) })
  t.equal(ok.status, 200, 'OU=sales and a token bound to it')
  t.equal(ok.body.cn, 'alice')
  notBound(t, await call(url, '/and', { dispatcher: as.alice, headers: bearer(boundTo(bob)) }), 'the policy passes, the token is bound elsewhere')
  notBound(t, await call(url, '/and', { dispatcher: as.alice, headers: bearer(token({})) }), 'the policy passes, the token is not bound at all')
  const noToken = await call(url, '/and', { dispatcher: as.alice })
  t.same([noToken.status, noToken.body.code], [401, 'FST_JWT_NO_AUTHORIZATION_IN_HEADER'], 'the policy passes, no token')
  rejected(t, await call(url, '/and', { dispatcher: as.bob, headers: bearer(boundTo(bob)) }), 'FST_MTLS_FORBIDDEN', 'a bound token, but OU=payments')
  rejected(t, await call(url, '/and', { dispatcher: as.none, headers: bearer(boundTo(alice)) }), 'FST_MTLS_CERT_MISSING', 'a token without a certificate')
})

t.test('@fastify/auth, relation "or": a payments certificate, or any certificate with its bound token', async (t) => {
  const byCert = await call(url, '/or', { dispatcher: as.bob })
  t.same([byCert.status, byCert.body.cn], [200, 'bob'], 'OU=payments: no token needed')
  const byToken = await call(url, '/or', { dispatcher: as.alice, headers: bearer(boundTo(alice)) })
  t.same([byToken.status, byToken.body.sub], [200, 'partner-client'], 'OU=sales with its bound token')
  rejections.length = 0
  notBound(t, await call(url, '/or', { dispatcher: as.alice, headers: bearer(boundTo(bob)) }), 'OU=sales with a token bound to bob')
  t.same(rejections.map((r) => r.code), ['FST_MTLS_TOKEN_NOT_BOUND'], 'only the error sent is reported (the overruled FORBIDDEN leaves no trace)')
  const noToken = await call(url, '/or', { dispatcher: as.alice })
  t.same([noToken.status, noToken.body.code], [401, 'FST_JWT_NO_AUTHORIZATION_IN_HEADER'], 'OU=sales without a token: the last strategy\'s error')
  rejected(t, await call(url, '/or', { dispatcher: as.none, headers: bearer(boundTo(alice)) }), 'FST_MTLS_CERT_MISSING', 'a bound token without its certificate')
})

t.test('enforce: false reports the refusal and lets the request through', async (t) => {
  const seen: MtlsRejection[] = []
  const { app, url } = await start(t, {
    transport: 'https',
    options: { intermediates: partnerCa.pem, enforce: false, onRejected: (r) => { seen.push(r) } },
    routes: async (app) => {
      await app.register(fastifyJwt, { secret: jwtKeys, verify: { algorithms: ['ES256'] } })
      app.get('/bound', { preHandler: [verifyJwt, app.mtls.requireBoundToken()] }, reply)
    }
  })
  const foreign = app.jwt.sign({ cnf: { 'x5t#S256': thumb(bob) } })
  const r = await call(url, '/bound', { dispatcher: as.alice, headers: bearer(foreign) })
  t.equal(r.status, 200, 'through')
  t.equal(r.headers['www-authenticate'], undefined, 'no challenge')
  t.match(seen, [{ code: 'FST_MTLS_TOKEN_NOT_BOUND', enforced: false, reason: 'the token is bound to another certificate' }])
})

// ---------------------------------------------------------------- behind a proxy, HS256 tokens

const SECRET = 'a-test-secret-of-at-least-thirty-two-bytes!'
const proxyRoutes = async (app: FastifyInstance): Promise<void> => {
  await app.register(fastifyJwt, { secret: SECRET, sign: { algorithm: 'HS256', expiresIn: 300 }, verify: { algorithms: ['HS256'] } })
  app.get('/bound', { preHandler: [verifyJwt, app.mtls.requireBoundToken()] }, reply)
}
const forwarded = { header: 'x-client-cert', format: 'escaped-pem' as const, trustedProxies: ['127.0.0.1'] }
const nginx = (c: Issued, chain: Issued[] = []): string => nginxEncode([c, ...chain].map((x) => x.pem).join(''))

t.test('behind a proxy: the thumbprint of the forwarded certificate the plugin verified', async (t) => {
  const { app, url } = await start(t, { options: { mode: 'optional', intermediates: partnerCa.pem, forwarded }, routes: proxyRoutes })
  const hs = (c: Issued): string => app.jwt.sign({ sub: 'via-proxy', cnf: { 'x5t#S256': thumb(c) } })

  const ok = await call(url, '/bound', { headers: { 'x-client-cert': nginx(alice), ...bearer(hs(alice)) } })
  t.equal(ok.status, 200)
  t.same(ok.body, { sub: 'via-proxy', cn: 'alice', thumbprint: thumb(alice), source: 'forwarded' })
  t.equal((await call(url, '/bound', { headers: { 'x-client-cert': nginx(bob, [partnerCa]), ...bearer(hs(bob)) } })).status, 200, 'leaf and chain forwarded')
  notBound(t, await call(url, '/bound', { headers: { 'x-client-cert': nginx(alice), ...bearer(hs(bob)) } }), 'alice forwarded, a token bound to bob')

  // a token bound to a certificate sent in another header
  const elsewhere = { 'x-client-cert': nginx(alice), [XFCC]: xfcc(bob, [partnerCa]), 'x-ssl-client-cert': nginx(bob), 'client-cert': `:${bob.der.toString('base64')}:` }
  notBound(t, await call(url, '/bound', { headers: { ...elsewhere, ...bearer(hs(bob)) } }), "bob's certificate in other headers, alice's in the configured one")
  t.equal((await call(url, '/bound', { headers: { ...elsewhere, ...bearer(hs(alice)) } })).status, 200, 'the configured header alone decides')
  const { 'x-client-cert': _, ...onlyOthers } = elsewhere
  rejected(t, await call(url, '/bound', { headers: { ...onlyOthers, ...bearer(hs(bob)) } }), 'FST_MTLS_CERT_MISSING', 'only other headers: no certificate')
  rejected(t, await call(url, '/bound', { headers: { 'x-client-cert': '', ...bearer(hs(alice)) } }), 'FST_MTLS_CERT_MISSING', 'an empty header: no certificate')

  const stranger = await issue({ subject: 'CN=alice,OU=sales,O=Partner', key: await newKey('ec256') })
  const untrusted = await call(url, '/bound', { headers: { 'x-client-cert': nginx(stranger), ...bearer(hs(stranger)) } })
  rejected(t, untrusted, 'FST_MTLS_CERT_UNTRUSTED', 'a self-signed certificate forwarded with a token bound to it: the verifier refuses it first')
})

t.test('behind an mTLS proxy: never the proxy\'s own certificate', async (t) => {
  const { app, url } = await start(t, {
    transport: 'https',
    options: { mode: 'optional', intermediates: partnerCa.pem, forwarded: { ...forwarded, trustedProxies: { policy: { subject: { CN: 'edge-proxy' } } } } },
    routes: proxyRoutes
  })
  const hs = (c: Issued): string => app.jwt.sign({ cnf: { 'x5t#S256': thumb(c) } })
  const proxy = tlsAgent(edgeProxy, [partnerCa])
  const ok = await call(url, '/bound', { dispatcher: proxy, headers: { 'x-client-cert': nginx(alice), ...bearer(hs(alice)) } })
  t.same([ok.status, ok.body.cn, ok.body.source], [200, 'alice', 'forwarded'], "the client's token, forwarded by the proxy")
  notBound(t, await call(url, '/bound', { dispatcher: proxy, headers: { 'x-client-cert': nginx(alice), ...bearer(hs(edgeProxy)) } }),
    "a token bound to the proxy's TLS certificate")
  rejected(t, await call(url, '/bound', { dispatcher: proxy, headers: bearer(hs(edgeProxy)) }), 'FST_MTLS_CERT_MISSING',
    "the proxy without the header: no certificate, never the proxy's")
  const client = tlsAgent(alice, [partnerCa])
  t.equal((await call(url, '/bound', { dispatcher: client, headers: bearer(hs(alice)) })).status, 200, 'a direct client: its own TLS certificate')
  rejected(t, await call(url, '/bound', { dispatcher: client, headers: { 'x-client-cert': nginx(bob), ...bearer(hs(bob)) } }), 'FST_MTLS_FORWARDED_UNTRUSTED',
    'a direct client cannot forward another certificate')
})

t.test('behind a proxy the binding is only as strong as the gate', async (t) => {
  const { app, url } = await start(t, { options: { mode: 'optional', intermediates: partnerCa.pem, forwarded: { ...forwarded, trustedProxies: ['10.9.9.9'] } }, routes: proxyRoutes })
  const hs = (c: Issued): string => app.jwt.sign({ cnf: { 'x5t#S256': thumb(c) } })
  rejected(t, await call(url, '/bound', { headers: { 'x-client-cert': nginx(alice), ...bearer(hs(alice)) } }), 'FST_MTLS_FORWARDED_UNTRUSTED',
    'a stolen token with the (public) certificate from an untrusted peer')
})
