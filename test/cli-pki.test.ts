// The `fastify-mtls-auth pki` command as a child process (node dist/cli/main.js), its files
// checked with OpenSSL and node:crypto, then used by the plugin over real TLS.
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto'
import { existsSync } from 'node:fs'
import { cp, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import tls from 'node:tls'
import Fastify from 'fastify'
import { Agent, request } from 'undici'
import fastifyMtls from '../lib/index.js'

const root = resolve(import.meta.dirname, '..')
const MAIN = join(root, 'dist', 'cli', 'main.js')

interface Result { code: number, stdout: string, stderr: string }

function exec (cmd: string, args: string[], options: { cwd?: string, env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', cwd: options.cwd, env: options.env ?? process.env }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : err.code === 'ENOENT' ? 127 : 1, stdout, stderr })
    })
  })
}

// the command line runs from dist/, which `npm test` builds before any test runs (rebuilding
// here would rewrite dist/ under the other test files that run at the same time)
if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run npm run build (npm test builds first)`)

const tmp = await mkdtemp(join(tmpdir(), 'cli-pki-'))
t.teardown(() => rm(tmp, { recursive: true, force: true }))
const dir = join(tmp, 'pki')
// children run without tap's NODE_OPTIONS (its per-process coverage hook costs about a second a spawn)
const env = { ...process.env, MTLS_P12_PASSWORD: undefined, DEBUG: undefined, NODE_OPTIONS: undefined }

const cli = (args: string[], options: { cwd?: string, env?: NodeJS.ProcessEnv } = {}): Promise<Result> =>
  exec(process.execPath, [MAIN, ...args], { cwd: options.cwd ?? tmp, env: options.env ?? env })
const file = (name: string): string => join(dir, name)
const mode = async (path: string): Promise<number> => (await stat(path)).mode & 0o777
const openssl = (args: string[]): Promise<Result> => exec('openssl', args, { cwd: dir })

/** A refusal: one line on stderr, no stack trace, a non-zero exit, nothing on stdout. */
function refused (t: Test, r: Result, pattern: RegExp, what: string): void {
  t.equal(r.code, 2, `${what}: exit code 2 (bad input)`)
  t.equal(r.stderr.split('\n').filter((l) => l !== '').length, 1, `${what}: exactly one line on stderr (${JSON.stringify(r.stderr)})`)
  t.notMatch(r.stderr, /\n\s+at /, `${what}: no stack trace`)
  t.match(r.stderr, /^fastify-mtls-auth: /)
  t.match(r.stderr, pattern, what)
  t.equal(r.stdout, '', `${what}: nothing on stdout`)
}

t.test('init: the folder, key modes, README, progress on stderr; no overwrite without --force', async (t) => {
  const r = await cli(['pki', 'init'])
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stderr.trim().split('\n').length, 3, 'one progress line per key')
  t.match(r.stderr, /generating the root CA key \(ec\)/)
  for (const name of ['root.key', 'client-ca.key', 'server.key']) t.equal(await mode(file(name)), 0o600, `${name} is 0600`)
  for (const name of ['root.pem', 'client-ca.pem', 'server.pem', 'crl.pem', 'index.json', 'README.md']) t.ok((await stat(file(name))).isFile(), name)
  const readme = await readFile(file('README.md'), 'utf8')
  for (const name of ['root.pem', 'root.key', 'client-ca.pem', 'client-ca.key', 'server.pem', 'crl.pem', 'index.json', 'pki issue', 'pki p12']) t.match(readme, name, `README mentions ${name}`)
  const server = new X509Certificate(await readFile(file('server.pem')))
  t.equal(server.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1', 'the three SANs')
  const sv = await openssl(['verify', '-purpose', 'sslserver', '-CAfile', 'root.pem', 'server.pem'])
  t.equal(sv.code, 0, sv.stderr)
  const ca = await openssl(['verify', '-CAfile', 'root.pem', 'client-ca.pem'])
  t.equal(ca.code, 0, ca.stderr)
  t.ok(createPrivateKey(await readFile(file('client-ca.key'))).asymmetricKeyType === 'ec')

  const before = await readFile(file('root.pem'), 'utf8')
  refused(t, await cli(['pki', 'init']), /already holds a PKI.*--force/, 'a second init')
  t.equal(await readFile(file('root.pem'), 'utf8'), before, 'nothing replaced')

  const other = join(tmp, 'other')
  const forced = await cli(['pki', 'init', other, '--key', 'rsa'])
  t.equal(forced.code, 0, forced.stderr)
  const again = await cli(['pki', 'init', other, '--key', 'ed25519', '--force'])
  t.equal(again.code, 0, again.stderr)
  t.equal(createPrivateKey(await readFile(join(other, 'root.key'))).asymmetricKeyType, 'ed25519', '--force replaced the PKI')
  t.equal(await mode(join(other, 'root.key')), 0o600, 'and created its keys 0600')
})

t.test('issue: files, modes, names; openssl verify (and -purpose sslclient) says OK', async (t) => {
  const r = await cli(['pki', 'issue', 'alice', '--dir', dir, '--o', 'Acme', '--ou', 'Eng', '--ou', 'Ops', '--dns', 'alice.example', '--dns', 'a.example',
    '--spiffe', 'spiffe://example.org/alice', '--email', 'alice@example.org', '--uri', 'https://example.org/alice', '--days', '30'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /CN=alice,OU=Ops,OU=Eng,O=Acme/)
  t.equal(await mode(file('alice.key')), 0o600)
  const leaf = new X509Certificate(await readFile(file('alice.pem')))
  t.equal(leaf.subject, 'O=Acme\nOU=Eng\nOU=Ops\nCN=alice')
  t.equal(leaf.subjectAltName, 'DNS:alice.example, DNS:a.example, email:alice@example.org, URI:https://example.org/alice, URI:spiffe://example.org/alice')
  t.equal(Math.round((Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)) / 86400e3), 30, '--days')
  t.ok(leaf.publicKey.equals(createPublicKey(await readFile(file('alice.key')))), 'the key matches')
  t.equal(await readFile(file('alice-chain.pem'), 'utf8'), await readFile(file('alice.pem'), 'utf8') + await readFile(file('client-ca.pem'), 'utf8'), 'chain = leaf + client CA')
  const v = await openssl(['verify', '-CAfile', 'root.pem', '-untrusted', 'client-ca.pem', 'alice.pem'])
  t.equal(v.stdout.trim(), 'alice.pem: OK', v.stderr)
  const purpose = await openssl(['verify', '-purpose', 'sslclient', '-CAfile', 'root.pem', '-untrusted', 'client-ca.pem', 'alice.pem'])
  t.equal(purpose.stdout.trim(), 'alice.pem: OK', purpose.stderr)
  const notServer = await openssl(['verify', '-purpose', 'sslserver', '-CAfile', 'root.pem', '-untrusted', 'client-ca.pem', 'alice.pem'])
  t.not(notServer.code, 0, 'a client certificate is no server certificate')

  const rsa = await cli(['pki', 'issue', 'dave', '--dir', dir, '--key', 'rsa'])
  t.equal(rsa.code, 0, rsa.stderr)
  t.equal(createPrivateKey(await readFile(file('dave.key'))).asymmetricKeyType, 'rsa', '--key rsa')
  refused(t, await cli(['pki', 'issue', 'dave', '--dir', dir]), /dave\.pem already exists/, 'the same name twice')
  const index = JSON.parse(await readFile(file('index.json'), 'utf8')) as { issued: Array<{ name: string, serialHex: string }> }
  t.same(index.issued.map((i) => i.name), ['alice', 'dave'])
  t.equal(index.issued[0]?.serialHex, leaf.serialNumber.toUpperCase())
})

t.test('csr and sign: the subject and names come from the signer; a tampered CSR is refused', async (t) => {
  const partner = join(tmp, 'partner')
  await mkdir(partner)
  const c = await cli(['pki', 'csr', 'bob', '--cn', 'administrator', '--dns', 'admin.example', '--key', 'ed25519'], { cwd: partner })
  t.equal(c.code, 0, c.stderr)
  t.equal(await mode(join(partner, 'bob.key')), 0o600)
  const csrPem = await readFile(join(partner, 'bob.csr'), 'utf8')
  const reqVerify = await exec('openssl', ['req', '-in', 'bob.csr', '-noout', '-verify'], { cwd: partner })
  t.match(reqVerify.stdout + reqVerify.stderr, /verify OK/)

  const s = await cli(['pki', 'sign', join(partner, 'bob.csr'), '--name', 'bob', '--cn', 'bob', '--o', 'Partner', '--spiffe', 'spiffe://partner.example/bob', '--dir', dir])
  t.equal(s.code, 0, s.stderr)
  t.match(s.stdout, /the CSR asked for "CN=administrator"; ignored/)
  const cert = new X509Certificate(await readFile(file('bob.pem')))
  t.equal(cert.subject, 'O=Partner\nCN=bob')
  t.equal(cert.subjectAltName, 'URI:spiffe://partner.example/bob', 'admin.example from the CSR is not copied')
  t.ok(cert.publicKey.equals(createPublicKey(await readFile(join(partner, 'bob.key')))), 'the partner\'s key')
  await t.rejects(stat(file('bob.key')), { code: 'ENOENT' }, 'no key on our side')
  const v = await openssl(['verify', '-purpose', 'sslclient', '-CAfile', 'root.pem', '-untrusted', 'client-ca.pem', 'bob.pem'])
  t.equal(v.stdout.trim(), 'bob.pem: OK', v.stderr)

  const der = Buffer.from(csrPem.replace(/-----[^-]+-----/g, '').replace(/\s/g, ''), 'base64')
  const at = der.indexOf(Buffer.from('administrator'))
  der.write('Administrator', at)
  await writeFile(join(partner, 'forged.csr'), `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`)
  refused(t, await cli(['pki', 'sign', join(partner, 'forged.csr'), '--name', 'forged', '--dir', dir]), /signature does not verify/, 'a tampered CSR')
  await t.rejects(stat(file('forged.pem')), { code: 'ENOENT' }, 'nothing written')
  refused(t, await cli(['pki', 'sign', file('root.pem'), '--name', 'x', '--dir', dir]), /not a certificate signing request/, 'a certificate instead of a CSR')
  refused(t, await cli(['pki', 'sign', join(partner, 'bob.csr'), '--dir', dir]), /missing --name/, 'sign without --name')
})

t.test('revoke and crl: openssl -crl_check says "certificate revoked"; the CRL number grows', async (t) => {
  const before = await openssl(['verify', '-crl_check', '-CRLfile', 'crl.pem', '-CAfile', 'root.pem', '-untrusted', 'client-ca.pem', 'dave.pem'])
  t.equal(before.stdout.trim(), 'dave.pem: OK', 'the init CRL is valid and empty')
  const r = await cli(['pki', 'revoke', 'dave', '--reason', 'keyCompromise', '--dir', dir])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /revoked CN=dave/)
  const after = await openssl(['verify', '-crl_check', '-CRLfile', 'crl.pem', '-CAfile', 'root.pem', '-untrusted', 'client-ca.pem', 'dave.pem'])
  t.not(after.code, 0)
  t.match(after.stdout + after.stderr, /certificate revoked/)
  const alice = await openssl(['verify', '-crl_check', '-CRLfile', 'crl.pem', '-CAfile', 'root.pem', '-untrusted', 'client-ca.pem', 'alice.pem'])
  t.equal(alice.stdout.trim(), 'alice.pem: OK', 'others are unaffected')
  const text = await openssl(['crl', '-in', 'crl.pem', '-noout', '-text'])
  t.match(text.stdout, /Key Compromise/)
  const number = async (path = 'crl.pem'): Promise<number> => parseInt((await openssl(['crl', '-in', path, '-noout', '-crlnumber'])).stdout.split('=')[1] ?? '', 16)
  const n1 = await number()
  t.equal(n1, 2, 'init wrote #1, revoke #2')
  refused(t, await cli(['pki', 'revoke', file('dave.pem'), '--dir', dir]), /already revoked/, 'revoking twice (by file)')

  const c = await cli(['pki', 'crl', '--dir', dir, '--days', '2'])
  t.equal(c.code, 0, c.stderr)
  t.equal(await number(), 3, 'crl re-issues with the next number')
  const next = (await openssl(['crl', '-in', 'crl.pem', '-noout', '-lastupdate', '-nextupdate'])).stdout
  const [last, nxt] = [/lastUpdate=(.+)/.exec(next)?.[1], /nextUpdate=(.+)/.exec(next)?.[1]].map((d) => Date.parse(d ?? ''))
  t.equal((nxt! - last!) / 86400e3, 2, '--days sets nextUpdate')
  const out = join(tmp, 'elsewhere.crl')
  t.equal((await cli(['pki', 'crl', '--dir', dir, '--out', out])).code, 0)
  t.equal(await number(out), 4, '--out')
  const index = JSON.parse(await readFile(file('index.json'), 'utf8')) as { crlNumber: number, revoked: Array<{ name: string, reason: string }> }
  t.equal(index.crlNumber, 4)
  t.match(index.revoked, [{ name: 'dave', reason: 'keyCompromise' }])

  const stranger = join(tmp, 'stranger')
  t.equal((await cli(['pki', 'init', stranger])).code, 0)
  t.equal((await cli(['pki', 'issue', 'eve', '--dir', stranger])).code, 0)
  refused(t, await cli(['pki', 'revoke', join(stranger, 'eve.pem'), '--dir', dir]), /not issued by this PKI's client CA/, 'a certificate of another PKI')
})

t.test('p12: password from a file or the environment, never printed; loads in node:tls and openssl', async (t) => {
  const pwFile = join(tmp, 'pw.txt')
  await writeFile(pwFile, 'Tr0ub4dor&3\n', { mode: 0o600 })
  const r = await cli(['pki', 'p12', 'alice', '--password-file', pwFile, '--dir', dir])
  t.equal(r.code, 0, r.stderr)
  t.notMatch(r.stdout + r.stderr, 'Tr0ub4dor', 'the password is not printed')
  t.equal(await mode(file('alice.p12')), 0o600)
  const pfx = await readFile(file('alice.p12'))
  t.doesNotThrow(() => tls.createSecureContext({ pfx, passphrase: 'Tr0ub4dor&3' }))
  const info = await openssl(['pkcs12', '-info', '-nokeys', '-in', 'alice.p12', '-passin', 'pass:Tr0ub4dor&3'])
  t.equal(info.code, 0, info.stderr)
  t.match(info.stdout, /friendlyName: alice/)
  t.equal(info.stdout.match(/BEGIN CERTIFICATE/g)?.length, 2, 'leaf and client CA')
  const java = await exec('keytool', ['-list', '-v', '-storetype', 'PKCS12', '-keystore', file('alice.p12'), '-storepass', 'Tr0ub4dor&3'], { env })
  if (java.code === 127) {
    t.comment('keytool not installed: the Java check is skipped')
  } else {
    t.equal(java.code, 0, `keytool reads it: ${java.stderr}`)
    t.match(java.stdout, /Entry type: PrivateKeyEntry/)
    t.match(java.stdout, /Certificate chain length: 2/)
  }

  const out = join(tmp, 'alice-env.p12')
  const e = await cli(['pki', 'p12', 'alice', '--out', out, '--dir', dir], { env: { ...env, MTLS_P12_PASSWORD: 'from-env' } })
  t.equal(e.code, 0, e.stderr)
  t.notMatch(e.stdout + e.stderr, 'from-env')
  const envPfx = await readFile(out)
  t.doesNotThrow(() => tls.createSecureContext({ pfx: envPfx, passphrase: 'from-env' }), 'the password from MTLS_P12_PASSWORD')
  const onCli = await cli(['pki', 'p12', 'alice', '--password', 'visible', '--out', join(tmp, 'alice-cli.p12'), '--dir', dir])
  t.equal(onCli.code, 0, '--password is allowed')
  t.notMatch(onCli.stdout + onCli.stderr, 'visible')

  refused(t, await cli(['pki', 'p12', 'alice', '--dir', dir, '--force']), /password is needed/, 'no password')
  refused(t, await cli(['pki', 'p12', 'bob', '--password', 'x', '--dir', dir]), /no key .*bob\.key/, 'a CSR-signed certificate has no key here')
  refused(t, await cli(['pki', 'p12', 'alice', '--password-file', join(tmp, 'nope.txt'), '--dir', dir]), /cannot read the password file/, 'a missing password file')
  refused(t, await cli(['pki', 'p12', 'alice', '--password-file', pwFile, '--dir', dir]), /already exists/, 'no overwrite without --force')
})

t.test('bad arguments: one line on stderr, no stack trace, non-zero exit', async (t) => {
  const empty = join(tmp, 'empty')
  await mkdir(empty)
  const cases: Array<[string[], RegExp, string]> = [
    [['pki', 'issue', 'x', '--dir', dir, '--bogus'], /Unknown option '--bogus'/, 'unknown flag'],
    [['pki', 'issue', 'x', '--dir', dir, '--cn'], /--cn/, 'missing value'],
    [['pki', 'issue', 'x', '--dir', dir, '--days', '0'], /--days must be a whole number/, '--days 0'],
    [['pki', 'issue', 'x', '--dir', dir, '--days', 'ten'], /--days must be a whole number/, '--days ten'],
    [['pki', 'issue', 'x', '--dir', dir, '--days', '-3'], /--days|-3/, '--days -3'],
    [['pki', 'frobnicate'], /unknown pki subcommand "frobnicate"/, 'unknown subcommand'],
    [['pki'], /missing subcommand/, 'no subcommand'],
    [['pki', 'issue', 'alice', '--dir', empty], /no PKI in .*pki init first/, 'issue before init'],
    [['pki', 'crl', '--dir', empty], /no PKI in/, 'crl before init'],
    [['pki', 'issue', '../evil', '--dir', dir], /bad name/, 'a name with a path'],
    [['pki', 'issue', 'root', '--dir', dir], /reserved/, 'a reserved name'],
    [['pki', 'issue'], /missing name/, 'no name'],
    [['pki', 'issue', 'x', '--dir', dir, '--spiffe', 'https://example.org/x'], /--spiffe must start with spiffe:\/\//, 'a SPIFFE ID without spiffe://'],
    [['pki', 'issue', 'x', '--dir', dir, '--spiffe', 'spiffe://Example.org/../x'], /not a SPIFFE ID/, 'a malformed SPIFFE ID'],
    [['pki', 'issue', 'x', '--dir', dir, '--email', 'not-an-address'], /does not look like an address/, 'a bad email'],
    [['pki', 'issue', 'x', '--dir', dir, '--dns', 'bad name'], /not a DNS name/, 'a bad DNS name'],
    [['pki', 'issue', 'x', '--dir', dir, '--uri', 'relative/path'], /not an absolute URI/, 'a relative URI'],
    [['pki', 'issue', 'x', '--dir', dir, '--key', 'dsa'], /--key must be one of rsa, ec, ed25519/, 'a bad key type'],
    [['pki', 'issue', 'x', 'y', '--dir', dir], /unexpected argument "y"/, 'a stray argument'],
    [['pki', 'revoke', 'alice', '--reason', 'bored', '--dir', dir], /--reason must be one of/, 'a bad reason'],
    [['pki', 'revoke', 'nobody', '--dir', dir], /cannot read .*nobody\.pem: no such file/, 'revoking an unknown name'],
    [['pki', 'init', '--key', 'rsa1024'], /--key must be one of/, 'init with a bad key type'],
    [['pki', 'sign', join(tmp, 'missing.csr'), '--name', 'x', '--dir', dir], /cannot read .*missing\.csr/, 'a missing CSR file'],
    [['pki', 'p12', 'x', '--password', 'a', '--password-file', 'b', '--dir', dir], /not both/, 'two password sources']
  ]
  // independent refusals: run two at a time, assert in order
  const results: Result[] = []
  for (let i = 0; i < cases.length; i += 2) results.push(...await Promise.all(cases.slice(i, i + 2).map(([args]) => cli(args))))
  cases.forEach(([, pattern, what], i) => refused(t, results[i] as Result, pattern, what))
  t.same((await readFile(file('index.json'), 'utf8')).includes('"x"'), false, 'none of them wrote anything')
})

t.test('--help on every subcommand exits 0', async (t) => {
  for (const sub of ['init', 'issue', 'csr', 'sign', 'revoke', 'crl', 'p12']) {
    const r = await cli(['pki', sub, '--help'])
    t.equal(r.code, 0, `${sub} --help`)
    t.match(r.stdout, new RegExp(`^usage: fastify-mtls-auth pki ${sub}`), `${sub} --help prints its usage`)
    t.equal(r.stderr, '')
  }
  const p12 = await cli(['pki', 'p12', '-h'])
  t.match(p12.stdout, /--password-file FILE \(its first line\),\nthe environment variable MTLS_P12_PASSWORD/, 'p12 --help says which password source to prefer')
  const top = await cli(['pki', '--help'])
  t.equal(top.code, 0)
  for (const sub of ['init', 'issue', 'csr', 'sign', 'revoke', 'crl', 'p12']) t.match(top.stdout, new RegExp(`\\n  ${sub} `))
  const main = await cli(['--help'])
  t.match(main.stdout, /pki +development PKI/)
})

t.test('a real mTLS round trip: the plugin with the folder\'s files, undici with an issued certificate', async (t) => {
  const issued = await cli(['pki', 'issue', 'carol', '--o', 'Acme', '--spiffe', 'spiffe://example.org/carol', '--dir', dir])
  t.equal(issued.code, 0, issued.stderr)
  const read = (name: string): Promise<string> => readFile(file(name), 'utf8')
  const app = Fastify({ https: { key: await read('server.key'), cert: await read('server.pem'), ca: await read('client-ca.pem'), requestCert: true, rejectUnauthorized: false } })
  await app.register(fastifyMtls, { ca: await read('client-ca.pem'), crl: await read('crl.pem') })
  app.get('/', async (req) => ({
    cn: req.clientIdentity?.subject.attributes.CN?.[0] ?? null,
    subject: req.clientIdentity?.subject.rfc4514 ?? null,
    spiffeId: req.clientIdentity?.spiffeId ?? null
  }))
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const { port } = app.server.address() as { port: number }
  const get = async (name: string) => {
    const agent = new Agent({ connect: { ca: await read('root.pem'), servername: 'localhost', cert: await read(`${name}-chain.pem`), key: await read(`${name}.key`) } })
    t.teardown(() => agent.close())
    const res = await request(`https://127.0.0.1:${port}/`, { dispatcher: agent })
    return { status: res.statusCode, body: await res.body.json() as Record<string, unknown> }
  }
  t.same(await get('carol'), { status: 200, body: { cn: 'carol', subject: 'CN=carol,O=Acme', spiffeId: 'spiffe://example.org/carol' } })
  t.match(await get('dave'), { status: 401, body: { code: 'FST_MTLS_CERT_REVOKED' } }, 'the revoked certificate, by the CRL the command wrote')
  // localhost by name too: the server certificate's DNS SAN
  const agent = new Agent({ connect: { ca: await read('root.pem'), cert: await read('alice-chain.pem'), key: await read('alice.key') } })
  t.teardown(() => agent.close())
  const res = await request(`https://localhost:${port}/`, { dispatcher: agent })
  t.equal(res.statusCode, 200)
  t.match(await res.body.json(), { cn: 'alice' })
})

