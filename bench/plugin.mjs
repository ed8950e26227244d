// What fastify-mtls-auth costs the server, next to bare Fastify mTLS, measured side by side.
//
//   npm run build && npm run bench [-- --quick | --rounds N | --keys ec|rsa | --profile | --no-pin]
//
// Interleaved A B A B in one run, each round pairing:
//   A  bare Fastify HTTPS with requestCert: true (mTLS, no plugin)
//   B  the same app with the plugin: required mode, a global policy, a route guard (app.mtls.require)
// and, for the forwarded source, a plain-HTTP app behind a "proxy" on 127.0.0.1:
//   FA the same route without the plugin (the header is sent all the same)
//   FB the plugin with forwarded: { header, format: 'escaped-pem', trustedProxies: ['127.0.0.1'] }
//
// Each server runs in its own child process (pinned to core 0 when `taskset` exists; this
// process, the load generator, to core 1) and reports its own CPU (process.cpuUsage() deltas
// around each measured phase, over IPC), so the load generator's CPU never counts. Measured:
//   - keep-alive: N connections, one request in flight on each, for a fixed time: req/s,
//     p50/p99 latency, server CPU µs per request (connections opened and warmed outside the window)
//   - new connections: full handshakes, and resumed ones (TLS 1.3 ticket of an earlier
//     connection; for B the certificate was seen before, so the verdict cache answers): a
//     tls.connect generator, one request per connection: server CPU µs per connection
//   - forwarded warm (the same certificate every request) and cold (a new certificate every
//     request: leaves minted from one DER template re-signed with crypto.sign)
//   - memory: 100,000 distinct certificates through the Authenticator and its caches, in a
//     child with --expose-gc: heapUsed after GC at 10k, 50k and 100k
// Reported: per-round medians with min–max, and the added cost B − A as the median of the
// paired per-round differences, against the targets of issue 7 (PASS/MISS).
//
//   --quick     3 short rounds and 30,000 certificates for memory: under a minute
//   --rounds N  rounds of A B pairs (default 5)
//   --keys      ec (default, P-256 everywhere) or rsa (RSA-2048 everywhere)
//   --profile   write V8 CPU profiles of the plugin's servers (node --cpu-prof) to bench/profiles/
//   --no-pin    do not pin processes to cores
import { execFileSync, spawn, fork } from 'node:child_process'
import { once } from 'node:events'
import { createHash, createPrivateKey, randomBytes, sign, X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect as netConnect } from 'node:net'
import { availableParallelism, cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { parseArgs } from 'node:util'

const SELF = new URL(import.meta.url).pathname

// ============================================================================ PKI

function makePki (keys) {
  const dir = mkdtempSync(join(tmpdir(), 'mtls-bench-plugin-'))
  try {
    const openssl = (...a) => execFileSync('openssl', a, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
    const read = (f) => readFileSync(join(dir, f), 'utf8')
    const keyArgs = keys === 'rsa' ? ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'] : ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']
    // a 16-byte positive serial: the minting below rewrites its bytes in place
    const serial = () => '0x' + '1' + randomBytes(16).toString('hex').slice(1)
    const ext = {
      ca: 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n',
      client: 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\nsubjectAltName=URI:spiffe://example.org/bench/client\n',
      server: 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n'
    }
    for (const [k, v] of Object.entries(ext)) writeFileSync(join(dir, `${k}.ext`), v)
    const issue = (name, subject, issuer, kind) => {
      openssl('genpkey', ...keyArgs, '-out', `${name}.key`)
      if (issuer === undefined) {
        openssl('req', '-x509', '-new', '-key', `${name}.key`, '-subj', subject, '-days', '30', '-out', `${name}.pem`,
          '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
      } else {
        openssl('req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`)
        openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${issuer}.pem`, '-CAkey', `${issuer}.key`, '-set_serial', serial(),
          '-days', '7', '-extfile', `${kind}.ext`, '-out', `${name}.pem`)
      }
      return { cert: read(`${name}.pem`), key: read(`${name}.key`) }
    }
    const root = issue('root', '/CN=Bench Root CA/O=Bench', undefined)
    const intermediate = issue('int', '/CN=Bench Issuing CA/O=Bench', 'root', 'ca')
    const client = issue('client', '/CN=bench-client/OU=orders/O=Bench', 'int', 'client')
    const server = issue('server', '/CN=localhost/O=Bench', 'root', 'server')
    return { keys, root, intermediate, client, server }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

function readTl (buf, off) {
  let len = buf[off + 1]
  let hdr = 2
  if (len & 0x80) {
    const n = len & 0x7f
    len = 0
    for (let i = 0; i < n; i++) len = len * 256 + buf[off + 2 + i]
    hdr = 2 + n
  }
  return { tag: buf[off], len, hdr, end: off + hdr + len }
}

function tlv (tag, body) {
  const n = body.length
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff]
  return Buffer.concat([Buffer.from([tag, ...len]), body])
}

/**
 * Distinct leaf certificates, cheaply: the client leaf's TBSCertificate with a new serial
 * number (same length, rewritten in place), signed again by the issuing CA with crypto.sign.
 * Everything else (names, key, extensions, validity) stays, so each one verifies as the
 * template does and has its own fingerprint.
 */
function leafMinter (pki) {
  const der = new X509Certificate(pki.client.cert).raw
  const outer = readTl(der, 0)
  const tbsTl = readTl(der, outer.hdr)
  const tbs = Buffer.from(der.subarray(outer.hdr, tbsTl.end))
  const alg = Buffer.from(der.subarray(tbsTl.end, readTl(der, tbsTl.end).end))
  const version = readTl(tbs, tbsTl.hdr)
  const serial = readTl(tbs, version.end)
  if (version.tag !== 0xa0 || serial.tag !== 0x02 || serial.len !== 16) throw new Error('unexpected leaf template')
  const at = version.end + serial.hdr
  const key = createPrivateKey(pki.intermediate.key)
  randomBytes(7).copy(tbs, at + 1)
  let counter = 0
  return () => {
    tbs.writeUIntBE(++counter, at + 10, 6)
    const signature = sign('sha256', tbs, key)
    return tlv(0x30, Buffer.concat([tbs, alg, tlv(0x03, Buffer.concat([Buffer.from([0]), signature]))]))
  }
}

const toPem = (der) => `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`
/** nginx's $ssl_client_escaped_cert */
const escapedPem = (der) => encodeURIComponent(toPem(der))

// ============================================================================ server child

const GLOBAL_POLICY = { subject: { O: 'Bench' } }
const ROUTE_GUARD = { spiffeId: 'spiffe://example.org/bench/client' }
const FORWARDED_HEADER = 'x-client-cert'

async function serve () {
  const variant = process.argv[3]
  const [{ default: Fastify }, { default: fastifyMtls }] = await Promise.all([import('fastify'), import('../dist/index.js')])
  const [pki] = await once(process, 'message')
  const tls = variant === 'A' || variant === 'B'
  const plugin = variant === 'B' || variant === 'FB'
  const app = Fastify({
    logger: false,
    ...(tls
      ? {
          https: {
            key: pki.server.key,
            cert: pki.server.cert,
            ca: pki.root.cert,
            requestCert: true,
            rejectUnauthorized: false,
            minVersion: 'TLSv1.2',
            secureOptions: (await import('node:crypto')).constants.SSL_OP_NO_RENEGOTIATION
          }
        }
      : {})
  })
  if (plugin) {
    await app.register(fastifyMtls, {
      ca: pki.root.cert,
      intermediates: [pki.intermediate.cert],
      policy: GLOBAL_POLICY,
      ...(tls ? {} : { forwarded: { header: FORWARDED_HEADER, format: 'escaped-pem', trustedProxies: ['127.0.0.1'] } })
    })
  }
  // the same handler everywhere: the plugin's cost, not the application's use of the identity
  const reply = async () => ({ ok: true })
  if (plugin) app.get('/orders', { onRequest: app.mtls.require(ROUTE_GUARD) }, reply)
  else app.get('/orders', reply)
  await app.listen({ host: '127.0.0.1', port: 0 })

  let start
  process.on('message', (m) => {
    if (m.type === 'start') {
      start = process.cpuUsage()
      process.send({ type: 'started', verifications: plugin ? app.mtls.status().verifications : undefined })
    } else if (m.type === 'stop') {
      const d = process.cpuUsage(start)
      const status = plugin ? app.mtls.status() : undefined
      process.send({ type: 'cpu', us: d.user + d.system, verifications: status?.verifications, caches: status?.caches })
    } else if (m.type === 'exit') {
      app.close().then(() => process.exit(0), () => process.exit(1))
    }
  })
  process.send({ type: 'ready', port: app.server.address().port })
}

class Server {
  constructor (variant, pki, { pin, profile }) {
    this.variant = variant
    const args = [...(profile && (variant === 'B' || variant === 'FB') ? ['--cpu-prof', `--cpu-prof-dir=${join(SELF, '..', 'profiles')}`, `--cpu-prof-name=${variant}-${Date.now()}.cpuprofile`] : []), SELF, '--serve', variant]
    const [cmd, argv] = pin ? ['taskset', ['-c', '0', process.execPath, ...args]] : [process.execPath, args]
    this.child = spawn(cmd, argv, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    this.messages = []
    this.waiting = []
    this.child.on('message', (m) => {
      const w = this.waiting.shift()
      if (w !== undefined) w(m)
      else this.messages.push(m)
    })
    this.child.on('exit', (code) => {
      if (code !== 0 && !this.closing) {
        console.error(`server ${variant} exited with ${code}`)
        process.exit(1)
      }
    })
    this.child.send(pki)
  }

  next () {
    const m = this.messages.shift()
    return m !== undefined ? Promise.resolve(m) : new Promise((resolve) => this.waiting.push(resolve))
  }

  async ready () {
    const m = await this.next()
    this.port = m.port
    return this
  }

  async start () {
    this.child.send({ type: 'start' })
    this.started = await this.next()
  }

  /** the server's CPU µs since start(), and the chain verifications the plugin made meanwhile */
  async stop () {
    this.child.send({ type: 'stop' })
    const m = await this.next()
    return { us: m.us, verifications: m.verifications === undefined ? undefined : m.verifications - this.started.verifications }
  }

  async close () {
    this.closing = true
    this.child.send({ type: 'exit' })
    await once(this.child, 'exit')
  }
}

// ============================================================================ load generator

/** One HTTP/1.1 response at a time on a kept-alive socket: resolves with the status code. */
class Conn {
  constructor (socket) {
    this.socket = socket
    this.buf = null
    this.resolve = null
    socket.on('data', (chunk) => this.onData(chunk))
    socket.on('error', (err) => { this.error = err })
    socket.on('close', () => {
      if (this.resolve !== null) this.resolve(-1)
    })
  }

  static async open (port, tlsOptions) {
    const socket = tlsOptions === undefined ? netConnect({ host: '127.0.0.1', port }) : tlsConnect({ host: '127.0.0.1', port, ...tlsOptions })
    socket.setNoDelay(true)
    await once(socket, tlsOptions === undefined ? 'connect' : 'secureConnect')
    return new Conn(socket)
  }

  request (bytes) {
    return new Promise((resolve) => {
      this.resolve = resolve
      this.socket.write(bytes)
    })
  }

  onData (chunk) {
    this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk])
    const head = this.buf.indexOf('\r\n\r\n')
    if (head === -1) return
    const headers = this.buf.toString('latin1', 0, head)
    const m = /\r\ncontent-length: *(\d+)/i.exec(headers)
    const end = head + 4 + (m === null ? 0 : Number(m[1]))
    if (this.buf.length < end) return
    const status = Number(headers.slice(9, 12))
    if (status !== 200 && this.firstError === undefined) this.firstError = this.buf.toString('utf8', 0, end)
    this.buf = this.buf.length === end ? null : this.buf.subarray(end)
    const resolve = this.resolve
    this.resolve = null
    resolve(status)
  }
}

const httpRequest = (extra = '') => Buffer.from(`GET /orders HTTP/1.1\r\nHost: localhost\r\n${extra}\r\n`)

function percentile (sorted, p) {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
}

/**
 * Keep-alive load: `connections` connections, each sending its next request when the last
 * reply arrived, for `ms` milliseconds (or until `total` requests were sent). `requests` is
 * one request or a list of them, taken in turn; `warmup` (default: the first request) is sent
 * once on each connection before the measurement starts.
 */
async function keepAlive (server, { connections, ms, total, requests, warmup, tlsOptions }) {
  const list = Array.isArray(requests) ? requests : [requests]
  const conns = await Promise.all(Array.from({ length: connections }, () => Conn.open(server.port, tlsOptions)))
  // one request on each connection before measuring: the connection's first request is not keep-alive
  for (const c of conns) {
    const s = await c.request(warmup ?? list[0])
    if (s !== 200) throw new Error(`${server.variant}: warm-up request answered ${s}: ${c.firstError}`)
  }
  const latencies = []
  let sent = 0
  let errors = 0
  let firstError
  let stop = false
  await server.start()
  const t0 = process.hrtime.bigint()
  const timer = ms === undefined ? undefined : setTimeout(() => { stop = true }, ms)
  const more = () => !stop && (total === undefined || sent < total)
  await Promise.all(conns.map(async (c) => {
    while (more()) {
      const bytes = list[sent++ % list.length]
      const t = process.hrtime.bigint()
      const status = await c.request(bytes)
      latencies.push(Number(process.hrtime.bigint() - t) / 1000)
      if (status !== 200) {
        errors++
        firstError ??= c.firstError ?? `status ${status}`
        if (status === -1) return
      }
    }
  }))
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9
  const cpu = await server.stop()
  clearTimeout(timer)
  for (const c of conns) c.socket.destroy()
  if (errors > 0) throw new Error(`${server.variant}: ${errors} of ${latencies.length} requests failed; first: ${firstError}`)
  latencies.sort((a, b) => a - b)
  return {
    requests: latencies.length,
    rps: latencies.length / elapsed,
    p50: percentile(latencies, 0.5) / 1000,
    p99: percentile(latencies, 0.99) / 1000,
    cpuPerRequest: cpu.us / latencies.length,
    verifications: cpu.verifications
  }
}

/** One request on a new TLS connection (Connection: close); resolves with whether the session was resumed. */
async function oneConnection (port, tlsOptions) {
  const socket = tlsConnect({ host: '127.0.0.1', port, ...tlsOptions })
  const chunks = []
  socket.on('data', (c) => chunks.push(c))
  await once(socket, 'secureConnect')
  const resumed = socket.isSessionReused()
  socket.end('GET /orders HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
  await once(socket, 'close')
  const text = Buffer.concat(chunks).toString('latin1')
  if (!text.startsWith('HTTP/1.1 200')) throw new Error(`new connection answered: ${text.slice(0, 300)}`)
  return resumed
}

async function ticket (port, tlsOptions) {
  const socket = tlsConnect({ host: '127.0.0.1', port, ...tlsOptions })
  const session = once(socket, 'session')
  await once(socket, 'secureConnect')
  socket.end('GET /orders HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
  const [s] = await session
  socket.resume()
  await once(socket, 'close')
  return s
}

/** `n` new connections, `concurrency` at a time, full or resumed handshakes. */
async function handshakes (server, { n, concurrency, resume, tlsOptions }) {
  const options = resume ? { ...tlsOptions, session: await ticket(server.port, tlsOptions) } : tlsOptions
  let started = 0
  let resumed = 0
  await server.start()
  const t0 = process.hrtime.bigint()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (started < n) {
      started++
      if (await oneConnection(server.port, options)) resumed++
    }
  }))
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9
  const cpu = await server.stop()
  const expected = resume ? n : 0
  if (resumed !== expected) throw new Error(`${server.variant}: ${resumed} of ${n} connections resumed, expected ${expected}`)
  return { cps: n / elapsed, cpuPerConnection: cpu.us / n, verifications: cpu.verifications }
}

// ============================================================================ memory child

async function memory () {
  const { Authenticator, TrustMaterial } = await import('../dist/authenticator.js')
  const [{ pki, checkpoints }] = await once(process, 'message')
  const material = new TrustMaterial({ ca: pki.root.cert, intermediates: [], crl: [], deny: [] })
  const auth = new Authenticator(material, {
    revocationSoftFail: false,
    purpose: 'clientAuth',
    requireClientAuthEku: false,
    maxChainLength: 8,
    minRsaBits: 2048,
    toleranceMs: 0,
    maxVerdictAgeMs: 300_000
  })
  const mint = leafMinter(pki)
  const intermediate = new X509Certificate(pki.intermediate.cert).raw
  const fingerprint = (der) => createHash('sha256').update(der).digest('hex').toUpperCase().replace(/(..)(?!$)/g, '$1:')
  const heap = () => {
    globalThis.gc()
    globalThis.gc()
    const m = process.memoryUsage()
    return { heapUsed: m.heapUsed, arrayBuffers: m.arrayBuffers, rss: m.rss }
  }
  const out = [{ certificates: 0, ...heap(), caches: auth.cacheSizes }]
  let done = 0
  let mintUs = 0
  let verifyUs = 0
  for (const at of checkpoints) {
    while (done < at) {
      let t = process.hrtime.bigint()
      const leaf = mint()
      mintUs += Number(process.hrtime.bigint() - t) / 1000
      t = process.hrtime.bigint()
      const outcome = auth.authenticate(fingerprint(leaf), [leaf, intermediate])
      verifyUs += Number(process.hrtime.bigint() - t) / 1000
      if (outcome.kind !== 'ok') throw new Error(`minted certificate ${done} refused: ${outcome.code} ${outcome.reason}`)
      done++
    }
    out.push({ certificates: done, ...heap(), caches: auth.cacheSizes })
  }
  process.send({ points: out, verifications: auth.verifications, mintUs: mintUs / done, verifyUs: verifyUs / done })
}

async function runMemory (pki, checkpoints) {
  const child = fork(SELF, ['--memory'], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  child.send({ pki, checkpoints })
  const [result] = await once(child, 'message')
  await once(child, 'exit')
  return result
}

// ============================================================================ main

function stats (values) {
  const s = [...values].sort((a, b) => a - b)
  const mid = s.length >> 1
  const median = s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
  return { median, min: s[0], max: s[s.length - 1] }
}

async function main () {
  const { values: args } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      keys: { type: 'string', default: 'ec' },
      profile: { type: 'boolean', default: false },
      'no-pin': { type: 'boolean', default: false }
    }
  })
  if (!['ec', 'rsa'].includes(args.keys)) throw new Error('--keys is ec or rsa')
  const quick = args.quick
  const cfg = {
    rounds: Number(args.rounds ?? (quick ? 3 : 5)),
    connections: 32,
    keepAliveMs: quick ? 1200 : 4000,
    handshakes: quick ? 250 : 800,
    handshakeConcurrency: 4,
    cold: quick ? 400 : 1500,
    coldConnections: 8,
    memory: quick ? [10_000, 20_000, 30_000] : [10_000, 50_000, 100_000]
  }
  if (!Number.isInteger(cfg.rounds) || cfg.rounds < 1) throw new Error('--rounds must be a positive integer')
  const runStart = process.hrtime.bigint()

  const cores = availableParallelism()
  let pin = !args['no-pin'] && cores >= 2
  if (pin) {
    try {
      execFileSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { stdio: 'ignore' })
    } catch {
      pin = false
    }
  }

  const pki = makePki(args.keys)
  const mint = leafMinter(pki)
  const tlsOptions = { servername: 'localhost', ca: pki.root.cert, cert: pki.client.cert + pki.intermediate.cert, key: pki.client.key }
  const clientDer = new X509Certificate(pki.client.cert).raw
  const warmRequest = httpRequest(`${FORWARDED_HEADER}: ${escapedPem(clientDer)}\r\n`)

  console.log(`fastify-mtls-auth plugin benchmark: node ${process.version}, ${cores} cores (${cpus()[0]?.model.trim() ?? '?'}), ` +
    `keys ${args.keys === 'rsa' ? 'RSA-2048' : 'ECDSA P-256'}, ${pin ? 'server on core 0, load generator on core 1' : 'not pinned'}${quick ? ', --quick' : ''}`)
  console.log(`${cfg.rounds} rounds of A B pairs; keep-alive: ${cfg.connections} connections × ${cfg.keepAliveMs / 1000} s; ` +
    `new connections: ${cfg.handshakes} × full and resumed (${cfg.handshakeConcurrency} at a time); forwarded cold: ${cfg.cold} requests`)

  const servers = {}
  for (const v of ['A', 'B', 'FA', 'FB']) servers[v] = new Server(v, pki, { pin, profile: args.profile })
  await Promise.all(Object.values(servers).map((s) => s.ready()))

  // warm-up, not measured: JIT, the plugin's caches, the learned pool
  for (const v of ['A', 'B']) {
    await keepAlive(servers[v], { connections: cfg.connections, ms: 1000, requests: httpRequest(), tlsOptions })
    await handshakes(servers[v], { n: 50, concurrency: cfg.handshakeConcurrency, resume: false, tlsOptions })
    await handshakes(servers[v], { n: 50, concurrency: cfg.handshakeConcurrency, resume: true, tlsOptions })
  }
  for (const v of ['FA', 'FB']) {
    await keepAlive(servers[v], { connections: cfg.connections, ms: 1000, requests: warmRequest })
    await keepAlive(servers[v], { connections: cfg.coldConnections, total: 200, requests: Array.from({ length: 200 }, () => httpRequest(`${FORWARDED_HEADER}: ${escapedPem(mint())}\r\n`)), warmup: warmRequest })
  }

  const rows = { keepAlive: { A: [], B: [] }, full: { A: [], B: [] }, resumed: { A: [], B: [] }, warm: { A: [], B: [] }, cold: { A: [], B: [] } }
  const checks = { keepAliveVerifications: 0, fullVerifications: 0, resumedVerifications: 0, warmVerifications: 0, coldVerifications: 0, coldRequests: 0 }
  for (let round = 1; round <= cfg.rounds; round++) {
    // a new certificate for every cold request, minted before the round (the load generator's work, not the server's)
    const cold = Array.from({ length: cfg.cold }, () => httpRequest(`${FORWARDED_HEADER}: ${escapedPem(mint())}\r\n`))
    for (const [key, v] of [['A', 'A'], ['B', 'B']]) {
      const ka = await keepAlive(servers[v], { connections: cfg.connections, ms: cfg.keepAliveMs, requests: httpRequest(), tlsOptions })
      rows.keepAlive[key].push(ka)
      const full = await handshakes(servers[v], { n: cfg.handshakes, concurrency: cfg.handshakeConcurrency, resume: false, tlsOptions })
      rows.full[key].push(full)
      const resumed = await handshakes(servers[v], { n: cfg.handshakes, concurrency: cfg.handshakeConcurrency, resume: true, tlsOptions })
      rows.resumed[key].push(resumed)
      if (v === 'B') {
        checks.keepAliveVerifications += ka.verifications
        checks.fullVerifications += full.verifications
        checks.resumedVerifications += resumed.verifications
      }
    }
    for (const [key, v] of [['A', 'FA'], ['B', 'FB']]) {
      const warm = await keepAlive(servers[v], { connections: cfg.connections, ms: cfg.keepAliveMs, requests: warmRequest })
      rows.warm[key].push(warm)
      const c = await keepAlive(servers[v], { connections: cfg.coldConnections, total: cfg.cold, requests: cold, warmup: warmRequest })
      rows.cold[key].push(c)
      if (v === 'FB') {
        checks.warmVerifications += warm.verifications
        checks.coldVerifications += c.verifications
        checks.coldRequests += c.requests
      }
    }
    process.stderr.write(`round ${round}/${cfg.rounds} done\n`)
  }
  await Promise.all(Object.values(servers).map((s) => s.close()))

  const mem = await runMemory(pki, cfg.memory)
  const seconds = Number(process.hrtime.bigint() - runStart) / 1e9

  // ------------------------------------------------------------------------ report
  const f = (x, d = 1) => x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d })
  const cell = (values, d, unit = '') => {
    const s = stats(values)
    return `${f(s.median, d)}${unit} [${f(s.min, d)}–${f(s.max, d)}]`
  }
  const paired = (metric, field) => rows[metric].B.map((b, i) => b[field] - rows[metric].A[i][field])
  const pct = (metric, field) => rows[metric].B.map((b, i) => 100 * (b[field] - rows[metric].A[i][field]) / rows[metric].A[i][field])
  const col = (metric, field) => ({ A: rows[metric].A.map((r) => r[field]), B: rows[metric].B.map((r) => r[field]) })
  const lines = []
  const row = (what, a, b, added) => lines.push([what, a, b, added])
  for (const [metric, label] of [['keepAlive', 'mTLS keep-alive'], ['warm', 'forwarded warm'], ['cold', 'forwarded cold']]) {
    const rps = col(metric, 'rps')
    const p50 = col(metric, 'p50')
    const p99 = col(metric, 'p99')
    const cpu = col(metric, 'cpuPerRequest')
    row(`${label}: req/s`, cell(rps.A, 0), cell(rps.B, 0), `${f(stats(pct(metric, 'rps')).median, 1)}%`)
    row(`${label}: p50 / p99 latency ms`, `${f(stats(p50.A).median, 2)} / ${f(stats(p99.A).median, 2)}`, `${f(stats(p50.B).median, 2)} / ${f(stats(p99.B).median, 2)}`, '')
    row(`${label}: server CPU µs/request`, cell(cpu.A, 1), cell(cpu.B, 1), `${cell(paired(metric, 'cpuPerRequest'), 1, ' µs')}`)
  }
  for (const [metric, label] of [['full', 'full handshake'], ['resumed', 'resumed handshake']]) {
    const cpu = col(metric, 'cpuPerConnection')
    row(`${label}: connections/s`, cell(col(metric, 'cps').A, 0), cell(col(metric, 'cps').B, 0), '')
    row(`${label}: server CPU µs/connection`, cell(cpu.A, 0), cell(cpu.B, 0), `${cell(paired(metric, 'cpuPerConnection'), 0, ' µs')} = ${cell(pct(metric, 'cpuPerConnection'), 1, '%')}`)
  }
  const widths = [0, 1, 2, 3].map((i) => Math.max(...lines.map((l) => l[i].length), ['', 'A (no plugin)', 'B (plugin)', 'B − A (added)'][i].length))
  const print = (l) => console.log(l.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join('  '))
  console.log('')
  console.log('medians of the rounds [min–max]; B − A: median of the per-round differences [min–max]')
  print(['', 'A (no plugin)', 'B (plugin)', 'B − A (added)'])
  for (const l of lines) print(l)

  console.log('')
  console.log(`chain verifications in the plugin's servers while measured: mTLS keep-alive ${checks.keepAliveVerifications}, ` +
    `full handshakes ${checks.fullVerifications}, resumed handshakes ${checks.resumedVerifications}, ` +
    `forwarded warm ${checks.warmVerifications}, forwarded cold ${checks.coldVerifications} for ${checks.coldRequests} requests`)
  console.log('')
  console.log(`memory: ${f(mem.points.at(-1).certificates, 0)} distinct certificates through the Authenticator (mint ${f(mem.mintUs, 0)} µs, verify ${f(mem.verifyUs, 0)} µs each, ${mem.verifications} verifications)`)
  for (const p of mem.points) {
    console.log(`  ${f(p.certificates, 0).padStart(7)} certificates: heapUsed ${f(p.heapUsed / 2 ** 20, 1).padStart(5)} MiB, arrayBuffers ${f(p.arrayBuffers / 2 ** 20, 1).padStart(5)} MiB, rss ${f(p.rss / 2 ** 20, 0).padStart(4)} MiB; ` +
      `caches: positive ${p.caches.positive}, negative ${p.caches.negative}, learned ${p.caches.learnedIntermediates}`)
  }

  const first = mem.points[1]
  const last = mem.points.at(-1)
  const heapGrowth = last.heapUsed + last.arrayBuffers - first.heapUsed - first.arrayBuffers
  const targets = [
    ['added server CPU per keep-alive request ≤ 3 µs', stats(paired('keepAlive', 'cpuPerRequest')).median <= 3, `${f(stats(paired('keepAlive', 'cpuPerRequest')).median, 1)} µs`],
    ['added server CPU per full handshake ≤ 3%', stats(pct('full', 'cpuPerConnection')).median <= 3, `${f(stats(pct('full', 'cpuPerConnection')).median, 1)}%`],
    ['added server CPU per resumed handshake, certificate seen before ≤ 5%', stats(pct('resumed', 'cpuPerConnection')).median <= 5, `${f(stats(pct('resumed', 'cpuPerConnection')).median, 1)}%`],
    ['added server CPU per forwarded warm request ≤ 10 µs', stats(paired('warm', 'cpuPerRequest')).median <= 10, `${f(stats(paired('warm', 'cpuPerRequest')).median, 1)} µs`],
    [`memory flat from ${f(first.certificates, 0)} to ${f(last.certificates, 0)} certificates (heap + buffers grow < 2 MiB)`, heapGrowth < 2 * 2 ** 20, `${heapGrowth >= 0 ? '+' : ''}${f(heapGrowth / 2 ** 20, 2)} MiB`]
  ]
  console.log('')
  for (const [what, ok, value] of targets) console.log(`${ok ? 'PASS' : 'MISS'}  ${what}: ${value}`)
  console.log(`(${f(seconds, 0)} s)`)
}

// ============================================================================ entry (last: every const above is initialised)

if (process.argv[2] === '--serve') await serve()
else if (process.argv[2] === '--memory') await memory()
else await main()
