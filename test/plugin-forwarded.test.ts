// The forwarded source end to end: each header format through real requests (plain HTTP with
// only `forwarded`, and HTTPS with both sources on), the identity compared with the one a direct
// TLS connection gives, malformed values (400, never 5xx), the verify header, the verifier and
// policies applied to forwarded certificates, per-request identities on one keep-alive
// connection, and the forwarded options. The trusted-proxy gate, the mTLS proxy and repeated
// headers are in plugin-forwarded-gate.test.ts. Shared fixtures: test/helpers/forwarded.ts.
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { Agent } from 'undici'
import fastifyMtls, { type FastifyMtlsOptions } from '../lib/index.js'
import {
  albEncode, alice, b64, call, closeAgents, edgeProxy, envoyEncode, expired, logCapture, nginxEncode, other, partner, partnerCa,
  register, rejected, sf, sha256Hex, start, stranger, tlsAgent, view, XFCC, xfcc, xfccOptions, httpsServerOptions,
  type Json, type Reply
} from './helpers/forwarded.js'
import type { Issued } from './helpers/pki.js'

t.teardown(closeAgents)

type Forwarded = NonNullable<FastifyMtlsOptions['forwarded']>
const TRANSPORTS = ['http', 'https'] as const
/** over HTTPS the test client is the trusted proxy and presents its own certificate, which must never count */
const proxyAgent = tlsAgent(edgeProxy, [partnerCa])
const via = (transport: 'http' | 'https'): { dispatcher?: Agent } => transport === 'https' ? { dispatcher: proxyAgent } : {}

async function appFor (t: Test, transport: 'http' | 'https', forwarded: Forwarded, extra: Partial<FastifyMtlsOptions> = {}): Promise<string> {
  return (await start(t, { transport, options: { forwarded, ...extra } })).url
}

// ---------------------------------------------------------------- what a direct TLS connection gives

const direct = new Map<Issued, Json>()
{
  const app = Fastify({ https: httpsServerOptions })
  await app.register(fastifyMtls, { ca: partner.root.pem })
  app.get('/', async (req) => ({ id: view(req.clientIdentity) }))
  await app.listen({ host: '127.0.0.1', port: 0 })
  const url = `https://127.0.0.1:${(app.server.address() as { port: number }).port}`
  for (const leaf of [partner.leaf, alice]) direct.set(leaf, (await call(url, '/', { dispatcher: tlsAgent(leaf, [partnerCa]) })).body.id)
  await app.close()
}
const directPartner = direct.get(partner.leaf) as Json
const directAlice = direct.get(alice) as Json
const asForwarded = (d: Json): Json => ({ ...d, source: 'forwarded' })

function identified (t: Test, r: Reply, expected: Json, what: string): void {
  t.equal(r.status, 200, `${what}: 200`)
  t.same(r.body.id, asForwarded(expected), `${what}: the identity a direct TLS connection gives, source 'forwarded'`)
}

t.test('the direct TLS identities the forwarded ones are compared with', async (t) => {
  t.equal(directPartner.source, 'tls')
  t.equal(directPartner.subject, 'O=Partner,OU=payments,CN=svc')
  t.equal(directPartner.fingerprint256, partner.leaf.cert.fingerprint256)
  t.same(directPartner.san, { dns: ['svc.partner.example'], uri: ['spiffe://partner.example/ns/prod/svc'], email: ['ops@partner.example'], ip: ['10.0.0.7'] })
  t.equal(directPartner.trustAnchor.name, 'O=Fixture PKI,CN=Partner Root CA')
  t.equal(directPartner.chain, 3, 'leaf, intermediate, root')
  t.equal(directAlice.subject, 'O=Partner,OU=sales,CN=alice')
})

// ---------------------------------------------------------------- each format end to end

