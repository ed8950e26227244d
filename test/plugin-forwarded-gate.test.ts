// The trusted-proxy gate of the forwarded source through real requests: peers that are not
// trusted (401 FST_MTLS_FORWARDED_UNTRUSTED for any of the certificate, chain and verify headers,
// normal TLS/none behaviour without them), IPv4-mapped peers, wide ranges, Unix sockets, a
// function, request.ip spoofing, a trusted proxy that authenticates with its own client
// certificate, and headers that appear twice (HTTP/1.1 and HTTP/2). The formats, the verifier
// and the options are in plugin-forwarded.test.ts. Shared fixtures: test/helpers/forwarded.ts.
import t, { type Test } from 'tap'
import { once } from 'node:events'
import { request as httpRequest } from 'node:http'
import { connect, createServer } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { Agent } from 'undici'
import {
  alice, call, closeAgents, edgeProxy, h2, logCapture, partner, partnerCa, raw, rejected, sf, start, stranger, tlsAgent,
  view, XFCC, xfcc, xfccOptions, type Json, type Reply
} from './helpers/forwarded.js'

t.teardown(closeAgents)

const UNTRUSTED = ['10.9.9.9']
const PARTNER = 'O=Partner,OU=payments,CN=svc'
const ALICE = 'O=Partner,OU=sales,CN=alice'
const xPartner = xfcc(partner.leaf, [partnerCa])
const xAlice = xfcc(alice, [partnerCa])

function forwardedAs (t: Test, r: Reply, subject: string, what: string): void {
  t.equal(r.status, 200, `${what}: 200`)
  t.same([r.body.id?.source, r.body.id?.subject], ['forwarded', subject], `${what}: the forwarded identity ${subject}`)
}

/** a route that records every request that reaches a handler */
function recorder (): { reached: Array<Json | null>, routes: (app: FastifyInstance) => void } {
  const reached: Array<Json | null> = []
  return { reached, routes: (app) => { app.get('/reached', async (req) => { reached.push(view(req.clientIdentity)); return 'reached' }) } }
}

// ---------------------------------------------------------------- a peer that is not trusted

t.test('a peer that is not a trusted proxy (127.0.0.1 against trustedProxies [10.9.9.9])', async (t) => {
  const { reached, routes } = recorder()
  const forwarded = { header: 'client-cert', chainHeader: 'client-cert-chain', format: 'rfc9440' as const, trustedProxies: UNTRUSTED, verifyHeader: { name: 'x-ssl-client-verify', value: 'SUCCESS' } }
  const { url } = await start(t, { options: { forwarded }, routes })
  const cases: Array<[Record<string, string> | string[], string]> = [
    [{ 'client-cert': sf(partner.leaf), 'client-cert-chain': sf(partnerCa), 'x-ssl-client-verify': 'SUCCESS' }, 'all three headers'],
    [{ 'client-cert': sf(partner.leaf) }, 'the certificate header alone'],
    [{ 'client-cert-chain': sf(partnerCa) }, 'the chain header alone'],
    [{ 'x-ssl-client-verify': 'SUCCESS' }, 'the verify header alone'],
    [{ 'client-cert': '' }, 'an empty certificate header'],
    [{ 'Client-Cert': 'not even parsed' }, 'a value that does not parse (never read)'],
    [['client-cert', sf(partner.leaf), 'client-cert', sf(alice)], 'the header twice']
  ]
  for (const [headers, what] of cases) rejected(t, await call(url, '/reached', { headers }), 'FST_MTLS_FORWARDED_UNTRUSTED', what)
  rejected(t, await call(url, '/reached'), 'FST_MTLS_CERT_MISSING', 'no forwarded header: the normal no-certificate answer')
  rejected(t, await call(url, '/reached', { headers: { Client_Cert: sf(partner.leaf) } }), 'FST_MTLS_CERT_MISSING', 'Client_Cert (underscore) is another header: ignored, not refused')
  t.same(reached, [], 'no handler ran')

  t.test('optional mode: refused all the same; without the header, clientIdentity null', async (t) => {
    const { url } = await start(t, { options: { mode: 'optional', forwarded: xfccOptions({ trustedProxies: UNTRUSTED }) } })
    rejected(t, await call(url, '/', { headers: { [XFCC]: xPartner } }), 'FST_MTLS_FORWARDED_UNTRUSTED', 'xfcc from an untrusted peer')
    const none = await call(url, '/')
    t.same([none.status, none.body.id], [200, null])
  })

  t.test('HTTPS with both sources: the header is refused, the TLS source works without it', async (t) => {
    const { url } = await start(t, { transport: 'https', options: { forwarded: xfccOptions({ trustedProxies: UNTRUSTED }) } })
    const client = tlsAgent(partner.leaf, [partnerCa])
    // the TLS request first: undici may open a second connection that resumes the TLS session, and
    // a resumed session carries the leaf only, verifiable once a full chain has verified (README)
    const own = await call(url, '/', { dispatcher: client })
    t.same([own.status, own.body.id?.source, own.body.id?.subject], [200, 'tls', PARTNER], 'without the header: its own TLS identity, source tls')
    rejected(t, await call(url, '/', { dispatcher: client, headers: { [XFCC]: xAlice } }), 'FST_MTLS_FORWARDED_UNTRUSTED', 'a valid TLS client certificate does not excuse a forwarded header')
    t.same((await call(url, '/', { dispatcher: client })).body.id?.source, 'tls', 'and the next request without it is the TLS client again')
    rejected(t, await call(url, '/', { dispatcher: tlsAgent() }), 'FST_MTLS_CERT_MISSING', 'no certificate at all')
  })
})

