// fastify-mtls-auth/testing (lib/testing): the snippet of docs/testing.md run verbatim
// (and checked to be the same text), then each helper on its own: clients and their
// dates, revocation, the server and plugin options, dispatchers, listenMtls, the
// production guard and the lazily loaded undici. Everything over real TLS on 127.0.0.1.
import t from 'tap'
import { execFile } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { request as undiciRequest, type Dispatcher } from 'undici'
import * as testing from '../lib/testing/index.js'
import { issue, makeCrl, newKey } from './helpers/pki.js'

// <docs/testing.md>
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import fastifyMtls from 'fastify-mtls-auth'
import { createTestPki, listenMtls, type TestClient } from 'fastify-mtls-auth/testing'
import { request } from 'undici'

// a throwaway PKI and the clients of this test, made now, in memory
const pki = await createTestPki()
const alice = await pki.client({ cn: 'alice', o: 'Acme', spiffe: 'spiffe://acme.test/billing' })
const bob = await pki.client({ cn: 'bob', o: 'Acme', spiffe: 'spiffe://acme.test/web' })
const expired = await pki.client({ cn: 'old', spiffe: 'spiffe://acme.test/billing', expired: true })
const mallory = await pki.client({ cn: 'mallory', spiffe: 'spiffe://acme.test/billing' })
const stranger = await pki.untrustedClient({ cn: 'alice', o: 'Acme', spiffe: 'spiffe://acme.test/billing' })

// the app under test: your routes and guards, with the test PKI's options
const app = Fastify({ https: pki.httpsOptions() })
await app.register(fastifyMtls, pki.pluginOptions())
app.get('/invoices', { config: { mtls: { spiffeId: 'spiffe://acme.test/billing' } } }, async (req) => {
  return { caller: req.clientIdentity?.spiffeId }
})
const server = await listenMtls(app)

// one request as `client` (none: no certificate), on its own connection
async function call (client?: TestClient): Promise<string> {
  const res = await request(`${server.url}/invoices`, { dispatcher: pki.dispatcher(client) })
  const body = await res.body.json() as { caller?: string, code?: string }
  return `${res.statusCode} ${body.caller ?? body.code}`
}

assert.equal(await call(alice), '200 spiffe://acme.test/billing') // the guard lets the billing workload in
assert.equal(await call(bob), '403 FST_MTLS_FORBIDDEN') // a trusted client, but not this route's
assert.equal(await call(), '401 FST_MTLS_CERT_MISSING')
assert.equal(await call(expired), '401 FST_MTLS_CERT_EXPIRED')
assert.equal(await call(stranger), '401 FST_MTLS_CERT_UNTRUSTED') // same names, another CA

// revocation: a new CRL, handed to the running app
assert.equal(await call(mallory), '200 spiffe://acme.test/billing')
await pki.revoke(mallory)
await app.mtls.reload({ crl: pki.crl() })
assert.equal(await call(mallory), '401 FST_MTLS_CERT_REVOKED')

await server.close()
// </docs/testing.md>

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

/** The fenced block that follows the marker in docs/testing.md, and the code between this file's markers. */
function snippets (): { doc: string, test: string } {
  const doc = readFileSync(join(root, 'docs', 'testing.md'), 'utf8')
  const fence = /<!-- the snippet below is test\/testing\.test\.ts[^\n]*-->\n```ts\n([\s\S]*?)```\n/.exec(doc)
  const self = readFileSync(fileURLToPath(import.meta.url), 'utf8')
  const start = self.indexOf('// <docs/testing.md>\n')
  const end = self.indexOf('// </docs/testing.md>\n')
  return { doc: fence?.[1] ?? '', test: start === -1 || end === -1 ? '' : self.slice(start + '// <docs/testing.md>\n'.length, end) }
}

t.test('docs/testing.md shows exactly the code this file ran above', async (t) => {
  const { doc, test } = snippets()
  t.ok(doc.length > 500, 'the documented snippet is found')
  t.ok(test.includes("from 'fastify-mtls-auth/testing'"), "this file's copy is found, importing the package by name")
  t.equal(test, doc, 'the same text: edit both together')
})

t.test('the README shows the same code as docs/testing.md', async (t) => {
  const { test } = snippets()
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const fence = /<!-- the snippet below is test\/testing\.test\.ts[^\n]*-->\n```ts\n([\s\S]*?)```\n/.exec(readme)
  t.ok(fence !== null, 'the README has the snippet, after the same marker')
  t.equal(fence?.[1], test, 'the same text as this file ran: edit all three together')
})

