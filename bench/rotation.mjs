// Rotation under load. A Fastify HTTPS server with fastify-mtls-auth on 127.0.0.1
// serves clients that never stop while the server goes through a certificate rotation:
//
//   phase 0  A            the server trusts CA A
//   phase 1  A+B          reload({ ca: A+B })        then the clients of CA B start
//   phase 2  server cert  reload({ key, cert })      new connections see the new certificate
//   phase 3  B only       reload({ ca: B })          every A client must now be refused
//   phase 4  CRL          reload({ crl })            the CRL revokes one B client
//   phase 5  broken       reloads of a broken CA bundle and of a mismatched key/cert pair
//                         must be refused, with the phase-4 trust still serving
//
// Clients of each CA: kept-alive connections (undici, one connection each), a new TLS
// connection per request (full handshake), and TLS 1.3 session resumption (node:tls with
// the ticket of the client's first handshake). Every reply is judged against the trust in
// force when the request started: a request that started while a reload was under way
// may get the old or the new verdict; one that started after the reload resolved must get
// the new one. The script prints the counts per client and phase and exits 1 if a client
// that was valid at that moment had a failed request, a distrusted or revoked client was
// accepted after the change took effect, a new connection saw the wrong server
// certificate, a kept-alive connection was replaced, a session was not resumed, or a
// broken reload was not refused.
//
//   npm run build && node bench/rotation.mjs [--requests 2000] [--chain intermediate|learned|root] [--verbose]
//
//   --requests  total requests over all clients (default 2000)
//   --chain     intermediate (default): root -> issuing CA -> leaf, the issuing CAs given to the
//                 plugin as `intermediates` (what a fleet that resumes TLS sessions should do);
//               learned: the same chains, the issuing CAs not configured (the server learns
//                 them from full handshakes);
//               root: leaves issued by the roots
//   --verbose   the server's log on stderr
//
// The PKI is made with the openssl command line in a temporary directory, removed at exit.
import { execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:tls'
import { parseArgs } from 'node:util'
import { X509Certificate, randomBytes } from 'node:crypto'
import Fastify from 'fastify'
import { Agent, request } from 'undici'
import fastifyMtls from 'fastify-mtls-auth'

const { values: args } = parseArgs({
  options: {
    requests: { type: 'string', default: '2000' },
    chain: { type: 'string', default: 'intermediate' },
    verbose: { type: 'boolean', default: false }
  }
})
const TOTAL = Number(args.requests)
if (!Number.isInteger(TOTAL) || TOTAL < 60) {
  console.error('--requests must be an integer of at least 60')
  process.exit(2)
}
const CHAIN = args.chain
if (!['intermediate', 'learned', 'root'].includes(CHAIN)) {
  console.error('--chain must be intermediate, learned or root')
  process.exit(2)
}

// ------------------------------------------------------------------ PKI (openssl CLI)

const dir = mkdtempSync(join(tmpdir(), 'mtls-rotation-'))
process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
const openssl = (...a) => execFileSync('openssl', a, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
const read = (f) => readFileSync(join(dir, f), 'utf8')
const serial = () => '0x' + (randomBytes(15).toString('hex').replace(/^0/, '1'))

const EXT = {
  ca: 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n',
  client: 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n',
  server: 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n'
}
for (const [k, v] of Object.entries(EXT)) writeFileSync(join(dir, `${k}.ext`), v)

function key (name) {
  openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`)
  return read(`${name}.key`)
}
function root (name, subject) {
  key(name)
  openssl('req', '-x509', '-new', '-key', `${name}.key`, '-subj', subject, '-days', '30', '-out', `${name}.pem`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
  return { name, cert: read(`${name}.pem`), key: read(`${name}.key`) }
}
function issue (name, subject, issuer, ext) {
  key(name)
  openssl('req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`)
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${issuer.name}.pem`, '-CAkey', `${issuer.name}.key`, '-set_serial', serial(),
    '-days', '7', '-extfile', `${ext}.ext`, '-out', `${name}.pem`)
  return { name, cert: read(`${name}.pem`), key: read(`${name}.key`) }
}
/** A CRL from `issuer` listing `revoked`, made with `openssl ca -revoke` and `-gencrl`. */
function crl (issuer, revoked) {
  writeFileSync(join(dir, `${issuer.name}-index.txt`), '')
  writeFileSync(join(dir, `${issuer.name}-crlnumber`), '01\n')
  writeFileSync(join(dir, `${issuer.name}-ca.cnf`), `[ ca ]\ndefault_ca = CA_default\n[ CA_default ]\ndatabase = ${issuer.name}-index.txt\ncrlnumber = ${issuer.name}-crlnumber\ndefault_md = sha256\ndefault_crl_days = 7\n`)
  const cfg = ['-config', `${issuer.name}-ca.cnf`, '-keyfile', `${issuer.name}.key`, '-cert', `${issuer.name}.pem`]
  openssl('ca', ...cfg, '-revoke', `${revoked.name}.pem`, '-crl_reason', 'keyCompromise')
  openssl('ca', ...cfg, '-gencrl', '-out', `${issuer.name}.crl`)
  return read(`${issuer.name}.crl`)
}

const t0 = process.hrtime.bigint()
const ms = () => Number((process.hrtime.bigint() - t0) / 1_000_000n)

const serverCa = root('server-ca', '/CN=Rotation Server CA/O=Bench')
const srv1 = issue('server-1', '/CN=localhost/O=Bench', serverCa, 'server')
const srv2 = issue('server-2', '/CN=localhost/O=Bench', serverCa, 'server')
const fingerprint = (pem) => new X509Certificate(pem).fingerprint256

function clientCa (label) {
  const r = root(`${label}-root`, `/CN=Partner ${label.toUpperCase()} Root CA/O=Bench`)
  const issuing = CHAIN === 'root' ? r : issue(`${label}-issuing`, `/CN=Partner ${label.toUpperCase()} Issuing CA/O=Bench`, r, 'ca')
  const leaf = (cn) => {
    const l = issue(`${label}-${cn}`, `/CN=${cn}/O=Partner ${label.toUpperCase()}`, issuing, 'client')
    // what the client presents: its leaf and the issuing CA
    return { ...l, cn, chain: CHAIN === 'root' ? l.cert : l.cert + issuing.cert }
  }
  return { root: r, issuing, leaf }
}
const A = clientCa('a')
const B = clientCa('b')
const aClient = A.leaf('a-client')
const bClient = B.leaf('b-client')
const bRevoked = B.leaf('b-revoked')
const bCrl = crl(B.issuing, bRevoked)
const intermediates = (...cas) => CHAIN === 'intermediate' ? cas.map((c) => c.issuing.cert) : []
const pkiMs = ms()

// ------------------------------------------------------------------ server

const app = Fastify({
  logger: args.verbose ? { level: 'info', stream: process.stderr } : false,
  https: { key: srv1.key, cert: srv1.cert, ca: A.root.cert, requestCert: true, rejectUnauthorized: false }
})
await app.register(fastifyMtls, { ca: A.root.cert, intermediates: intermediates(A) })
// the client's port on every reply, refusals included: tells a kept-alive connection from a new one
app.addHook('onSend', async (req, reply) => { reply.header('x-client-port', String(req.raw.socket.remotePort)) })
app.get('/', async (req) => ({ cn: req.clientIdentity?.subject.attributes.CN?.[0] ?? null }))
await app.listen({ host: '127.0.0.1', port: 0 })
const port = app.server.address().port
const url = `https://127.0.0.1:${port}/`

// ------------------------------------------------------------------ phases and expectations

const PHASES = ['A', 'A+B', 'server cert', 'B only', 'CRL', 'broken']
let phase = 0
/** the phase a reload under way leads to; a request started meanwhile may see either */
let pending
const OK = 'ok'
const UNTRUSTED = 'FST_MTLS_CERT_UNTRUSTED'
const REVOKED = 'FST_MTLS_CERT_REVOKED'
const expectA = (p) => p <= 2 ? OK : UNTRUSTED
const expectB = () => OK
const expectBRevoked = (p) => p <= 3 ? OK : REVOKED
const serverCertAt = (p) => p >= 2 ? fingerprint(srv2.cert) : fingerprint(srv1.cert)

// ------------------------------------------------------------------ clients

let started = 0
let completed = 0
const waiters = []
const unexpectedLog = []
const problems = []

function noteDone () {
  completed++
  for (let i = waiters.length - 1; i >= 0; i--) {
    if (completed >= waiters[i].at) {
      waiters[i].resolve()
      waiters.splice(i, 1)
    }
  }
}
const untilCompleted = (at) => completed >= at ? Promise.resolve() : new Promise((resolve) => waiters.push({ at, resolve }))

/** A reply through undici on the client's one kept-alive connection. */
async function viaAgent (client) {
  const res = await request(url, { dispatcher: client.agent })
  const body = await res.body.json()
  return { status: res.statusCode, body, port: Number(res.headers['x-client-port']) }
}

/** A reply on a new node:tls connection (Connection: close), resuming `session` if given. */
async function viaTls (client, session) {
  const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: serverCa.cert, cert: client.leaf.chain, key: client.leaf.key, session })
  socket.setTimeout(10_000, () => socket.destroy(new Error('no reply in 10 s')))
  const chunks = []
  const tickets = []
  socket.on('session', (s) => tickets.push(s))
  socket.on('data', (c) => chunks.push(c))
  await once(socket, 'secureConnect')
  const reused = socket.isSessionReused()
  const serverCert = socket.getPeerCertificate().fingerprint256
  socket.end('GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
  await once(socket, 'close')
  const text = Buffer.concat(chunks).toString('utf8')
  const status = /^HTTP\/1\.1 (\d{3}) /.exec(text)
  if (status === null) throw new Error(`not an HTTP/1.1 reply: ${JSON.stringify(text.slice(0, 60))}`)
  return { status: Number(status[1]), body: JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)), reused, serverCert, tickets }
}

