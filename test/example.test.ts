// The b2b-api example (examples/b2b-api): started in-process and as `node server.js`,
// called over real TLS with undici and with the curl command line.
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { createPrivateKey, X509Certificate } from 'node:crypto'
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { Agent, request } from 'undici'
import type { FastifyInstance } from 'fastify'
import { createCertificate, loadCertificate, loadKey, type Certificate, type SubjectName } from '../lib/pki/index.js'

interface Pair { cert: string, key: string }
interface PkiPaths {
  dir: string
  serverCa: Pair
  server: Pair
  partners: Record<string, { ca: Pair, clients: { claims: Pair, billing: Pair } & Record<string, Pair> }>
}
interface Example {
  start: (o?: { port?: number, host?: string, pkiDir?: string, logger?: unknown }) => Promise<{ app: FastifyInstance, url: string, pki: PkiPaths }>
  ensurePki: (dir: string, o?: { now?: number }) => Promise<{ paths: PkiPaths, generated: boolean }>
  curlCommands: (url: string, paths: PkiPaths, cwd?: string) => Array<[string, string]>
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const example = await import(new URL('../examples/b2b-api/server.js', import.meta.url).href) as Example
const DAY = 24 * 60 * 60 * 1000

const dir = mkdtempSync(join(tmpdir(), 'mtls-b2b-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

const { app, url, pki } = await example.start({ port: 0, pkiDir: join(dir, 'pki') })
const agents: Agent[] = []
t.teardown(async () => {
  await Promise.all(agents.map(async (a) => a.close()))
  await app.close()
})

const read = (f: string): string => readFileSync(f, 'utf8')
const serverCa = read(pki.serverCa.cert)
const mercy = pki.partners['mercy-hospital']!
const oakridge = pki.partners['oakridge-clinic']!

function agent (pair?: Pair): Agent {
  const a = new Agent({
    connect: { ca: serverCa, servername: 'localhost', ...(pair === undefined ? {} : { cert: read(pair.cert), key: read(pair.key) }) }
  })
  agents.push(a)
  return a
}

const as = {
  none: agent(),
  mercyClaims: agent(mercy.clients.claims),
  mercyBilling: agent(mercy.clients.billing),
  oakClaims: agent(oakridge.clients.claims),
  oakBilling: agent(oakridge.clients.billing)
}

interface Reply { status: number, body: any, headers: Record<string, unknown> }

async function call (dispatcher: Agent, path: string, post?: unknown): Promise<Reply> {
  const res = await request(`${url}${path}`, {
    dispatcher,
    ...(post === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(post) })
  })
  const text = await res.body.text()
  return { status: res.statusCode, body: text === '' ? undefined : JSON.parse(text), headers: res.headers }
}

async function curl (args: string[], cwd = root): Promise<{ status: number, body: any }> {
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile('curl', ['-s', '-S', '-w', '\n%{http_code}', ...args], { cwd }, (err, out, stderr) => {
      if (err !== null) reject(new Error(`curl failed: ${err.message} ${stderr}`))
      else resolve(out)
    })
  })
  const cut = stdout.lastIndexOf('\n')
  return { status: Number(stdout.slice(cut + 1)), body: JSON.parse(stdout.slice(0, cut)) }
}

const curlAs = (pair: Pair | undefined, path: string): Promise<{ status: number, body: any }> =>
  curl(['--cacert', pki.serverCa.cert, ...(pair === undefined ? [] : ['--cert', pair.cert, '--key', pair.key]), `${url}${path}`])

/** A client certificate signed by `ca` with the given subject, written to `dest`.pem and .key. */
async function clientCert (dest: string, ca: Certificate, subject: SubjectName, notAfter = Date.now() + DAY): Promise<Pair> {
  const cert = await createCertificate({ subject, issuer: ca, extKeyUsage: ['clientAuth'], notAfter: new Date(notAfter) })
  const pair = { cert: join(dir, `${dest}.pem`), key: join(dir, `${dest}.key`) }
  writeFileSync(pair.cert, cert.pem)
  writeFileSync(pair.key, cert.key!.privateKeyPem, { mode: 0o600 })
  return pair
}

