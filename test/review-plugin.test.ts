// Regression tests from a review of lib/plugin.ts and lib/sources/forwarded.ts: each failed on the
// code as first written. Each test states the attack; the assertions say what must happen.
import t, { type Test } from 'tap'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest, type onRequestAsyncHookHandler } from 'fastify'
import fastifyMtls from '../lib/index.js'
import { compileGate, normaliseAddress } from '../lib/sources/forwarded.js'
import { call, partner, partnerCa, XFCC, xfcc } from './helpers/forwarded.js'

const forwarded = { header: XFCC, format: 'xfcc' as const, trustedProxies: ['127.0.0.1'] }

async function listen (t: Test, app: FastifyInstance): Promise<string> {
  t.teardown(async () => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  return `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
}

// Attack: the guards test `request.clientIdentity === null` (plugin.ts:574 and :589). The
// decorator that makes it null, and the onRequest hook that sets it, exist only in the scope
// the plugin was registered in. A guard made there and used on a route of another scope (a
// shared "auth" module, @fastify/auth in a parent, a guard handed to a sibling plugin) sees
// `undefined`, which is not null: `mtls.require()` then evaluates the policy on `undefined`,
// and `{}` (the default, "any verified identity") matches. A request with no certificate at
// all gets through. Expected: 401 FST_MTLS_CERT_MISSING (anything but an identity is "none").
t.test('mtls.require() used outside the plugin\'s scope lets a request without a certificate through', async (t) => {
  const app = Fastify()
  let guard: onRequestAsyncHookHandler | undefined
  let bound: onRequestAsyncHookHandler | undefined
  await app.register(async (scope) => {
    await scope.register(fastifyMtls, { ca: partner.root.pem, forwarded })
    guard = scope.mtls.require()
    bound = scope.mtls.requireBoundToken({ claims: () => ({ cnf: { 'x5t#S256': 'A'.repeat(43) } }) })
  })
  const run = (h: onRequestAsyncHookHandler | undefined) => async (request: FastifyRequest, reply: any): Promise<void> => {
    await (h as unknown as (this: FastifyInstance, r: FastifyRequest, p: unknown) => Promise<void>).call(app, request, reply)
  }
  app.get('/guarded', { onRequest: run(guard) }, async (request) => ({ identity: request.clientIdentity ?? 'none' }))
  app.get('/bound', { onRequest: run(bound) }, async () => ({ ok: true }))
  const url = await listen(t, app)

  const guarded = await call(url, '/guarded')
  t.equal(guarded.status, 401, 'no certificate, guarded route: 401')
  t.equal(guarded.body?.code, 'FST_MTLS_CERT_MISSING')

  // the same root cause in requireBoundToken: identity.thumbprintSha256 of undefined -> TypeError -> 500
  const boundReply = await call(url, '/bound')
  t.equal(boundReply.status, 401, 'no certificate, bound-token route: 401 (not a 500 TypeError)')
})

// Attack: a link-local address means nothing without its zone (interface). The gate parses
// 'fe80::1%eth0' with ipaddr.js, which keeps the zone but ignores it in match()
// (forwarded.ts:355-358 and :402-407). trustedProxies: ['fe80::1'] (or 'fe80::1%eth0') then
// trusts fe80::1 on every interface: another host on another link (a container bridge, a VPN
// tunnel; fe80::1 is a common gateway address) that has the same link-local address may send
// any partner's certificate in the header. Expected: a zoned peer matches only an entry with
// the same zone (or link-local entries without a zone are refused at start-up).
t.test('the trusted-proxy gate ignores IPv6 zones', async (t) => {
  const zoned = compileGate(['fe80::1%eth0'])
  t.equal(zoned.byAddress?.(normaliseAddress('fe80::1%eth0')), true, 'the configured proxy on eth0 is trusted')
  t.equal(zoned.byAddress?.(normaliseAddress('fe80::1%eth1')), false, 'fe80::1 on another interface is another host')
  const bare = compileGate(['fe80::1'])
  t.equal(bare.byAddress?.(normaliseAddress('fe80::1%docker0')), false, 'an entry without a zone does not say which link: it must not match every link')
})

// Attack (review of the callback-style onRequest hook): Fastify's `done(err)` lets the request go
// on when `err` is falsy. A failure that throws or rejects with no error (here a logger whose
// child() throws undefined while the identity is bound to request.log) would then reach the
// handler unauthenticated. Expected: the request is refused (a 500), never handled.
t.test('a failure without an error object inside the hook refuses the request', async (t) => {
  const noop = (): void => {}
  const logger = {
    level: 'info',
    info: noop,
    warn: noop,
    error: noop,
    fatal: noop,
    debug: noop,
    trace: noop,
    child (bindings: Record<string, unknown>) {
      // eslint-disable-next-line no-throw-literal
      if ('tls.client.hash.sha256' in bindings) throw undefined
      return logger
    }
  }
  const app = Fastify({ loggerInstance: logger as unknown as FastifyBaseLogger })
  await app.register(fastifyMtls, { ca: partner.root.pem, forwarded })
  let handled = 0
  app.get('/', async () => { handled++; return { ok: true } })
  const url = await listen(t, app)
  const res = await call(url, '/', { headers: { [XFCC]: xfcc(partner.leaf, [partnerCa]) } })
  t.equal(res.status, 500, 'refused')
  t.equal(handled, 0, 'the handler never ran')
})

// The plugin reads each request's route config from the route context Fastify keeps on the
// request (no object built per request), after checking once per route that it is the object
// request.routeOptions reports. If a Fastify upgrade moves it, the plugin falls back to
// routeOptions (correct, slower): this test says so.
t.test('the route context on the request holds the same config as routeOptions (the fast path is in use)', async (t) => {
  const app = Fastify()
  const seen: Array<{ url: string, same: boolean }> = []
  app.addHook('onRequest', async (request) => {
    const sym = Object.getOwnPropertySymbols(request).find((s) => s.description === 'fastify.context')
    const context = sym === undefined ? undefined : (request as unknown as Record<symbol, { config?: unknown }>)[sym]
    seen.push({ url: request.url, same: context !== undefined && context.config === request.routeOptions.config })
  })
  app.get('/a', { config: { mtls: false } }, async () => 'a')
  await app.register(async (scope) => { scope.get('/b', { config: { mtls: { subject: { O: 'x' } } } }, async () => 'b') }, { prefix: '/p' })
  await app.ready()
  for (const [method, url] of [['GET', '/a'], ['HEAD', '/a'], ['GET', '/p/b'], ['GET', '/missing']] as const) await app.inject({ method, url })
  t.same(seen.map((s) => s.same), [true, true, true, true], JSON.stringify(seen))
})

// The fallback of the same fast path: when the route context's config is not the object
// routeOptions reports (simulated: routeOptions replaced on one request), the plugin stops
// trusting the context and reads routeOptions from then on.
t.test('a route context whose config is not routeOptions\' object: routeOptions decides, from then on', async (t) => {
  const app = Fastify()
  let override = true
  app.addHook('onRequest', async (request) => {
    if (!override) return
    override = false
    const options = request.routeOptions
    Object.defineProperty(request, 'routeOptions', { value: { ...options, config: { ...options.config, mtls: false } } })
  })
  await app.register(fastifyMtls, { ca: partner.root.pem, forwarded })
  app.get('/', async (request) => ({ identity: request.clientIdentity === null ? 'none' : 'some' }))
  const url = await listen(t, app)
  const first = await call(url, '/')
  t.equal(first.status, 200, 'the overridden routeOptions (mtls: false) decided: exempt')
  const second = await call(url, '/')
  t.equal(second.status, 401, 'the route itself requires a certificate')
  t.equal(second.body?.code, 'FST_MTLS_CERT_MISSING')
})
