// Revocation through the plugin over real TLS (issue 4, "How it is checked", first two bullets):
// CRLs made by `openssl ca -gencrl` (revoked leaf, revoked intermediate, stale, wrong key,
// future thisUpdate) and a delta CRL, in hard- and soft-fail; OCSP against real `openssl ocsp`
// responders (delegated OCSPSigning responder) behind counting HTTP proxies on 127.0.0.1, in
// hard- and soft-fail. CRL distribution points are in plugin-revocation-dp.test.ts.
// A Fastify HTTPS server on 127.0.0.1 port 0 per case, undici clients presenting certificates
// made while the tests run; one Agent is one connection, a new Agent a new connection.
import t, { type Test } from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, request as httpRequest } from 'node:http'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import { Agent, request } from 'undici'
import fastifyMtls, { type FastifyMtlsOptions, type RejectionCode } from '../lib/index.js'
import { OID } from '../lib/der/oids.js'
import * as w from '../lib/der/writer.js'
import { issue, makeChain, makeCrl, newKey, type Issued, type KeyPair } from './helpers/pki.js'

const HOUR = 3600e3
const DAY = 24 * HOUR
const now = Date.now()
const fresh = async (): Promise<KeyPair> => newKey('ec256', { fresh: true })

// ---------------------------------------------------------------- PKI

const serverPki = await makeChain({
  kind: 'ec256', intermediates: 0, label: 'Server', leaf: { subject: 'CN=localhost', san: { dns: ['localhost'], ip: ['127.0.0.1'] }, extKeyUsage: ['serverAuth'] }
})
// root -> issuing CA (has a CRL, answers OCSP) -> clients; root -> revoked CA; root -> CA without a CRL
const root = await issue({ subject: 'CN=Revocation Root CA,O=Fixture PKI', key: await fresh(), ca: true })
const int = await issue({ subject: 'CN=Revocation Issuing CA,O=Fixture PKI', issuer: root, key: await fresh(), ca: true })
const revokedCa = await issue({ subject: 'CN=Revocation Revoked CA,O=Fixture PKI', issuer: root, key: await fresh(), ca: true })
const noCrlCa = await issue({ subject: 'CN=Revocation No-CRL CA,O=Fixture PKI', issuer: root, key: await fresh(), ca: true })
// same name as the issuing CA, another key: what signs the forged CRL
const impostor = await issue({ ...int.spec, key: await fresh() })
const stranger = await makeChain({ kind: 'ec256', intermediates: 0, label: 'Stranger', root: { key: await fresh() } })

const client = async (issuer: Issued, cn: string, extra: Partial<Parameters<typeof issue>[0]> = {}): Promise<Issued> =>
  issue({ subject: `CN=${cn},O=Clients`, issuer, key: await newKey('ec256'), ...extra })

const good = await client(int, 'good')
const revoked = await client(int, 'revoked')
const underRevokedCa = await client(revokedCa, 'under-revoked-ca')
const underNoCrlCa = await client(noCrlCa, 'under-no-crl-ca')

// ---------------------------------------------------------------- openssl

const dir = mkdtempSync(join(tmpdir(), 'plugin-revocation-'))
const processes: ChildProcess[] = []
t.teardown(() => {
  for (const p of processes) p.kill()
  rmSync(dir, { recursive: true, force: true })
})

/** openssl's time format: YYMMDDHHMMSSZ */
const utc = (ms: number): string => new Date(ms).toISOString().slice(2, 19).replace(/[-:T]/g, '') + 'Z'
/** openssl ca database lines: status, expiry, revocation[,reason], serial (hex), file name, DN (distinct) */
const indexLines = (entries: Array<{ serialHex: string, revoked: boolean }>): string => entries.map(({ serialHex, revoked }) =>
  [revoked ? 'R' : 'V', utc(now + 30 * DAY), revoked ? `${utc(now - DAY)},keyCompromise` : '', serialHex, 'unknown', `/CN=client ${serialHex}`].join('\t') + '\n'
).join('')