/** An app with a guarded route and an open one, listening on 127.0.0.1. */
async function serve (pki: testing.TestPki, plugin: Record<string, unknown> = {}): Promise<testing.MtlsTestServer & { app: FastifyInstance }> {
  const app = Fastify({ https: pki.httpsOptions() })
  await app.register(fastifyMtls, { ...pki.pluginOptions(), ...plugin })
  app.get('/who', async (req) => ({
    cn: req.clientIdentity?.subject.attributes.CN?.[0],
    chain: req.clientIdentity?.chain.length,
    anchor: req.clientIdentity?.trustAnchor.fingerprint256
  }))
  app.get('/open', { config: { mtls: false } }, async () => ({ open: true }))
  const server = await testing.listenMtls(app)
  return { ...server, app }
}

async function get (url: string, dispatcher: Dispatcher): Promise<{ status: number, body: any }> {
  const res = await undiciRequest(url, { dispatcher })
  return { status: res.statusCode, body: await res.body.json() }
}

const shared = await testing.createTestPki()

t.test('a client certificate: names, key, chain, dates', async (t) => {
  const before = Date.now()
  const carol = await shared.client({ cn: 'carol', o: 'Acme', ou: ['eng', 'ops'], spiffe: 'spiffe://acme.test/carol', altNames: { dns: ['carol.acme.test'] } })
  const x = new X509Certificate(carol.pem)
  t.equal(x.subject, 'O=Acme\nOU=eng\nOU=ops\nCN=carol')
  t.equal(x.subjectAltName, 'DNS:carol.acme.test, URI:spiffe://acme.test/carol')
  t.ok(x.checkPrivateKey(carol.key.privateKey), 'its key')
  t.ok(x.checkIssued(new X509Certificate(shared.clientCa.pem)) && x.verify(new X509Certificate(shared.clientCa.pem).publicKey), 'issued by the client CA')
  t.equal(carol.chainPem, carol.pem + shared.clientCa.pem, 'the chain: leaf, then the client CA')
  t.ok(carol.notBefore.getTime() <= before && carol.notAfter.getTime() > before + 24 * 60 * 60 * 1000, 'valid now')
  t.equal(x.keyUsage?.includes('1.3.6.1.5.5.7.3.2'), true, 'clientAuth EKU')

  const old = await shared.client({ cn: 'old', expired: true })
  t.ok(old.notAfter.getTime() < before && old.notBefore.getTime() < old.notAfter.getTime(), 'expired: valid in the past')
  const early = await shared.client({ cn: 'early', notYetValid: true })
  t.ok(early.notBefore.getTime() > Date.now(), 'notYetValid: valid in the future')
  const short = await shared.client({ cn: 'short', days: 2 })
  t.ok(Math.abs(short.notAfter.getTime() - short.notBefore.getTime() - 2 * 24 * 60 * 60 * 1000) < 60 * 60 * 1000, 'days')
  const at = new Date(Date.now() - 60 * 60 * 1000)
  t.equal((await shared.client({ cn: 'dated', notBefore: at, notAfter: new Date(at.getTime() + 3600e3 * 48) })).notBefore.getTime(), Math.floor(at.getTime() / 1000) * 1000, 'explicit dates')

  await t.rejects(shared.client({ cn: '' }), { name: 'TypeError', message: /client\(\) needs options with a cn/ })
  await t.rejects(shared.client(undefined as unknown as testing.TestClientOptions), { message: /needs options with a cn/ })
  await t.rejects(shared.client({ cn: 'x', expired: true, notYetValid: true }), { message: /cannot be both expired and notYetValid/ })
  await t.rejects(shared.untrustedClient({ cn: 'x', expired: true, notYetValid: true }), { message: /cannot be both/ })
})

t.test('key types: the PKI default is EC P-256, a client or a PKI can choose another', async (t) => {
  t.equal(shared.root.key?.type, 'ec')
  t.equal((await shared.client({ cn: 'e' })).key.type, 'ec')
  t.equal((await shared.client({ cn: 'r', keyType: 'rsa' })).key.type, 'rsa')
  const ed = await testing.createTestPki({ keyType: 'ed25519' })
  t.equal(ed.server.key?.type, 'ed25519')
  const dave = await ed.client({ cn: 'dave' })
  t.equal(dave.key.type, 'ed25519')
  t.equal((await ed.untrustedClient({ cn: 'eve' })).key.type, 'ed25519', 'the untrusted PKI too')
  const server = await serve(ed)
  t.teardown(server.close)
  t.same(await get(`${server.url}/who`, ed.dispatcher(dave)), { status: 200, body: { cn: 'dave', chain: 3, anchor: ed.root.fingerprint256 } }, 'over TLS with Ed25519 keys')
})