t.test('HTTPS, a proxy trusted by address never yields its own TLS identity', async (t) => {
  const { url } = await start(t, { transport: 'https', options: { forwarded: xfccOptions() } })
  const proxy = tlsAgent(edgeProxy, [partnerCa])
  forwardedAs(t, await call(url, '/', { dispatcher: proxy, headers: { [XFCC]: xAlice } }), ALICE, 'with the header: the client\'s')
  rejected(t, await call(url, '/', { dispatcher: proxy }), 'FST_MTLS_CERT_MISSING', 'without the header: no certificate, not the proxy\'s')
})

// ---------------------------------------------------------------- what the peer address is

const ipv6 = await new Promise<boolean>((resolve) => {
  const s = createServer()
  s.once('error', () => resolve(false))
  s.listen(0, '::1', () => s.close(() => resolve(true)))
})

t.test('IPv4-mapped IPv6 peers are matched as IPv4', { skip: ipv6 ? false : 'this machine has no IPv6 loopback (::1): a dual-stack listener cannot be tested' }, async (t) => {
  const seen: Array<string | undefined> = []
  const dual = await start(t, { listen: { host: '::', port: 0 }, options: { forwarded: xfccOptions() } })
  const r = await call(`http://127.0.0.1:${dual.port}`, '/', { headers: { [XFCC]: xPartner } })
  t.equal(r.body.peer, '::ffff:127.0.0.1', 'the socket reports an IPv4-mapped address')
  forwardedAs(t, r, PARTNER, "trustedProxies ['127.0.0.1'] matches ::ffff:127.0.0.1")

  const fn = await start(t, { listen: { host: '::', port: 0 }, options: { forwarded: xfccOptions({ trustedProxies: (a) => { seen.push(a); return a === '127.0.0.1' } }) } })
  forwardedAs(t, await call(`http://127.0.0.1:${fn.port}`, '/', { headers: { [XFCC]: xPartner } }), PARTNER, 'a function gets the IPv4 form')
  rejected(t, await call(`http://[::1]:${fn.port}`, '/', { headers: { [XFCC]: xPartner } }), 'FST_MTLS_FORWARDED_UNTRUSTED', 'the function refuses ::1')
  t.same(seen, ['127.0.0.1', '::1'], 'the function saw 127.0.0.1 (normalised) and ::1')

  rejected(t, await call(`http://[::1]:${dual.port}`, '/', { headers: { [XFCC]: xPartner } }), 'FST_MTLS_FORWARDED_UNTRUSTED', '::1 is not 127.0.0.1')
  const v6 = await start(t, { listen: { host: '::1', port: 0 }, options: { forwarded: xfccOptions({ trustedProxies: ['::1'] }) } })
  forwardedAs(t, await call(`http://[::1]:${v6.port}`, '/', { headers: { [XFCC]: xPartner } }), PARTNER, "trustedProxies ['::1'] from ::1")
  const mapped = await start(t, { options: { forwarded: xfccOptions({ trustedProxies: ['::ffff:127.0.0.1'] }) } })
  forwardedAs(t, await call(mapped.url, '/', { headers: { [XFCC]: xPartner } }), PARTNER, "trustedProxies ['::ffff:127.0.0.1'] means 127.0.0.1")
})