const clients = []
function client (name, leaf, transport, expect) {
  const c = { name, leaf, transport, expect, counts: PHASES.map(() => ({ ok: 0, refused: 0, unexpected: 0 })), ports: new Set(), resumed: 0, session: undefined, agent: undefined }
  if (transport === 'keep-alive') c.agent = new Agent({ connections: 1, connect: { ca: serverCa.cert, cert: leaf.chain, key: leaf.key, servername: 'localhost' } })
  clients.push(c)
  return c
}

function judge (c, from, to, r) {
  const seen = r.error !== undefined ? `error ${r.error.code ?? r.error.message}` : r.status === 200 ? `200 ${r.body.cn}` : `${r.status} ${r.body.code}`
  const why = []
  let verdict
  for (let p = from; p <= to && verdict === undefined; p++) {
    const want = c.expect(p)
    if (want === OK && r.status === 200 && r.body.cn === c.leaf.cn) verdict = 'ok'
    else if (want !== OK && r.status === 401 && r.body.code === want) verdict = 'refused'
  }
  if (verdict === undefined) {
    const wanted = [...new Set(Array.from({ length: to - from + 1 }, (_, i) => c.expect(from + i)))].map((w) => w === OK ? `200 ${c.leaf.cn}` : `401 ${w}`)
    why.push(`got ${seen}, expected ${wanted.join(' or ')}`)
  }
  if (r.serverCert !== undefined && !r.reused) {
    const fits = Array.from({ length: to - from + 1 }, (_, i) => serverCertAt(from + i)).includes(r.serverCert)
    if (!fits) why.push('a new connection saw the wrong server certificate')
  }
  if (c.transport === 'resumed' && r.resumedExpected && r.reused === false) why.push('the TLS session was not resumed')
  const cell = c.counts[from]
  if (why.length > 0) {
    cell.unexpected++
    unexpectedLog.push(`${c.name}, phase ${from}${to === from ? '' : `-${to}`} (${PHASES[from]}): ${why.join('; ')}`)
  } else {
    cell[verdict]++
  }
}