t.test('over TLS: each kind of client gets the answer its name promises', async (t) => {
  const server = await serve(shared)
  t.teardown(server.close)
  const url = `${server.url}/who`
  const alice = await shared.client({ cn: 'alice' })
  t.same(await get(url, shared.dispatcher(alice)), { status: 200, body: { cn: 'alice', chain: 3, anchor: shared.root.fingerprint256 } }, 'the chain ends at the root, the plugin\'s anchor')
  t.match(await get(url, shared.dispatcher()), { status: 401, body: { code: 'FST_MTLS_CERT_MISSING' } })
  t.match(await get(url, shared.dispatcher(await shared.client({ cn: 'old', expired: true }))), { status: 401, body: { code: 'FST_MTLS_CERT_EXPIRED' } })
  t.match(await get(url, shared.dispatcher(await shared.client({ cn: 'early', notYetValid: true }))), { status: 401, body: { code: 'FST_MTLS_CERT_NOT_YET_VALID' } })
  t.match(await get(url, shared.dispatcher(await shared.untrustedClient({ cn: 'alice' }))), { status: 401, body: { code: 'FST_MTLS_CERT_UNTRUSTED' } })
  t.same(await get(`${server.url}/open`, shared.dispatcher()), { status: 200, body: { open: true } }, 'an exempt route without a certificate')

  // one dispatcher, several requests: the same client on a kept-alive connection
  const dispatcher = shared.dispatcher(alice)
  t.equal((await get(url, dispatcher)).body.cn, 'alice')
  t.equal((await get(url, dispatcher)).body.cn, 'alice')
  t.not(shared.dispatcher(alice), shared.dispatcher(alice), 'a new Agent per call')

  t.throws(() => shared.dispatcher({ cn: 'alice' } as unknown as testing.TestClient), { name: 'TypeError', message: /dispatcher\(\) takes a certificate made by client\(\) or untrustedClient\(\), or nothing/ })
  t.throws(() => shared.dispatcher(null as unknown as testing.TestClient), { name: 'TypeError' })
})

