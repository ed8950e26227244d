// What fastify-mtls-auth costs the server, next to bare Fastify mTLS, measured side by side.
//
//   npm run build && npm run bench [-- --quick | --rounds N | --only mtls,forwarded,memory | --keys ec|rsa
//                                     | --tls 1.3|1.2 | --guard config|hook | --calibrate | --profile | --no-pin]
//
// The servers, each in its own child process:
//   A  bare Fastify HTTPS with requestCert: true (mTLS, no plugin)
//   B  the same app with the plugin: required mode, a global policy, and a route policy (in the
//      route's config, judged by the plugin's one onRequest hook; --guard hook: a guard of its
//      own, app.mtls.require(), one more hook per request)
//   L  A plus an onRequest hook that reads the leaf once per connection as the plugin does
//      (lib/sources/tls.ts leafFingerprint): what the plugin cannot avoid on a new connection
// and, for the forwarded source, a plain-HTTP app behind a "proxy" on 127.0.0.1:
//   FA the same route without the plugin (the header is sent all the same)
//   FB the plugin with forwarded: { header, format: 'escaped-pem', trustedProxies: ['127.0.0.1'] }
//
// Every metric is measured in blocks, each block one sample of every side, the order of the
// sides going through every permutation. Two ways:
//   - alone: the sides one after the other, each with core 0 to itself (taskset; this process,
//     the load generator, on core 1): keep-alive req/s, p50/p99 latency and server CPU;
//     forwarded warm and cold
//   - side by side: all sides at once on core 0 under the same load, so that whatever else the
//     shared machine does meanwhile hits them alike: server CPU for keep-alive and forwarded
//     warm (again), and for new connections (only this way: alone, the spread of B − A is
//     wider than the whole budget). L takes part in the keep-alive blocks too, so that it has
//     the same history (V8 sizes its young generation by the load a process has seen: a
//     server that sat out the keep-alive blocks costs ~8% more per handshake with nothing
//     else different; --calibrate makes L identical to A to show the method's own noise)
// The per-request targets are checked both ways: alone, B − A spreads wider; side by side it
// is narrower, but the sides also share the core's caches, which can charge the plugin for
// its larger working set; neither way is the one true figure.
// Server CPU comes from each server's own process.cpuUsage() around the block, over IPC, so the
// load generator's CPU never counts. Measured:
//   - keep-alive: N connections, one request in flight on each, for a fixed time: req/s,
//     p50/p99 latency, server CPU µs per request (connections opened and warmed outside the window)
//   - new connections: full handshakes, and resumed ones (TLS ticket of an earlier connection;
//     for B the certificate was seen before, so the verdict cache answers): a tls.connect
//     generator, one request per connection: server CPU µs per connection
//   - forwarded warm (the same certificate every request) and cold (a new certificate every
//     request: leaves minted from one DER template re-signed with crypto.sign)
//   - memory: 100,000 distinct certificates through the Authenticator and its caches, in a
//     child with --expose-gc: heapUsed after GC at 10k, 50k and 100k
// Reported: medians over all blocks with their interquartile range, and the added cost B − A
// as the median of the differences within each block, against the targets of issue 7 (PASS/MISS).
//
//   --quick      3 short rounds and 20,000 certificates for memory: under a minute
//   --rounds N   rounds (default 7, --quick 3), each of 4 blocks per metric
//   --only       a comma list of mtls, forwarded, memory (default all three)
//   --keys       ec (default, P-256 everywhere) or rsa (RSA-2048 everywhere)
//   --tls        the highest version the clients offer: 1.3 (default) or 1.2
//   --guard      config (default) or hook, for B's route policy (see above)
//   --calibrate  L does nothing more than A: its "L − A" row is the method's noise (an A/A test)
//   --profile    write V8 CPU profiles of the plugin's servers (node --cpu-prof) to bench/profiles/
//   --no-pin     do not pin processes to cores
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
  const [{ default: Fastify }, { default: fastifyMtls }, { leafFingerprint }] = await Promise.all([import('fastify'), import('../dist/index.js'), import('../dist/sources/tls.js')])
  const [pki] = await once(process, 'message')
  const tls = !variant.startsWith('F')
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
  if (variant === 'L' && !process.argv.includes('--calibrate')) {
    // what the plugin cannot avoid on a new connection: reading the leaf from Node once
    const seen = new WeakSet()
    app.addHook('onRequest', (request, _reply, done) => {
      const socket = request.raw.socket
      if (!seen.has(socket)) {
        seen.add(socket)
        // as the plugin does (lib/sources/tls.ts): the X509Certificate on a resumed session only
        leafFingerprint(socket)
      }
      done()
    })
  }
  // the route's policy in its config (judged by the plugin's one onRequest hook), or with --guard hook
  // as a guard of its own, app.mtls.require(): one more hook per request
  if (plugin && process.argv.includes('--guard-hook')) app.get('/orders', { onRequest: app.mtls.require(ROUTE_GUARD) }, reply)
  else if (plugin) app.get('/orders', { config: { mtls: ROUTE_GUARD } }, reply)
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
  constructor (variant, pki, { pin, profile, flags }) {
    this.variant = variant
    const args = [...(profile && variant !== 'L' ? ['--cpu-prof', `--cpu-prof-dir=${join(SELF, '..', 'profiles')}`, `--cpu-prof-name=${variant}-${Date.now()}.cpuprofile`] : []), SELF, '--serve', variant, ...flags]
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
 * Keep-alive load on one server, or on several side by side (the same load on each at once):
 * `connections` connections to each, each sending its next request when the last reply
 * arrived, for `ms` milliseconds (or until `total` requests were sent to each). `requests` is
 * one request or a list of them, taken in turn; `warmup` (default: the first request) is sent
 * once on each connection before the measurement starts. Resolves with one result per server.
 */
async function keepAlive (servers, { connections, ms, total, requests, warmup, tlsOptions }) {
  const list = Array.isArray(requests) ? requests : [requests]
  const sides = await Promise.all(servers.map(async (server) => ({
    server,
    conns: await Promise.all(Array.from({ length: connections }, () => Conn.open(server.port, tlsOptions))),
    latencies: [],
    sent: 0,
    errors: 0,
    firstError: undefined
  })))
  // one request on each connection before measuring: the connection's first request is not keep-alive
  for (const { server, conns } of sides) {
    for (const c of conns) {
      const s = await c.request(warmup ?? list[0])
      if (s !== 200) throw new Error(`${server.variant}: warm-up request answered ${s}: ${c.firstError}`)
    }
  }
  let stop = false
  await Promise.all(servers.map((s) => s.start()))
  const t0 = process.hrtime.bigint()
  const timer = ms === undefined ? undefined : setTimeout(() => { stop = true }, ms)
  const more = (side) => !stop && (total === undefined || side.sent < total)
  await Promise.all(sides.flatMap((side) => side.conns.map(async (c) => {
    while (more(side)) {
      const bytes = list[side.sent++ % list.length]
      const t = process.hrtime.bigint()
      const status = await c.request(bytes)
      side.latencies.push(Number(process.hrtime.bigint() - t) / 1000)
      if (status !== 200) {
        side.errors++
        side.firstError ??= c.firstError ?? `status ${status}`
        if (status === -1) return
      }
    }
  })))
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9
  const cpus = await Promise.all(servers.map((s) => s.stop()))
  clearTimeout(timer)
  return sides.map(({ server, conns, latencies, errors, firstError }, i) => {
    for (const c of conns) c.socket.destroy()
    if (errors > 0) throw new Error(`${server.variant}: ${errors} of ${latencies.length} requests failed; first: ${firstError}`)
    return { count: latencies.length, elapsed, cpuUs: cpus[i].us, latencies, verifications: cpus[i].verifications ?? 0 }
  })
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

/**
 * `n` new connections to each server, full or resumed handshakes, side by side: the
 * connections go to the servers in turn (A B L A B L ...), `concurrency` per server in flight,
 * so that every server works through the same stretch of time. Resolves with one result per server.
 */
async function handshakes (servers, { n, concurrency, resume, tlsOptions }) {
  const options = await Promise.all(servers.map(async (s) => resume ? { ...tlsOptions, session: await ticket(s.port, tlsOptions) } : tlsOptions))
  const jobs = Array.from({ length: n * servers.length }, (_, i) => i % servers.length)
  const resumed = servers.map(() => 0)
  let next = 0
  await Promise.all(servers.map((s) => s.start()))
  const t0 = process.hrtime.bigint()
  await Promise.all(Array.from({ length: concurrency * servers.length }, async () => {
    while (next < jobs.length) {
      const k = jobs[next++]
      if (await oneConnection(servers[k].port, options[k])) resumed[k]++
    }
  }))
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9
  const cpus = await Promise.all(servers.map((s) => s.stop()))
  return servers.map((server, k) => {
    const expected = resume ? n : 0
    if (resumed[k] !== expected) throw new Error(`${server.variant}: ${resumed[k]} of ${n} connections resumed, expected ${expected}`)
    return { count: n, elapsed, cpuUs: cpus[k].us, latencies: [], verifications: cpus[k].verifications ?? 0 }
  })
}

/** Blocks of one side's phase added up; per request (or connection) figures from the sums. */
function merge (blocks) {
  const count = blocks.reduce((a, b) => a + b.count, 0)
  const elapsed = blocks.reduce((a, b) => a + b.elapsed, 0)
  const latencies = blocks.flatMap((b) => b.latencies).sort((a, b) => a - b)
  return {
    count,
    perSecond: count / elapsed,
    p50: percentile(latencies, 0.5) / 1000,
    p99: percentile(latencies, 0.99) / 1000,
    cpu: blocks.reduce((a, b) => a + b.cpuUs, 0) / count,
    verifications: blocks.reduce((a, b) => a + b.verifications, 0)
  }
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
  const at = (q) => {
    const i = (s.length - 1) * q
    const lo = Math.floor(i)
    return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (i - lo)
  }
  return { median: at(0.5), q1: at(0.25), q3: at(0.75) }
}

async function main () {
  const { values: args } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      only: { type: 'string', default: 'mtls,forwarded,memory' },
      keys: { type: 'string', default: 'ec' },
      profile: { type: 'boolean', default: false },
      guard: { type: 'string', default: 'config' },
      tls: { type: 'string', default: '1.3' },
      calibrate: { type: 'boolean', default: false },
      'no-pin': { type: 'boolean', default: false }
    }
  })
  if (!['ec', 'rsa'].includes(args.keys)) throw new Error('--keys is ec or rsa')
  if (!['config', 'hook'].includes(args.guard)) throw new Error('--guard is config or hook')
  if (!['1.2', '1.3'].includes(args.tls)) throw new Error('--tls is 1.2 or 1.3')
  const sections = args.only.split(',')
  const unknown = sections.filter((x) => !['mtls', 'forwarded', 'memory'].includes(x))
  if (unknown.length > 0) throw new Error(`--only takes mtls, forwarded and memory, not ${unknown.join(', ')}`)
  const run = { mtls: sections.includes('mtls'), forwarded: sections.includes('forwarded'), memory: sections.includes('memory') }
  const quick = args.quick
  const cfg = {
    rounds: Number(args.rounds ?? (quick ? 3 : 7)),
    /** blocks of A and B per round and metric */
    blocks: 4,
    connections: 32,
    keepAliveMs: quick ? 1200 : 2400,
    handshakes: quick ? 160 : 320,
    handshakeConcurrency: 4,
    cold: quick ? 320 : 1000,
    coldConnections: 8,
    memory: quick ? [10_000, 15_000, 20_000] : [10_000, 50_000, 100_000]
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
  const tlsOptions = { servername: 'localhost', ca: pki.root.cert, cert: pki.client.cert + pki.intermediate.cert, key: pki.client.key, maxVersion: args.tls === '1.2' ? 'TLSv1.2' : 'TLSv1.3' }
  const warmRequest = httpRequest(`${FORWARDED_HEADER}: ${escapedPem(new X509Certificate(pki.client.cert).raw)}\r\n`)

  console.log(`fastify-mtls-auth plugin benchmark: node ${process.version}, ${cores} cores (${cpus()[0]?.model.trim() ?? '?'}), ` +
    `${args.keys === 'rsa' ? 'RSA-2048' : 'ECDSA P-256'} keys, TLS ${args.tls}, route policy ${args.guard === 'hook' ? 'as a guard hook' : 'in route config'}${args.calibrate ? ', --calibrate (L = A)' : ''}, ${pin ? 'servers on core 0, load generator on core 1' : 'not pinned'}${quick ? ', --quick' : ''}`)
  console.log(`${cfg.rounds} rounds of ${cfg.blocks} blocks A B / B A per metric; keep-alive: ${cfg.connections} connections × ${cfg.keepAliveMs / 1000} s; ` +
    `new connections: ${cfg.handshakes} full, ${cfg.handshakes} resumed (${cfg.handshakeConcurrency} at a time), one request each; forwarded cold: ${cfg.cold} requests`)

  const rows = { keepAlive: { A: [], B: [] }, keepAliveCpu: { A: [], B: [], L: [] }, full: { A: [], B: [], L: [] }, resumed: { A: [], B: [], L: [] }, warm: { A: [], B: [] }, warmAlone: { A: [], B: [] }, cold: { A: [], B: [] } }
  const verified = { keepAlive: 0, keepAliveCpu: 0, full: 0, resumed: 0, warm: 0, warmAlone: 0, cold: 0 }
  if (run.mtls || run.forwarded) {
    const variants = [...(run.mtls ? ['A', 'B', 'L'] : []), ...(run.forwarded ? ['FA', 'FB'] : [])]
    const servers = {}
    for (const v of variants) servers[v] = new Server(v, pki, { pin, profile: args.profile, flags: [...(args.guard === 'hook' ? ['--guard-hook'] : []), ...(args.calibrate ? ['--calibrate'] : [])] })
    await Promise.all(Object.values(servers).map((s) => s.ready()))

    // warm-up, not measured: JIT, the plugin's caches, the learned pool
    for (const v of variants) {
      if (v.startsWith('F')) {
        await keepAlive([servers[v]], { connections: cfg.connections, ms: 1000, requests: warmRequest })
        await keepAlive([servers[v]], { connections: cfg.coldConnections, total: 100, requests: Array.from({ length: 100 }, () => httpRequest(`${FORWARDED_HEADER}: ${escapedPem(mint())}\r\n`)), warmup: warmRequest })
      } else {
        await keepAlive([servers[v]], { connections: cfg.connections, ms: 1000, requests: httpRequest(), tlsOptions })
        await handshakes([servers[v]], { n: 50, concurrency: cfg.handshakeConcurrency, resume: false, tlsOptions })
        await handshakes([servers[v]], { n: 50, concurrency: cfg.handshakeConcurrency, resume: true, tlsOptions })
      }
    }

    /**
     * One round of a metric: `blocks` blocks, each one sample of every side. Alone: the sides of
     * a block run one after the other (for throughput and latency, where each side must have
     * core 0 to itself). Side by side: they run at the same time under the same load, sharing
     * core 0, so that whatever else the shared machine does hits them alike (for server CPU, the
     * figures the targets are about). The order within a block goes through every permutation
     * (A B, B A; with L all six), so that no side always comes first.
     */
    const permutations = (xs) => xs.length <= 1 ? [xs] : xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p]))
    const blockCount = {}
    const measureBlocks = async (metric, mode, measure) => {
      const orders = permutations(Object.keys(rows[metric]))
      for (let b = 0; b < cfg.blocks; b++) {
        const n = blockCount[metric] = (blockCount[metric] ?? 0) + 1
        const order = orders[n % orders.length]
        let results = []
        if (mode === 'together') results = await measure(order, b)
        else for (const k of order) results.push((await measure([k], b))[0])
        order.forEach((k, i) => rows[metric][k].push(merge([results[i]])))
        verified[metric] += rows[metric].B.at(-1).verifications
      }
    }
    const on = (keys, prefix = '') => keys.map((k) => servers[prefix + k])
    for (let round = 1; round <= cfg.rounds; round++) {
      if (run.mtls) {
        const load = { connections: cfg.connections, ms: cfg.keepAliveMs / cfg.blocks, requests: httpRequest(), tlsOptions }
        await measureBlocks('keepAlive', 'alone', (keys) => keepAlive(on(keys), load))
        await measureBlocks('keepAliveCpu', 'together', (keys) => keepAlive(on(keys), load))
        await measureBlocks('full', 'together', (keys) => handshakes(on(keys), { n: cfg.handshakes / cfg.blocks, concurrency: cfg.handshakeConcurrency, resume: false, tlsOptions }))
        await measureBlocks('resumed', 'together', (keys) => handshakes(on(keys), { n: cfg.handshakes / cfg.blocks, concurrency: cfg.handshakeConcurrency, resume: true, tlsOptions }))
      }
      if (run.forwarded) {
        const warm = { connections: cfg.connections, ms: cfg.keepAliveMs / cfg.blocks, requests: warmRequest }
        await measureBlocks('warmAlone', 'alone', (keys) => keepAlive(on(keys, 'F'), warm))
        await measureBlocks('warm', 'together', (keys) => keepAlive(on(keys, 'F'), warm))
        // a new certificate for every cold request (the same ones for A and B), minted before the
        // phase: the load generator's work, not the server's
        const cold = Array.from({ length: cfg.blocks }, () => Array.from({ length: cfg.cold / cfg.blocks }, () => httpRequest(`${FORWARDED_HEADER}: ${escapedPem(mint())}\r\n`)))
        await measureBlocks('cold', 'alone', (keys, b) => keepAlive(on(keys, 'F'), { connections: cfg.coldConnections, total: cold[b].length, requests: cold[b], warmup: warmRequest }))
      }
      process.stderr.write(`round ${round}/${cfg.rounds} done\n`)
    }
    await Promise.all(Object.values(servers).map((s) => s.close()))
  }

  const mem = run.memory ? await runMemory(pki, cfg.memory) : undefined
  const seconds = Number(process.hrtime.bigint() - runStart) / 1e9

  // ------------------------------------------------------------------------ report
  const f = (x, d = 1) => x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d })
  const spread = (values, d, unit = '') => {
    const s = stats(values)
    return `${f(s.median, d)}${unit} [${f(s.q1, d)}–${f(s.q3, d)}]`
  }
  const side = (metric, k, field) => rows[metric][k].map((r) => r[field])
  const added = (metric, field, k = 'B') => rows[metric][k].map((b, i) => b[field] - rows[metric].A[i][field])
  const addedPct = (metric, field, k = 'B') => rows[metric][k].map((b, i) => 100 * (b[field] - rows[metric].A[i][field]) / rows[metric].A[i][field])
  const alone = []
  const together = []
  for (const [metric, label] of [['keepAlive', 'mTLS keep-alive'], ['warmAlone', 'forwarded, same certificate every request'], ['cold', 'forwarded, new certificate every request']]) {
    if (rows[metric].A.length === 0) continue
    alone.push([`${label}: req/s`, spread(side(metric, 'A', 'perSecond'), 0), spread(side(metric, 'B', 'perSecond'), 0), `${f(stats(addedPct(metric, 'perSecond')).median, 1)}%`])
    alone.push([`${label}: latency p50 / p99 ms`, `${f(stats(side(metric, 'A', 'p50')).median, 2)} / ${f(stats(side(metric, 'A', 'p99')).median, 2)}`,
      `${f(stats(side(metric, 'B', 'p50')).median, 2)} / ${f(stats(side(metric, 'B', 'p99')).median, 2)}`, ''])
    alone.push([`${label}: server CPU µs/request`, spread(side(metric, 'A', 'cpu'), 1), spread(side(metric, 'B', 'cpu'), 1), spread(added(metric, 'cpu'), 1, ' µs')])
  }
  for (const [metric, label] of [['keepAliveCpu', 'mTLS keep-alive'], ['warm', 'forwarded, same certificate every request']]) {
    if (rows[metric].A.length === 0) continue
    together.push([`${label}: server CPU µs/request`, spread(side(metric, 'A', 'cpu'), 1), spread(side(metric, 'B', 'cpu'), 1), spread(added(metric, 'cpu'), 1, ' µs')])
  }
  for (const [metric, label] of [['full', 'new connection, full handshake'], ['resumed', 'new connection, resumed handshake']]) {
    if (rows[metric].A.length === 0) continue
    together.push([`${label}: server CPU µs`, spread(side(metric, 'A', 'cpu'), 0), spread(side(metric, 'B', 'cpu'), 0),
      `${spread(added(metric, 'cpu'), 0, ' µs')} = ${spread(addedPct(metric, 'cpu'), 1, '%')}`])
    together.push(['  of which Node reading the leaf (L − A)', spread(side(metric, 'L', 'cpu'), 0), '', `${spread(added(metric, 'cpu', 'L'), 0, ' µs')} = ${spread(addedPct(metric, 'cpu', 'L'), 1, '%')}`])
  }
  const blocks = rows.keepAlive.A.length || rows.warm.A.length
  for (const [title, lines] of [
    [`Alone (each server has core 0 to itself in turn): median of ${blocks} blocks per side [interquartile range]`, alone],
    [`Side by side (the servers share core 0 at the same time, under the same load): median of ${blocks} blocks per side [interquartile range]`, together]
  ]) {
    if (lines.length === 0) continue
    const head = ['', 'A (no plugin)', 'B (plugin)', 'B − A (added)']
    const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)))
    const print = (l) => console.log(l.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join('  '))
    console.log('')
    console.log(title + '; B − A: median of the differences within each block')
    print(head)
    for (const l of lines) print(l)
  }
  if (alone.length + together.length > 0) {
    console.log('')
    console.log('chain verifications by the plugin while measured: ' + [
      ...(run.mtls ? [`mTLS keep-alive ${verified.keepAlive + verified.keepAliveCpu}`, `full handshakes ${verified.full}`, `resumed ${verified.resumed}`] : []),
      ...(run.forwarded ? [`forwarded warm ${verified.warm + verified.warmAlone}`, `forwarded cold ${verified.cold} of ${cfg.cold * cfg.rounds} requests`] : [])
    ].join(', '))
  }

  const targets = []
  const check = (what, value, limit, unit) => targets.push([what, value <= limit, `${f(value, 2)}${unit}`])
  if (run.mtls) {
    check('added server CPU per keep-alive request ≤ 3 µs (alone)', stats(added('keepAlive', 'cpu')).median, 3, ' µs')
    check('added server CPU per keep-alive request ≤ 3 µs (side by side)', stats(added('keepAliveCpu', 'cpu')).median, 3, ' µs')
    check('added server CPU per full handshake ≤ 3%', stats(addedPct('full', 'cpu')).median, 3, '%')
    check('added server CPU per resumed handshake, certificate seen before ≤ 5%', stats(addedPct('resumed', 'cpu')).median, 5, '%')
  }
  if (run.forwarded) {
    check('added server CPU per forwarded warm request ≤ 10 µs (alone)', stats(added('warmAlone', 'cpu')).median, 10, ' µs')
    check('added server CPU per forwarded warm request ≤ 10 µs (side by side)', stats(added('warm', 'cpu')).median, 10, ' µs')
  }
  if (mem !== undefined) {
    console.log('')
    console.log(`memory: ${f(mem.points.at(-1).certificates, 0)} distinct certificates through the Authenticator and its caches ` +
      `(minting ${f(mem.mintUs, 0)} µs, verifying ${f(mem.verifyUs, 0)} µs per certificate; ${f(mem.verifications, 0)} verifications)`)
    for (const p of mem.points) {
      console.log(`  ${f(p.certificates, 0).padStart(7)}: heapUsed ${f(p.heapUsed / 2 ** 20, 1).padStart(5)} MiB, arrayBuffers ${f(p.arrayBuffers / 2 ** 20, 1).padStart(4)} MiB, ` +
        `rss ${f(p.rss / 2 ** 20, 0).padStart(4)} MiB; verdicts cached: ${p.caches.positive} positive, ${p.caches.negative} negative; learned intermediates ${p.caches.learnedIntermediates}`)
    }
    const first = mem.points[1]
    const last = mem.points.at(-1)
    const growth = (last.heapUsed + last.arrayBuffers - first.heapUsed - first.arrayBuffers) / 2 ** 20
    targets.push([`memory flat from ${f(first.certificates, 0)} to ${f(last.certificates, 0)} certificates (heapUsed + arrayBuffers after GC grow < 2 MiB)`, growth < 2, `${growth >= 0 ? '+' : ''}${f(growth, 2)} MiB`])
  }
  console.log('')
  for (const [what, ok, value] of targets) console.log(`${ok ? 'PASS' : 'MISS'}  ${what}: ${value}`)
  console.log(`(${f(seconds, 0)} s)`)
}

// ============================================================================ entry (last: every const above is initialised)

if (process.argv[2] === '--serve') await serve()
else if (process.argv[2] === '--memory') await memory()
else await main()