for (const transport of TRANSPORTS) {
  t.test(`${transport}: xfcc (Envoy)`, async (t) => {
    const withIntermediates = await appFor(t, transport, xfccOptions(), { intermediates: partnerCa.pem })
    const bare = await appFor(t, transport, xfccOptions())
    const send = async (url: string, value: string): Promise<Reply> => call(url, '/', { ...via(transport), headers: { [XFCC]: value } })

    identified(t, await send(withIntermediates, xfcc(partner.leaf)), directPartner, 'Cert= (unquoted), Hash=, intermediates configured')
    identified(t, await send(withIntermediates, xfcc(partner.leaf, [], { quote: true })), directPartner, 'Cert="..." (quoted)')
    identified(t, await send(withIntermediates, xfcc(partner.leaf, [], { hash: sha256Hex(partner.leaf.der).toUpperCase() })), directPartner, 'Hash in upper case')
    identified(t, await send(withIntermediates, `Cert=${envoyEncode(partner.leaf.pem)}`), directPartner, 'Cert alone')
    rejected(t, await send(bare, xfcc(partner.leaf)), 'FST_MTLS_CERT_UNTRUSTED', 'Cert alone without configured intermediates: no path')
    identified(t, await send(bare, xfcc(partner.leaf, [partnerCa])), directPartner, 'Cert= and Chain= (unquoted)')
    identified(t, await send(bare, xfcc(partner.leaf, [partnerCa], { quote: true })), directPartner, 'Cert="..." and Chain="..."')
    identified(t, await send(bare, `Hash=${sha256Hex(alice.der)};Chain="${envoyEncode(alice.pem + partnerCa.pem)}"`), directAlice, 'Chain= without Cert=')
    identified(t, await send(bare, ` ${xfcc(alice, [partnerCa]).replace(/;/g, ' ; ')} `), directAlice, 'spaces around pairs')
  })

  t.test(`${transport}: xfcc, xfccElement 'last' and 'only'`, async (t) => {
    const last = await appFor(t, transport, xfccOptions({ xfccElement: 'last' }))
    const byDefault = await appFor(t, transport, xfccOptions())
    const only = await appFor(t, transport, xfccOptions({ xfccElement: 'only' }))
    // a client sent alice's certificate in its own XFCC; Envoy (APPEND_FORWARD) appended the real client's element
    const smuggled = `${xfcc(alice, [partnerCa], { by: 'spiffe://attacker' })},${xfcc(partner.leaf, [partnerCa])}`
    for (const [url, what] of [[last, "'last'"], [byDefault, 'the default']] as const) {
      identified(t, await call(url, '/', { ...via(transport), headers: { [XFCC]: smuggled } }), directPartner, `${what}: the nearest proxy's (last) element, never the smuggled one`)
    }
    identified(t, await call(only, '/', { ...via(transport), headers: { [XFCC]: xfcc(partner.leaf, [partnerCa]) } }), directPartner, "'only' with one element")
    rejected(t, await call(only, '/', { ...via(transport), headers: { [XFCC]: smuggled } }), 'FST_MTLS_CERT_MALFORMED', "'only': an attacker's element before the proxy's")
  })

  t.test(`${transport}: escaped-pem (nginx leaf only, AWS ALB whole chain)`, async (t) => {
    const nginxHeader = 'x-ssl-client-cert'
    const nginx = await appFor(t, transport, { header: nginxHeader, format: 'escaped-pem', trustedProxies: ['127.0.0.1'] }, { intermediates: partnerCa.pem })
    identified(t, await call(nginx, '/', { ...via(transport), headers: { [nginxHeader]: nginxEncode(partner.leaf.pem) } }), directPartner, 'nginx $ssl_client_escaped_cert (encodeURIComponent), leaf only')
    identified(t, await call(nginx, '/', { ...via(transport), headers: { 'X-SSL-Client-Cert': nginxEncode(alice.pem) } }), directAlice, 'the header name in another case')

    const albHeader = 'x-amzn-mtls-clientcert'
    const alb = await appFor(t, transport, { header: albHeader, format: 'escaped-pem', trustedProxies: ['127.0.0.1'] })
    // first, before any chain has taught the app the intermediate (learned intermediates complete later leaf-only chains)
    rejected(t, await call(alb, '/', { ...via(transport), headers: { [albHeader]: albEncode(partner.leaf.pem) } }), 'FST_MTLS_CERT_UNTRUSTED',
      'ALB verify-mode leaf without configured intermediates: no path')
    const chain = albEncode(partner.leaf.pem + partnerCa.pem)
    t.match(chain, /\+/, 'the ALB value carries a literal +, as base64 does')
    identified(t, await call(alb, '/', { ...via(transport), headers: { [albHeader]: chain } }), directPartner, 'ALB passthrough: the whole chain, + left unencoded (never form-decoded)')
    rejected(t, await call(alb, '/', { ...via(transport), headers: { [albHeader]: chain.replace(/\+/g, ' ') } }), 'FST_MTLS_CERT_MALFORMED',
      'the same value form-decoded (+ turned into a space) does not parse')
  })

  t.test(`${transport}: base64-der (Traefik) and rfc9440`, async (t) => {
    const traefikHeader = 'x-forwarded-tls-client-cert'
    const traefik = await appFor(t, transport, { header: traefikHeader, format: 'base64-der', trustedProxies: ['127.0.0.1'] })
    // leaf-only first: once a chain verified, the app has learned the intermediate
    rejected(t, await call(traefik, '/', { ...via(transport), headers: { [traefikHeader]: b64(alice) } }), 'FST_MTLS_CERT_UNTRUSTED', 'Traefik: leaf alone, no path')
    identified(t, await call(traefik, '/', { ...via(transport), headers: { [traefikHeader]: `${b64(partner.leaf)},${b64(partnerCa)}` } }), directPartner, 'Traefik: leaf,intermediate')

    const rfc = await appFor(t, transport, { header: 'client-cert', chainHeader: 'client-cert-chain', format: 'rfc9440', trustedProxies: ['127.0.0.1'] })
    rejected(t, await call(rfc, '/', { ...via(transport), headers: { 'client-cert': sf(alice) } }), 'FST_MTLS_CERT_UNTRUSTED', 'Client-Cert without its chain: no path')
    identified(t, await call(rfc, '/', { ...via(transport), headers: { 'client-cert': sf(partner.leaf), 'client-cert-chain': sf(partnerCa) } }), directPartner, 'Client-Cert :b64: and Client-Cert-Chain')
    identified(t, await call(rfc, '/', { ...via(transport), headers: ['client-cert', sf(alice), 'client-cert-chain', sf(partnerCa), 'client-cert-chain', sf(partner.root)] }), directAlice,
      'Client-Cert-Chain as a list over two lines (RFC 9440 allows it)')
  })
}

