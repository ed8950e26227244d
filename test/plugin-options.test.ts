// Register-time option checking: every invalid option fails ready() with FST_MTLS_INVALID_OPTIONS and
// a message that says how to fix it; the caller's options are never changed.
import t, { type Test } from 'tap'
import type { Writable } from 'node:stream'
import Fastify, { type FastifyInstance } from 'fastify'
import { Agent, request } from 'undici'
import fastifyMtls, { type FastifyMtlsOptions } from '../lib/index.js'
import { makeChain, makeCrl } from './helpers/pki.js'
import { logCapture, type Json } from './helpers/logs.js'

const server = await makeChain({ kind: 'ec256', intermediates: 0, label: 'Server', leaf: { subject: 'CN=localhost', san: { dns: ['localhost'], ip: ['127.0.0.1'] }, extKeyUsage: ['serverAuth'] } })
const acme = await makeChain({ kind: 'ec256', label: 'Acme', leaf: { subject: 'CN=svc,O=Acme' } })
const globex = await makeChain({ kind: 'ec256', label: 'Globex', intermediates: 0 })
const acmeCa = acme.intermediates[0]
if (acmeCa === undefined) throw new Error('makeChain gave no intermediate')
const crl = await makeCrl({ issuer: acmeCa })

interface AppOptions { https?: Json | null, logs?: Writable }

function newApp (t: Test, o: AppOptions = {}): FastifyInstance {
  const https = o.https === null
    ? undefined
    : { key: server.leaf.key.privateKeyPem, cert: server.leaf.pem, ca: [acme.root.pem, globex.root.pem], requestCert: true, rejectUnauthorized: false, ...o.https }
  const app = Fastify({
    ...(https === undefined ? {} : { https }),
    ...(o.logs === undefined ? {} : { logger: { level: 'info', stream: o.logs } })
  }) as unknown as FastifyInstance
  t.teardown(async () => app.close())
  return app
}

/** Registers the plugin with `options` and expects ready() to reject with FST_MTLS_INVALID_OPTIONS and `message`. */
async function refused (t: Test, options: unknown, message: RegExp, what: string, app = newApp(t), todo?: string, known?: Known): Promise<void> {
  app.register(fastifyMtls, options as FastifyMtlsOptions)
  let err: (Error & { code?: string }) | undefined
  try {
    await app.ready()
  } catch (e) {
    err = e as Error & { code?: string }
  }
  const extra = todo === undefined ? {} : { todo }
  t.equal(err?.code, 'FST_MTLS_INVALID_OPTIONS', `${what}: FST_MTLS_INVALID_OPTIONS`, extra)
  t.match(err?.message, /^Invalid fastify-mtls-auth options: /, `${what}: names the plugin`, extra)
  t.match(err?.message, message, `${what}: says how to fix it`, extra)
  if (known !== undefined) t.match(err?.message, known.message, `${what}: ${known.what}`)
}

/** A further expectation on the message. */
interface Known { message: RegExp, what: string }

const NAMES_CA: Known = {
  message: /options: ca\b|\bca\[\d\]/,
  what: 'names the option as the caller wrote it (ca)'
}
const POLICY_PREFIX: Known = {
  message: /^(?!.*policy: policy)/,
  what: 'does not repeat the path prefix'
}

const ca = acme.root.pem
const labelled = [{ name: 'acme', cert: acme.root.pem }, { name: 'globex', cert: globex.root.pem }]

