// explain and inspect at the library level: every verdict equals the verifier's, the lines
// never contradict it, the policy is explained rule by rule, and the hint table, the
// RejectionCode union and docs/troubleshooting.md cannot drift apart. The commands run
// in-process here too (main() with captured output); test/cli-explain.test.ts runs them as a user.
import t, { type Test } from 'tap'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildIdentity, verifyCertificateChain, PolicyError, type VerifyOptions } from '../lib/index.js'
import { explainChain, HINTS, inspectCertificates, type ExplainOptions, type Explanation } from '../lib/explain.js'
import { main } from '../lib/cli/main.js'
import { rejectionErrors } from '../lib/errors.js'
import { issue, makeChain, makeCrl, newKey, tamperSignature } from './helpers/pki.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const DAY = 86400e3
const now = Date.now()

function union (source: string, name: string): string[] {
  const m = new RegExp(`export type ${name} =([^]*?)\\n\\n`).exec(source)
  if (m === null) throw new Error(`no ${name} in lib/types.ts`)
  return [...(m[1] as string).matchAll(/'(FST_MTLS_[A-Z_]+)'/g)].map((x) => x[1] as string)
}

t.test('every code has a hint, and docs/troubleshooting.md has a row with the same hint', async (t) => {
  const types = readFileSync(join(root, 'lib', 'types.ts'), 'utf8')
  const rejection = union(types, 'RejectionCode')
  const verification = union(types, 'VerificationCode')
  t.ok(rejection.length >= 13, 'the union was read')
  t.same(verification.filter((c) => !rejection.includes(c)), [], 'every verification code is a rejection code')
  t.same(Object.keys(rejectionErrors).sort(), [...rejection].sort(), 'errors.ts has the same codes')
  const thrown = ['FST_MTLS_RELOAD_INVALID', 'FST_MTLS_INVALID_OPTIONS']
  t.same(Object.keys(HINTS).sort(), [...rejection, ...thrown].sort(), 'a hint for every code, and no other')
  const docs = readFileSync(join(root, 'docs', 'troubleshooting.md'), 'utf8')
  const rows = docs.split('\n').filter((l) => l.startsWith('| `FST_MTLS_'))
  const cell = (s: string): string => s.replaceAll('|', '\\|')
  for (const code of [...rejection, ...thrown]) {
    const hint = HINTS[code as keyof typeof HINTS]
    const row = rows.find((r) => r.startsWith(`| \`${code}\` |`))
    if (row === undefined) {
      t.fail(`${code}: no row in docs/troubleshooting.md`)
      continue
    }
    t.equal(row, `| \`${code}\` | ${hint.status ?? 'thrown'} | ${cell(hint.cause)} | ${cell(hint.check)} | ${cell(hint.fix)} |`, `${code}: the docs row says what the hint says`)
    t.ok(docs.includes(code), `${code} in the docs`)
  }
  t.equal(rows.length, rejection.length + thrown.length, 'no row for a code that does not exist')
  for (const code of rejection) {
    const status = (new (rejectionErrors[code as keyof typeof rejectionErrors])() as { statusCode: number }).statusCode
    t.equal(HINTS[code as keyof typeof HINTS].status, status, `${code}: status ${status}`)
  }
})

const good = await makeChain({ kind: 'ec256', label: 'Lib', leaf: { san: { dns: ['svc.lib.example'], uri: ['spiffe://lib.example/ns/svc'] }, extKeyUsage: ['clientAuth'] } })
const inter = good.intermediates[0]!
const other = await makeChain({ kind: 'ec256' })

