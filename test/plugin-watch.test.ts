// The `watch` option: reloads when files change, with the layout Kubernetes uses for
// secrets (a `..data` symlink swapped atomically), twice in a row, and key/certificate
// pairs written one after the other (as Vault Agent does).
import t, { type Test } from 'tap'
import { mkdtempSync, mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:tls'
import Fastify from 'fastify'
import { Agent, request } from 'undici'
import fastifyMtls from '../lib/index.js'
import { makeChain, type Chain } from './helpers/pki.js'

const server = await makeChain({ kind: 'ec256', intermediates: 0, label: 'Watch server', leaf: { subject: 'CN=localhost', san: { dns: ['localhost'] }, extKeyUsage: ['serverAuth'] } })
const server2 = await makeChain({ kind: 'ec256', intermediates: 0, label: 'Watch server 2', leaf: { subject: 'CN=localhost', san: { dns: ['localhost'] }, extKeyUsage: ['serverAuth'] } })
const [a, b, c] = await Promise.all(['A', 'B', 'C'].map((l) => makeChain({ kind: 'ec256', intermediates: 0, label: `Watch ${l}` }))) as [Chain, Chain, Chain]

interface LogLine { msg: string, [k: string]: unknown }

/** A Kubernetes-style secret volume: files are symlinks into `..data`, itself a symlink to a timestamped folder. */
class SecretVolume {
  private n = 0
  constructor (readonly dir: string, files: Record<string, string>) {
    this.write(files)
    for (const name of Object.keys(files)) symlinkSync(join('..data', name), join(dir, name))
  }

  write (files: Record<string, string>): void {
    const version = `..2026_11_22_${++this.n}`
    mkdirSync(join(this.dir, version))
    for (const [name, text] of Object.entries(files)) writeFileSync(join(this.dir, version, name), text)
    // the atomic swap: a new symlink renamed over `..data`
    symlinkSync(version, join(this.dir, '..data_tmp'))
    renameSync(join(this.dir, '..data_tmp'), join(this.dir, '..data'))
  }
}

async function start (t: Test, plugin: Record<string, unknown>) {
  const lines: LogLine[] = []
  const waiters: Array<{ test: (l: LogLine) => boolean, resolve: (l: LogLine) => void }> = []
  const stream = {
    write (raw: string) {
      const line = JSON.parse(raw) as LogLine
      lines.push(line)
      for (const w of waiters.splice(0)) {
        if (w.test(line)) w.resolve(line)
        else waiters.push(w)
      }
    }
  }
  const app = Fastify({
    logger: { level: 'info', stream },
    https: { key: server.leaf.key.privateKeyPem, cert: server.leaf.pem, ca: a.root.pem, requestCert: true, rejectUnauthorized: false }
  })
  t.teardown(() => app.close())
  await app.register(fastifyMtls, plugin as never)
  app.get('/', async (req) => ({ cn: req.clientIdentity?.subject.attributes.CN?.[0] ?? null }))
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as { port: number }).port
  const next = (test: (l: LogLine) => boolean): Promise<LogLine> => new Promise((resolve) => { waiters.push({ test, resolve }) })
  return { app, url: `https://127.0.0.1:${port}`, port, lines, next }
}

/** One request on a fresh connection. */
async function status (t: Test, url: string, chain: Chain): Promise<number> {
  const agent = new Agent({ connect: { ca: [server.root.pem, server2.root.pem], servername: 'localhost', cert: chain.leaf.pem, key: chain.leaf.key.privateKeyPem } })
  t.teardown(() => agent.close())
  const res = await request(url, { dispatcher: agent })
  await res.body.text()
  return res.statusCode
}

const reloaded = (l: LogLine): boolean => l.msg === 'fastify-mtls-auth: files changed, reloaded'
const refused = (l: LogLine): boolean => l.msg === 'fastify-mtls-auth: files changed but the reload was refused; will retry'

t.test('a Kubernetes secret swapped twice in a row is reloaded both times', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mtls-watch-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const volume = new SecretVolume(dir, { 'ca.pem': a.root.pem })
  const { app, url, next } = await start(t, { ca: a.root.pem, watch: { ca: join(dir, 'ca.pem'), intervalMs: 100 } })
  t.equal(await status(t, url, a), 200, 'CA A trusted at start')
  t.equal(await status(t, url, b), 401, 'CA B not yet')
  const epoch = app.mtls.status().epoch

  let done = next(reloaded)
  volume.write({ 'ca.pem': b.root.pem })
  await done
  t.equal(app.mtls.status().epoch, epoch + 1, 'first swap: one reload')
  t.equal(await status(t, url, b), 200, 'CA B trusted after the first swap')
  t.equal(await status(t, url, a), 401, 'CA A no longer')

  done = next(reloaded)
  volume.write({ 'ca.pem': c.root.pem })
  await done
  t.equal(app.mtls.status().epoch, epoch + 2, 'second swap: one more reload')
  t.equal(await status(t, url, c), 200, 'CA C trusted after the second swap')
  t.equal(await status(t, url, b), 401, 'CA B no longer')
  const w = app.mtls.status().watch
  t.equal(w?.lastOutcome?.ok, true)
  t.same(w?.files, [join(dir, 'ca.pem')])
})

t.test('key and certificate written one after the other: refused until both match, then applied', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mtls-watch-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'tls.key'), server.leaf.key.privateKeyPem)
  writeFileSync(join(dir, 'tls.crt'), server.leaf.pem)
  const { app, port, next } = await start(t, { ca: a.root.pem, watch: { key: join(dir, 'tls.key'), cert: join(dir, 'tls.crt'), intervalMs: 100 } })
  const served = (): Promise<string> => new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: [server.root.pem, server2.root.pem], cert: a.leaf.pem, key: a.leaf.key.privateKeyPem }, () => {
      const fp = s.getPeerCertificate().fingerprint256
      s.end()
      resolve(fp)
    })
    s.on('error', reject)
  })
  t.equal(await served(), server.leaf.cert.fingerprint256, 'the first server certificate')

  const refusedOnce = next(refused)
  writeFileSync(join(dir, 'tls.key'), server2.leaf.key.privateKeyPem)
  const line = await refusedOnce
  t.match(String((line.err as { message?: string } | undefined)?.message), /key does not match cert/, 'the half-written pair is refused')
  t.equal(await served(), server.leaf.cert.fingerprint256, 'the old pair is still served')

  const done = next(reloaded)
  writeFileSync(join(dir, 'tls.crt'), server2.leaf.pem)
  await done
  t.equal(await served(), server2.leaf.cert.fingerprint256, 'the new pair is served once both halves are there')
  t.equal(app.mtls.status().watch?.lastOutcome?.ok, true)
})

t.test('watch options are checked', async (t) => {
  for (const [watch, message] of [
    [{}, /at least one file/],
    [{ key: '/x' }, /key and watch.cert go together/],
    [{ ca: 42 }, /watch.ca must be a file path/],
    [{ ca: '/x', intervalMs: 5 }, /intervalMs/],
    [{ cas: '/x' }, /unknown field "cas"/]
  ] as const) {
    const app = Fastify({ https: { key: server.leaf.key.privateKeyPem, cert: server.leaf.pem, ca: a.root.pem, requestCert: true } })
    t.teardown(() => app.close())
    app.register(fastifyMtls, { ca: a.root.pem, watch } as never)
    await t.rejects(async () => { await app.ready() }, { code: 'FST_MTLS_INVALID_OPTIONS', message }, JSON.stringify(watch))
  }
})