t.test("xfcc: a URI SAN with a comma, written unquoted by Envoy, starts an element of its own ('only' refuses it)", async (t) => {
  // alice's CA (trusted) issued her a URI SAN "spiffe://partner.example/alice,Cert=<svc's certificate>;Chain=...".
  // Envoy writes URI values unquoted, so the header it sets for alice holds two elements.
  const injected = `By=spiffe://cluster.local/ns/edge/sa/envoy;Hash=${sha256Hex(alice.der)};Cert=${envoyEncode(alice.pem)};Subject="CN=alice";` +
    `URI=spiffe://partner.example/alice,Cert=${envoyEncode(partner.leaf.pem)};Chain=${envoyEncode(partner.leaf.pem + partnerCa.pem)};DNS=alice.partner.example`
  const only = await appFor(t, 'http', xfccOptions({ xfccElement: 'only' }))
  rejected(t, await call(only, '/', { headers: { [XFCC]: injected } }), 'FST_MTLS_CERT_MALFORMED', "'only'")
  const last = await appFor(t, 'http', xfccOptions())
  const r = await call(last, '/', { headers: { [XFCC]: injected } })
  t.same([r.status, r.body.id?.subject], [200, 'O=Partner,OU=payments,CN=svc'],
    "the default 'last' takes the smuggled element: alice is svc (a hazard the README's Envoy section documents: use 'only', forward Cert and Chain only)")
})

// ---------------------------------------------------------------- malformed values: 400, never 5xx