/** A self-signed CA that the API does not trust, with Mercy's CA's name. */
async function rogueCa (): Promise<Certificate> {
  return await createCertificate({ subject: { o: 'Mercy Hospital', cn: 'Mercy Hospital Partner CA' }, ca: true })
}

/** A CA of the example's PKI, with its key, read from its files. */
function caOf (pair: Pair): Certificate {
  return loadCertificate(read(pair.cert), loadKey(read(pair.key)))
}

t.test('the development PKI', async (t) => {
  t.match(url, /^https:\/\/localhost:\d+$/, 'the real port, not 0')
  t.not(url, 'https://localhost:0')
  const files = [pki.serverCa, pki.server, ...Object.values(pki.partners).flatMap((p) => [p.ca, ...Object.values(p.clients)])]
  t.equal(files.length, 8, 'server CA, server, two partner CAs, two client certificates each')
  for (const f of files) {
    t.equal(statSync(f.key).mode & 0o777, 0o600, `${f.key} is private`)
    t.ok(new X509Certificate(read(f.cert)).checkPrivateKey(createPrivateKey(read(f.key))), `${f.cert} matches its key`)
    t.equal(createPrivateKey(read(f.key)).asymmetricKeyType, 'ec', `${f.key}: ECDSA P-256, the PKI module's default`)
  }
  const source = read(join(root, 'examples', 'b2b-api', 'server.js'))
  t.match(source, "from 'fastify-mtls-auth/pki'", 'made with the package\'s own PKI module')
  t.notMatch(source, /node-forge/, 'no certificate generator of its own')
  const server = new X509Certificate(read(pki.server.cert))
  t.ok(server.checkHost('localhost') !== undefined && server.checkIP('127.0.0.1') !== undefined && server.checkIP('::1') !== undefined)
  const claims = new X509Certificate(read(mercy.clients.claims.cert))
  t.equal(claims.subject, 'O=Mercy Hospital\nOU=claims\nCN=claims-bot')
  t.ok(claims.checkIssued(new X509Certificate(read(mercy.ca.cert))))
  t.notOk(claims.checkIssued(new X509Certificate(read(oakridge.ca.cert))))

  const again = await example.ensurePki(pki.dir)
  t.equal(again.generated, false, 'a usable PKI is reused')
  t.equal(new X509Certificate(read(again.paths.server.cert)).fingerprint256, server.fingerprint256)

  // a copy of the PKI whose Mercy claims certificate expires in an hour
  const other = join(dir, 'expiring')
  cpSync(pki.dir, other, { recursive: true })
  const soon = await clientCert('soon', caOf(mercy.ca), { o: 'Mercy Hospital', ou: 'claims', cn: 'claims-bot' }, Date.now() + 60 * 60 * 1000)
  cpSync(soon.cert, join(other, 'mercy-claims.pem'))
  const renewed = await example.ensurePki(other)
  t.equal(renewed.generated, true, 'a certificate expiring within a day makes a new PKI')
  t.ok(new Date(new X509Certificate(read(renewed.paths.partners['mercy-hospital']!.clients.claims!.cert)).validTo).getTime() - Date.now() > 80 * DAY)
  t.not(new X509Certificate(read(renewed.paths.server.cert)).fingerprint256, server.fingerprint256, 'all of it')
  writeFileSync(join(other, 'server.pem'), 'not a certificate')
  t.equal((await example.ensurePki(other)).generated, true, 'an unreadable certificate makes a new PKI')
})

t.test('health probe needs no certificate', async (t) => {
  const r = await call(as.none, '/healthz')
  t.equal(r.status, 200)
  t.same(r.body, { status: 'ok' })
  const c = await curlAs(undefined, '/healthz')
  t.equal(c.status, 200)
  t.same(c.body, { status: 'ok' })
  t.equal((await call(as.mercyClaims, '/healthz')).status, 200, 'with a certificate too')
})