let crlRuns = 0
/** `openssl ca -gencrl` in a directory of its own: signed by `ca`'s key, listing `revoked`, with `args` for the dates. */
function opensslCrl (ca: Issued, revokedCerts: Issued[], args: string[]): string {
  const d = join(dir, `crl-${++crlRuns}`)
  mkdirSync(d)
  const file = (name: string): string => join(d, name)
  writeFileSync(file('ca.pem'), ca.pem)
  writeFileSync(file('ca.key'), ca.key.privateKeyPem, { mode: 0o600 })
  writeFileSync(file('index.txt'), indexLines(revokedCerts.map((cert) => ({ serialHex: cert.serialHex, revoked: true }))))
  writeFileSync(file('crlnumber'), '01\n')
  writeFileSync(file('ca.cnf'), [
    '[ ca ]', 'default_ca = CA_default', '[ CA_default ]', `database = ${file('index.txt')}`, `crlnumber = ${file('crlnumber')}`,
    'default_md = sha256', 'crl_extensions = crl_ext', '[ crl_ext ]', 'authorityKeyIdentifier = keyid:always', ''
  ].join('\n'))
  const r = spawnSync('openssl', ['ca', '-gencrl', '-batch', '-config', file('ca.cnf'), '-keyfile', file('ca.key'), '-cert', file('ca.pem'), '-out', file('crl.pem'), ...args], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`openssl ca -gencrl ${args.join(' ')}: ${r.stderr}`)
  return readFileSync(file('crl.pem'), 'utf8')
}

const intCrl = opensslCrl(int, [revoked], ['-crldays', '7'])
const rootCrl = opensslCrl(root, [revokedCa], ['-crlhours', '24'])
const staleCrl = opensslCrl(int, [revoked], ['-crl_lastupdate', utc(now - 10 * DAY), '-crl_nextupdate', utc(now - DAY)])
const futureCrl = opensslCrl(int, [revoked], ['-crl_lastupdate', utc(now + DAY), '-crl_nextupdate', utc(now + 8 * DAY)])
const forgedCrl = opensslCrl(impostor, [revoked], ['-crldays', '7'])
// openssl ca cannot easily make a delta CRL
const deltaCrl = (await makeCrl({ issuer: int, crlNumber: 2, deltaCrlIndicator: 1 })).pem

// ---------------------------------------------------------------- server and clients

interface LogLine { level: number, msg: string, [key: string]: unknown }
const WARN = 40
const SOFT_FAIL_MSG = 'fastify-mtls-auth: revocation status unknown, accepted (soft-fail)'

async function start (t: Test, options: Partial<FastifyMtlsOptions>): Promise<{ app: FastifyInstance, url: string, logs: LogLine[] }> {
  const logs: LogLine[] = []
  const app = Fastify({
    logger: { level: 'info', stream: { write (line: string) { logs.push(JSON.parse(line) as LogLine) } } },
    https: { key: serverPki.leaf.key.privateKeyPem, cert: serverPki.leaf.pem, ca: root.pem, requestCert: true, rejectUnauthorized: false }
  }) as unknown as FastifyInstance
  t.teardown(async () => app.close())
  await app.register(fastifyMtls, { ca: root.pem, expiryWarningDays: 0, ...options })
  app.get('/', async (req) => ({ cn: req.clientIdentity?.subject.attributes.CN?.[0] ?? null }))
  await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, url: `https://127.0.0.1:${(app.server.address() as AddressInfo).port}/`, logs }
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

interface Reply { status: number, body: { cn?: string | null, code?: string } }

async function get (url: string, dispatcher: Agent): Promise<Reply> {
  const res = await request(url, { dispatcher })
  return { status: res.statusCode, body: await res.body.json() as Reply['body'] }
}

/** A new connection for `leaf`; its reply must be a 401 with `code`. */
async function refused (t: Test, url: string, code: RejectionCode, what: string, leaf: Issued, ...chain: Issued[]): Promise<void> {
  const r = await get(url, as(t, leaf, ...chain))
  t.same({ status: r.status, code: r.body.code }, { status: 401, code }, `${what}: 401 ${code}`)
}

async function accepted (t: Test, url: string, what: string, leaf: Issued, ...chain: Issued[]): Promise<void> {
  const r = await get(url, as(t, leaf, ...chain))
  t.same(r, { status: 200, body: { cn: /^CN=([^,]+)/.exec(String(leaf.spec.subject))?.[1] } }, `${what}: 200`)
}

const softFailWarnings = (logs: LogLine[]): LogLine[] => logs.filter((l) => l.level === WARN && l.msg === SOFT_FAIL_MSG)

// ---------------------------------------------------------------- CRLs from openssl