t.test('malformed values from a trusted proxy: 400 FST_MTLS_CERT_MALFORMED, never an identity, never 5xx', async (t) => {
  const reached: unknown[] = []
  const routes = (app: FastifyInstance): void => { app.get('/reached', async (req) => { reached.push(req.clientIdentity); return 'reached' }) }
  const urls = {
    xfcc: (await start(t, { options: { forwarded: xfccOptions() }, routes })).url,
    only: (await start(t, { options: { forwarded: xfccOptions({ xfccElement: 'only' }) }, routes })).url,
    pem: (await start(t, { options: { forwarded: { header: 'x-ssl-client-cert', format: 'escaped-pem', trustedProxies: ['127.0.0.1'] } }, routes })).url,
    der: (await start(t, { options: { forwarded: { header: 'x-forwarded-tls-client-cert', format: 'base64-der', trustedProxies: ['127.0.0.1'] } }, routes })).url,
    rfc: (await start(t, { options: { forwarded: { header: 'client-cert', chainHeader: 'client-cert-chain', format: 'rfc9440', trustedProxies: ['127.0.0.1'] } }, routes })).url
  }
  const leafPem = envoyEncode(partner.leaf.pem)
  const cases: Array<[keyof typeof urls, Record<string, string>, string]> = [
    ['xfcc', { [XFCC]: `Cert=${leafPem.replace('%0A', '%ZZ')}` }, 'xfcc: a bad percent-escape in Cert'],
    ['xfcc', { [XFCC]: `Cert=${leafPem.slice(0, -1)}%` }, 'xfcc: a % at the end'],
    ['xfcc', { [XFCC]: `By=x;Cert="${leafPem}` }, 'xfcc: an unterminated quote'],
    ['xfcc', { [XFCC]: xfcc(partner.leaf, [partnerCa], { hash: sha256Hex(alice.der) }) }, 'xfcc: Hash of another certificate'],
    ['xfcc', { [XFCC]: xfcc(partner.leaf, [partnerCa], { hash: 'abc' }) }, 'xfcc: Hash that is not a SHA-256'],
    ['xfcc', { [XFCC]: `By=x;Hash=${sha256Hex(partner.leaf.der)};Subject="x;Cert=${leafPem}"` }, 'xfcc: a Subject value hiding ";Cert=" (the element has no Cert)'],
    ['xfcc', { [XFCC]: 'By=x;Subject="CN=svc,OU=payments,O=Partner";URI=spiffe://partner.example/ns/prod/svc;DNS=svc.partner.example' }, 'xfcc: Subject/URI/DNS text only, no Cert'],
    ['xfcc', { [XFCC]: `Cert=${leafPem};Cert=${envoyEncode(alice.pem)}` }, 'xfcc: a repeated key'],
    ['xfcc', { [XFCC]: `Cert=${envoyEncode(partner.leaf.key.privateKeyPem)}` }, 'xfcc: a PRIVATE KEY PEM in Cert'],
    ['xfcc', { [XFCC]: `Cert=${envoyEncode(alice.pem)};Chain=${envoyEncode(partner.leaf.pem + partnerCa.pem)}` }, 'xfcc: Chain that does not start with Cert'],
    ['xfcc', { [XFCC]: 'junk' }, 'xfcc: junk'],
    ['xfcc', { [XFCC]: ';;,=' }, 'xfcc: separators only'],
    ['only', { [XFCC]: `${xfcc(alice, [partnerCa], { by: 'spiffe://attacker' })},${xfcc(partner.leaf, [partnerCa])}` }, "'only': an attacker's element before the proxy's"],
    ['pem', { 'x-ssl-client-cert': nginxEncode(partner.leaf.pem).replace('%0A', '%G0') }, 'escaped-pem: a bad percent-escape'],
    ['pem', { 'x-ssl-client-cert': nginxEncode(partner.leaf.pem).slice(0, 300) }, 'escaped-pem: a truncated PEM'],
    ['pem', { 'x-ssl-client-cert': nginxEncode(partner.leaf.key.privateKeyPem) }, 'escaped-pem: a PRIVATE KEY PEM'],
    ['pem', { 'x-ssl-client-cert': nginxEncode(partner.leaf.pem + partner.leaf.key.privateKeyPem) }, 'escaped-pem: a certificate followed by its private key'],
    ['pem', { 'x-ssl-client-cert': 'hello%20world' }, 'escaped-pem: junk'],
    ['der', { 'x-forwarded-tls-client-cert': '!!!!' }, 'base64-der: not base64'],
    ['der', { 'x-forwarded-tls-client-cert': `${b64(partner.leaf)},` }, 'base64-der: a trailing comma'],
    ['der', { 'x-forwarded-tls-client-cert': b64(partner.leaf).slice(0, 200) }, 'base64-der: a truncated certificate'],
    ['rfc', { 'client-cert': 'garbage' }, 'rfc9440: not a byte sequence'],
    ['rfc', { 'client-cert': `${sf(partner.leaf)};a=1` }, 'rfc9440: parameters'],
    ['rfc', { 'client-cert': sf(partner.leaf), 'client-cert-chain': `${sf(partnerCa)},` }, 'rfc9440: a trailing comma in the chain'],
    ['rfc', { 'client-cert': '', 'client-cert-chain': sf(partnerCa) }, 'rfc9440: a chain without a certificate']
  ]
  for (const [app, headers, what] of cases) {
    const r = await call(urls[app], '/reached', { headers })
    t.ok(r.status < 500, `${what}: not a 5xx`)
    rejected(t, r, 'FST_MTLS_CERT_MALFORMED', what)
  }
  t.same(reached, [], 'no malformed value reached a handler')
})