async function run (c) {
  while (started < TOTAL) {
    started++
    const from = phase
    const pend = pending
    let r
    try {
      if (c.transport === 'keep-alive') {
        r = await viaAgent(c)
        c.ports.add(r.port)
      } else if (c.transport === 'new-conn') {
        r = await viaTls(c)
      } else {
        const session = c.session
        r = { ...await viaTls(c, session), resumedExpected: session !== undefined }
        if (r.reused) c.resumed++
        // TLS 1.3 tickets arrive on full handshakes: keep the first one
        if (c.session === undefined) c.session = r.tickets.at(-1)
      }
    } catch (error) {
      r = { error }
    }
    judge(c, from, Math.max(pend ?? from, phase), r)
    noteDone()
  }
}

const loops = []
const startClients = (list) => { for (const c of list) loops.push(run(c)) }
const aClients = ['keep-alive', 'new-conn', 'resumed'].map((tr) => client(`A ${tr}`, aClient, tr, expectA))
const bClients = [
  ...['keep-alive', 'new-conn', 'resumed'].map((tr) => client(`B ${tr}`, bClient, tr, expectB)),
  ...['keep-alive', 'resumed'].map((tr) => client(`B-revoked ${tr}`, bRevoked, tr, expectBRevoked))
]

// ------------------------------------------------------------------ the rotation