t.test('openssl CRLs from the root and the issuing CA: revoked leaf, revoked intermediate, an issuer without a CRL', async (t) => {
  const { url, app } = await start(t, { crl: [intCrl, rootCrl], intermediates: [int.pem] })
  await accepted(t, url, 'a client not on its issuer\'s CRL', good, int)
  await refused(t, url, 'FST_MTLS_CERT_REVOKED', 'a leaf on the issuing CA\'s CRL', revoked, int)
  await refused(t, url, 'FST_MTLS_CERT_REVOKED', 'a leaf under an intermediate on the root\'s CRL', underRevokedCa, revokedCa)
  await accepted(t, url, 'a client whose issuer has no CRL configured (the issuer itself is on no CRL)', underNoCrlCa, noCrlCa)
  const crls = app.mtls.status().crls
  t.same(crls.map((c) => ({ issuer: c.issuer, stale: c.stale, revoked: c.revoked })), [
    { issuer: 'O=Fixture PKI,CN=Revocation Issuing CA', stale: false, revoked: 1 },
    { issuer: 'O=Fixture PKI,CN=Revocation Root CA', stale: false, revoked: 1 }
  ], 'status() lists both CRLs')
  const lifetime = (i: number): number => Date.parse(crls[i]?.nextUpdate ?? '') - Date.parse(crls[i]?.thisUpdate ?? '')
  t.same([lifetime(0), lifetime(1)], [7 * DAY, DAY], '-crldays 7 and -crlhours 24')
})