async function both (t: Test, what: string, options: ExplainOptions): Promise<Explanation> {
  const verifyOptions: VerifyOptions = { ...options }
  delete (verifyOptions as { policy?: unknown }).policy
  const verdict = await verifyCertificateChain(verifyOptions)
  const e = await explainChain(options)
  if (verdict.ok && options.policy === undefined) {
    t.equal(e.accepted, true, `${what}: accepted, as the verifier`)
    t.equal(e.code, undefined)
    t.same(e.steps.filter((s) => s.status === 'fail'), [], `${what}: no ✗`)
    t.equal(e.identity?.fingerprint256, buildIdentity(verdict).fingerprint256, `${what}: the identity of the verified path`)
  } else if (!verdict.ok) {
    t.equal(e.code, verdict.code, `${what}: ${verdict.code}, as the verifier`)
    t.equal(e.message, verdict.message, `${what}: the verifier's message`)
  }
  if (!e.accepted) {
    const fails = e.steps.map((s, i) => [s, i] as const).filter(([s]) => s.status === 'fail')
    const first = fails[0]
    t.ok(first !== undefined && first[0].step === e.failedStep, `${what}: the first ✗ is the failed step`)
    const after = e.steps.slice((first?.[1] ?? 0) + 1).filter((s) => s.status !== 'skip' && !(s.step === 'signatures' && e.failedStep === 'chain'))
    t.same(after, [], `${what}: nothing after the failure passes or fails`)
    t.same(e.hint, HINTS[e.code as keyof typeof HINTS])
  }
  t.equal(e.steps.length, 10, `${what}: ten lines`)
  return e
}