t.test('the plugin never loads the PKI libraries; without them the pki command says so in one line', async (t) => {
  const probe = `import ${JSON.stringify(join(root, 'dist', 'index.js'))}
const { createRequire } = await import('node:module')
const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => /node-forge|@peculiar|reflect-metadata|tsyringe/.test(k))
console.log(JSON.stringify(loaded))`
  const r = await exec(process.execPath, ['--input-type=module', '-e', probe], { cwd: root, env })
  t.equal(r.code, 0, r.stderr)
  t.same(JSON.parse(r.stdout), [], 'fastify-mtls-auth loads none of them')
  const control = await exec(process.execPath, ['--input-type=module', '-e', probe.replace(join(root, 'dist', 'index.js'), join(root, 'dist', 'pki', 'index.js'))], { cwd: root, env })
  t.ok((JSON.parse(control.stdout) as string[]).some((k) => k.includes('node-forge')), 'control: fastify-mtls-auth/pki does')

  // a copy of dist/ with no node_modules anywhere above it: what `npm install --omit=optional` leaves
  const bare = await mkdtemp(join(tmpdir(), 'cli-pki-bare-'))
  t.teardown(() => rm(bare, { recursive: true, force: true }))
  await cp(join(root, 'dist'), join(bare, 'dist'), { recursive: true })
  await writeFile(join(bare, 'package.json'), JSON.stringify({ name: 'fastify-mtls-auth', version: '0.0.0', type: 'module' }))
  const missing = await exec(process.execPath, [join(bare, 'dist', 'cli', 'main.js'), 'pki', 'init', join(bare, 'pki')], { cwd: bare, env })
  refused(t, missing, /the pki command needs the optional dependencies .*reinstall without --omit=optional/, 'optional dependencies missing')
  const help = await exec(process.execPath, [join(bare, 'dist', 'cli', 'main.js'), 'pki', 'issue', '--help'], { cwd: bare, env })
  t.equal(help.code, 0, '--help still works without them')
})