t.test('revocation: revoke, crl and pluginOptions', async (t) => {
  const own = await testing.createTestPki()
  const empty = own.crl()
  t.match(empty, /^-----BEGIN X509 CRL-----/)
  t.same(own.pluginOptions(), { ca: own.root.pem, intermediates: [own.clientCa.pem], crl: empty })
  const server = await serve(own)
  t.teardown(server.close)
  t.match(server.app.mtls.status().crls, [{ revoked: 0, stale: false }], 'the plugin loaded the empty CRL')

  const mallory = await own.client({ cn: 'mallory' })
  const trent = await own.client({ cn: 'trent' })
  const url = `${server.url}/who`
  t.equal((await get(url, own.dispatcher(mallory))).status, 200)
  const pem = await own.revoke(mallory, 'keyCompromise')
  t.equal(own.crl(), pem, 'crl() is the latest')
  t.not(pem, empty)
  t.equal((await get(url, own.dispatcher(mallory))).status, 200, 'the running app keeps its CRL until reloaded')
  await server.app.mtls.reload({ crl: own.crl() })
  t.match(await get(url, own.dispatcher(mallory)), { status: 401, body: { code: 'FST_MTLS_CERT_REVOKED' } })
  t.equal((await get(url, own.dispatcher(trent))).status, 200, 'only the revoked one')

  await own.revoke(mallory)
  await own.revoke(trent)
  await server.app.mtls.reload({ crl: own.crl() })
  t.match(server.app.mtls.status().crls, [{ revoked: 2 }], 'revoking twice lists a certificate once')

  // revocations made at the same time: the current CRL lists them all, whichever CRL is signed last
  const [x, y, z] = await Promise.all([own.client({ cn: 'x' }), own.client({ cn: 'y' }), own.client({ cn: 'z' })])
  const crls = await Promise.all([own.revoke(x!), own.revoke(y!), own.revoke(z!)])
  t.equal(crls[2], own.crl(), 'the last call resolves to the current CRL')
  await server.app.mtls.reload({ crl: own.crl() })
  t.match(server.app.mtls.status().crls, [{ revoked: 5 }], 'concurrent revocations are all listed')

  // a plugin registered after the revocations starts with them
  const later = await serve(own)
  t.teardown(later.close)
  t.match(await get(`${later.url}/who`, own.dispatcher(trent)), { status: 401, body: { code: 'FST_MTLS_CERT_REVOKED' } }, 'pluginOptions() carries the current CRL')

  const stranger = await own.untrustedClient({ cn: 'mallory' })
  await t.rejects(own.revoke(stranger), { name: 'TypeError', message: /revoke\(\) takes a certificate made by this PKI's client\(\)/ })
  await t.rejects(own.revoke(own.server), { name: 'TypeError' }, 'the server certificate is not the client CA\'s')
  await t.rejects(own.revoke(await shared.client({ cn: 'other-pki' })), { name: 'TypeError' }, 'another test PKI\'s client')
  await t.rejects(own.revoke(null as unknown as testing.TestClient), { name: 'TypeError' })
  await t.rejects(own.revoke({ der: 'x' } as unknown as testing.TestClient), { name: 'TypeError' })
})

t.test('pluginOptions: the client CA is configured, so the CRL is checked at start-up and nothing is logged about it', async (t) => {
  const lines: string[] = []
  const app = Fastify({ https: shared.httpsOptions(), logger: { level: 'warn', stream: { write: (l: string) => { lines.push(l) } } } })
  t.teardown(() => app.close())
  await app.register(fastifyMtls, shared.pluginOptions())
  await app.ready()
  t.same(lines.filter((l) => /fastify-mtls-auth/.test(l)), [], 'no warning from the plugin at start-up')
  t.match(app.mtls.status().crls, [{ revoked: 0, stale: false }])

  // a CRL in the client CA's name but signed by another key is refused at once
  const impostor = await issue({ subject: shared.clientCa.subject.split(',').reverse().join(','), ca: true, key: await newKey('ec256', { fresh: true }) })
  t.equal(new X509Certificate(impostor.pem).subject, new X509Certificate(shared.clientCa.pem).subject, 'the same CA name')
  const forged = Fastify({ https: shared.httpsOptions(), logger: false })
  t.teardown(() => forged.close())
  await t.rejects(async () => { await forged.register(fastifyMtls, { ...shared.pluginOptions(), crl: (await makeCrl({ issuer: impostor })).pem }) }, /crl\[0\]: the signature of the CRL from .* does not verify with that CA's key/)
})

t.test('pluginOptions spread with the client CA alone as the anchor, as docs/testing.md suggests', async (t) => {
  const server = await serve(shared, { ca: shared.clientCa.pem })
  t.teardown(server.close)
  t.same(await get(`${server.url}/who`, shared.dispatcher(await shared.client({ cn: 'zoe' }))), { status: 200, body: { cn: 'zoe', chain: 2, anchor: shared.clientCa.fingerprint256 } }, 'the path ends at the client CA')
  t.match(await get(`${server.url}/who`, shared.dispatcher(await shared.untrustedClient({ cn: 'zoe' }))), { status: 401, body: { code: 'FST_MTLS_CERT_UNTRUSTED' } })
})

t.test('httpsOptions: the server certificate, the anchor as CA names, every certificate handed to the plugin', async (t) => {
  const https = shared.httpsOptions()
  t.same(Object.keys(https).sort(), ['ca', 'cert', 'key', 'rejectUnauthorized', 'requestCert'])
  t.same(https.ca, [shared.root.pem])
  t.equal(https.requestCert, true)
  t.equal(https.rejectUnauthorized, false)
  const server = new X509Certificate(https.cert)
  t.ok(server.checkPrivateKey(shared.server.key!.privateKey))
  t.equal(server.checkHost('localhost'), 'localhost')
  t.equal(server.checkIP('127.0.0.1'), '127.0.0.1')
  t.equal(server.checkIP('::1'), '::1')
  t.ok(server.verify(new X509Certificate(shared.root.pem).publicKey), 'issued by the root the dispatchers trust')
  t.ok(Object.isFrozen(shared), 'the PKI object cannot be altered')
})

t.test('listenMtls', async (t) => {
  const app = Fastify({ https: shared.httpsOptions() })
  await app.register(fastifyMtls, shared.pluginOptions())
  app.get('/', async () => ({ ok: true }))
  const server = await testing.listenMtls(app)
  t.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/)
  t.equal(server.url, `https://127.0.0.1:${server.port}`)
  t.not(server.port, 0)
  t.same(app.server.address(), { address: '127.0.0.1', family: 'IPv4', port: server.port }, 'loopback only')
  const dispatcher = shared.dispatcher(await shared.client({ cn: 'alice' }))
  t.equal((await get(`${server.url}/`, dispatcher)).status, 200)
  await server.close()
  await t.rejects(get(`${server.url}/`, shared.dispatcher()), { code: 'ECONNREFUSED' }, 'close() stops listening')

  const plain = Fastify()
  plain.get('/', async () => ({ ok: true }))
  t.teardown(async () => { await plain.close() })
  await t.rejects(testing.listenMtls(plain), { name: 'TypeError', message: 'fastify-mtls-auth/testing: listenMtls() needs an HTTPS app: create it with Fastify({ https: pki.httpsOptions() })' })
  t.equal(plain.server.listening, false, 'a plain HTTP app is not started')
})

t.test('refused with NODE_ENV=production unless allowProduction', async (t) => {
  const saved = process.env.NODE_ENV
  t.teardown(() => { if (saved === undefined) delete process.env.NODE_ENV; else process.env.NODE_ENV = saved })
  process.env.NODE_ENV = 'production'
  await t.rejects(testing.createTestPki(), { message: 'fastify-mtls-auth/testing makes throwaway CAs for tests and refuses to run with NODE_ENV=production (pass { allowProduction: true } to createTestPki in a test that needs it)' })
  await t.rejects(testing.createTestPki({ allowProduction: 'yes' as unknown as boolean }), { message: /NODE_ENV=production/ }, 'only true lifts it')
  const allowed = await testing.createTestPki({ allowProduction: true })
  t.ok(allowed.root.pem.startsWith('-----BEGIN CERTIFICATE-----'), 'explicitly allowed')
  process.env.NODE_ENV = 'test'
  t.ok((await testing.createTestPki()).clientCa, 'any other NODE_ENV')
})

t.test('the built package: undici is needed only by dispatcher(), with a one-line error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mtls-testing-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // hide undici from require(), as in a project that has not installed it
  const hide = join(dir, 'hide-undici.cjs')
  writeFileSync(hide, `const Module = require('node:module')
const resolve = Module._resolveFilename
Module._resolveFilename = function (request, ...rest) {
  if (request === 'undici') { const err = new Error("Cannot find module 'undici'"); err.code = 'MODULE_NOT_FOUND'; throw err }
  return resolve.call(this, request, ...rest)
}
`)
  const code = `import { createTestPki, listenMtls } from 'fastify-mtls-auth/testing'
const pki = await createTestPki()
console.log(typeof listenMtls, pki.httpsOptions().requestCert)
try { pki.dispatcher() } catch (err) { console.log(err.message) }`
  const run = async (args: string[]): Promise<{ code: number | null, out: string }> => await new Promise((resolve) => {
    const child = execFile(process.execPath, [...args, '--input-type=module', '-e', code], { cwd: root }, (_err, stdout, stderr) => resolve({ code: child.exitCode, out: stdout + stderr }))
  })
  const without = await run(['--require', hide])
  t.equal(without.code, 0, without.out)
  t.equal(without.out, 'function true\nfastify-mtls-auth/testing: dispatcher() needs the undici package: npm install --save-dev undici\n')
  const withIt = await run([])
  t.equal(withIt.out, 'function true\n', 'with undici installed, dispatcher() works')
})

t.test('the package declares undici as an optional peer dependency; the plugin never loads the testing module', async (t) => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  t.type(pkg.peerDependencies?.undici, 'string')
  t.same(pkg.peerDependenciesMeta?.undici, { optional: true })
  t.type(pkg.devDependencies?.undici, 'string', 'and a devDependency for our own tests')
  t.equal(pkg.dependencies?.undici, undefined)
  t.equal(pkg.exports['./testing'].import, './dist/testing/index.js')

  const offenders: string[] = []
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name)
      if (statSync(path).isDirectory()) { if (name !== 'testing') walk(path) } else if (name.endsWith('.ts') && /from '[^']*\/testing(\/index)?\.js'/.test(readFileSync(path, 'utf8'))) offenders.push(path)
    }
  }
  walk(join(root, 'lib'))
  t.same(offenders, [], 'no module outside lib/testing imports it')
})