t.test('ranges wider than /24 or /64 draw a start-up warning', async (t) => {
  const warned = async (trustedProxies: string[]): Promise<unknown> => {
    const { stream, lines } = logCapture()
    await start(t, { logs: stream, options: { forwarded: xfccOptions({ trustedProxies }) } })
    return lines.find((l) => l.level === 40 && /wider than \/24/.test(l.msg))?.['mtls.trusted_proxies']
  }
  t.same(await warned(['127.0.0.0/8', '10.0.0.0/24', '10.1.2.3', '::1/48', 'fd00::/64']), ['127.0.0.0/8', '::1/48'], 'the /8 and the /48 are named')
  t.equal(await warned(['127.0.0.0/24', 'fd00::/64']), undefined, '/24 and /64: no warning')
  t.same(await warned(['::ffff:127.0.0.0/104']), ['::ffff:127.0.0.0/104'], 'an IPv4-mapped /104 is an IPv4 /8')
  const wide = await start(t, { options: { forwarded: xfccOptions({ trustedProxies: ['127.0.0.0/8'] }) } })
  forwardedAs(t, await call(wide.url, '/', { headers: { [XFCC]: xPartner } }), PARTNER, 'a wide range still works')
})

t.test("'unix': a peer on a Unix socket", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mtls-fwd-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const unix = async (trustedProxies: string[], name: string): Promise<Agent> => {
    const socketPath = join(dir, name)
    await start(t, { listen: { path: socketPath }, options: { forwarded: xfccOptions({ trustedProxies }) } })
    const agent = new Agent({ connect: { socketPath } })
    t.teardown(async () => agent.close())
    return agent
  }
  const trusted = await unix(['unix'], 'trusted.sock')
  const r = await call('http://localhost', '/', { dispatcher: trusted, headers: { [XFCC]: xPartner } })
  t.equal(r.body.peer, null, 'a Unix-socket peer has no address')
  forwardedAs(t, r, PARTNER, "trustedProxies ['unix']")
  rejected(t, await call('http://localhost', '/', { dispatcher: trusted }), 'FST_MTLS_CERT_MISSING', 'no header')
  rejected(t, await call('http://localhost', '/', { dispatcher: await unix(['127.0.0.1'], 'addresses.sock'), headers: { [XFCC]: xPartner } }), 'FST_MTLS_FORWARDED_UNTRUSTED',
    "a Unix-socket peer is not trusted without 'unix'")

  t.test('a TCP peer whose socket closed before the gate ran is not a Unix-socket peer', async (t) => {
    // an async onRequest hook of another plugin runs first; meanwhile the client hangs up.
    // A closed TCP socket reports remoteAddress undefined, the same as a Unix-socket peer.
    let settle: (v: Json) => void = () => {}
    const outcome = new Promise<Json>((resolve) => { settle = resolve })
    const { port } = await start(t, {
      options: { forwarded: xfccOptions({ trustedProxies: ['unix', '10.9.9.9'] }) },
      before: (app) => {
        app.addHook('onRequest', async (req) => { if (!req.raw.socket.destroyed) await once(req.raw.socket, 'close') })
        app.setErrorHandler(async (err: Error & { code?: string }, _req, reply) => { settle({ refused: err.code }); return reply.send(err) })
      },
      routes: (app) => { app.get('/transfer', async (req) => { settle({ handled: view(req.clientIdentity) }); return 'done' }) }
    })
    const socket = connect(port, '127.0.0.1')
    await once(socket, 'connect')
    socket.end(`GET /transfer HTTP/1.1\r\nHost: 127.0.0.1\r\n${XFCC}: ${xPartner}\r\n\r\n`)
    socket.resume()
    const got = await outcome
    t.same(got, { refused: 'FST_MTLS_FORWARDED_UNTRUSTED' }, 'refused, the handler never runs with the forged identity')
  })
})

t.test('a function decides', async (t) => {
  const yes = await start(t, { options: { forwarded: xfccOptions({ trustedProxies: (address) => address === '127.0.0.1' }) } })
  forwardedAs(t, await call(yes.url, '/', { headers: { [XFCC]: xPartner } }), PARTNER, '(address) => address === \'127.0.0.1\'')
  const no = await start(t, { options: { forwarded: xfccOptions({ trustedProxies: () => false }) } })
  rejected(t, await call(no.url, '/', { headers: { [XFCC]: xPartner } }), 'FST_MTLS_FORWARDED_UNTRUSTED', '() => false')
})

