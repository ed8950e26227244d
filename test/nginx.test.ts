// A real proxy: nginx from the distribution's packages terminates mTLS from curl on 127.0.0.1
// and forwards the client certificate to a plain-HTTP Fastify app in X-SSL-Client-Cert
// ($ssl_client_escaped_cert) and X-SSL-Client-Verify ($ssl_client_verify). The identity must be
// the one a direct TLS connection gives; clients sharing one upstream keep-alive connection keep
// their own identities; a client's own X-SSL-Client-Cert never reaches the app.
// Where nginx is not installed the tests are skipped, and say so loudly (.ci/run installs it;
// it sets MTLS_TEST_REQUIRE_NGINX=1, which turns a missing nginx into a failure).
import t, { type Test } from 'tap'
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { connect } from 'node:tls'
import { promisify } from 'node:util'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import fastifyMtls, { rejectionError, type FastifyMtlsOptions, type RejectionCode } from '../lib/index.js'
import { parseForwarded } from '../lib/sources/forwarded-formats.js'
import { issue, makeChain, newKey, type Issued } from './helpers/pki.js'

const execFileAsync = promisify(execFile)

// ------------------------------------------------------------------ is there an nginx?

/** `command -v nginx`, then the places distributions put it (/usr/sbin is not on every user's PATH). */
function findNginx (): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter((d) => d !== ''), '/usr/sbin', '/usr/local/sbin', '/usr/local/nginx/sbin']
  for (const dir of dirs) {
    const candidate = join(dir, 'nginx')
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {}
  }
  return undefined
}

/** Why this nginx cannot run the tests (no SSL module), or undefined when it can. */
function unusable (bin: string): string | undefined {
  // nginx -V writes its build options to stderr
  const v = spawnSync(bin, ['-V'], { encoding: 'utf8', timeout: 10000 })
  const build = `${v.stdout ?? ''}${v.stderr ?? ''}`
  if (v.error !== undefined || v.status !== 0) return `${bin} -V failed: ${v.error?.message ?? build.trim()}`
  if (!build.includes('--with-http_ssl_module')) return `${bin} was built without the SSL module`
  return undefined
}

const NGINX = findNginx()
const problem = NGINX === undefined ? 'nginx not installed' : unusable(NGINX)
const required = process.env.MTLS_TEST_REQUIRE_NGINX === '1'

if (NGINX === undefined || problem !== undefined) {
  const banner = `!!!! ${problem ?? 'nginx not usable'}: the real-proxy tests were SKIPPED (install the distribution's nginx package to run them) !!!!`
  process.stderr.write(`\n${banner}\n\n`)
  t.comment(banner)
  if (required) t.fail(`${banner} -- but MTLS_TEST_REQUIRE_NGINX=1 (.ci/run) says nginx must be there`)
  else t.test('nginx: the real-proxy tests', { skip: banner }, () => {})
} else {
  await realProxyTests(NGINX)
}

// ------------------------------------------------------------------ the tests