t.test('the API needs a certificate', async (t) => {
  for (const path of ['/v1/claims', '/v1/claims/C-1001', '/v1/whoami', '/v1/invoices']) {
    const r = await call(as.none, path)
    t.equal(r.status, 401, path)
    t.equal(r.body.code, 'FST_MTLS_CERT_MISSING', path)
  }
  const post = await call(as.none, '/v1/claims', { patientRef: 'X', amount: 1 })
  t.equal(post.status, 401)
  t.equal(post.body.code, 'FST_MTLS_CERT_MISSING')
  const c = await curlAs(undefined, '/v1/claims')
  t.equal(c.status, 401)
  t.match(c.body, { statusCode: 401, code: 'FST_MTLS_CERT_MISSING', error: 'Unauthorized' })
})

t.test('each partner sees only its own claims', async (t) => {
  const m = await call(as.mercyClaims, '/v1/claims')
  t.equal(m.status, 200)
  t.equal(m.body.partner, 'mercy-hospital')
  t.ok(m.body.claims.length >= 2)
  t.ok(m.body.claims.every((c: { partner: string }) => c.partner === 'mercy-hospital'))
  t.ok(m.body.claims.some((c: { id: string }) => c.id === 'C-1001'))

  const o = await call(as.oakClaims, '/v1/claims')
  t.equal(o.body.partner, 'oakridge-clinic')
  t.ok(o.body.claims.length >= 1)
  t.ok(o.body.claims.every((c: { partner: string }) => c.partner === 'oakridge-clinic'))

  const billing = await call(as.mercyBilling, '/v1/claims')
  t.equal(billing.status, 200, 'any partner certificate may read its claims')
  t.equal(billing.body.partner, 'mercy-hospital')

  const c = await curlAs(oakridge.clients.claims, '/v1/claims')
  t.equal(c.status, 200)
  t.same(c.body, o.body, 'curl sees what undici sees')
})

t.test("another partner's claim is not found, never forbidden", async (t) => {
  const own = await call(as.mercyClaims, '/v1/claims/C-1001')
  t.equal(own.status, 200)
  t.equal(own.body.id, 'C-1001')
  const theirs = await call(as.oakClaims, '/v1/claims/C-1001')
  t.equal(theirs.status, 404)
  t.same(theirs.body, { statusCode: 404, code: 'CLAIM_NOT_FOUND', error: 'Not Found', message: 'Claim C-1001 not found' })
  const missing = await call(as.oakClaims, '/v1/claims/C-9999')
  t.same(missing.body, { ...theirs.body, message: 'Claim C-9999 not found' }, 'same answer as a claim that does not exist')
  const c = await curlAs(oakridge.clients.claims, '/v1/claims/C-1001')
  t.equal(c.status, 404)
  t.equal(c.body.code, 'CLAIM_NOT_FOUND')
})