t.test('concurrent commands: the folder lock keeps every issue and revoke, CRL numbers never repeat', async (t) => {
  const conc = join(tmp, 'concurrent')
  t.equal((await cli(['pki', 'init', conc])).code, 0)
  const issued = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => cli(['pki', 'issue', `c${i}`, '--dir', conc])))
  issued.forEach((r, i) => t.equal(r.code, 0, `issue c${i}: ${r.stderr}`))
  type Index = { crlNumber: number, issued: Array<{ name: string, serialHex: string }>, revoked: Array<{ serialHex: string }> }
  const readIndex = async (): Promise<Index> => JSON.parse(await readFile(join(conc, 'index.json'), 'utf8')) as Index
  t.same((await readIndex()).issued.map((r) => r.name).sort(), ['c0', 'c1', 'c2', 'c3', 'c4', 'c5'], '6 concurrent issues: 6 index entries')
  const revoked = await Promise.all([0, 1, 2, 3, 4].map((i) => cli(['pki', 'revoke', `c${i}`, '--dir', conc])))
  revoked.forEach((r, i) => t.equal(r.code, 0, `revoke c${i}: ${r.stderr}`))
  const index = await readIndex()
  const serials = index.issued.filter((r) => r.name !== 'c5').map((r) => r.serialHex).sort()
  t.same(index.revoked.map((r) => r.serialHex).sort(), serials, '5 concurrent revokes: all 5 serials in index.json')
  const numbers = revoked.map((r) => Number(/CRL #(\d+)/.exec(r.stdout)?.[1])).sort((a, b) => a - b)
  t.same(numbers, [2, 3, 4, 5, 6], 'distinct CRL numbers, one after another')
  t.equal(index.crlNumber, 6)
  const text = (await exec('openssl', ['crl', '-in', join(conc, 'crl.pem'), '-noout', '-text'])).stdout
  for (const serial of serials) t.match(text, new RegExp(`Serial Number: ${serial}\\b`, 'i'), `the CRL lists ${serial}`)
  t.match(text, /X509v3 CRL Number: \n\s+6\b/, 'the CRL on disk is the last one')
  t.notOk(existsSync(join(conc, '.lock')), 'no lock left behind')
})