async function realProxyTests (bin: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mtls-nginx-'))
  const file = (name: string, content: string): string => {
    const path = join(dir, name)
    writeFileSync(path, content, { mode: 0o600 })
    return path
  }

  // teardown first, so that whatever part of the setup ran is undone: nginx (SIGTERM, wait for
  // it to exit), then the apps, then the temporary directory with the keys
  let nginx: ChildProcess | undefined
  let nginxExit: Promise<unknown> | undefined
  const apps: FastifyInstance[] = []
  const running = (): boolean => nginx !== undefined && nginx.exitCode === null && nginx.signalCode === null
  const killNginx = (): void => { if (running()) nginx?.kill('SIGKILL') }
  process.once('exit', killNginx)
  t.teardown(async () => {
    if (running()) {
      nginx?.kill('SIGTERM')
      const timer = setTimeout(killNginx, 5000)
      await nginxExit
      clearTimeout(timer)
    }
    process.removeListener('exit', killNginx)
    await Promise.all(apps.map(async (a) => a.close()))
    rmSync(dir, { recursive: true, force: true })
  })

  // ---- PKI: the server's certificate (for nginx and the direct app), the partner CA the
  // plugin trusts, and a second CA that nginx trusts but the plugin does not.
  const fresh = async () => newKey('ec256', { fresh: true })
  const server = await makeChain({ kind: 'ec256', intermediates: 0, label: 'Server', leaf: { subject: 'CN=localhost', san: { dns: ['localhost'], ip: ['127.0.0.1'] }, extKeyUsage: ['serverAuth'] } })
  const partner = await makeChain({
    kind: 'ec256',
    label: 'Partner',
    root: { key: await fresh() },
    intermediate: { key: await fresh() },
    leaf: { subject: 'CN=alice,OU=payments,O=Partner', key: await fresh() }
  })
  const partnerCa = partner.intermediates[0] as Issued
  const bobLeaf = await issue({ subject: 'CN=bob,OU=sales,O=Partner', issuer: partnerCa, key: await fresh() })
  const other = await makeChain({ kind: 'ec256', label: 'Other', leaf: { subject: 'CN=mallory,O=Other', key: await fresh() } })

  interface Client { name: string, leaf: Issued, cert: string, key: string }
  const client = (name: string, leaf: Issued, ...chain: Issued[]): Client =>
    ({ name, leaf, cert: file(`${name}.crt`, [leaf, ...chain].map((c) => c.pem).join('')), key: file(`${name}.key`, leaf.key.privateKeyPem) })
  const alice = client('alice', partner.leaf, partnerCa)
  const bob = client('bob', bobLeaf, partnerCa)
  const mallory = client('mallory', other.leaf, other.intermediates[0] as Issued)

  const serverCaFile = file('server-ca.pem', server.root.pem)
  const serverCert = file('server.crt', server.leaf.pem)
  const serverKey = file('server.key', server.leaf.key.privateKeyPem)
  // nginx accepts clients of both CAs; the plugin trusts only the partner's
  const nginxClientCas = file('nginx-client-cas.pem', partner.root.pem + other.root.pem)

  // the same trust for both apps: nginx forwards the leaf only, so the plugin is given the intermediate
  const pluginTrust: Pick<FastifyMtlsOptions, 'ca' | 'intermediates'> = { ca: partner.root.pem, intermediates: [partnerCa.pem] }

  // ---- the apps

  interface Seen { cert: string[], verify: string[], remotePort: number | undefined }
  const seen: Seen[] = []

  async function app (opts: Record<string, unknown>, plugin: FastifyMtlsOptions): Promise<{ app: FastifyInstance, port: number }> {
    const a = Fastify(opts as FastifyServerOptions) as unknown as FastifyInstance
    apps.push(a)
    // before the plugin's hook: what nginx sent, every line of it, even when the plugin rejects
    a.addHook('onRequest', async (req) => {
      const raw = req.raw.rawHeaders
      const values = (name: string): string[] => raw.flatMap((v, i) => i % 2 === 0 && v.toLowerCase() === name ? [raw[i + 1] as string] : [])
      seen.push({ cert: values('x-ssl-client-cert'), verify: values('x-ssl-client-verify'), remotePort: req.socket.remotePort })
    })
    await a.register(fastifyMtls, plugin)
    a.get('/', async (req) => {
      const id = req.clientIdentity
      return id === null
        ? { identity: null }
        : { identity: { fingerprint256: id.fingerprint256, subject: id.subject.rfc4514, anchor: id.trustAnchor.name }, source: id.source, remotePort: req.socket.remotePort }
    })
    await a.listen({ host: '127.0.0.1', port: 0 })
    return { app: a, port: (a.server.address() as AddressInfo).port }
  }

  const behind = await app({}, {
    ...pluginTrust,
    forwarded: { header: 'x-ssl-client-cert', format: 'escaped-pem', trustedProxies: ['127.0.0.1'], verifyHeader: { name: 'x-ssl-client-verify', value: 'SUCCESS' } }
  })
  const direct = await app({
    https: { key: server.leaf.key.privateKeyPem, cert: server.leaf.pem, ca: partner.root.pem, requestCert: true, rejectUnauthorized: false }
  }, pluginTrust)

  // ---- nginx

  const config = (on: number, optional: number): string => `
daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events {}
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream app {
    server 127.0.0.1:${behind.port};
    keepalive 4;
  }
  ssl_certificate ${serverCert};
  ssl_certificate_key ${serverKey};
  ssl_client_certificate ${nginxClientCas};
  ssl_verify_depth 3;
  ssl_session_cache off;
  ssl_session_tickets off;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  # set on every request, even when empty: a client's own header never passes
  proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
  proxy_set_header X-SSL-Client-Verify $ssl_client_verify;
  server {
    listen 127.0.0.1:${on} ssl;
    ssl_verify_client on;
    location / { proxy_pass http://app; }
  }
  server {
    listen 127.0.0.1:${optional} ssl;
    ssl_verify_client optional;
    location / { proxy_pass http://app; }
  }
}
`

  const freePort = async (): Promise<number> => {
    const probe = createServer()
    await new Promise<void>((resolve, reject) => { probe.once('error', reject); probe.listen(0, '127.0.0.1', resolve) })
    const { port } = probe.address() as AddressInfo
    await new Promise<void>((resolve) => probe.close(() => resolve()))
    return port
  }

  /** One TLS handshake with nginx: true when it completes with the server certificate we made. */
  const handshake = async (port: number): Promise<boolean> => new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, ca: server.root.pem, servername: 'localhost' })
    socket.setTimeout(1000, () => { socket.destroy(); resolve(false) })
    socket.once('secureConnect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => { socket.destroy(); resolve(false) })
  })

  /** Starts nginx on two free ports; a port taken between the probe and nginx's bind is retried with new ones. */
  async function startNginx (): Promise<{ on: number, optional: number }> {
    let lastLog = ''
    for (let attempt = 1; attempt <= 5; attempt++) {
      const on = await freePort()
      let optional = await freePort()
      while (optional === on) optional = await freePort()
      const conf = file('nginx.conf', config(on, optional))
      writeFileSync(join(dir, 'error.log'), '')
      const child = spawn(bin, ['-e', join(dir, 'error.log'), '-p', `${dir}/`, '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
      let stderr = ''
      child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d })
      const state = { exited: false }
      const exit = new Promise<void>((resolve) => {
        child.once('error', (err) => { stderr += String(err); state.exited = true; resolve() })
        child.once('exit', () => { state.exited = true; resolve() })
      })
      nginx = child
      nginxExit = exit
      // bounded: about 10 s, with a short backoff and no fixed sleep
      for (let i = 0, wait = 10; i < 60 && !state.exited; i++, wait = Math.min(wait * 2, 250)) {
        if (await handshake(on) && await handshake(optional)) return { on, optional }
        await Promise.race([exit, new Promise((resolve) => setTimeout(resolve, wait))])
      }
      if (!state.exited) throw new Error(`nginx did not accept TLS connections on ${on}/${optional}: ${readFileSync(join(dir, 'error.log'), 'utf8')}`)
      lastLog = `${stderr}\n${readFileSync(join(dir, 'error.log'), 'utf8')}`
      if (!/Address already in use/.test(lastLog)) break
    }
    throw new Error(`nginx did not start:\n${lastLog}`)
  }

  let ports: { on: number, optional: number }
  try {
    ports = await startNginx()
  } catch (err) {
    // a failure, not a skip: nginx is installed but would not run (the teardown still cleans up)
    t.fail((err as Error).message)
    return
  }
  const viaNginx = `https://127.0.0.1:${ports.on}/`
  const viaNginxOptional = `https://127.0.0.1:${ports.optional}/`
  const directly = `https://127.0.0.1:${direct.port}/`

  interface Reply { status: number, body: any }
  async function curl (url: string, as?: Client, headers: string[] = []): Promise<Reply> {
    const args = ['-sS', '--max-time', '10', '--cacert', serverCaFile, ...(as === undefined ? [] : ['--cert', as.cert, '--key', as.key]),
      ...headers.flatMap((h) => ['-H', h]), '-w', '\n%{http_code}', url]
    const { stdout } = await execFileAsync('curl', args)
    const cut = stdout.lastIndexOf('\n')
    const text = stdout.slice(0, cut)
    let body: unknown = text
    try { body = JSON.parse(text) } catch {}
    return { status: Number(stdout.slice(cut + 1)), body }
  }

  const errorBody = (code: RejectionCode): Record<string, unknown> => {
    const e = rejectionError(code)
    return { statusCode: e.statusCode, code, error: e.statusCode === 401 ? 'Unauthorized' : 'Forbidden', message: e.message }
  }
  const expected = (c: Client) => ({ fingerprint256: c.leaf.cert.fingerprint256, subject: c.leaf.cert.subject.split('\n').reverse().join(','), anchor: 'O=Fixture PKI,CN=Partner Root CA' })

  // ---- tests

  t.test('through nginx: 200, the same identity a direct TLS connection gives, source "forwarded"', async (t: Test) => {
    seen.length = 0
    const proxied = await curl(viaNginx, alice)
    t.equal(proxied.status, 200, 'nginx verified alice and the app accepted the forwarded certificate')
    t.equal(proxied.body.source, 'forwarded')
    const first = seen[0]
    t.ok(first !== undefined, 'the app received the request')
    if (first === undefined) return

    // nginx's real header, as received: logged once, and it must parse
    t.equal(first.cert.length, 1, 'one X-SSL-Client-Cert line')
    t.same(first.verify, ['SUCCESS'], 'X-SSL-Client-Verify: SUCCESS')
    const raw = first.cert[0] as string
    t.comment(`nginx sent X-SSL-Client-Cert (${raw.length} chars): ${raw}`)
    const parsed = parseForwarded('escaped-pem', raw)
    t.ok(parsed?.leaf.equals(alice.leaf.der), 'the header parses to alice\'s leaf')
    t.same(parsed?.chain, [], 'leaf only ($ssl_client_escaped_cert does not carry the intermediates)')
    t.notMatch(raw, /[\s+/=]/, 'no spaces, newlines, +, / or = left unescaped')
    t.equal(raw, encodeURIComponent(alice.leaf.cert.toString()), 'exactly encodeURIComponent of the PEM OpenSSL writes')

    const viaTls = await curl(directly, alice)
    t.equal(viaTls.status, 200)
    t.equal(viaTls.body.source, 'tls')
    t.same(proxied.body.identity, viaTls.body.identity, 'the identity equals the one a direct TLS connection gives')
    t.same(proxied.body.identity, expected(alice), 'and it is alice, under the partner root')
  })

  t.test('a CA nginx trusts and the plugin does not: 401 FST_MTLS_CERT_UNTRUSTED', async (t: Test) => {
    seen.length = 0
    const r = await curl(viaNginx, mallory)
    t.same(seen[0]?.verify, ['SUCCESS'], 'nginx verified mallory against its own bundle')
    t.equal(r.status, 401)
    t.same(r.body, errorBody('FST_MTLS_CERT_UNTRUSTED'), 'the plugin verifies again with its own anchors')
    t.equal((await curl(directly, mallory)).status, 401, 'as a direct connection is refused')
  })

  t.test('no certificate: nginx refuses (verify on), or forwards nothing (verify optional) -> 401 FST_MTLS_CERT_MISSING', async (t: Test) => {
    seen.length = 0
    t.equal((await curl(viaNginx)).status, 400, 'ssl_verify_client on: nginx answers 400 itself')
    t.equal(seen.length, 0, 'and the app never sees the request')
    const r = await curl(viaNginxOptional)
    t.same(r.body, errorBody('FST_MTLS_CERT_MISSING'))
    t.same(seen[0]?.cert, [], 'nginx sends no X-SSL-Client-Cert when $ssl_client_escaped_cert is empty')
    t.same(seen[0]?.verify, ['NONE'])
  })

  t.test('two clients over one upstream keep-alive connection keep their own identities', async (t: Test) => {
    seen.length = 0
    const order = [alice, bob, alice, bob, alice]
    const replies: Reply[] = []
    for (const c of order) replies.push(await curl(viaNginx, c))
    replies.forEach((r, i) => {
      const c = order[i] as Client
      t.equal(r.status, 200, `request ${i + 1} (${c.name}): 200`)
      t.same(r.body.identity, expected(c), `request ${i + 1}: ${c.name}'s identity`)
    })
    const upstreamPorts = new Set(seen.map((s) => s.remotePort))
    t.comment(`upstream connection(s) seen by the app, by nginx's source port: ${[...upstreamPorts].join(', ')}`)
    t.equal(seen.length, order.length)
    t.equal(upstreamPorts.size, 1, 'all of them came over the same upstream connection (keepalive 4, sequential requests)')
    t.same(replies.map((r) => r.body.remotePort), seen.map((s) => s.remotePort))
  })

  t.test('a client\'s own X-SSL-Client-Cert / X-SSL-Client-Verify are overwritten by nginx', async (t: Test) => {
    const spoof = [
      `X-SSL-Client-Cert: ${encodeURIComponent(alice.leaf.cert.toString())}`,
      `x-ssl-client-cert: ${encodeURIComponent(alice.leaf.pem)}`,
      'X-SSL-Client-Verify: SUCCESS'
    ]
    seen.length = 0
    const asBob = await curl(viaNginx, bob, spoof)
    t.equal(asBob.status, 200)
    t.same(asBob.body.identity, expected(bob), 'bob, presenting his own certificate, is bob, not the alice he claims in the header')
    t.equal(seen[0]?.cert.length, 1, 'the app gets one X-SSL-Client-Cert line, nginx\'s')
    t.ok(parseForwarded('escaped-pem', seen[0]?.cert[0] ?? '')?.leaf.equals(bob.leaf.der), 'and it holds bob\'s certificate')

    seen.length = 0
    const anonymous = await curl(viaNginxOptional, undefined, spoof)
    t.same(anonymous.body, errorBody('FST_MTLS_CERT_MISSING'), 'without a certificate the spoofed alice gets nowhere')
    t.same(seen[0]?.cert, [], 'nginx dropped the client\'s X-SSL-Client-Cert lines (its own value was empty)')
    t.same(seen[0]?.verify, ['NONE'], 'and replaced X-SSL-Client-Verify')
  })
}