t.test('an empty value is no certificate: 401 MISSING in required mode, null in optional mode', async (t) => {
  for (const mode of ['required', 'optional'] as const) {
    const { url } = await start(t, { options: { mode, forwarded: xfccOptions() } })
    const rfc = (await start(t, { options: { mode, forwarded: { header: 'client-cert', chainHeader: 'client-cert-chain', format: 'rfc9440', trustedProxies: ['127.0.0.1'] } } })).url
    for (const [u, headers, what] of [[url, { [XFCC]: '' }, 'xfcc ""'], [url, { [XFCC]: '   ' }, 'xfcc of spaces'], [rfc, { 'client-cert': '', 'client-cert-chain': '' }, 'rfc9440, both empty'],
      [rfc, { 'client-cert-chain': sf(partnerCa) }, 'rfc9440, a chain header without Client-Cert']] as const) {
      const r = await call(u, '/', { headers })
      if (mode === 'required') rejected(t, r, 'FST_MTLS_CERT_MISSING', `${mode}: ${what}`)
      else t.same([r.status, r.body.id], [200, null], `${mode}: ${what}: clientIdentity null`)
    }
  }
})

// ---------------------------------------------------------------- the verify header

t.test("verifyHeader { name: 'x-ssl-client-verify', value: 'SUCCESS' } (nginx $ssl_client_verify)", async (t) => {
  const forwarded: Forwarded = { header: 'x-ssl-client-cert', format: 'escaped-pem', trustedProxies: ['127.0.0.1'], verifyHeader: { name: 'x-ssl-client-verify', value: 'SUCCESS' } }
  const cert = nginxEncode(partner.leaf.pem)
  for (const mode of ['required', 'optional'] as const) {
    const { url } = await start(t, { options: { mode, forwarded, intermediates: partnerCa.pem } })
    identified(t, await call(url, '/', { headers: { 'x-ssl-client-cert': cert, 'x-ssl-client-verify': 'SUCCESS' } }), directPartner, `${mode}: SUCCESS and a certificate`)
    for (const [headers, what] of [
      [{ 'x-ssl-client-cert': cert, 'x-ssl-client-verify': 'FAILED:certificate has expired' }, 'FAILED:... with a certificate'],
      [{ 'x-ssl-client-cert': cert, 'x-ssl-client-verify': 'success' }, 'success in lower case'],
      [{ 'x-ssl-client-cert': cert }, 'no verify header'],
      [{ 'x-ssl-client-cert': '', 'x-ssl-client-verify': 'NONE' }, 'NONE and an empty certificate (no client certificate at nginx)'],
      [{ 'x-ssl-client-verify': 'SUCCESS' }, 'SUCCESS without a certificate']
    ] as const) {
      const r = await call(url, '/', { headers })
      if (mode === 'required') rejected(t, r, 'FST_MTLS_CERT_MISSING', `${mode}: ${what}: no identity`)
      else t.same([r.status, r.body.id], [200, null], `${mode}: ${what}: clientIdentity null`)
    }
  }
})

