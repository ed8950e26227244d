// `fastify-mtls-auth explain` and `inspect` as a user runs them: the built CLI in a child
// process, certificate files in a temporary folder (removed at teardown).
import t, { type Test } from 'tap'
import { execFile, execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildIdentity, verifyCertificateChain } from '../lib/index.js'
import { issue, makeChain, makeCrl } from './helpers/pki.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const cli = join(root, 'dist', 'cli', 'main.js')
// built by `npm test` before any test runs (rebuilding here would rewrite dist/ under the other test files)
if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build (npm test builds first)`)

const dir = mkdtempSync(join(tmpdir(), 'mtls-explain-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const file = (name: string, content: string | Buffer): string => {
  const path = join(dir, name)
  writeFileSync(path, content)
  return path
}

interface Run { code: number, stdout: string, stderr: string }
function runWith (env: Record<string, string>, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { cwd: dir, timeout: 30_000, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (err as { code?: number }).code ?? -1, stdout, stderr })
    })
  })
}
function run (...args: string[]): Promise<Run> {
  return runWith({}, args)
}

const DAY = 86400e3
const now = Date.now()
const good = await makeChain({
  label: 'Acme',
  leaf: { san: { dns: ['api.acme.example'], uri: ['spiffe://acme.example/payments/api'], email: ['ops@acme.example'], ip: ['10.1.2.3'] }, extKeyUsage: ['clientAuth'] }
})
const other = await makeChain({ label: 'Globex' })
const inter = good.intermediates[0]!
const expired = await issue({ subject: 'CN=expired', issuer: inter, notBefore: new Date(now - 30 * DAY), notAfter: new Date(now - DAY) })
const future = await issue({ subject: 'CN=future', issuer: inter, notBefore: new Date(now + DAY), notAfter: new Date(now + 30 * DAY) })
const serverOnly = await issue({ subject: 'CN=server only', issuer: inter, extKeyUsage: ['serverAuth'] })
const noEku = await issue({ subject: 'CN=no eku', issuer: inter, extKeyUsage: false })

const f = {
  chain: file('chain.pem', good.chainPem),
  ca: file('ca.pem', good.root.pem),
  otherCa: file('other-ca.pem', other.root.pem),
  inter: file('inter.pem', inter.pem),
  expired: file('expired.pem', expired.pem + inter.pem),
  future: file('future.pem', future.pem + inter.pem),
  serverOnly: file('server-only.pem', serverOnly.pem + inter.pem),
  noEku: file('no-eku.pem', noEku.pem),
  leafDer: file('leaf.der', good.leaf.der),
  interCrl: file('inter.crl', (await makeCrl({ issuer: inter })).pem),
  rootCrl: file('root.crl', (await makeCrl({ issuer: good.root })).der),
  revokingCrl: file('revoking.crl', (await makeCrl({ issuer: inter, revoked: [{ serial: good.leaf }] })).pem),
  notPem: file('notes.txt', 'hello, I am not a certificate\n'),
  key: file('key.pem', good.leaf.key.privateKeyPem),
  goodPolicy: file('good.json', JSON.stringify({ anchor: 'acme', subject: { CN: 'Acme leaf' }, spiffeId: 'spiffe://acme.example/payments/*' })),
  badPolicy: file('bad.json', JSON.stringify({ subject: { CN: 'Someone Else' }, dns: 'api.acme.example' })),
  invalidPolicy: file('invalid.json', JSON.stringify({ dnss: 'api.acme.example' })),
  notJson: file('broken.json', '{ "dns": '),
  esmRegExp: file('regexp.mjs', 'export default { dns: /^www\\.acme\\.example$/, check: () => true }\n'),
  esmCheck: file('check.mjs', 'export default { dns: /^api\\.acme\\.example$/, check: async (identity) => identity.san.email.includes("billing@acme.example") }\n'),
  esmGood: file('ok.mjs', 'export default { spiffeId: /^spiffe:\\/\\/acme\\.example\\/payments\\/[a-z]+$/, check: async (identity) => identity.san.email.includes("ops@acme.example") }\n'),
  esmInvalid: file('invalid.mjs', 'export default { dns: /api\\.acme\\.example/ }\n')
}
const base = ['--cert', f.chain, '--ca', f.ca]

/** asserts a rejection: exit 1, the code on the summary line, a ✗ line, stderr empty */
async function rejected (t: Test, args: string[], code: string, because: RegExp): Promise<Run> {
  const r = await run('explain', ...args)
  t.equal(r.code, 1, `${code}: exit 1`)
  t.match(r.stdout, new RegExp(`^rejected: ${code} `, 'm'), `${code}: the code`)
  t.match(r.stdout, because, `${code}: the reason`)
  t.equal(r.stdout.split('\n').filter((l) => l.startsWith('  ✗')).length >= 1, true, `${code}: a ✗ line`)
  t.match(r.stdout, /likely cause: .+\n {2}how to check: .+\n {2}fix: .+/, `${code}: the hint`)
  t.equal(r.stderr, '')
  return r
}

/** asserts bad input: exit 2, one line on stderr naming the problem, nothing on stdout */
async function badInput (t: Test, args: string[], message: RegExp, env: Record<string, string> = {}): Promise<void> {
  const r = await runWith(env, args)
  t.equal(r.code, 2, `${String(message)}: exit 2`)
  t.equal(r.stdout, '', 'nothing on stdout')
  t.equal(r.stderr.trimEnd().split('\n').length, 1, `one line: ${r.stderr.trimEnd()}`)
  t.match(r.stderr, message)
}

t.test('a good chain: exit 0 and a ✓ for every check', async (t) => {
  const r = await run('explain', '--cert', f.chain, '--ca', `acme=${f.ca}`, '--crl', f.interCrl, '--crl', f.rootCrl, '--policy', f.goodPolicy)
  t.equal(r.code, 0, r.stderr)
  const marks = r.stdout.split('\n').filter((l) => /^ {2}[✓✗–] /.test(l))
  t.equal(marks.length, 10, 'ten checks')
  t.same(marks.filter((l) => !l.startsWith('  ✓')), [], 'all ✓')
  for (const check of ['parse', 'chain to a trust anchor', 'signatures', 'key strength and algorithms', 'validity', 'CA profile and path length', 'name constraints', 'key usage and purpose', 'revocation', 'policy']) {
    t.match(r.stdout, new RegExp(`^ {2}✓ ${check} `, 'm'), check)
  }
  t.match(r.stdout, /ending at trust anchor "acme"/)
  t.match(r.stdout, /✓ policy\.spiffeId/)
  t.match(r.stdout, /^accepted: "O=Fixture PKI,CN=Acme leaf" via trust anchor "acme"/m)
  t.match(r.stdout, /SPIFFE ID: spiffe:\/\/acme\.example\/payments\/api/)
})

t.test('without CRLs, revocation is "not checked"; --json parses', async (t) => {
  const r = await run('explain', ...base, '--json')
  t.equal(r.code, 0)
  const doc = JSON.parse(r.stdout)
  t.equal(doc.accepted, true)
  t.equal(doc.code, null)
  t.same(doc.steps.find((s: { step: string }) => s.step === 'revocation'), { step: 'revocation', title: 'revocation', status: 'skip', summary: 'not checked: no CRL given', details: [] })
  t.equal(doc.identity.spiffeId, 'spiffe://acme.example/payments/api')
  t.equal(doc.path.length, 3)
})

t.test('refusals: the code the plugin would send, and exit 1', async (t) => {
  await rejected(t, ['--cert', f.expired, '--ca', f.ca], 'FST_MTLS_CERT_EXPIRED', /✗ validity +"CN=expired" \(serial [0-9A-F]+\) expired at/)
  await rejected(t, ['--cert', f.future, '--ca', f.ca], 'FST_MTLS_CERT_NOT_YET_VALID', /✗ validity +"CN=future".* is not valid before/)
  const later = await rejected(t, [...base, '--at', new Date(now + 3 * 365 * DAY).toISOString()], 'FST_MTLS_CERT_EXPIRED', /expired at/)
  t.match(later.stdout, /– CA profile and path length +not reached/, 'checks after the failure are not reached')
  await rejected(t, [...base.slice(0, 2), '--ca', f.otherCa], 'FST_MTLS_CERT_UNTRUSTED', /✗ chain to a trust anchor +no path from/)
  await rejected(t, ['--cert', f.serverOnly, '--ca', f.ca], 'FST_MTLS_CERT_PURPOSE', /✗ key usage and purpose +"CN=server only".*extended key usage does not allow clientAuth/)
  await rejected(t, ['--cert', f.noEku, '--ca', f.ca, '--intermediates', f.inter, '--require-client-auth-eku'], 'FST_MTLS_CERT_PURPOSE', /no clientAuth extended key usage/)
  const revoked = await rejected(t, [...base, '--crl', f.revokingCrl], 'FST_MTLS_CERT_REVOKED', /✗ revocation +"O=Fixture PKI,CN=Acme leaf".* was revoked on/)
  t.match(revoked.stdout, /✓ key usage and purpose/, 'the checks before it passed')
  t.match(revoked.stdout, /– policy +not reached/)
})

t.test('without --require-client-auth-eku a leaf without EKU is accepted (RFC 5280)', async (t) => {
  const r = await run('explain', '--cert', f.noEku, '--ca', f.ca, '--intermediates', f.inter)
  t.equal(r.code, 0, r.stdout)
  t.match(r.stdout, /from the configured intermediates/)
})

t.test('policy mismatches: FST_MTLS_FORBIDDEN naming the rule', async (t) => {
  const json = await rejected(t, [...base, '--policy', f.badPolicy], 'FST_MTLS_FORBIDDEN', /reason: policy\.subject\.CN does not match/)
  t.match(json.stdout, /✗ policy\.subject\.CN: "Someone Else" against subject "O=Fixture PKI,CN=Acme leaf"/)
  t.match(json.stdout, /✓ policy\.dns: "api\.acme\.example"/)
  const re = await rejected(t, [...base, '--policy', f.esmRegExp], 'FST_MTLS_FORBIDDEN', /reason: policy\.dns does not match \(\/\^www\\\.acme\\\.example\$\/ against DNS SANs "api\.acme\.example"\)/)
  t.match(re.stdout, /– policy\.check: not called/)
  const check = await rejected(t, [...base, '--policy', f.esmCheck], 'FST_MTLS_FORBIDDEN', /reason: policy\.check does not match \(returned false\)/)
  t.match(check.stdout, /✓ policy\.dns: \/\^api/)
  const ok = await run('explain', ...base, '--policy', f.esmGood)
  t.equal(ok.code, 0, ok.stdout)
  t.match(ok.stdout, /✓ policy\.check: returned true/)
})

t.test('bad input: one line on stderr and exit 2', async (t) => {
  await badInput(t, ['explain', '--cert', join(dir, 'missing.pem'), '--ca', f.ca], /^fastify-mtls-auth: --cert .*missing\.pem: no such file\n$/)
  await badInput(t, ['explain', '--cert', f.chain, '--ca', join(dir, 'nope.pem')], /--ca .*nope\.pem: no such file/)
  await badInput(t, ['explain', '--cert', f.notPem, '--ca', f.ca], /--cert .*notes\.txt: not a certificate: no PEM "CERTIFICATE" block and not DER/)
  await badInput(t, ['explain', '--cert', f.key, '--ca', f.ca], /--cert .*key\.pem: not a certificate: unexpected PEM block "PRIVATE KEY"/)
  await badInput(t, ['explain', '--cert', f.chain, '--ca', f.notPem], /--ca .*notes\.txt: no PEM "CERTIFICATE" block/)
  await badInput(t, ['explain', '--cert', f.chain, '--ca', f.ca, '--crl', f.ca], /--crl .*ca\.pem: unexpected PEM block "CERTIFICATE"/)
  await badInput(t, ['explain', '--cert', f.chain, '--ca', f.ca, '--frobnicate'], /Unknown option '--frobnicate'/)
  await badInput(t, ['explain', '--cert', f.chain], /--ca is required/)
  await badInput(t, ['explain', '--ca', f.ca], /--cert is required/)
  await badInput(t, ['explain', ...base, '--at', 'yesterday'], /--at must be an ISO 8601 date/)
  await badInput(t, ['explain', ...base, '--purpose', 'codeSigning'], /--purpose must be clientAuth, serverAuth or any/)
  await badInput(t, ['explain', ...base, '--policy', f.invalidPolicy], /--policy .*invalid\.json: policy: unknown key "dnss" \(did you mean "dns"\?\)/)
  await badInput(t, ['explain', ...base, '--policy', f.notJson], /--policy .*broken\.json: not valid JSON/)
  await badInput(t, ['explain', ...base, '--policy', f.esmInvalid], /--policy .*invalid\.mjs: policy\.dns.*\^/)
  await badInput(t, ['explain', ...base, '--policy', f.ca], /--policy .*ca\.pem: expected a \.json file or an ES module/)
  await badInput(t, ['explain', ...base, '--policy', file('anchored.json', JSON.stringify({ anchor: 'nobody' }))], /--policy .*anchored\.json: policy\.anchor/)
  await badInput(t, ['inspect', f.notPem], /notes\.txt: no PEM "CERTIFICATE" block and not DER \(expected a PEM or DER certificate\)/)
  await badInput(t, ['inspect', join(dir, 'missing.pem')], /cannot read .*missing\.pem: no such file/)
  await badInput(t, ['inspect'], /a certificate file is required/)
})

t.test('--help on both commands', async (t) => {
  for (const cmd of ['explain', 'inspect']) {
    const r = await run(cmd, '--help')
    t.equal(r.code, 0)
    t.match(r.stdout, new RegExp(`^usage: fastify-mtls-auth ${cmd}`))
    t.match(r.stdout, /--json/)
  }
})

t.test('inspect: SANs and SPIFFE ID; --json equals what buildIdentity gives', async (t) => {
  const text = await run('inspect', f.chain)
  t.equal(text.code, 0, text.stderr)
  t.match(text.stdout, /certificate 1 of 2 \(leaf\)/)
  t.match(text.stdout, /SAN DNS: +api\.acme\.example/)
  t.match(text.stdout, /SAN URI: +spiffe:\/\/acme\.example\/payments\/api/)
  t.match(text.stdout, /SAN email: +ops@acme\.example/)
  t.match(text.stdout, /SAN IP: +10\.1\.2\.3/)
  t.match(text.stdout, /SPIFFE ID: +spiffe:\/\/acme\.example\/payments\/api/)
  t.match(text.stdout, /ext\. key usage: +clientAuth/)
  t.match(text.stdout, /key: +RSA 2048 bits/)

  const json = await run('inspect', f.chain, '--json')
  t.equal(json.code, 0)
  const doc = JSON.parse(json.stdout) as { certificates: Array<Record<string, unknown>> }
  t.equal(doc.certificates.length, 2)
  const verified = await verifyCertificateChain({ leaf: good.chainPem, trustAnchors: good.root.pem })
  if (!verified.ok) throw new Error(verified.message)
  const id = buildIdentity(verified)
  const fields = ['subject', 'issuer', 'serialNumber', 'fingerprint256', 'thumbprintSha256', 'spkiSha256', 'notBefore', 'notAfter', 'san', 'spiffeId'] as const
  const expected = JSON.parse(JSON.stringify(Object.fromEntries(fields.map((k) => [k, id[k]]))))
  t.same(Object.fromEntries(fields.map((k) => [k, doc.certificates[0]![k]])), expected, 'the leaf as buildIdentity sees it')
  t.equal((doc.certificates[1]!.subject as { rfc4514: string }).rfc4514, inter.cert.subject.split('\n').reverse().join(','), 'then the intermediate')

  const der = await run('inspect', f.leafDer, '--json')
  t.equal(der.code, 0)
  t.same(JSON.parse(der.stdout).certificates[0], doc.certificates[0], 'DER input gives the same')
})

t.test('--help and the docs say what explain cannot see: learned intermediates, https.ca, and how to cut off a CA', async (t) => {
  const r = await run('explain', '--help')
  t.equal(r.code, 0)
  const help = r.stdout.replace(/\s+/g, ' ')
  t.match(help, /learned from earlier clients' chains \(kept across reload\)/)
  t.match(help, /getPeerCertificate\(true\) adds from the server's https `ca`/)
  t.match(help, /Removing a CA from `intermediates` does not cut it off .*: use `deny` or a CRL/)
  const doc = readFileSync(join(root, 'docs', 'troubleshooting.md'), 'utf8').replace(/\s+/g, ' ')
  t.match(doc, /intermediates it \*learned\* from earlier clients' chains \(up to 256, kept across `reload\(\)`\)/)
  t.match(doc, /`getPeerCertificate\(true\)` adds to the presented chain the issuers it finds in the server's `https` `ca` option/)
  t.match(doc, /removing a CA from `intermediates` does not cut it off: to stop accepting clients under a CA, name it in `deny` or revoke it with a CRL/)
})

t.test('--intermediates stands in for what the plugin learned: UNTRUSTED without, accepted with', async (t) => {
  const leafOnly = file('leaf-only.pem', good.leaf.pem)
  await rejected(t, ['--cert', leafOnly, '--ca', f.ca], 'FST_MTLS_CERT_UNTRUSTED', /no path from/)
  const r = await run('explain', '--cert', leafOnly, '--ca', f.ca, '--intermediates', f.inter)
  t.equal(r.code, 0, r.stdout)
})

t.test('a policy module or check that never settles: one line and exit 2 within the time limit', async (t) => {
  const fast = { MTLS_EXPLAIN_TIMEOUT_MS: '300' }
  const pendingCheck = file('pending-check.mjs', 'export default { check: () => new Promise(() => {}) }\n')
  const pendingImport = file('pending-import.mjs', 'await new Promise(() => {})\nexport default {}\n')
  const busyCheck = file('busy-check.mjs', 'export default { check: () => { setInterval(() => {}, 1000); return new Promise(() => {}) } }\n')
  const busyImport = file('busy-import.mjs', 'setInterval(() => {}, 1000)\nawait new Promise(() => {})\nexport default {}\n')
  const throwsNull = file('throws-null.mjs', 'throw null\n')
  const throwsString = file('throws-string.mjs', 'throw "no policy today"\n')
  await badInput(t, ['explain', ...base, '--policy', pendingCheck], /^fastify-mtls-auth: --policy .*pending-check\.mjs: the policy did not settle within 300 ms/, fast)
  await badInput(t, ['explain', ...base, '--policy', pendingImport], /^fastify-mtls-auth: --policy .*pending-import\.mjs: the module did not finish loading within 300 ms/, fast)
  await badInput(t, ['explain', ...base, '--policy', busyCheck], /--policy .*busy-check\.mjs: the policy did not settle within 300 ms/, fast)
  await badInput(t, ['explain', ...base, '--policy', busyImport], /--policy .*busy-import\.mjs: the module did not finish loading within 300 ms/, fast)
  await badInput(t, ['explain', ...base, '--policy', throwsNull], /^fastify-mtls-auth: --policy .*throws-null\.mjs: cannot load the module: null\n$/)
  await badInput(t, ['explain', ...base, '--policy', throwsString], /cannot load the module: no policy today\n$/)
  await badInput(t, ['explain', ...base, '--policy', f.esmGood], /MTLS_EXPLAIN_TIMEOUT_MS must be an integer >= 1/, { MTLS_EXPLAIN_TIMEOUT_MS: 'soon' })
  // a policy that settles in time is unaffected by a short limit
  const ok = await runWith(fast, ['explain', ...base, '--policy', f.esmGood])
  t.equal(ok.code, 0, ok.stderr)
  const help = await run('explain', '--help')
  t.match(help.stdout, /10 s/, '--help states the time limit')
})

t.test('inspect and explain read only regular files of at most 16 MiB', async (t) => {
  const big = join(dir, 'big.pem')
  writeFileSync(big, '')
  truncateSync(big, 16 * 1024 * 1024 + 1)
  const limit = join(dir, 'limit.pem')
  writeFileSync(limit, '')
  truncateSync(limit, 16 * 1024 * 1024)
  await badInput(t, ['inspect', '/dev/zero'], /^fastify-mtls-auth: cannot read \/dev\/zero: not a regular file\n$/)
  await badInput(t, ['inspect', dir], /cannot read .*: is a directory\n$/)
  await badInput(t, ['inspect', big], /cannot read .*big\.pem: too large \(16777217 bytes, the limit is 16777216 bytes = 16 MiB\)/)
  await badInput(t, ['inspect', limit], /limit\.pem: no PEM "CERTIFICATE" block and not DER/)
  await badInput(t, ['explain', '--cert', '/dev/zero', '--ca', f.ca], /--cert \/dev\/zero: not a regular file/)
  await badInput(t, ['explain', '--cert', f.chain, '--ca', '/dev/zero'], /--ca \/dev\/zero: not a regular file/)
  await badInput(t, ['explain', ...base, '--crl', big], /--crl .*big\.pem: too large/)
  await badInput(t, ['explain', ...base, '--policy', '/dev/zero'], /--policy \/dev\/zero: expected a \.json file/)
  const fifo = join(dir, 'pipe.pem')
  execFileSync('mkfifo', [fifo])
  await badInput(t, ['inspect', fifo], /pipe\.pem: not a regular file/)
})