const reloadLog = []
async function step (to, what, input) {
  pending = to
  const t = ms()
  try {
    await app.mtls.reload(input)
    reloadLog.push(`[${String(t).padStart(6)} ms] reload -> phase ${to} (${PHASES[to]}): ${what}: applied, epoch ${app.mtls.status().epoch}`)
  } catch (err) {
    problems.push(`reload to phase ${to} (${what}) was refused: ${err.message}`)
  }
  phase = to
  pending = undefined
}
async function broken (what, input) {
  const epoch = app.mtls.status().epoch
  const t = ms()
  try {
    await app.mtls.reload(input)
    problems.push(`the broken reload (${what}) was applied`)
  } catch (err) {
    if (err.code !== 'FST_MTLS_RELOAD_INVALID') problems.push(`the broken reload (${what}) failed with ${err.code}, not FST_MTLS_RELOAD_INVALID`)
    reloadLog.push(`[${String(t).padStart(6)} ms] broken reload (${what}): refused, ${err.code}: ${err.message}`)
  }
  const s = app.mtls.status()
  if (s.epoch !== epoch) problems.push(`the broken reload (${what}) moved the epoch from ${epoch} to ${s.epoch}`)
  if (s.lastReload?.ok !== false) problems.push(`status().lastReload does not report the refused reload (${what})`)
}

const each = Math.floor(TOTAL / PHASES.length)
const runStart = ms()
startClients(aClients)
await untilCompleted(each)
await step(1, 'ca A+B', { ca: A.root.cert + B.root.cert, intermediates: intermediates(A, B) })
startClients(bClients)
await untilCompleted(2 * each)
await step(2, 'server key and certificate', { key: srv2.key, cert: srv2.cert })
await untilCompleted(3 * each)
await step(3, 'ca B', { ca: B.root.cert, intermediates: intermediates(B) })
await untilCompleted(4 * each)
await step(4, 'CRL revoking b-revoked', { crl: bCrl })
await untilCompleted(5 * each)
await broken('a CA bundle that does not parse', { ca: B.root.cert.replace(/\n[A-Za-z0-9+/]{20}/, '\n!!!!') })
await broken('a key that does not match the certificate', { key: srv1.key, cert: srv2.cert })
phase = 5
await Promise.all(loops)
const runMs = ms() - runStart

for (const c of clients) {
  if (c.agent !== undefined) {
    if (c.ports.size > 1) problems.push(`${c.name}: the kept-alive connection was replaced (${c.ports.size} connections)`)
    await c.agent.close()
  }
}
const status = app.mtls.status()
await app.close()

// ------------------------------------------------------------------ report

const sum = (f) => clients.reduce((n, c) => n + c.counts.reduce((m, cell) => m + f(cell), 0), 0)
const ok = sum((x) => x.ok)
const refused = sum((x) => x.refused)
const unexpected = sum((x) => x.unexpected)
const pass = unexpected === 0 && problems.length === 0

console.log(`rotation under load: node ${process.version}, ${TOTAL} requests, ${clients.length} clients, chain: ${CHAIN}; PKI ${pkiMs} ms, run ${runMs} ms (${Math.round(TOTAL / (runMs / 1000))} req/s)`)
for (const line of reloadLog) console.log(line)
console.log('')
console.log('cells: ok / refused as expected / unexpected, by the phase in force when the request started')
const W = 14
console.log('client'.padEnd(20) + PHASES.map((p, i) => `${i} ${p}`.padStart(W)).join('') + '   notes')
for (const c of clients) {
  const cells = c.counts.map((x) => (x.ok + x.refused + x.unexpected === 0 ? '-' : `${x.ok}/${x.refused}/${x.unexpected}`).padStart(W)).join('')
  const notes = c.transport === 'keep-alive' ? `${c.ports.size} connection${c.ports.size === 1 ? '' : 's'}` : c.transport === 'resumed' ? `${c.resumed} resumed` : ''
  console.log(c.name.padEnd(20) + cells + '   ' + notes)
}
const totals = PHASES.map((_, i) => {
  const t = clients.reduce((a, c) => ({ ok: a.ok + c.counts[i].ok, refused: a.refused + c.counts[i].refused, unexpected: a.unexpected + c.counts[i].unexpected }), { ok: 0, refused: 0, unexpected: 0 })
  return `${t.ok}/${t.refused}/${t.unexpected}`.padStart(W)
}).join('')
console.log('total'.padEnd(20) + totals)
console.log('')
console.log(`final status: epoch ${status.epoch}, anchors ${status.anchors.map((a) => a.name).join('; ')}, crls ${status.crls.map((x) => `${x.issuer} (${x.revoked} revoked)`).join('; ')}, last reload ${status.lastReload?.ok ? 'ok' : 'refused'}`)
for (const line of unexpectedLog.slice(0, 20)) console.log(`UNEXPECTED ${line}`)
if (unexpectedLog.length > 20) console.log(`UNEXPECTED ... and ${unexpectedLog.length - 20} more`)
for (const p of problems) console.log(`PROBLEM ${p}`)
console.log(`summary: ${TOTAL} requests, ${ok} ok, ${refused} refused as expected, ${unexpected} unexpected failures; ${problems.length} problems — ${pass ? 'PASS' : 'FAIL'}`)
process.exitCode = pass ? 0 : 1