// ---------------------------------------------------------------- the same verifier, policies and guards

t.test('a forwarded certificate goes through the same verifier, policies and guards', async (t) => {
  const { url } = await start(t, {
    options: { forwarded: xfccOptions(), ca: [{ name: 'partner', cert: partner.root.pem }, { name: 'other', cert: other.root.pem }] },
    routes: (app) => {
      app.get('/partner-only', { config: { mtls: { anchor: 'partner' } } }, async (req) => req.clientIdentity?.subject.rfc4514)
      app.get('/payments', { onRequest: app.mtls.require({ subject: { OU: 'payments' } }) }, async (req) => req.clientIdentity?.subject.rfc4514)
    }
  })
  const send = async (path: string, leaf: Issued, chain: Issued[]): Promise<Reply> => call(url, path, { headers: { [XFCC]: xfcc(leaf, chain) } })
  rejected(t, await send('/', stranger.leaf, stranger.intermediates), 'FST_MTLS_CERT_UNTRUSTED', 'an untrusted CA')
  rejected(t, await send('/', expired, [partnerCa]), 'FST_MTLS_CERT_EXPIRED', 'an expired leaf')
  rejected(t, await send('/', edgeProxy, []), 'FST_MTLS_CERT_UNTRUSTED', 'a leaf without its intermediate')
  const viaOther = await send('/', other.leaf, other.intermediates)
  t.same([viaOther.status, viaOther.body.id?.trustAnchor.name, viaOther.body.id?.source], [200, 'other', 'forwarded'], 'the other anchor, labelled')
  rejected(t, await send('/partner-only', other.leaf, other.intermediates), 'FST_MTLS_FORBIDDEN', 'route config { anchor: partner } against the other anchor')
  const partnerOnly = await send('/partner-only', partner.leaf, [partnerCa])
  t.same([partnerOnly.status, partnerOnly.text], [200, 'O=Partner,OU=payments,CN=svc'], 'route config { anchor: partner } matches')
  rejected(t, await send('/payments', alice, [partnerCa]), 'FST_MTLS_FORBIDDEN', 'app.mtls.require({ OU: payments }) against OU=sales')
  t.equal((await send('/payments', partner.leaf, [partnerCa])).status, 200, 'app.mtls.require() matches')

  t.test('a global policy', async (t) => {
    const { url } = await start(t, { options: { forwarded: xfccOptions(), policy: { subject: { OU: 'payments' } } } })
    rejected(t, await call(url, '/', { headers: { [XFCC]: xfcc(alice, [partnerCa]) } }), 'FST_MTLS_FORBIDDEN', 'OU=sales')
    identified(t, await call(url, '/', { headers: { [XFCC]: xfcc(partner.leaf, [partnerCa]) } }), directPartner, 'OU=payments')
  })
})