t.test('init refuses a folder holding any file it would write, before writing anything', async (t) => {
  for (const name of ['README.md', 'crl.pem', 'server.key']) {
    const folder = join(tmp, `init-${name}`)
    await mkdir(folder)
    await writeFile(join(folder, name), 'mine\n')
    refused(t, await cli(['pki', 'init', folder]), new RegExp(`already holds a PKI \\(${name.replace('.', '\\.')}\\); use --force`), `init over ${name}`)
    t.equal(await readFile(join(folder, name), 'utf8'), 'mine\n', `${name} untouched`)
    t.notOk(existsSync(join(folder, 'root.key')), 'nothing written')
  }
})

t.test('--force never replaces an unrevoked certificate; sign removes a stale key that is not the requester\'s', async (t) => {
  const conc = join(tmp, 'concurrent')
  const c5 = await readFile(join(conc, 'c5.pem'), 'utf8')
  refused(t, await cli(['pki', 'issue', 'c5', '--dir', conc, '--force']), /c5\.pem .* is not revoked: revoke it first with pki revoke c5, then use --force/, 'issue --force over an unrevoked certificate')
  t.equal(await readFile(join(conc, 'c5.pem'), 'utf8'), c5, 'c5.pem untouched')
  const partner = join(tmp, 'partner-force')
  await mkdir(partner)
  t.equal((await cli(['pki', 'csr', 'p', '--dir', partner])).code, 0)
  refused(t, await cli(['pki', 'sign', join(partner, 'p.csr'), '--name', 'c5', '--dir', conc, '--force']), /is not revoked: revoke it first with pki revoke c5/, 'sign --force over an unrevoked certificate')

  const again = await cli(['pki', 'issue', 'c0', '--dir', conc, '--force'])
  t.equal(again.code, 0, `issue --force over a revoked certificate: ${again.stderr}`)
  const signed = await cli(['pki', 'sign', join(partner, 'p.csr'), '--name', 'c1', '--dir', conc, '--force'])
  t.equal(signed.code, 0, signed.stderr)
  t.match(signed.stdout, /removed .*c1\.key \(it did not match/)
  t.notOk(existsSync(join(conc, 'c1.key')), 'the old c1.key is gone')

  await cp(join(conc, 'c0.key'), join(conc, 'lone.key'))
  const lone = await cli(['pki', 'sign', join(partner, 'p.csr'), '--name', 'lone', '--dir', conc])
  t.equal(lone.code, 0, `sign without --force is not refused by a stale key: ${lone.stderr}`)
  t.notOk(existsSync(join(conc, 'lone.key')), 'the stale lone.key is gone')
  t.equal((await cli(['pki', 'csr', 'own', '--dir', conc])).code, 0)
  const own = await cli(['pki', 'sign', join(conc, 'own.csr'), '--name', 'own', '--dir', conc])
  t.equal(own.code, 0, own.stderr)
  t.ok(existsSync(join(conc, 'own.key')), 'a key that matches the CSR stays')
  t.equal((await cli(['pki', 'p12', 'own', '--password', 'pw', '--dir', conc])).code, 0, 'and p12 works with it')
})

t.test('revoke reuses the CRL lifetime of the last pki crl --days', async (t) => {
  const conc = join(tmp, 'concurrent')
  const lifetime = async (): Promise<number> => {
    const out = (await exec('openssl', ['crl', '-in', join(conc, 'crl.pem'), '-noout', '-lastupdate', '-nextupdate'])).stdout
    return (Date.parse(/nextUpdate=(.+)/.exec(out)?.[1] ?? '') - Date.parse(/lastUpdate=(.+)/.exec(out)?.[1] ?? '')) / 86400e3
  }
  t.equal(await lifetime(), 7, 'default 7 days')
  t.equal((await cli(['pki', 'crl', '--days', '3', '--dir', conc])).code, 0)
  const r = await cli(['pki', 'revoke', 'c5', '--dir', conc])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /next update in 3 days/)
  t.equal(await lifetime(), 3, 'revoke kept --days 3')
  t.match(JSON.parse(await readFile(join(conc, 'index.json'), 'utf8')), { crlDays: 3 })
})

t.test('system errors are one line without a doubled code; reserved names in any case', async (t) => {
  const conc = join(tmp, 'concurrent')
  const r = await cli(['pki', 'crl', '--dir', conc, '--out', join(tmp, 'no-such-folder', 'x.crl')])
  refused(t, r, /^fastify-mtls-auth: ENOENT: no such file or directory/, 'writing into a missing folder')
  t.notMatch(r.stderr, /ENOENT: ENOENT/)
  for (const name of ['ROOT', 'Client-CA', 'Readme', 'INDEX']) refused(t, await cli(['pki', 'issue', name, '--dir', conc]), /is reserved/, `the name ${name}`)
})