t.test('request.ip cannot be spoofed into the gate (trustProxy: true, X-Forwarded-For)', async (t) => {
  const { url } = await start(t, { fastify: { trustProxy: true }, options: { mode: 'optional', forwarded: xfccOptions({ trustedProxies: UNTRUSTED }) } })
  const spoof = { 'x-forwarded-for': '10.9.9.9' }
  const plain = await call(url, '/', { headers: spoof })
  t.same([plain.body.ip, plain.body.peer], ['10.9.9.9', '127.0.0.1'], 'request.ip says 10.9.9.9, the socket says 127.0.0.1')
  rejected(t, await call(url, '/', { headers: { ...spoof, [XFCC]: xPartner } }), 'FST_MTLS_FORWARDED_UNTRUSTED', 'the gate uses the socket address')
})

// ---------------------------------------------------------------- a proxy that authenticates with mTLS

t.test('trustedProxies { policy }: a proxy that authenticates with its own client certificate', async (t) => {
  const policy = { subject: { CN: 'edge-proxy' } }
  const { url } = await start(t, { transport: 'https', options: { forwarded: xfccOptions({ trustedProxies: { policy } }) } })
  const proxy = tlsAgent(edgeProxy, [partnerCa])
  const client = tlsAgent(alice, [partnerCa])

  const viaProxy = await call(url, '/', { dispatcher: proxy, headers: { [XFCC]: xPartner } })
  forwardedAs(t, viaProxy, PARTNER, 'the proxy forwards a client\'s certificate: the client\'s identity')
  t.notMatch(viaProxy.text, /edge-proxy/, 'nothing of the proxy\'s identity')
  forwardedAs(t, await call(url, '/', { dispatcher: proxy, headers: { [XFCC]: xAlice } }), ALICE, 'the next request on the proxy\'s connection: the next client')
  rejected(t, await call(url, '/', { dispatcher: proxy }), 'FST_MTLS_CERT_MISSING', 'the proxy without the header: no certificate, never the proxy\'s')

  rejected(t, await call(url, '/', { dispatcher: client, headers: { [XFCC]: xPartner } }), 'FST_MTLS_FORWARDED_UNTRUSTED', 'a client whose certificate does not match the policy')
  const own = await call(url, '/', { dispatcher: client })
  t.same([own.status, own.body.id?.source, own.body.id?.subject], [200, 'tls', ALICE], 'that client without the header: its own TLS identity')
  rejected(t, await call(url, '/', { dispatcher: tlsAgent(stranger.leaf, stranger.intermediates), headers: { [XFCC]: xPartner } }), 'FST_MTLS_FORWARDED_UNTRUSTED',
    'CN=edge-proxy from a CA nobody trusts')
  rejected(t, await call(url, '/', { dispatcher: tlsAgent(), headers: { [XFCC]: xPartner } }), 'FST_MTLS_FORWARDED_UNTRUSTED', 'no client certificate')

  t.test('optional mode: the proxy without the header gets null, not its identity', async (t) => {
    const { url } = await start(t, { transport: 'https', options: { mode: 'optional', forwarded: xfccOptions({ trustedProxies: { policy } }) } })
    const r = await call(url, '/', { dispatcher: proxy })
    t.same([r.status, r.body.id], [200, null])
  })
})

// ---------------------------------------------------------------- a header that appears twice