t.test('each verdict and its lines agree with the verifier', async (t) => {
  const anchors = good.root.pem
  const crlInter = await makeCrl({ issuer: inter })
  const crlRoot = await makeCrl({ issuer: good.root })
  const ok = await both(t, 'good chain with CRLs', { leaf: good.chainPem, trustAnchors: anchors, crls: [crlInter.pem, crlRoot.der] })
  t.same(ok.steps.map((s) => s.status), ['pass', 'pass', 'pass', 'pass', 'pass', 'pass', 'pass', 'pass', 'pass', 'skip'])
  t.match(ok.steps[8]!.details.join('\n'), /leaf "O=Fixture PKI,CN=Lib leaf": not revoked \(CRL of "O=Fixture PKI,CN=Lib Intermediate CA 1"/)
  t.match(ok.steps[3]!.details[0], /^leaf: EC prime256v1, signed with ecdsa-with-SHA256$/)
  t.equal(ok.path.length, 3)
  t.equal(ok.trustAnchor?.name, 'O=Fixture PKI,CN=Lib Root CA')

  const configured = await both(t, 'intermediate configured', { leaf: good.leaf.pem, trustAnchors: anchors, intermediates: inter.pem })
  t.match(configured.steps[1]!.details[1], /from the configured intermediates/)
  const onlyRootCrl = await both(t, 'only a CRL of another issuer', { leaf: good.leaf.pem, trustAnchors: anchors, intermediates: [inter.pem], crls: (await makeCrl({ issuer: other.root })).pem })
  t.equal(onlyRootCrl.steps[8]!.status, 'skip')
  t.match(onlyRootCrl.steps[8]!.summary, /none of the given CRLs is from an issuer on this path/)

  const untrusted = await both(t, 'other root', { leaf: good.chainPem, trustAnchors: other.root.pem })
  t.equal(untrusted.failedStep, 'chain')
  t.match(untrusted.steps[1]!.details.join('\n'), /no certificate with the subject "O=Fixture PKI,CN=Lib Root CA"/)
  const missing = await both(t, 'intermediate missing', { leaf: good.leaf.pem, trustAnchors: anchors })
  t.match(missing.steps[1]!.details.join('\n'), /the issuer of "O=Fixture PKI,CN=Lib leaf"/)
  const tampered = await both(t, 'bad signature', { leaf: tamperSignature(good.leaf).pem + inter.pem, trustAnchors: anchors })
  t.equal(tampered.steps[2]!.status, 'fail', 'signatures ✗')
  t.match(tampered.steps[1]!.details.join('\n'), /names "O=Fixture PKI,CN=Lib Intermediate CA 1" as its issuer, but its signature does not verify/)
  await both(t, 'leaf is an anchor', { leaf: inter.pem, trustAnchors: [anchors, inter.pem] })
  const self = await issue({ subject: 'CN=self', key: await newKey('ec256') })
  await both(t, 'self-signed', { leaf: self.pem, trustAnchors: anchors })

  const expired = await issue({ subject: 'CN=old', issuer: inter, notBefore: new Date(now - 9 * DAY), notAfter: new Date(now - DAY) })
  const e1 = await both(t, 'expired', { leaf: expired.pem + inter.pem, trustAnchors: anchors })
  t.equal(e1.failedStep, 'validity')
  t.match(e1.steps[4]!.details[0], /\(expired\)$/)
  const e2 = await both(t, 'not yet valid at --at', { leaf: good.chainPem, trustAnchors: anchors, at: new Date(now - 30 * DAY) })
  t.equal(e2.code, 'FST_MTLS_CERT_NOT_YET_VALID')
  t.match(e2.steps[4]!.details[0], /\(not yet valid\)$/)

  const weak = await issue({ subject: 'CN=weak', issuer: inter, key: await newKey('rsa1024') })
  t.equal((await both(t, 'RSA-1024', { leaf: weak.pem + inter.pem, trustAnchors: anchors })).failedStep, 'keys')
  await both(t, 'RSA-1024 with minRsaBits 1024', { leaf: weak.pem + inter.pem, trustAnchors: anchors, minRsaBits: 1024 })

  const notCa = await issue({ subject: 'CN=not a CA', issuer: good.root, key: await newKey('ec256'), ca: false })
  const underNotCa = await issue({ subject: 'CN=under', issuer: notCa })
  t.equal((await both(t, 'issuer not a CA', { leaf: underNotCa.pem + notCa.pem, trustAnchors: anchors })).failedStep, 'profile')
  const deep = await makeChain({ kind: 'ec256', intermediates: 2, root: { pathLen: 0 } })
  await both(t, 'pathLen', { leaf: deep.chainPem, trustAnchors: deep.root.pem })
  await both(t, 'maxChainLength', { leaf: deep.chainPem, trustAnchors: deep.root.pem, maxChainLength: 3 })
  const constrained = await makeChain({ kind: 'ec256', intermediates: 0, root: { nameConstraints: { permitted: { dns: ['good.example'] } } }, leaf: { san: { dns: ['evil.example'] } } })
  const nc = await both(t, 'name constraints', { leaf: constrained.chainPem, trustAnchors: constrained.root.pem })
  t.equal(nc.failedStep, 'constraints')
  const within = await makeChain({ kind: 'ec256', intermediates: 0, root: { nameConstraints: { permitted: { dns: ['good.example'] } } }, leaf: { san: { dns: ['a.good.example'] } } })
  t.match((await both(t, 'within name constraints', { leaf: within.chainPem, trustAnchors: within.root.pem })).steps[6]!.summary, /^names are within the constraints of "/)

  const server = await issue({ subject: 'CN=server', issuer: inter, extKeyUsage: ['serverAuth'] })
  t.equal((await both(t, 'serverAuth only', { leaf: server.pem + inter.pem, trustAnchors: anchors })).failedStep, 'purpose')
  await both(t, 'serverAuth only, purpose serverAuth', { leaf: server.pem + inter.pem, trustAnchors: anchors, purpose: 'serverAuth' })
  await both(t, 'clientAuth only, purpose serverAuth', { leaf: good.chainPem, trustAnchors: anchors, purpose: 'serverAuth' })
  const caLeaf = await issue({ subject: 'CN=ca leaf', issuer: inter, ca: true })
  await both(t, 'CA as leaf', { leaf: caLeaf.pem + inter.pem, trustAnchors: anchors })
  const noEku = await issue({ subject: 'CN=no eku', issuer: inter, extKeyUsage: false })
  await both(t, 'no EKU, required', { leaf: noEku.pem + inter.pem, trustAnchors: anchors, requireClientAuthEku: true })

  const revoked = await both(t, 'revoked', { leaf: good.chainPem, trustAnchors: anchors, crls: (await makeCrl({ issuer: inter, revoked: [{ serial: good.leaf }] })).pem })
  t.equal(revoked.failedStep, 'revocation')
  t.match(revoked.steps[8]!.details.join('\n'), /: revoked \(CRL of/)
  const stale = await both(t, 'stale CRL', { leaf: good.chainPem, trustAnchors: anchors, crls: (await makeCrl({ issuer: inter, thisUpdate: new Date(now - 9 * DAY), nextUpdate: new Date(now - DAY) })).pem })
  t.equal(stale.code, 'FST_MTLS_REVOCATION_UNKNOWN')
  t.match(stale.steps[8]!.details.join('\n'), /status unknown: CRL is stale/)
  const lateButListed = await both(t, 'revoked on a stale CRL', { leaf: good.chainPem, trustAnchors: anchors, crls: (await makeCrl({ issuer: inter, revoked: [{ serial: good.leaf }], thisUpdate: new Date(now - 9 * DAY), nextUpdate: new Date(now - DAY) })).pem })
  t.equal(lateButListed.code, 'FST_MTLS_CERT_REVOKED')

  const garbage = await both(t, 'not a certificate', { leaf: 'hello', trustAnchors: anchors })
  t.equal(garbage.failedStep, 'parse')
  const extra = await both(t, 'an extra certificate that does not parse', { leaf: good.chainPem + '-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n', trustAnchors: anchors })
  t.match(extra.steps[0]!.details[0], /1 presented certificate did not parse/)
  await t.rejects(explainChain({ leaf: good.chainPem, trustAnchors: 'nothing' }), { name: 'InputError', message: /^trustAnchors\[0\]: no PEM/ }, 'bad anchors throw, as verifyCertificateChain')
})

t.test('the policy, rule by rule; the compiled policy decides', async (t) => {
  const base = { leaf: good.chainPem, trustAnchors: [{ name: 'lib', cert: good.root.pem }] }
  const verified = await verifyCertificateChain(base)
  if (!verified.ok) throw new Error(verified.message)
  const ok = await explainChain({ ...base, policy: { anchor: 'lib', subject: { CN: 'Lib leaf', O: /^Fixture .+$/ }, spiffeId: 'spiffe://lib.example/ns/*', dns: 'svc.lib.example', uri: ['spiffe://lib.example/ns/svc'], fingerprint256: good.leaf.cert.fingerprint256, spkiSha256: buildIdentity(verified).spkiSha256, issuerSpkiSha256: inspectCertificates(inter.pem)[0]!.spkiSha256, email: 'nobody@lib.example', ip: '10.0.0.0/8' }, at: new Date() })
  t.equal(ok.accepted, false)
  t.equal(ok.code, 'FST_MTLS_FORBIDDEN')
  t.equal(ok.message, 'policy.email does not match ("nobody@lib.example" against email SANs none)')
  t.same(ok.policy.map((l) => [l.rule, l.status]), [
    ['policy.anchor', 'pass'], ['policy.subject.CN', 'pass'], ['policy.subject.O', 'pass'], ['policy.spiffeId', 'pass'],
    ['policy.dns', 'pass'], ['policy.uri', 'pass'], ['policy.fingerprint256', 'pass'], ['policy.spkiSha256', 'pass'], ['policy.issuerSpkiSha256', 'pass'],
    ['policy.email', 'fail'], ['policy.ip', 'fail']
  ])

  const calls: string[] = []
  const alternatives = await explainChain({
    ...base,
    policy: {
      anyOf: [
        { dns: 'other.example', check: () => { calls.push('never'); return true } },
        { fingerprint256: '00'.repeat(32) },
        { check: () => { throw new Error('boom') } },
        { check: async () => 'yes' as unknown as boolean },
        { check: async () => { throw new Error('later') } },
        // eslint-disable-next-line no-throw-literal
        { spiffeId: 'spiffe://lib.example/ns/svc', check: () => { throw 'a string' } },
        { issuer: { CN: 'Lib Intermediate CA 1' }, check: async (id) => id.san.dns.includes('svc.lib.example') }
      ]
    }
  })
  t.equal(alternatives.accepted, true, 'the last alternative matches')
  t.same(calls, [], 'a check behind a mismatch is not called')
  const text = alternatives.policy.map((l) => `${'  '.repeat(l.depth)}${l.status} ${l.rule}: ${l.text}`).join('\n')
  t.match(text, /^pass policy\.anyOf: alternative 6 matches/)
  t.match(text, /skip policy\.anyOf\[0\]\.check: not called/)
  t.match(text, /fail policy\.anyOf\[2\]\.check: threw: boom/)
  t.match(text, /fail policy\.anyOf\[3\]\.check: returned "yes"/)
  t.match(text, /fail policy\.anyOf\[4\]\.check: rejected: later/)
  t.match(text, /pass policy\.anyOf\[5\]\.spiffeId: "spiffe:\/\/lib\.example\/ns\/svc" against SPIFFE ID "spiffe:\/\/lib\.example\/ns\/svc"\n {2}fail policy\.anyOf\[5\]\.check: threw: a string/)
  t.match(text, /pass policy\.anyOf\[6\]\.check: returned true/)
  t.equal(alternatives.steps[9]!.status, 'pass')

  const none = await explainChain({ ...base, policy: { anyOf: [{ dns: 'a.example' }, { dns: 'b.example' }] } })
  t.equal(none.message, 'policy.anyOf: none of the 2 alternatives matches')
  const checkOnly = await explainChain({ ...base, policy: { check: (_id, req) => (req as { url: string }).url === '/' } })
  t.equal(checkOnly.accepted, true, 'the stand-in request')
  const custom = await explainChain({ ...base, request: { url: '/admin' }, policy: { check: (_id, req) => (req as { url: string }).url === '/' } })
  t.equal(custom.message, 'policy.check does not match (returned false)')
  const unreached = await explainChain({ leaf: good.leaf.pem, trustAnchors: base.trustAnchors, policy: { dns: 'svc.lib.example' } })
  t.equal(unreached.code, 'FST_MTLS_CERT_UNTRUSTED', 'a chain that does not verify never reaches the policy')

  await t.rejects(explainChain({ ...base, policy: { dnss: 'x' } as never }), PolicyError)
  await t.rejects(explainChain({ ...base, policy: { anchor: 'acme' } }), { name: 'PolicyError', message: /policy\.anchor/ }, 'only the labels given')
})

t.test('inspect: the identity fields as buildIdentity gives them, and the profile', async (t) => {
  const verified = await verifyCertificateChain({ leaf: good.chainPem, trustAnchors: good.root.pem })
  if (!verified.ok) throw new Error(verified.message)
  const id = buildIdentity(verified)
  const [leaf, ca] = inspectCertificates(good.chainPem)
  for (const k of ['subject', 'issuer', 'serialNumber', 'fingerprint256', 'thumbprintSha256', 'spkiSha256', 'notBefore', 'notAfter', 'san', 'spiffeId'] as const) {
    t.same(leaf![k], id[k], k)
  }
  t.same(leaf!.key, { type: 'ec', curve: 'prime256v1' })
  t.same(leaf!.extKeyUsage, ['clientAuth'])
  t.same(ca!.basicConstraints, { ca: true, pathLen: null })
  t.ok(ca!.keyUsage?.includes('keyCertSign'))
  const odd = await issue({ subject: 'CN=odd', key: await newKey('ed25519'), issuer: inter, san: { dirName: ['CN=dir'], uri: ['https://a.example/', 'spiffe://x/y'] }, crlDistributionPoints: ['http://crl.example/a.crl'], extKeyUsage: ['clientAuth', '1.2.3.4'] })
  const [r] = inspectCertificates(odd.der)
  t.same(r!.key, { type: 'ed25519' })
  t.same(r!.otherSan, ['dirName:CN=dir'])
  t.equal(r!.spiffeId, null, 'two URI SANs: no SPIFFE ID')
  t.same(r!.crlDistributionPoints, ['http://crl.example/a.crl'])
  t.same(r!.extKeyUsage, ['clientAuth', '1.2.3.4'])
  t.throws(() => inspectCertificates('not a certificate', 'x.pem'), { name: 'InputError', message: /^x\.pem: no PEM "CERTIFICATE" block/ })
  t.throws(() => inspectCertificates(good.chainPem + '-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n', 'y.pem'), { message: /^y\.pem: certificate #3 does not parse/ })
})

t.test('the commands in-process', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mtls-explain-lib-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = (name: string, content: string | Buffer): string => {
    writeFileSync(join(dir, name), content)
    return join(dir, name)
  }
  const call = async (...args: string[]): Promise<{ code: number, out: string, err: string }> => {
    let out = ''
    let err = ''
    const code = await main(args, { out: (s) => { out += s + '\n' }, err: (s) => { err += s + '\n' } })
    return { code, out, err }
  }
  const chain = file('chain.pem', good.chainPem)
  const ca = file('ca.pem', good.root.pem)
  const weak = await issue({ subject: 'CN=weak', issuer: inter, key: await newKey('rsa1024') })
  const weakPem = file('weak.pem', weak.pem + inter.pem)

  const json = await call('explain', '--cert', weakPem, '--ca', ca, '--json')
  t.equal(json.code, 1)
  const doc = JSON.parse(json.out)
  t.equal(doc.code, 'FST_MTLS_CERT_WEAK')
  t.equal(doc.failedStep, 'keys')
  t.equal(doc.identity, null)
  t.equal(doc.hint.status, 401)
  t.equal((await call('explain', '--cert', weakPem, '--ca', ca, '--min-rsa-bits', '1024')).code, 0)
  t.equal((await call('explain', '--cert', chain, '--ca', ca, '--max-chain-length', '2')).code, 1)
  t.equal((await call('explain', '--cert', chain, '--ca', ca, '--clock-tolerance-sec', '0', '--purpose', 'any', '--at', new Date(now).toISOString())).code, 0)
  const labelled = await call('explain', '--cert', chain, '--ca', `lib=${ca}`, '--ca', file('other.pem', other.root.pem), '--json')
  t.equal(JSON.parse(labelled.out).trustAnchor.name, 'lib')
  t.equal(JSON.parse(labelled.out).identity.trustAnchor.name, 'lib')
  const eq = file('a=b.pem', good.root.pem)
  t.equal((await call('explain', '--cert', chain, '--ca', eq)).code, 0, 'a file whose name has = is a file')

  const bad = async (message: RegExp, ...args: string[]): Promise<void> => {
    const r = await call(...args)
    t.equal(r.code, 2, String(message))
    t.equal(r.out, '')
    t.match(r.err, message)
    t.equal(r.err.trimEnd().split('\n').length, 1)
  }
  await bad(/--min-rsa-bits must be an integer >= 1024, got "512"/, 'explain', '--cert', chain, '--ca', ca, '--min-rsa-bits', '512')
  await bad(/--max-chain-length must be an integer >= 2, got "x"/, 'explain', '--cert', chain, '--ca', ca, '--max-chain-length', 'x')
  await bad(/--crl .*junk\.crl: no PEM "X509 CRL" block/, 'explain', '--cert', chain, '--ca', ca, '--crl', file('junk.crl', 'junk'))
  await bad(/--crl .*bad\.crl: not a CRL: /, 'explain', '--cert', chain, '--ca', ca, '--crl', file('bad.crl', Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00])))
  await bad(/--intermediates .*none\.pem: no such file/, 'explain', '--cert', chain, '--ca', ca, '--intermediates', join(dir, 'none.pem'))
  await bad(/--policy .*nodefault\.mjs: the module has no default export/, 'explain', '--cert', chain, '--ca', ca, '--policy', file('nodefault.mjs', 'export const policy = {}\n'))
  await bad(/--policy .*throws\.mjs: cannot load the module: broken on purpose/, 'explain', '--cert', chain, '--ca', ca, '--policy', file('throws.mjs', 'throw new Error("broken on purpose")\n'))
  await bad(/--policy .*gone\.mjs: no such file/, 'explain', '--cert', chain, '--ca', ca, '--policy', join(dir, 'gone.mjs'))
  await bad(/--ca\[1\]: the certificate .* is already an anchor named "lib"/, 'explain', '--cert', chain, '--ca', `lib=${ca}`, '--ca', `lib2=${ca}`)
  await bad(/--cert .*mtls-explain-lib-.*: is a directory/, 'explain', '--cert', dir, '--ca', ca)
  await bad(/Unexpected argument 'extra'/, 'explain', 'extra', '--cert', chain, '--ca', ca)

  await bad(/--cert is required/, 'explain', '--ca', ca)
  await bad(/--ca is required/, 'explain', '--cert', chain)
  await bad(/--purpose must be/, 'explain', '--cert', chain, '--ca', ca, '--purpose', 'x')
  await bad(/--at must be an ISO 8601 date/, 'explain', '--cert', chain, '--ca', ca, '--at', '2030-13-45')
  await bad(/--cert .*ca\.crl: not a certificate: unexpected PEM block "X509 CRL"/, 'explain', '--cert', file('ca.crl', (await makeCrl({ issuer: good.root })).pem), '--ca', ca)
  await bad(/--policy .*p\.json: not valid JSON/, 'explain', '--cert', chain, '--ca', ca, '--policy', file('p.json', '{'))
  await bad(/--policy .*p\.yaml: expected a \.json file or an ES module/, 'explain', '--cert', chain, '--ca', ca, '--policy', file('p.yaml', 'dns: x'))
  await bad(/--policy .*q\.json: policy\.dns: /, 'explain', '--cert', chain, '--ca', ca, '--policy', file('q.json', '{"dns": 3}'))
  await bad(/--policy .*gone\.json: no such file/, 'explain', '--cert', chain, '--ca', ca, '--policy', join(dir, 'gone.json'))

  const accepted = await call('explain', '--cert', file('leaf-only.pem', good.leaf.pem), '--ca', ca, '--intermediates', file('inter.pem', inter.pem),
    '--crl', file('inter.crl', (await makeCrl({ issuer: inter })).der), '--require-client-auth-eku', '--policy', file('ok.mjs', 'export default { dns: /^svc\\.lib\\.example$/ }\n'), '--json')
  t.equal(accepted.code, 0, accepted.out)
  const acceptedDoc = JSON.parse(accepted.out)
  t.equal(acceptedDoc.accepted, true)
  t.same(acceptedDoc.policy.map((l: { rule: string, status: string }) => [l.rule, l.status]), [['policy.dns', 'pass']])
  t.equal(acceptedDoc.identity.san.dns[0], 'svc.lib.example')
  t.match(acceptedDoc.steps[8].summary, /^1 certificate checked against CRLs, none revoked$/)
  const plain = await issue({ subject: 'CN=plain', issuer: inter, keyUsage: false, extKeyUsage: false })
  const plainText = await call('explain', '--cert', file('plain.pem', plain.pem + inter.pem), '--ca', ca)
  t.equal(plainText.code, 0)
  t.match(plainText.out, /\naccepted: "CN=plain" via trust anchor "O=Fixture PKI,CN=Lib Root CA", verdict valid until .*\n {2}SANs: \(none\)\n {2}SPIFFE ID: \(none\)/)
  t.match(plainText.out, /key usage \(none: any\); extended key usage \(none: any purpose\)/)
  const refused = await call('explain', '--cert', chain, '--ca', ca, '--policy', file('no.json', '{"dns":"x.example"}'))
  t.equal(refused.code, 1)
  t.match(refused.out, /\nrejected: FST_MTLS_FORBIDDEN \(403\) at the policy check\n {2}reason: policy\.dns does not match/)

  const inspectJson = await call('inspect', chain, '--json')
  t.equal(JSON.parse(inspectJson.out).certificates[1].basicConstraints.ca, true)
  const rootText = await call('inspect', ca)
  t.match(rootText.out, /CA: +yes, self-issued/)
  const odd = await issue({ subject: 'CN=odd', issuer: inter, basicConstraints: false, keyUsage: false, extKeyUsage: false, subjectKeyIdentifier: false, san: { dirName: ['CN=dir'] }, crlDistributionPoints: ['http://crl.example/x.crl'] })
  const oddText = await call('inspect', file('odd.pem', odd.pem))
  t.match(oddText.out, /SAN DNS: +\(none\)/)
  t.match(oddText.out, /SAN other: +dirName:CN=dir/)
  t.match(oddText.out, /key usage: +\(no extension: any\)/)
  t.match(oddText.out, /ext\. key usage: +\(no extension: any purpose\)/)
  t.match(oddText.out, /CA: +no \(no basicConstraints\)/)
  t.match(oddText.out, /subject key id: +\(none\)/)
  t.match(oddText.out, /CRL DPs: +http:\/\/crl\.example\/x\.crl/)
  await bad(/a certificate file is required/, 'inspect')
  await bad(/notes\.txt: no PEM "CERTIFICATE" block and not DER \(expected a PEM or DER certificate\)/, 'inspect', file('notes.txt', 'notes'))
  await bad(/cannot read .*gone\.pem: no such file/, 'inspect', join(dir, 'gone.pem'))

  const help = await call('explain', '--help')
  t.equal(help.code, 0)
  t.match(help.out, /exit codes: 0 accepted, 1 rejected, 2 bad input/)
  const text = await call('inspect', chain)
  t.match(text.out, /^certificate 1 of 2 \(leaf\)\n {2}subject: +O=Fixture PKI,CN=Lib leaf/)
  t.match(text.out, /CA: +yes/)
  const one = await call('inspect', file('leaf.pem', good.leaf.pem))
  t.match(one.out, /^certificate\n/)
  t.match(one.out, /SPIFFE ID: +spiffe:\/\/lib\.example\/ns\/svc/)
})

t.test('the validity annotation is computed as the verifier compares: whole seconds, then the clock tolerance', async (t) => {
  const anchors = good.root.pem
  // inside the intermediate's validity (from an hour ago): only the leaf's dates are at stake
  const end = new Date(Math.floor((now + DAY) / 1000) * 1000)
  const start = new Date(Math.floor((now - 600e3) / 1000) * 1000)
  const leaf = await issue({ subject: 'CN=edge', issuer: inter, notBefore: start, notAfter: end })
  const chain = leaf.pem + inter.pem
  const leafLine = (e: Explanation): string => e.steps[4]!.details[0] as string

  // 900 ms past notAfter: the verifier compares whole seconds and accepts
  const sameSecond = await both(t, 'within the second of notAfter', { leaf: chain, trustAnchors: anchors, at: new Date(end.getTime() + 900) })
  t.equal(sameSecond.accepted, true)
  t.equal(sameSecond.steps[4]!.status, 'pass')
  t.notMatch(leafLine(sameSecond), /expired|tolerance/, 'no "(expired)" next to a ✓')
  // a second past notAfter: expired
  const oneSecond = await both(t, 'one second past notAfter', { leaf: chain, trustAnchors: anchors, at: new Date(end.getTime() + 1000) })
  t.equal(oneSecond.code, 'FST_MTLS_CERT_EXPIRED')
  t.match(leafLine(oneSecond), /\(expired\)$/)
  // 30 s past notAfter with clockToleranceSec 60: accepted, and said to be within the tolerance
  const tolerated = await both(t, 'past notAfter within the tolerance', { leaf: chain, trustAnchors: anchors, at: new Date(end.getTime() + 30_000), clockToleranceSec: 60 })
  t.equal(tolerated.accepted, true)
  t.equal(tolerated.steps[4]!.status, 'pass')
  t.match(leafLine(tolerated), /\(past notAfter, within the clock tolerance\)$/)
  t.notMatch(leafLine(tolerated), /\(expired\)/)
  const beyond = await both(t, 'past notAfter beyond the tolerance', { leaf: chain, trustAnchors: anchors, at: new Date(end.getTime() + 61_000), clockToleranceSec: 60 })
  t.equal(beyond.code, 'FST_MTLS_CERT_EXPIRED')
  t.match(leafLine(beyond), /\(expired\)$/)
  // the same at notBefore
  const early = await both(t, 'before notBefore within the tolerance', { leaf: chain, trustAnchors: anchors, at: new Date(start.getTime() - 30_000), clockToleranceSec: 60 })
  t.equal(early.accepted, true)
  t.match(leafLine(early), /\(before notBefore, within the clock tolerance\)$/)
  t.notMatch(leafLine(early), /not yet valid/)
  const tooEarly = await both(t, 'before notBefore beyond the tolerance', { leaf: chain, trustAnchors: anchors, at: new Date(start.getTime() - 61_000), clockToleranceSec: 60 })
  t.equal(tooEarly.code, 'FST_MTLS_CERT_NOT_YET_VALID')
  t.match(leafLine(tooEarly), /\(not yet valid\)$/)
})