t.test('every invalid option is refused at register time with a message that says how to fix it', async (t) => {
  const cases: Array<[string, unknown, RegExp, Known?]> = [
    ['options not an object', 'ca.pem', /options must be an object such as \{ ca: /],
    ['missing ca', {}, /ca is required: the CA certificates \(PEM\)/],
    ['ca: null', { ca: null }, /ca is required/],
    ['a ca that does not parse', { ca: 'this is not a certificate' }, /\[0\]: no PEM "CERTIFICATE" block and not DER/, NAMES_CA],
    ['a ca bundle with a broken certificate', { ca: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' }, /\[0\]: certificate #1 does not parse/, NAMES_CA],
    ['an unknown option (typo)', { ca, polcy: {} }, /unknown option "polcy" \(known options: .*\bpolicy\b/],
    ['mode \'sometimes\'', { ca, mode: 'sometimes' }, /mode must be 'required' or 'optional', got "sometimes"/],
    ['minRsaBits 512', { ca, minRsaBits: 512 }, /minRsaBits must be an integer from 1024 to 8192, got 512/],
    ['minRsaBits 2048.5', { ca, minRsaBits: 2048.5 }, /minRsaBits must be an integer/],
    ['maxChainLength 1', { ca, maxChainLength: 1 }, /maxChainLength must be an integer from 2 to 24, got 1/],
    ['clockToleranceSec -1', { ca, clockToleranceSec: -1 }, /clockToleranceSec must be a number of seconds from 0 to 86400/],
    ['clockToleranceSec Infinity', { ca, clockToleranceSec: Infinity }, /clockToleranceSec must be a number of seconds/],
    ['enforce \'no\'', { ca, enforce: 'no' }, /enforce must be true or false, got "no"/],
    ['requireClientAuthEku 1', { ca, requireClientAuthEku: 1 }, /requireClientAuthEku must be true or false, got 1/],
    ['rejectionLogLimit -1', { ca, rejectionLogLimit: -1 }, /rejectionLogLimit must be an integer from 0/],
    ['maxVerdictAgeSec 0', { ca, maxVerdictAgeSec: 0 }, /maxVerdictAgeSec must be an integer from 1/],
    ['deny not an array', { ca, deny: 'AB:CD' }, /deny must be an array of fingerprints, SPKI hashes or \{ issuer, serialNumber \} entries/],
    ['a deny entry that is neither fingerprint nor SPKI hash', { ca, deny: ['not-a-hash'] },
      /deny\[0\]: "not-a-hash" is neither a SHA-256 fingerprint \(64 hex digits\) nor an SPKI SHA-256 hash \(base64\)/],
    ['a deny entry with a short fingerprint', { ca, deny: ['AB:CD:EF'] }, /deny\[0\]: .*neither a SHA-256 fingerprint/],
    ['a deny entry without serialNumber', { ca, deny: [{ issuer: 'CN=Acme' }] }, /deny\[0\]: expected a fingerprint, an SPKI hash or \{ issuer, serialNumber \}/],
    ['a deny serial that is not hex', { ca, deny: [{ issuer: 'CN=Acme', serialNumber: 'xyz' }] }, /deny\[0\]\.serialNumber must be hex/],
    ['wwwAuthenticate with a newline', { ca, wwwAuthenticate: 'Mutual\r\nSet-Cookie: a=b' }, /wwwAuthenticate must be a non-empty header value without line breaks/],
    ['wwwAuthenticate empty', { ca, wwwAuthenticate: '' }, /wwwAuthenticate must be a non-empty header value/],
    ['onRejected not a function', { ca, onRejected: 'log' }, /onRejected must be a function/],
    ['onAuthenticated not a function', { ca, onAuthenticated: {} }, /onAuthenticated must be a function/],
    ['policy not an object', { ca, policy: 'admins' }, /policy must be an object such as \{ subject: \{ O: 'Acme' \} \}/],
    ['a policy with an unknown key', { ca, policy: { subjet: { CN: 'svc' } } }, /policy: unknown key "subjet" \(did you mean "subject"\?\)/, POLICY_PREFIX],
    ['a policy with an unanchored RegExp', { ca, policy: { dns: /foo/ } }, /policy\.dns: RegExp \/foo\/ must be anchored with \^ and \$/, POLICY_PREFIX],
    ['policy anchor naming a label that is not configured', { ca: labelled, policy: { anchor: 'initech' } },
      /policy\.anchor.*unknown anchor "initech"; the labelled anchors are: "acme", "globex"/],
    ['two anchors with the same label', { ca: [{ name: 'acme', cert: acme.root.pem }, { name: 'acme', cert: globex.root.pem }] }, /\[1\]\.name "acme" is used twice/, NAMES_CA],
    ['intermediates that do not parse', { ca, intermediates: 'junk' }, /intermediates\[0\]: no PEM "CERTIFICATE" block and not DER/],
    ['a crl that does not parse', { ca, crl: 'junk' }, /crl\[0\]: no PEM "X509 CRL" block and not DER/]
  ]
  for (const [what, options, message, known] of cases) await refused(t, options, message, what, newApp(t), undefined, known)
})

t.test('policy anchor with unlabelled ca entries', async (t) => {
  // With no labelled anchor at all, no `anchor` name can match: the policy is refused, not left to never match.
  await refused(t, { ca, policy: { anchor: 'acme' } }, /unknown anchor "acme".*\(none: label them/, 'anchor naming a label with only unlabelled ca entries', newApp(t))
})

t.test('the server must be HTTPS with requestCert', async (t) => {
  await refused(t, { ca }, /not HTTPS.*https: \{ key, cert, ca, requestCert: true \}/, 'plain HTTP', newApp(t, { https: null }))
  await refused(t, { ca }, /without requestCert: true.*set https: \{ requestCert: true, ca \}/, 'requestCert false', newApp(t, { https: { requestCert: false } }))
})

function deepFreeze<T> (value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const key of Reflect.ownKeys(value)) deepFreeze((value as Record<PropertyKey, unknown>)[key])
  }
  return value
}

/** A structuredClone-able copy: functions become their names. */
function plain (value: unknown): unknown {
  if (typeof value === 'function') return `[function ${value.name}]`
  if (Array.isArray(value)) return value.map(plain)
  if (value instanceof RegExp) return value
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]))
  return value
}