t.test('only claims certificates may submit a claim', async (t) => {
  const before = (await call(as.mercyClaims, '/v1/claims')).body.claims.length
  const denied = await call(as.mercyBilling, '/v1/claims', { patientRef: 'MH-P-1', amount: 10 })
  t.equal(denied.status, 403)
  t.match(denied.body, { statusCode: 403, code: 'FST_MTLS_FORBIDDEN' })
  const deniedCurl = await curl(['--cacert', pki.serverCa.cert, '--cert', mercy.clients.billing.cert, '--key', mercy.clients.billing.key,
    '-H', 'content-type: application/json', '-d', '{"patientRef":"MH-P-1","amount":10}', `${url}/v1/claims`])
  t.equal(deniedCurl.status, 403)
  t.equal(deniedCurl.body.code, 'FST_MTLS_FORBIDDEN')
  t.equal((await call(as.mercyClaims, '/v1/claims')).body.claims.length, before, 'nothing was created')

  const created = await call(as.mercyClaims, '/v1/claims', { patientRef: 'MH-P-77', amount: 250.75 })
  t.equal(created.status, 201)
  t.match(created.body, { id: /^C-\d+$/, partner: 'mercy-hospital', patientRef: 'MH-P-77', amount: 250.75, status: 'submitted', submittedBy: 'claims-bot' })
  t.equal(created.headers.location, `/v1/claims/${created.body.id as string}`)
  t.equal((await call(as.mercyClaims, `/v1/claims/${created.body.id as string}`)).status, 200)
  t.equal((await call(as.oakClaims, `/v1/claims/${created.body.id as string}`)).status, 404, 'invisible to the other partner')

  const viaCurl = await curl(['--cacert', pki.serverCa.cert, '--cert', oakridge.clients.claims.cert, '--key', oakridge.clients.claims.key,
    '-H', 'content-type: application/json', '-d', '{"patientRef":"OC-1","amount":5}', `${url}/v1/claims`])
  t.equal(viaCurl.status, 201)
  t.equal(viaCurl.body.partner, 'oakridge-clinic')

  const invalid = await call(as.mercyClaims, '/v1/claims', { patientRef: 'MH-P-77', amount: -1 })
  t.equal(invalid.status, 400, 'the body is validated after the certificate')
})

t.test('invoices are for billing certificates only', async (t) => {
  const ok = await call(as.oakBilling, '/v1/invoices')
  t.equal(ok.status, 200)
  t.equal(ok.body.partner, 'oakridge-clinic')
  t.ok(ok.body.invoices.length >= 1 && ok.body.invoices.every((i: { partner: string }) => i.partner === 'oakridge-clinic'))
  const m = await call(as.mercyBilling, '/v1/invoices')
  t.ok(m.body.invoices.every((i: { partner: string }) => i.partner === 'mercy-hospital'))
  const denied = await call(as.mercyClaims, '/v1/invoices')
  t.equal(denied.status, 403)
  t.equal(denied.body.code, 'FST_MTLS_FORBIDDEN')
})

t.test('whoami echoes the verified identity', async (t) => {
  const x = new X509Certificate(read(mercy.clients.claims.cert))
  const r = await call(as.mercyClaims, '/v1/whoami')
  t.equal(r.status, 200)
  t.same(r.body, {
    partner: 'mercy-hospital',
    subject: 'CN=claims-bot,OU=claims,O=Mercy Hospital',
    issuer: 'CN=Mercy Hospital Partner CA,O=Mercy Hospital',
    fingerprint256: x.fingerprint256,
    serialNumber: x.serialNumber.toUpperCase(),
    notAfter: new Date(x.validTo).toISOString()
  })
})

t.test('a certificate from an unknown CA is untrusted', async (t) => {
  // a stranger's CA with Mercy's name, issuing a "Mercy claims bot"
  const stranger = await clientCert('stranger', await rogueCa(), { o: 'Mercy Hospital', ou: 'claims', cn: 'claims-bot' })
  const r = await call(agent(stranger), '/v1/claims')
  t.equal(r.status, 401)
  t.equal(r.body.code, 'FST_MTLS_CERT_UNTRUSTED')
  const c = await curlAs(stranger, '/v1/claims')
  t.equal(c.status, 401)
  t.equal(c.body.code, 'FST_MTLS_CERT_UNTRUSTED')
  t.equal((await call(agent(stranger), '/healthz')).status, 200, 'the health probe stays open')
})

t.test('the partner is the CA, not the name in the certificate', async (t) => {
  // Oakridge's (trusted) CA issues a certificate that says O=Mercy Hospital
  const impostor = await clientCert('impostor', caOf(oakridge.ca), { o: 'Mercy Hospital', ou: 'claims', cn: 'claims-bot' })
  const dispatcher = agent(impostor)
  const who = await call(dispatcher, '/v1/whoami')
  t.equal(who.body.partner, 'oakridge-clinic')
  t.equal(who.body.subject, 'CN=claims-bot,OU=claims,O=Mercy Hospital')
  const list = await call(dispatcher, '/v1/claims')
  t.equal(list.body.partner, 'oakridge-clinic')
  t.notOk(list.body.claims.some((c: { partner: string }) => c.partner === 'mercy-hospital'), 'no Mercy claim')
  t.equal((await call(dispatcher, '/v1/claims/C-1001')).status, 404)
})