t.test('a stale openssl CRL: REVOCATION_UNKNOWN, or 200 and a warning in crlMode soft-fail; a listed serial stays revoked', async (t) => {
  const hard = await start(t, { crl: staleCrl })
  await refused(t, hard.url, 'FST_MTLS_REVOCATION_UNKNOWN', 'hard-fail (the default)', good, int)
  await refused(t, hard.url, 'FST_MTLS_CERT_REVOKED', 'a serial listed on the late CRL', revoked, int)
  t.equal(hard.app.mtls.status().crls[0]?.stale, true, 'status() says stale')
  t.same(softFailWarnings(hard.logs), [], 'no soft-fail warning in hard-fail')

  const soft = await start(t, { crl: staleCrl, crlMode: 'soft-fail' })
  await accepted(t, soft.url, 'soft-fail', good, int)
  const warnings = softFailWarnings(soft.logs)
  t.equal(warnings.length, 1, 'one warning line')
  t.match(warnings[0], { 'mtls.reason': /no usable CRL from its issuer \(CRL is stale/, 'tls.client.hash.sha256': good.cert.fingerprint256.replace(/:/g, '') })
  await refused(t, soft.url, 'FST_MTLS_CERT_REVOKED', 'soft-fail: a listed serial is revoked in every mode', revoked, int)
})

t.test('an openssl CRL with thisUpdate in the future: REVOCATION_UNKNOWN', async (t) => {
  const { url } = await start(t, { crl: futureCrl })
  await refused(t, url, 'FST_MTLS_REVOCATION_UNKNOWN', 'a client of that issuer', good, int)
})

t.test('an openssl CRL signed by the wrong key', async (t) => {
  const app = Fastify({ https: { key: serverPki.leaf.key.privateKeyPem, cert: serverPki.leaf.pem, ca: root.pem, requestCert: true, rejectUnauthorized: false } }) as unknown as FastifyInstance
  t.teardown(async () => app.close())
  app.register(fastifyMtls, { ca: root.pem, crl: forgedCrl, intermediates: [int.pem] })
  await t.rejects(async () => { await app.ready() }, { code: 'FST_MTLS_INVALID_OPTIONS', message: /crl\[0\]: the signature of the CRL from "O=Fixture PKI,CN=Revocation Issuing CA" does not verify with that CA's key/ },
    'refused at register time when its CA is configured')

  // its CA known only from clients' chains: checked when used, and a serial it lists proves nothing
  const { url, logs } = await start(t, { crl: forgedCrl })
  t.ok(logs.some((l) => l.level === WARN && /crl\[0\]: its issuer .* is neither in ca nor in intermediates/.test(l.msg)), 'a warning at start-up')
  await refused(t, url, 'FST_MTLS_REVOCATION_UNKNOWN', 'a client of the named CA', good, int)
  await refused(t, url, 'FST_MTLS_REVOCATION_UNKNOWN', 'a serial the forged CRL lists is not revoked by it', revoked, int)
})

t.test('a delta CRL alone: REVOCATION_UNKNOWN', async (t) => {
  const { url } = await start(t, { crl: deltaCrl, intermediates: [int.pem] })
  await refused(t, url, 'FST_MTLS_REVOCATION_UNKNOWN', 'delta CRLs are not supported, so the issuer has no usable CRL', good, int)
})

// ---------------------------------------------------------------- OCSP with openssl responders

// the issuing CA's clients, by serial, as the responder's database knows them
const ocspGood = await client(int, 'ocsp-good', { serial: '1001' })
const ocspRevoked = await client(int, 'ocsp-revoked', { serial: '1002' })
const ocspUnknown = await client(int, 'ocsp-unknown', { serial: '1003' })
const ocspDir = join(dir, 'ocsp')
mkdirSync(ocspDir)
const ocspFile = (name: string): string => join(ocspDir, name)
const delegated = await issue({ subject: 'CN=Revocation OCSP Responder,O=Fixture PKI', issuer: int, key: await fresh(), extKeyUsage: ['ocspSigning'] })
const otherCa = await issue({ subject: 'CN=Revocation Other CA,O=Fixture PKI', key: await fresh(), ca: true })
const otherDelegated = await issue({ subject: 'CN=Revocation OCSP Responder,O=Fixture PKI', issuer: otherCa, key: await fresh(), extKeyUsage: ['ocspSigning'] })
// 1004: the client with an AIA OCSP URL, issued once the responder's port is known
writeFileSync(ocspFile('index.txt'), indexLines([{ serialHex: '1001', revoked: false }, { serialHex: '1002', revoked: true }, { serialHex: '1004', revoked: false }]))
writeFileSync(ocspFile('ca.pem'), int.pem)
for (const [name, cert] of [['ocsp', delegated], ['other-ocsp', otherDelegated]] as const) {
  writeFileSync(ocspFile(`${name}.pem`), cert.pem)
  writeFileSync(ocspFile(`${name}.key`), cert.key.privateKeyPem, { mode: 0o600 })
}

/** Starts `openssl ocsp` on an ephemeral port; resolves to its URL once it listens (the ACCEPT line). */
async function startResponder (signer: string): Promise<string> {
  const proc = spawn('openssl', ['ocsp', '-index', ocspFile('index.txt'), '-CA', ocspFile('ca.pem'), '-port', '0',
    '-rsigner', ocspFile(`${signer}.pem`), '-rkey', ocspFile(`${signer}.key`), '-ndays', '1'], { stdio: ['ignore', 'pipe', 'pipe'] })
  processes.push(proc)
  let output = ''
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`openssl ocsp did not start: ${output}`)), 10_000)
    const onData = (chunk: Buffer): void => {
      output += chunk.toString()
      // OpenSSL 3 prints "ACCEPT [::]:PORT PID=..." once it listens
      const m = /ACCEPT \S*:(\d+)/.exec(output)
      if (m !== null) {
        clearTimeout(timer)
        resolve(Number(m[1]))
      }
    }
    proc.stdout?.on('data', onData)
    proc.stderr?.on('data', onData)
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`openssl ocsp exited with ${code}: ${output}`)) })
  })
  // no TCP probe: OpenSSL 3.0's responder hangs for good on a connection closed without a request
  return `http://127.0.0.1:${port}/`
}

interface Counting {
  url: string
  requests: () => number
  /** holds the next request until release() is called; `arrived` resolves when it comes in */
  hold: () => { arrived: Promise<void>, release: () => void }
}

/** An HTTP server on 127.0.0.1 that counts requests and forwards each (one connection per request) to `target`. */
async function countingProxy (target: string): Promise<Counting> {
  let requests = 0
  let held: { arrive: () => void, gate: Promise<void> } | undefined
  const server = createServer((req, res) => {
    requests++
    const gate = held
    held = undefined
    gate?.arrive()
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', async () => {
      await gate?.gate
      const body = Buffer.concat(chunks)
      const up = httpRequest(target, {
        method: req.method,
        agent: false,
        headers: { 'content-type': req.headers['content-type'] ?? 'application/ocsp-request', 'content-length': String(body.length), connection: 'close' }
      }, (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, { 'content-type': upRes.headers['content-type'] ?? 'application/ocsp-response' })
        upRes.pipe(res)
      })
      up.on('error', () => { res.writeHead(502).end() })
      up.end(body)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const hold = (): { arrived: Promise<void>, release: () => void } => {
    let arrive = (): void => {}
    let release = (): void => {}
    const arrived = new Promise<void>((resolve) => { arrive = resolve })
    const gate = new Promise<void>((resolve) => { release = resolve })
    held = { arrive, gate }
    return { arrived, release }
  }
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, requests: () => requests, hold }
}