t.test('the caller\'s options object is not mutated', async (t) => {
  const onAuthenticated = (): void => {}
  const onRejected = (): void => {}
  const check = (): boolean => true
  const options = deepFreeze({
    ca: labelled,
    mode: 'optional' as const,
    policy: {
      anyOf: [
        { anchor: 'acme', subject: { O: ['Acme', /^Acme [A-Z][a-z]+$/] }, check },
        { anchor: ['globex'], dns: /^[a-z]+\.globex\.example$/, ip: ['10.0.0.0/8'] }
      ]
    },
    intermediates: [acmeCa.pem],
    crl: [crl.pem],
    deny: ['00'.repeat(32), { issuer: 'CN=Nobody', serialNumber: '0A:0B' }],
    requireClientAuthEku: true,
    clockToleranceSec: 5,
    minRsaBits: 3072,
    maxChainLength: 4,
    maxVerdictAgeSec: 60,
    enforce: true,
    wwwAuthenticate: 'Mutual realm="api"',
    rejectionLogLimit: 10,
    onAuthenticated,
    onRejected
  })
  const before = structuredClone(plain(options))
  const app = newApp(t)
  await app.register(fastifyMtls, options as unknown as FastifyMtlsOptions)
  app.get('/', async (req) => ({ cn: req.clientIdentity?.subject.attributes.CN?.[0] ?? null }))
  app.get('/strict', { config: { mtls: options.policy } }, async () => 'ok')
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as { port: number }
  const agent = new Agent({ connect: { ca: server.root.pem, servername: 'localhost', cert: acme.chainPem, key: acme.leaf.key.privateKeyPem } })
  t.teardown(async () => agent.close())
  const res = await request(`https://127.0.0.1:${port}/strict`, { dispatcher: agent })
  t.equal(res.statusCode, 200, 'the frozen options work for a real request')
  await res.body.dump()
  t.same(plain(options), before, 'unchanged after register, ready and a request')
  t.equal(options.onAuthenticated, onAuthenticated, 'the same hook functions')
  t.equal(options.policy.anyOf[0]?.check, check)
})

t.test('a policy matching names only with two anchors draws a warning mentioning `anchor`', async (t) => {
  const warnings = (lines: Json[]): Json[] => lines.filter((l) => l.level === 40 && /anchor/.test(String(l.msg)) && /names/.test(String(l.msg)))

  const named = logCapture()
  const app = newApp(t, { logs: named.stream })
  await app.register(fastifyMtls, { ca: labelled, policy: { subject: { CN: 'svc' } } })
  await app.ready()
  const found = warnings(named.lines)
  t.equal(found.length, 1, 'one warning')
  t.match(found[0]?.msg, /`anchor`/, 'it names the `anchor` field')
  t.match(found[0]?.msg, /2 CAs are trusted/)

  const routeLevel = logCapture()
  const app2 = newApp(t, { logs: routeLevel.stream })
  await app2.register(fastifyMtls, { ca: [acme.root.pem, globex.root.pem] })
  app2.get('/x', { config: { mtls: { dns: 'svc.example' } } }, async () => 'x')
  await app2.ready()
  t.match(warnings(routeLevel.lines)[0]?.msg, /route GET \/x matches certificate names without `anchor`/, 'route config too, with unlabelled anchors')

  const bound = logCapture()
  const app3 = newApp(t, { logs: bound.stream })
  await app3.register(fastifyMtls, { ca: labelled, policy: { anchor: 'acme', subject: { CN: 'svc' } } })
  await app3.ready()
  t.equal(warnings(bound.lines).length, 0, 'no warning when the policy names an anchor')

  const single = logCapture()
  const app4 = newApp(t, { logs: single.stream, https: { ca: acme.root.pem } })
  await app4.register(fastifyMtls, { ca, policy: { subject: { CN: 'svc' } } })
  await app4.ready()
  t.equal(warnings(single.lines).length, 0, 'no warning with one anchor')
})