t.test('curl commands', async (t) => {
  const cmds = example.curlCommands('https://localhost:8443', pki, dir)
  t.ok(cmds.length >= 6)
  t.ok(cmds.some(([, c]) => c === 'curl --cacert pki/server-ca.pem --cert pki/mercy-claims.pem --key pki/mercy-claims.key https://localhost:8443/v1/claims'),
    'paths relative to the working directory')
  t.ok(cmds.some(([, c]) => c === 'curl --cacert pki/server-ca.pem https://localhost:8443/v1/claims'), 'one without a certificate')
  const outside = example.curlCommands('https://localhost:8443', pki, join(root, 'lib'))
  t.ok(outside.every(([, c]) => c.includes(`--cacert ${pki.serverCa.cert} `)), 'absolute paths outside the working directory')
})

t.test('node examples/b2b-api/server.js', async (t) => {
  const pkiDir = join(dir, 'cli-pki')
  const child = spawn(process.execPath, [join('examples', 'b2b-api', 'server.js')], {
    cwd: root,
    env: { ...process.env, PORT: '0', PKI_DIR: pkiDir, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })

  // the banner ends with the client command; no sleeps, just read the lines as they come
  const lines: string[] = []
  const ready = await new Promise<boolean>((resolve) => {
    const rl = createInterface({ input: child.stdout })
    rl.on('line', (line) => {
      lines.push(line)
      if (/ node \S*client\.js /.test(line)) resolve(true)
    })
    rl.once('close', () => resolve(false))
  })
  t.ok(ready, `the server printed its banner\n${stderr}`)
  const printed = /^Claims API ready at (https:\/\/localhost:(\d+))$/.exec(lines.find((l) => l.startsWith('Claims API ready at ')) ?? '')
  t.ok(printed, 'the URL line')
  const base = printed![1]!
  t.not(printed![2], '0', 'the real port')

  // paste the printed command: the Mercy claims bot lists its claims
  const command = lines.find((l) => l.startsWith('curl ') && l.includes('mercy-claims.pem') && l.endsWith(`${base}/v1/claims`))
  t.ok(command, 'a curl command for the Mercy claims bot')
  t.ok(command!.includes(`--cacert ${join(pkiDir, 'server-ca.pem')}`), 'with the real paths')
  const r = await curl(command!.split(' ').slice(1))
  t.equal(r.status, 200)
  t.equal(r.body.partner, 'mercy-hospital')
  t.ok(lines.some((l) => l === `curl --cacert ${join(pkiDir, 'server-ca.pem')} ${base}/v1/claims`), 'and one without a certificate')
  t.ok(lines.some((l) => l.startsWith('TOKEN=$(curl ') && l.includes(`${base}/oauth/token`)), 'the token request')
  t.ok(lines.some((l) => l.includes('"authorization: Bearer $TOKEN"') && l.endsWith(`${base}/v1/settlements`)), 'and its use')

  // paste the printed client command: every case as expected
  const clientLine = lines.at(-1)!
  t.equal(clientLine, `PKI_DIR=${pkiDir} node ${join('examples', 'b2b-api', 'client.js')} ${base}`)
  const table = await new Promise<{ code: number | null, out: string }>((resolve) => {
    const c = execFile('sh', ['-c', clientLine], { cwd: root }, (_err, out, err) => resolve({ code: c.exitCode, out: out + err }))
  })
  t.equal(table.code, 0, `the client's cases are all as expected\n${table.out}`)
  t.match(table.out, 'All 11 answers as expected.')

  child.kill('SIGTERM')
  t.equal(await exited, 0, 'SIGTERM closes the server cleanly')
})