t.test('the rejection log, and enforce: false (report-only) never yields an identity from a refused header', async (t) => {
  const WARN = 40
  const { stream, lines } = logCapture()
  const { url } = await start(t, { logs: stream, options: { forwarded: xfccOptions() } })
  rejected(t, await call(url, '/', { headers: { [XFCC]: xfcc(expired, [partnerCa]) } }), 'FST_MTLS_CERT_EXPIRED', 'expired')
  const line = lines.find((l) => l.level === WARN && l['mtls.code'] === 'FST_MTLS_CERT_EXPIRED')
  t.match(line, { 'client.address': '127.0.0.1', 'tls.client.subject': 'O=Partner,CN=expired', 'tls.client.hash.sha256': sha256Hex(expired.der).toUpperCase() },
    'the log names the forwarded certificate and the proxy\'s address')

  const report = logCapture()
  const trusted = await start(t, { logs: report.stream, options: { enforce: false, forwarded: xfccOptions() } })
  const untrusted = await start(t, { logs: report.stream, options: { enforce: false, forwarded: xfccOptions({ trustedProxies: ['10.9.9.9'] }) } })
  const cases: Array<[string, Record<string, string> | string[], string, string]> = [
    [trusted.url, [XFCC, xfcc(alice, [partnerCa]), XFCC, xfcc(partner.leaf, [partnerCa])], 'FST_MTLS_CERT_MALFORMED', 'a repeated header'],
    [trusted.url, { [XFCC]: 'junk' }, 'FST_MTLS_CERT_MALFORMED', 'a malformed value'],
    [trusted.url, { [XFCC]: xfcc(expired, [partnerCa]) }, 'FST_MTLS_CERT_EXPIRED', 'an expired certificate'],
    [untrusted.url, { [XFCC]: xfcc(partner.leaf, [partnerCa]) }, 'FST_MTLS_FORWARDED_UNTRUSTED', 'a header from an untrusted peer']
  ]
  for (const [u, headers, code, what] of cases) {
    const before = report.lines.length
    const r = await call(u, '/', { headers })
    t.same([r.status, r.body.id], [200, null], `${what}: let through without an identity`)
    t.ok(report.lines.slice(before).some((l) => l.level === WARN && l['mtls.code'] === code && /would be rejected/.test(l.msg)), `${what}: logged as ${code}`)
  }
})

// ---------------------------------------------------------------- per request, never per connection

for (const transport of TRANSPORTS) {
  t.test(`${transport}: one keep-alive connection from the proxy carries several clients, each with its own identity`, async (t) => {
    const { url } = await start(t, { transport, options: { mode: 'optional', forwarded: xfccOptions() } })
    const one = new Agent({ connections: 1, pipelining: 1, ...(transport === 'https' ? { connect: { ca: partner.root.pem, rejectUnauthorized: false, cert: edgeProxy.pem + partnerCa.pem, key: edgeProxy.key.privateKeyPem } } : {}) })
    t.teardown(async () => one.close())
    const seq: Array<[Issued | undefined, Json | null]> = [[partner.leaf, directPartner], [alice, directAlice], [undefined, null], [partner.leaf, directPartner], [alice, directAlice]]
    const ports = new Set<number>()
    for (const [leaf, expected] of seq) {
      const r = await call(url, '/', { dispatcher: one, headers: leaf === undefined ? {} : { [XFCC]: xfcc(leaf, [partnerCa]) } })
      ports.add(r.body.port)
      t.same(r.body.id, expected === null ? null : asForwarded(expected), `${leaf === undefined ? 'no header' : leaf.cert.subject.replace(/\n/g, ',')}: its own identity`)
    }
    t.equal(ports.size, 1, 'all on one connection')
  })
}

// ---------------------------------------------------------------- options