t.test('a header that appears twice: 400 FST_MTLS_CERT_MALFORMED', async (t) => {
  const { reached, routes } = recorder()
  const { url, port } = await start(t, { options: { forwarded: xfccOptions() }, routes })
  const twice = async (headers: string[], what: string): Promise<void> => rejected(t, await call(url, '/reached', { headers }), 'FST_MTLS_CERT_MALFORMED', what)
  await twice([XFCC, xAlice, XFCC, xPartner], 'undici, two lines')
  await twice([XFCC, xPartner, XFCC, xPartner], 'the same value twice')
  await twice(['X-Forwarded-Client-Cert', xAlice, 'x-forwarded-client-cert', xPartner], 'two lines in different case')
  await twice([XFCC, xPartner, XFCC, ''], 'a value and an empty line')

  const viaHttp = await new Promise<Reply>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/reached' }, (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (c: string) => { text += c }).on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text), text, headers: res.headers }))
    })
    req.setHeader(XFCC, [xAlice, xPartner])
    req.on('error', reject).end()
  })
  rejected(t, viaHttp, 'FST_MTLS_CERT_MALFORMED', 'http.request with setHeader(name, [a, b])')
  rejected(t, await raw(port, [`${XFCC}: ${xAlice}`, `${XFCC}: ${xPartner}`], '/reached'), 'FST_MTLS_CERT_MALFORMED', 'raw lines')
  t.same(reached, [], 'no handler ran')

  t.test('the verify header and the rfc9440 Client-Cert twice', async (t) => {
    const verify = await start(t, { options: { intermediates: partnerCa.pem, forwarded: { header: 'x-ssl-client-cert', format: 'escaped-pem', trustedProxies: ['127.0.0.1'], verifyHeader: { name: 'x-ssl-client-verify', value: 'SUCCESS' } } } })
    const cert = encodeURIComponent(partner.leaf.pem)
    rejected(t, await call(verify.url, '/', { headers: ['x-ssl-client-cert', cert, 'x-ssl-client-verify', 'FAILED:x', 'x-ssl-client-verify', 'SUCCESS'] }), 'FST_MTLS_CERT_MALFORMED', 'x-ssl-client-verify twice')
    const rfc = await start(t, { options: { forwarded: { header: 'client-cert', chainHeader: 'client-cert-chain', format: 'rfc9440', trustedProxies: ['127.0.0.1'] } } })
    rejected(t, await call(rfc.url, '/', { headers: ['client-cert', sf(alice), 'client-cert', sf(partner.leaf), 'client-cert-chain', sf(partnerCa)] }), 'FST_MTLS_CERT_MALFORMED', 'Client-Cert twice')
  })

  t.test('X_Forwarded_Client_Cert (underscores) is another header', async (t) => {
    rejected(t, await call(url, '/', { headers: { X_Forwarded_Client_Cert: xPartner } }), 'FST_MTLS_CERT_MISSING', 'required mode, only the underscore header: no certificate')
    rejected(t, await call(url, '/', { headers: { 'x-forwarded-client-cert-2': xPartner, 'x-forwarded-client': xPartner } }), 'FST_MTLS_CERT_MISSING', 'longer and shorter names')
    forwardedAs(t, await call(url, '/', { headers: { X_Forwarded_Client_Cert: xAlice, [XFCC]: xPartner } }), PARTNER, 'next to the real header: the real one counts, no "repeat"')
    const optional = await start(t, { options: { mode: 'optional', forwarded: xfccOptions() } })
    const r = await call(optional.url, '/', { headers: { X_Forwarded_Client_Cert: xPartner } })
    t.same([r.status, r.body.id], [200, null], 'optional mode: clientIdentity null')
  })

  t.test('a repeat hidden past Node\'s header-count limit', async (t) => {
    // Node keeps about 1,000 header lines in rawHeaders and drops the rest silently (well under the
    // 16 KiB size limit). A client sends its own header first and pads; a proxy that appends its
    // header (instead of replacing it) puts the real one past the limit.
    const filler = Array.from({ length: 1100 }, (_, i) => `f${i}: 1`)
    const r = await raw(port, [`${XFCC}: ${xAlice}`, ...filler, `${XFCC}: ${xPartner}`])
    t.not(r.body?.id?.subject, ALICE, 'never the client\'s own (first) header')
    rejected(t, r, 'FST_MTLS_CERT_MALFORMED', 'refused')
  })
})

t.test('HTTP/2: a header that appears twice is refused too', async (t) => {
  const { url } = await start(t, { transport: 'h2', options: { forwarded: xfccOptions() } })
  // undici cannot send a repeated header over HTTP/2: client-h2.js joins the values with ", " into
  // one field before sending. node:http2 sends an array value as repeated fields.
  forwardedAs(t, await h2(url, { [XFCC]: xPartner }), PARTNER, 'one field')
  rejected(t, await h2(url, { [XFCC]: [xAlice, xPartner] }), 'FST_MTLS_CERT_MALFORMED', 'two fields')
  rejected(t, await h2(url, { [XFCC]: [xPartner, xPartner] }), 'FST_MTLS_CERT_MALFORMED', 'the same value in two fields')
  const undiciH2 = tlsAgent(undefined, [], { allowH2: true })
  forwardedAs(t, await call(url, '/', { dispatcher: undiciH2, headers: { [XFCC]: xPartner } }), PARTNER, 'undici with allowH2, one field')
  await undiciH2.close()
})