async function freePort (): Promise<number> {
  const server = createNetServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

const [delegatedUrl, wrongSignerUrl] = await Promise.all([startResponder('ocsp'), startResponder('other-ocsp')])
const responder = await countingProxy(delegatedUrl)
const wrongSigner = await countingProxy(wrongSignerUrl)
// a second door to the same responder, named only in certificates' AIA
const aiaServer = await countingProxy(delegatedUrl)
const aiaUrl = `${aiaServer.url}ocsp`
const downUrl = `http://127.0.0.1:${await freePort()}/`

const aia = (url: string): { oid: string, valueDer: Buffer } => ({
  oid: OID.authorityInfoAccess,
  valueDer: w.sequence(w.sequence(w.oid(OID.ocsp), w.implicitPrimitive(6, Buffer.from(url))))
})
const ocspViaAia = await client(int, 'ocsp-via-aia', { serial: '1004', extraExtensions: [aia(aiaUrl)] })
// good in the responder's database, under a CA it does not answer for
const strangerViaAia = await client(stranger.root, 'stranger', { serial: '1001', extraExtensions: [aia(aiaUrl)] })

/** Requests `server` received while `fn` ran. */
async function requestsDuring (server: Counting, fn: () => Promise<void>): Promise<number> {
  const before = server.requests()
  await fn()
  return server.requests() - before
}

t.test('OCSP hard-fail against a delegated openssl responder: good, revoked, unknown', async (t) => {
  const { url, app } = await start(t, { ocsp: { mode: 'hard-fail', responder: responder.url } })
  const asked = await requestsDuring(responder, async () => {
    await accepted(t, url, 'good', ocspGood, int)
    await refused(t, url, 'FST_MTLS_CERT_REVOKED', 'revoked', ocspRevoked, int)
    await refused(t, url, 'FST_MTLS_REVOCATION_UNKNOWN', 'a serial the responder does not know', ocspUnknown, int)
  })
  t.equal(asked, 3, 'one request per certificate')
  t.match(app.mtls.status().ocsp, { mode: 'hard-fail', responders: [{ url: responder.url, healthy: true, consecutiveFailures: 0 }] })
})

t.test('OCSP soft-fail: revoked is still refused, unknown is accepted with a warning', async (t) => {
  const { url, logs } = await start(t, { ocsp: { mode: 'soft-fail', responder: responder.url } })
  await accepted(t, url, 'good', ocspGood, int)
  await refused(t, url, 'FST_MTLS_CERT_REVOKED', 'revoked', ocspRevoked, int)
  t.same(softFailWarnings(logs), [], 'no warning for good and revoked answers')
  await accepted(t, url, 'unknown', ocspUnknown, int)
  const warnings = softFailWarnings(logs)
  t.equal(warnings.length, 1, 'one warning line')
  t.match(warnings[0], { 'mtls.reason': /^OCSP unknown .*does not know the certificate/, 'tls.client.hash.sha256': ocspUnknown.cert.fingerprint256.replace(/:/g, '') })
})

t.test('OCSP responder down (nothing listens on its port)', async (t) => {
  const hard = await start(t, { ocsp: { mode: 'hard-fail', responder: downUrl } })
  await refused(t, hard.url, 'FST_MTLS_REVOCATION_UNKNOWN', 'hard-fail', ocspGood, int)
  const status = hard.app.mtls.status().ocsp
  t.equal(status?.responders[0]?.healthy, false, 'status(): the responder is unhealthy')
  t.match(status, { mode: 'hard-fail', responders: [{ url: downUrl, consecutiveFailures: 1, lastSuccess: null, lastError: /fetch failed|ECONNREFUSED/ }] })

  const soft = await start(t, { ocsp: { mode: 'soft-fail', responder: downUrl } })
  await accepted(t, soft.url, 'soft-fail', ocspGood, int)
  t.match(softFailWarnings(soft.logs), [{ 'mtls.reason': new RegExp(`^OCSP error \\(${downUrl}\\)`) }], 'with a warning line')
  t.equal(soft.app.mtls.status().ocsp?.responders[0]?.healthy, false)
})

t.test('OCSP response signed by another CA\'s responder (wrong signer)', async (t) => {
  const hard = await start(t, { ocsp: { mode: 'hard-fail', responder: wrongSigner.url } })
  await refused(t, hard.url, 'FST_MTLS_REVOCATION_UNKNOWN', 'hard-fail', ocspGood, int)
  t.match(hard.app.mtls.status().ocsp?.responders, [{ healthy: false, lastError: /wrong signer/ }])
  const soft = await start(t, { ocsp: { mode: 'soft-fail', responder: wrongSigner.url } })
  await accepted(t, soft.url, 'soft-fail', ocspGood, int)
  t.match(softFailWarnings(soft.logs), [{ 'mtls.reason': /wrong signer/ }])
  const revokedByWrongSigner = await requestsDuring(wrongSigner, async () => {
    await accepted(t, soft.url, 'soft-fail: a "revoked" answer from the wrong signer is not believed', ocspRevoked, int)
  })
  t.equal(revokedByWrongSigner, 1)
})

t.test('an AIA OCSP URL not on allowedResponders is never requested', async (t) => {
  const denied = await start(t, { ocsp: { mode: 'hard-fail' } })
  const asked = await requestsDuring(aiaServer, async () => {
    await refused(t, denied.url, 'FST_MTLS_REVOCATION_UNKNOWN', 'hard-fail without an allowed responder', ocspViaAia, int)
    await refused(t, denied.url, 'FST_MTLS_REVOCATION_UNKNOWN', 'a client without AIA', ocspGood, int)
  })
  t.equal(asked, 0, 'the server named in the certificate got no request')

  const allowed = await start(t, { ocsp: { mode: 'hard-fail', allowedResponders: [aiaUrl] } })
  const used = await requestsDuring(aiaServer, async () => {
    await accepted(t, allowed.url, 'the allow-listed AIA responder is used', ocspViaAia, int)
  })
  t.equal(used, 1, 'one request to the allow-listed AIA URL')
})

t.test('OCSP is asked only after the chain verified', async (t) => {
  const { url } = await start(t, { ocsp: { mode: 'hard-fail', responder: responder.url, allowedResponders: [aiaUrl] } })
  const expired = await client(int, 'expired', { serial: '1001', notBefore: new Date(now - 10 * DAY), notAfter: new Date(now - DAY) })
  const asked = await requestsDuring(responder, async () => {
    await refused(t, url, 'FST_MTLS_CERT_UNTRUSTED', 'a client from an untrusted CA', strangerViaAia)
    await refused(t, url, 'FST_MTLS_CERT_EXPIRED', 'an expired client of the issuing CA', expired, int)
  })
  t.equal(asked, 0, 'the configured responder got no request')
  t.equal(await requestsDuring(aiaServer, async () => {
    await refused(t, url, 'FST_MTLS_CERT_UNTRUSTED', 'again, a new connection', strangerViaAia)
  }), 0, 'nor the allow-listed AIA URL the untrusted certificate names')
})

t.test('a good OCSP answer is cached: two new connections, one request', async (t) => {
  const { url, app } = await start(t, { ocsp: { mode: 'hard-fail', responder: responder.url } })
  const asked = await requestsDuring(responder, async () => {
    await accepted(t, url, 'first connection', ocspGood, int)
    await accepted(t, url, 'second connection', ocspGood, int)
    // a new trust epoch forgets the verdicts, not the OCSP answers
    await app.mtls.reload({ deny: [] })
    await accepted(t, url, 'a third connection after a reload', ocspGood, int)
  })
  t.equal(asked, 1, 'one responder request')
  t.equal(app.mtls.status().ocsp?.cacheSize, 1)
})

t.test('a reload while an OCSP request is in flight: the next request on that connection is judged by the new trust', async (t) => {
  const { url, app } = await start(t, { ocsp: { mode: 'hard-fail', responder: responder.url } })
  const a = as(t, ocspGood, int)
  const { arrived, release } = responder.hold()
  const first = get(url, a)
  await arrived
  // the client is denied while the responder has not answered yet
  await app.mtls.reload({ deny: [ocspGood.cert.fingerprint256] })
  release()
  await first
  const next = await get(url, a)
  t.same({ status: next.status, code: next.body.code }, { status: 401, code: 'FST_MTLS_CERT_REVOKED' }, 'the same connection, next request: 401 FST_MTLS_CERT_REVOKED')
  await refused(t, url, 'FST_MTLS_CERT_REVOKED', 'a new connection', ocspGood, int)
})