t.test('forwarded options: FST_MTLS_INVALID_OPTIONS with a message that says what to fix', async (t) => {
  const base = { header: XFCC, format: 'xfcc', trustedProxies: ['10.0.0.7'] }
  const cases: Array<[unknown, RegExp, string]> = [
    [{ header: XFCC, format: 'xfcc' }, /trustedProxies must list the proxies allowed to set the header/, 'no trustedProxies'],
    [{ ...base, trustedProxies: [] }, /there is no default: an empty list would trust no one/, 'an empty list'],
    [{ ...base, trustedProxies: ['10.0.0.0/33'] }, /trustedProxies\[0\]: "10\.0\.0\.0\/33" is not an IP address or CIDR/, 'a bad CIDR'],
    [{ ...base, trustedProxies: ['10.0.0.7', 'proxy.internal'] }, /trustedProxies\[1\]: "proxy\.internal" is not an IP address/, 'a host name'],
    [{ ...base, trustedProxies: [7] }, /trustedProxies\[0\] must be a string/, 'a number'],
    [{ ...base, trustedProxies: '10.0.0.7' }, /trustedProxies must list the proxies allowed to set the header, e\.g\. \['10\.0\.0\.7'\]/, 'a bare string (the message shows the array form)'],
    [{ ...base, trustedProxies: { policy: { subject: { CN: 'p' } }, extra: 1 } }, /trustedProxies must be an array .* or \{ policy \}/, '{ policy } with another key'],
    [{ ...base, format: 'pem' }, /forwarded\.format must be one of xfcc, escaped-pem, base64-der, rfc9440, got "pem"/, 'a bad format'],
    [{ ...base, chainHeader: 'client-cert-chain' }, /forwarded\.chainHeader is for the rfc9440 format/, 'chainHeader with xfcc'],
    [{ ...base, format: 'escaped-pem', chainHeader: 'x-chain' }, /forwarded\.chainHeader is for the rfc9440 format/, 'chainHeader with escaped-pem'],
    [{ ...base, trustedProxy: ['10.0.0.7'] }, /forwarded: unknown field "trustedProxy"/, 'an unknown field'],
    [{ ...base, header: 'x forwarded' }, /forwarded\.header must be a header name/, 'a header name with a space'],
    [{ ...base, verifyHeader: { name: 'x-ssl-client-verify' } }, /forwarded\.verifyHeader must be \{ name, value \}/, 'verifyHeader without value'],
    [{ ...base, verifyHeader: { name: XFCC, value: 'SUCCESS' } }, /must be different headers/, 'verifyHeader named like the certificate header'],
    [{ ...base, xfccElement: 'first' }, /forwarded\.xfccElement must be 'last' or 'only', got "first"/, 'a bad xfccElement'],
    ['xfcc', /forwarded must be an object/, 'not an object']
  ]
  for (const [forwarded, message, what] of cases) {
    await t.rejects(register({ forwarded }), { code: 'FST_MTLS_INVALID_OPTIONS', message }, what)
  }
  await t.rejects(register({ forwarded: { ...base, trustedProxies: ['010.0.0.7'] } }), { code: 'FST_MTLS_INVALID_OPTIONS' },
    'an IPv4 address with leading zeros (ipaddr.js reads 010.0.0.7 as octal, 8.0.0.7) is refused as ambiguous')
})

t.test('which servers may carry the forwarded source', async (t) => {
  const byAddress = { header: XFCC, format: 'xfcc', trustedProxies: ['127.0.0.1'] }
  await t.resolves(register({ forwarded: byAddress }), 'plain HTTP with only forwarded: starts')
  await t.rejects(register({}), { code: 'FST_MTLS_INVALID_OPTIONS', message: /the server is not HTTPS/ }, 'plain HTTP without forwarded: refused')
  await t.rejects(register({ forwarded: { ...byAddress, trustedProxies: { policy: { subject: { CN: 'edge-proxy' } } } } }), { code: 'FST_MTLS_INVALID_OPTIONS', message: /the server is not HTTPS/ },
    'plain HTTP with an mTLS proxy policy: refused (the proxy could not authenticate)')
  const noRequestCert = { https: { key: httpsServerOptions.key, cert: httpsServerOptions.cert } }
  await t.resolves(register({ forwarded: byAddress }, noRequestCert), 'HTTPS without requestCert, with forwarded by address: starts')
  await t.rejects(register({}, noRequestCert), { code: 'FST_MTLS_INVALID_OPTIONS', message: /without requestCert: true/ }, 'HTTPS without requestCert and without forwarded: refused')

  const { url } = await start(t, { options: { forwarded: xfccOptions() } })
  identified(t, await call(url, '/', { headers: { [XFCC]: xfcc(partner.leaf, [partnerCa]) } }), directPartner, 'the plain HTTP app serves forwarded identities')
  rejected(t, await call(url, '/'), 'FST_MTLS_CERT_MISSING', 'and nothing else')
})
