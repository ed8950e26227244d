// verifyCertificateChain: successful paths, path building (untrusted, cross-signing,
// key-identifier ordering), validity times, bounded work and input errors.
// Certificates are made at test time by test/helpers/pki.ts.
import t from 'tap'
import { createHash } from 'node:crypto'
import { verifyCertificateChain } from '../lib/index.js'
import type { VerifySuccess } from '../lib/types.js'
import {
  issue, makeChain, newKey, newKeys, signedByWrongKey, tamperSignature, toPem, type Chain, type Issued
} from './helpers/pki.js'
import { verifyOk, verifyFails, inputError } from './helpers/verify.js'

const DAY = 86400e3
/** Certificates carry whole seconds. */
const sec = (ms: number): Date => new Date(Math.floor(ms / 1000) * 1000)
const spkiSha256 = (c: Issued): string => createHash('sha256').update(c.key.spkiDer).digest('base64')
const fps = (r: VerifySuccess): string[] => r.chain.map((c) => c.fingerprint256)
const pathOf = (...certs: Issued[]): string[] => certs.map((c) => c.cert.fingerprint256)
const notAfter = (c: Issued): number => sec(c.spec.notAfter.getTime()).getTime()

// shared chains (tests that need their own make them)
const ec1 = await makeChain({ kind: 'ec256', label: 'Shared EC' })
const ec2 = await makeChain({ kind: 'ec256', intermediates: 2, label: 'Shared EC2' })
const other = await makeChain({ kind: 'ec256', label: 'Other' })
const ecInt = ec1.intermediates[0] as Issued
const [i1, i2] = ec2.intermediates as [Issued, Issued]

t.test('success: key types, result shape', async (t) => {
  const cases: Array<[string, Parameters<typeof makeChain>[0]]> = [
    ['RSA', { kind: 'rsa2048' }],
    ['P-256', { kind: 'ec256' }],
    ['Ed25519', { kind: 'ed25519' }],
    ['P-256 leaf under RSA CAs', { kind: 'rsa2048', leafKind: 'ec256' }],
    ['Ed25519 leaf under P-384 CAs', { kind: 'ec384', leafKind: 'ed25519' }],
    ['RSA leaf under P-256 CAs', { kind: 'ec256', leafKind: 'rsa2048' }]
  ]
  for (const [name, opts] of cases) {
    const label = `Kinds ${name}`
    const c = await makeChain({ ...opts, label })
    const int = c.intermediates[0] as Issued
    const r = await verifyOk(t, { leaf: c.chainPem, trustAnchors: c.root.pem }, name)
    t.same(fps(r), pathOf(c.leaf, int, c.root), `${name}: chain is leaf, intermediate, anchor`)
    t.equal(r.chain[0]?.constructor.name, 'X509Certificate')
    t.same(r.trustAnchor, {
      name: `O=Fixture PKI,CN=${label} Root CA`,
      fingerprint256: c.root.cert.fingerprint256,
      spkiSha256: spkiSha256(c.root)
    }, `${name}: unlabelled anchor is named by its subject`)
    t.equal(r.validUntil.getTime(), Math.min(notAfter(c.leaf), notAfter(int), notAfter(c.root)), `${name}: validUntil`)
  }
})

t.test('success: 0, 1 and 2 intermediates', async (t) => {
  const c0 = await makeChain({ kind: 'ec256', intermediates: 0 })
  t.same(fps(await verifyOk(t, { leaf: c0.chainPem, trustAnchors: c0.root.pem }, '0 intermediates')), pathOf(c0.leaf, c0.root))
  t.same(fps(await verifyOk(t, { leaf: ec1.chainPem, trustAnchors: ec1.root.pem }, '1 intermediate')), pathOf(ec1.leaf, ecInt, ec1.root))
  t.same(fps(await verifyOk(t, { leaf: ec2.chainPem, trustAnchors: ec2.root.pem }, '2 intermediates')), pathOf(ec2.leaf, i2, i1, ec2.root))
})

t.test('labelled anchors name the anchor reached', async (t) => {
  const anchors = [{ name: 'globex', cert: other.root.pem }, { name: 'acme', cert: ec1.root.pem }]
  const r = await verifyOk(t, { leaf: ec1.chainPem, trustAnchors: anchors })
  t.same(r.trustAnchor, { name: 'acme', fingerprint256: ec1.root.cert.fingerprint256, spkiSha256: spkiSha256(ec1.root) })
  const r2 = await verifyOk(t, { leaf: other.chainPem, trustAnchors: anchors })
  t.equal(r2.trustAnchor.name, 'globex')
  const r3 = await verifyOk(t, { leaf: ec1.chainPem, trustAnchors: { name: 'solo', cert: ec1.root.der } }, 'one labelled anchor, DER')
  t.equal(r3.trustAnchor.name, 'solo')
  const r4 = await verifyOk(t, { leaf: ec1.chainPem, trustAnchors: other.root.pem + ec1.root.pem }, 'a PEM bundle of anchors')
  t.equal(r4.trustAnchor.fingerprint256, ec1.root.cert.fingerprint256)
})

t.test('validUntil is the earliest notAfter on the path', async (t) => {
  const now = Date.now()
  const c = await makeChain({
    kind: 'ec256',
    intermediates: 2,
    root: { notAfter: sec(now + 40 * DAY) },
    intermediate: { notAfter: sec(now + 20 * DAY) },
    leaf: { notAfter: sec(now + 30 * DAY) }
  })
  const r = await verifyOk(t, { leaf: c.chainPem, trustAnchors: c.root.pem })
  t.equal(r.validUntil.getTime(), sec(now + 20 * DAY).getTime())
  const c2 = await makeChain({ kind: 'ec256', root: { notAfter: sec(now + 2 * DAY) } })
  t.equal((await verifyOk(t, { leaf: c2.chainPem, trustAnchors: c2.root.pem })).validUntil.getTime(), sec(now + 2 * DAY).getTime(), 'the anchor counts')
})

t.test('presented intermediates: bundle, option, order, duplicates', async (t) => {
  const anchors = ec2.root.pem
  const want = pathOf(ec2.leaf, i2, i1, ec2.root)
  t.same(fps(await verifyOk(t, { leaf: ec2.leaf.pem + i1.pem + i2.pem, trustAnchors: anchors }, 'bundle, top-down order')), want)
  t.same(fps(await verifyOk(t, { leaf: ec2.leaf.pem, intermediates: [i1.pem, i2.pem], trustAnchors: anchors }, 'intermediates option')), want)
  t.same(fps(await verifyOk(t, { leaf: ec2.leaf.der, intermediates: [i2.der, i1.der], trustAnchors: ec2.root.der }, 'all DER')), want)
  t.same(fps(await verifyOk(t, { leaf: ec2.leaf.pem, intermediates: i1.pem + i2.pem, trustAnchors: anchors }, 'intermediates as one PEM string')), want)
  t.same(fps(await verifyOk(t, { leaf: ec2.leaf.pem + i2.pem, intermediates: i1.pem, trustAnchors: anchors }, 'split between bundle and option')), want)
  t.same(fps(await verifyOk(t, {
    leaf: ec2.leaf.pem + i2.pem + i1.pem + i2.pem + i1.pem,
    intermediates: [i1.pem, i2.pem, i1.der],
    trustAnchors: [anchors, anchors]
  }, 'duplicates everywhere')), want)
  t.same(fps(await verifyOk(t, {
    leaf: ec2.leaf.pem + other.intermediates[0]?.pem + i2.pem,
    intermediates: [other.leaf.pem, i1.pem, other.root.pem],
    trustAnchors: anchors
  }, 'unrelated certificates are ignored')), want)
  t.same(fps(await verifyOk(t, { leaf: ec2.chainPem, trustAnchors: anchors + ec2.root.pem }, 'anchor presented too')), want)
  t.same(fps(await verifyOk(t, { leaf: ec2.chainPem + ec2.root.pem, trustAnchors: anchors }, 'the client also sends the root')), want)
})

t.test('an intermediate can be the trust anchor', async (t) => {
  const r = await verifyOk(t, { leaf: ec2.leaf.pem, trustAnchors: i2.pem })
  t.same(fps(r), pathOf(ec2.leaf, i2))
  t.equal(r.trustAnchor.fingerprint256, i2.cert.fingerprint256)
  const r2 = await verifyOk(t, { leaf: ec2.chainPem, trustAnchors: [ec2.root.pem, i1.pem] }, 'the shorter path wins')
  t.same(fps(r2), pathOf(ec2.leaf, i2, i1))
})

t.test('FST_MTLS_CERT_UNTRUSTED', async (t) => {
  await verifyFails(t, { leaf: ec1.chainPem, trustAnchors: other.root.pem }, 'FST_MTLS_CERT_UNTRUSTED',
    /^no path from "O=Fixture PKI,CN=Shared EC leaf" \(serial [0-9A-F]+\) to a trust anchor/, 'unknown root')
  await verifyFails(t, { leaf: ec1.leaf.pem, trustAnchors: ec1.root.pem }, 'FST_MTLS_CERT_UNTRUSTED',
    /issuer "O=Fixture PKI,CN=Shared EC Intermediate CA 1" not found or its signature does not verify/, 'missing intermediate')
  await verifyFails(t, { leaf: ec2.leaf.pem + i2.pem, trustAnchors: ec2.root.pem }, 'FST_MTLS_CERT_UNTRUSTED',
    /no path from/, 'missing upper intermediate')

  const tampered = tamperSignature(ec1.leaf)
  await verifyFails(t, { leaf: tampered.pem + ecInt.pem, trustAnchors: ec1.root.pem }, 'FST_MTLS_CERT_UNTRUSTED',
    /signature does not verify/, 'leaf with a bad signature')
  await verifyFails(t, { leaf: ec1.leaf.pem + tamperSignature(ecInt).pem, trustAnchors: ec1.root.pem }, 'FST_MTLS_CERT_UNTRUSTED',
    /no path from/, 'intermediate with a bad signature')
  const rsa = await makeChain({ kind: 'rsa2048', intermediates: 0 })
  await verifyFails(t, { leaf: tamperSignature(rsa.leaf).pem, trustAnchors: rsa.root.pem }, 'FST_MTLS_CERT_UNTRUSTED',
    /no path from/, 'RSA leaf with a bad signature')
  await verifyFails(t, { leaf: (await signedByWrongKey(ec1.leaf)).pem + ecInt.pem, trustAnchors: ec1.root.pem },
    'FST_MTLS_CERT_UNTRUSTED', /no path from/, 'leaf signed by another key')

  const selfSigned = await issue({ subject: 'CN=self-signed client', key: await newKey('ec256') })
  await verifyFails(t, { leaf: selfSigned.pem, trustAnchors: ec1.root.pem }, 'FST_MTLS_CERT_UNTRUSTED',
    /^"CN=self-signed client" \(serial [0-9A-F]+\) is self-signed and not issued by a trusted CA$/, 'self-signed leaf')
  await verifyFails(t, { leaf: ec1.leaf.pem, trustAnchors: [ec1.root.pem, ec1.leaf.pem] }, 'FST_MTLS_CERT_UNTRUSTED',
    /"O=Fixture PKI,CN=Shared EC leaf" \(serial [0-9A-F]+\) is itself a trust anchor/, 'leaf that is an anchor')
  await verifyFails(t, { leaf: selfSigned.pem, trustAnchors: selfSigned.pem }, 'FST_MTLS_CERT_UNTRUSTED',
    /is itself a trust anchor/, 'self-signed leaf pinned as its own anchor')
})

t.test('issuer name matches but another key signed: candidates are accepted by signature only', async (t) => {
  const wrong = await signedByWrongKey(ecInt)
  t.equal(wrong.cert.subject, ecInt.cert.subject)
  await verifyFails(t, { leaf: ec1.leaf.pem + wrong.pem, trustAnchors: ec1.root.pem }, 'FST_MTLS_CERT_UNTRUSTED',
    /^no path from "O=Fixture PKI,CN=Shared EC leaf"/, 'only the wrongly signed intermediate')
  const want = pathOf(ec1.leaf, ecInt, ec1.root)
  t.same(fps(await verifyOk(t, { leaf: ec1.leaf.pem + wrong.pem + ecInt.pem, trustAnchors: ec1.root.pem }, 'wrong first')), want)
  t.same(fps(await verifyOk(t, { leaf: ec1.leaf.pem + ecInt.pem + wrong.pem, trustAnchors: ec1.root.pem }, 'right first')), want)
  t.same(fps(await verifyOk(t, { leaf: ec1.leaf.pem, intermediates: [wrong.pem, ecInt.pem], trustAnchors: ec1.root.pem }, 'via option')), want)

  // an anchor with the right name and the wrong key next to the right anchor
  const fakeRoot = await issue({ ...ec1.root.spec, key: await newKey('ec256', { fresh: true }) })
  t.same(fps(await verifyOk(t, { leaf: ec1.chainPem, trustAnchors: [fakeRoot.pem, ec1.root.pem] }, 'anchor with the same name, other key')), want)
  await verifyFails(t, { leaf: ec1.chainPem, trustAnchors: fakeRoot.pem }, 'FST_MTLS_CERT_UNTRUSTED', /no path from/, 'only the impostor anchor')
})

t.test('cross-signed intermediate: several candidates', async (t) => {
  const [kA, kB, kX, kL] = await newKeys('ec256', 4) as [Awaited<ReturnType<typeof newKey>>, ...Array<Awaited<ReturnType<typeof newKey>>>]
  const rootA = await issue({ subject: 'CN=Cross Root A', key: kA, ca: true })
  const rootB = await issue({ subject: 'CN=Cross Root B', key: kB, ca: true })
  const xA = await issue({ subject: 'CN=Cross CA', key: kX, issuer: rootA, ca: true })
  const xB = await issue({ subject: 'CN=Cross CA', key: kX, issuer: rootB, ca: true })
  const xAExpired = await issue({ ...xA.spec, serial: undefined, notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) })
  const leaf = await issue({ subject: 'CN=cross leaf', key: kL, issuer: xA })
  const both = leaf.pem + xA.pem + xB.pem

  let r = await verifyOk(t, { leaf: both, trustAnchors: rootB.pem }, 'only root B trusted')
  t.same(fps(r), pathOf(leaf, xB, rootB))
  t.equal(r.trustAnchor.name, 'CN=Cross Root B')
  r = await verifyOk(t, { leaf: both, trustAnchors: rootA.pem }, 'only root A trusted')
  t.same(fps(r), pathOf(leaf, xA, rootA))
  r = await verifyOk(t, { leaf: both, trustAnchors: [{ name: 'a', cert: rootA.pem }, { name: 'b', cert: rootB.pem }] }, 'both trusted')
  t.ok(['a', 'b'].includes(r.trustAnchor.name))

  for (const [what, bundle] of [['expired first', leaf.pem + xAExpired.pem + xB.pem], ['expired last', leaf.pem + xB.pem + xAExpired.pem]]) {
    r = await verifyOk(t, { leaf: bundle as string, trustAnchors: [rootA.pem, rootB.pem] }, `${what}: the valid cross-sign is used`)
    t.same(fps(r), pathOf(leaf, xB, rootB))
  }
  await verifyFails(t, { leaf: leaf.pem + xAExpired.pem, trustAnchors: [rootA.pem, rootB.pem] }, 'FST_MTLS_CERT_EXPIRED',
    /^"CN=Cross CA" \(serial [0-9A-F]+\) expired at /, 'only the expired cross-sign')
})

t.test('key identifiers order candidates but do not exclude any', async (t) => {
  const root = ec1.root
  const leafBadAki = await issue({ ...ec1.leaf.spec, serial: undefined, authorityKeyIdentifier: Buffer.alloc(20, 0xab) })
  t.same(fps(await verifyOk(t, { leaf: leafBadAki.pem + ecInt.pem, trustAnchors: root.pem }, 'leaf AKI does not match the issuer SKI')),
    pathOf(leafBadAki, ecInt, root))
  // a same-named decoy whose SKI matches the leaf's AKI but whose key did not sign the leaf
  const decoy = await issue({ ...ecInt.spec, serial: undefined, key: await newKey('ec256', { fresh: true }), subjectKeyIdentifier: ecInt.subjectKeyId })
  t.same(fps(await verifyOk(t, { leaf: ec1.leaf.pem + decoy.pem + ecInt.pem, trustAnchors: root.pem }, 'decoy with the matching SKI is tried, then the right one')),
    pathOf(ec1.leaf, ecInt, root))
  const decoy2 = await issue({ ...ecInt.spec, serial: undefined, key: await newKey('ec256', { fresh: true }), subjectKeyIdentifier: Buffer.alloc(20, 0xab) })
  t.same(fps(await verifyOk(t, { leaf: leafBadAki.pem + ecInt.pem + decoy2.pem, trustAnchors: root.pem }, 'matching-SKI decoy sorted first, mismatching right one still found')),
    pathOf(leafBadAki, ecInt, root))
  const rootOtherSki = await issue({ ...root.spec, subjectKeyIdentifier: Buffer.alloc(20, 0xcd) })
  t.same(fps(await verifyOk(t, { leaf: ec1.chainPem, trustAnchors: rootOtherSki.pem }, 'anchor SKI differs from the intermediate AKI')),
    pathOf(ec1.leaf, ecInt, rootOtherSki))
})

t.test('validity: FST_MTLS_CERT_EXPIRED and FST_MTLS_CERT_NOT_YET_VALID', async (t) => {
  const now = Date.now()
  const past = { notBefore: new Date(now - 10 * DAY), notAfter: new Date(now - DAY) }
  const future = { notBefore: new Date(now + DAY), notAfter: new Date(now + 10 * DAY) }
  // every other certificate is valid from 20 days ago to 20 days ahead
  const wide = { notBefore: new Date(now - 20 * DAY), notAfter: new Date(now + 20 * DAY) }
  const at = async (where: 'leaf' | 'intermediate' | 'root', dates: typeof past): Promise<Chain> =>
    makeChain({ kind: 'ec256', label: `Validity ${where}`, root: wide, intermediate: wide, leaf: wide, [where]: dates })
  for (const where of ['leaf', 'intermediate', 'root'] as const) {
    const who = where === 'leaf' ? 'leaf' : where === 'root' ? 'Root CA' : 'Intermediate CA 1'
    const expired = await at(where, past)
    await verifyFails(t, { leaf: expired.chainPem, trustAnchors: expired.root.pem }, 'FST_MTLS_CERT_EXPIRED',
      new RegExp(`^"O=Fixture PKI,CN=Validity ${where} ${who}" \\(serial [0-9A-F]+\\) expired at ${sec(past.notAfter.getTime()).toISOString()}$`),
      `${where} expired`)
    const early = await at(where, future)
    await verifyFails(t, { leaf: early.chainPem, trustAnchors: early.root.pem }, 'FST_MTLS_CERT_NOT_YET_VALID',
      new RegExp(`^"O=Fixture PKI,CN=Validity ${where} ${who}" \\(serial [0-9A-F]+\\) is not valid before ${sec(future.notBefore.getTime()).toISOString()}$`),
      `${where} not yet valid`)
    await verifyOk(t, { leaf: early.chainPem, trustAnchors: early.root.pem, at: new Date(now + 2 * DAY) }, `${where}: valid at a later \`at\``)
    await verifyOk(t, { leaf: expired.chainPem, trustAnchors: expired.root.pem, at: new Date(now - 2 * DAY) }, `${where}: valid at an earlier \`at\``)
  }
  await verifyFails(t, { leaf: ec1.chainPem, trustAnchors: ec1.root.pem, at: new Date(now + 60 * DAY) }, 'FST_MTLS_CERT_EXPIRED',
    /Shared EC leaf.* expired at/, '`at` after every notAfter: the leaf is reported first')
  await verifyFails(t, { leaf: ec1.chainPem, trustAnchors: ec1.root.pem, at: new Date(now - DAY) }, 'FST_MTLS_CERT_NOT_YET_VALID',
    /Shared EC leaf.* is not valid before/, '`at` before every notBefore')
})

t.test('clockToleranceSec and exact boundaries', async (t) => {
  const now = Date.now()
  const justExpired = await makeChain({ kind: 'ec256', intermediates: 0, leaf: { notAfter: sec(now - 30e3) } })
  const opts = { leaf: justExpired.chainPem, trustAnchors: justExpired.root.pem }
  await verifyFails(t, opts, 'FST_MTLS_CERT_EXPIRED', /expired at/, 'expired 30 s ago, no tolerance')
  await verifyFails(t, { ...opts, clockToleranceSec: 10 }, 'FST_MTLS_CERT_EXPIRED', /expired at/, 'tolerance 10 s')
  const r = await verifyOk(t, { ...opts, clockToleranceSec: 60 }, 'tolerance 60 s rescues it')
  t.equal(r.validUntil.getTime(), sec(now - 30e3).getTime() + 60e3, 'validUntil includes the tolerance')

  const notYet = await makeChain({ kind: 'ec256', intermediates: 0, leaf: { notBefore: sec(now + 30e3) } })
  await verifyFails(t, { leaf: notYet.chainPem, trustAnchors: notYet.root.pem, clockToleranceSec: 10 }, 'FST_MTLS_CERT_NOT_YET_VALID', /is not valid before/)
  await verifyOk(t, { leaf: notYet.chainPem, trustAnchors: notYet.root.pem, clockToleranceSec: 60 }, 'notBefore 30 s ahead, tolerance 60 s')

  const nb = sec(now - DAY)
  const na = sec(now + DAY)
  const c = await makeChain({ kind: 'ec256', intermediates: 0, root: { notBefore: sec(now - 2 * DAY) }, leaf: { notBefore: nb, notAfter: na } })
  const base = { leaf: c.chainPem, trustAnchors: c.root.pem }
  await verifyOk(t, { ...base, at: na }, 'at === notAfter is still valid')
  await verifyOk(t, { ...base, at: new Date(na.getTime() + 999) }, 'within the same second as notAfter')
  await verifyFails(t, { ...base, at: new Date(na.getTime() + 1000) }, 'FST_MTLS_CERT_EXPIRED', /expired at/, 'one second after notAfter')
  await verifyOk(t, { ...base, at: nb }, 'at === notBefore is valid')
  await verifyFails(t, { ...base, at: new Date(nb.getTime() - 1) }, 'FST_MTLS_CERT_NOT_YET_VALID', /is not valid before/, 'just before notBefore')
})

t.test('bounded work', async (t) => {
  await verifyFails(t, { leaf: ec1.leaf.pem + ecInt.pem.repeat(11), trustAnchors: ec1.root.pem }, 'FST_MTLS_CHAIN_INVALID',
    /^more than 10 certificates presented with the leaf$/, '11 presented certificates')
  const eleven = [ecInt, ...ec2.intermediates, ec2.leaf, ...other.intermediates, other.leaf, ec2.root, other.root, ec1.root, i1, i2]
  await verifyFails(t, { leaf: ec1.leaf.pem + eleven.map((c) => c.pem).join(''), trustAnchors: ec1.root.pem }, 'FST_MTLS_CHAIN_INVALID',
    /more than 10 certificates/, '11 presented, some distinct')
  await verifyOk(t, { leaf: ec1.leaf.pem + ecInt.pem.repeat(10), trustAnchors: ec1.root.pem }, '10 presented certificates are fine')

  // a loop: A signs B, B signs A, neither trusted
  const [kA, kB] = await newKeys('ec256', 2) as [Awaited<ReturnType<typeof newKey>>, Awaited<ReturnType<typeof newKey>>]
  const a0 = await issue({ subject: 'CN=Loop A', key: kA, ca: true })
  const b = await issue({ subject: 'CN=Loop B', key: kB, issuer: a0, ca: true })
  const a = await issue({ subject: 'CN=Loop A', key: kA, issuer: b, ca: true })
  const loopLeaf = await issue({ subject: 'CN=loop leaf', issuer: a, key: await newKey('ec256', { fresh: true }) })
  let start = Date.now()
  await verifyFails(t, { leaf: loopLeaf.pem + a.pem + b.pem + a0.pem, intermediates: [a.pem, b.pem], trustAnchors: ec1.root.pem },
    'FST_MTLS_CERT_UNTRUSTED', /no path from "CN=loop leaf"/, 'a cross-signing loop ends')
  t.ok(Date.now() - start < 2000, 'quickly')

  // 40 same-named intermediates with other keys
  const decoyKeys = await Promise.all(Array.from({ length: 40 }, () => newKey('ec256', { fresh: true })))
  const decoys = await Promise.all(decoyKeys.map((key) => issue({ ...ecInt.spec, serial: undefined, key })))
  const forgedSki = await Promise.all(decoyKeys.map((key) => issue({ ...ecInt.spec, serial: undefined, key, subjectKeyIdentifier: ecInt.subjectKeyId })))
  const decoyPems = decoys.map((c) => c.pem)
  start = Date.now()
  await verifyFails(t, { leaf: ec1.leaf.pem, intermediates: decoyPems, trustAnchors: ec1.root.pem }, 'FST_MTLS_CERT_UNTRUSTED',
    /no path from/, '40 wrong-key candidates, no good one')
  t.ok(Date.now() - start < 2000, `40 candidates in ${Date.now() - start} ms`)
  start = Date.now()
  await verifyOk(t, { leaf: ec1.leaf.pem, intermediates: [...decoyPems, ecInt.pem], trustAnchors: ec1.root.pem }, 'the good one after 40 decoys (SKI order)')
  await verifyOk(t, { leaf: ec1.leaf.pem + ecInt.pem, intermediates: forgedSki.map((c) => c.pem), trustAnchors: ec1.root.pem }, 'presented good one beats 40 configured decoys with forged SKIs')
  const r = await verifyCertificateChain({ leaf: ec1.leaf.pem, intermediates: [...forgedSki.map((c) => c.pem), ecInt.pem], trustAnchors: ec1.root.pem })
  t.ok(r.ok || r.code === 'FST_MTLS_CERT_UNTRUSTED', `good one after 40 forged-SKI decoys: ${r.ok ? 'found' : r.code} (candidates per step are capped)`)
  t.ok(Date.now() - start < 2000, 'quickly')

  // configured intermediates are bounded too: more than 256 distinct ones is an input error
  const many = await Promise.all(Array.from({ length: 257 }, (_, i) => issue({ subject: `CN=Pool ${i}`, key: decoyKeys[0], issuer: ec1.root, ca: true })))
  await t.rejects(verifyCertificateChain({ leaf: ec1.chainPem, intermediates: many.map((c) => c.der), trustAnchors: ec1.root.pem }),
    { name: 'InputError', message: /^intermediates: more than 256 distinct certificates$/ }, '257 configured intermediates')
  await verifyOk(t, { leaf: ec1.chainPem, intermediates: [...many.slice(0, 256), many[0] as Issued].map((c) => c.der), trustAnchors: ec1.root.pem },
    '256 distinct configured intermediates (and a duplicate)')

  // a maze: 6 levels of 3 same-named, same-key siblings; every branch verifies, none reaches an anchor
  const mazeKeys = await newKeys('ec256', 8)
  let parent = await issue({ subject: 'CN=Maze 7', key: mazeKeys[7], ca: true })
  const maze: Issued[] = []
  for (let level = 6; level >= 1; level--) {
    const siblings = await Promise.all([0, 1, 2].map(() => issue({ subject: `CN=Maze ${level}`, key: mazeKeys[level], issuer: parent, ca: true })))
    maze.push(...siblings)
    parent = siblings[0] as Issued
  }
  const mazeLeaf = await issue({ subject: 'CN=maze leaf', key: mazeKeys[0], issuer: parent })
  start = Date.now()
  await verifyFails(t, { leaf: mazeLeaf.pem, intermediates: maze.map((c) => c.pem), trustAnchors: ec1.root.pem }, 'FST_MTLS_CERT_UNTRUSTED',
    /^path building stopped after 64 signature checks without reaching a trust anchor$/, 'signature-check budget')
  t.ok(Date.now() - start < 2000, 'quickly')

  // a tower of 24 self-issued CAs (they do not count toward maxChainLength): the absolute depth cap ends it
  const towerKeys = await newKeys('ec256', 26)
  let top = await issue({ subject: 'CN=Tower', key: towerKeys[24], signWith: towerKeys[25], ca: true })
  const tower: Issued[] = [top]
  for (let i = 23; i >= 1; i--) {
    top = await issue({ subject: 'CN=Tower', key: towerKeys[i], issuer: top, ca: true })
    tower.push(top)
  }
  const towerLeaf = await issue({ subject: 'CN=tower leaf', key: towerKeys[0], issuer: top })
  start = Date.now()
  await verifyFails(t, { leaf: towerLeaf.pem, intermediates: tower.map((c) => c.pem), trustAnchors: ec1.root.pem }, 'FST_MTLS_CERT_UNTRUSTED',
    /path building stopped|no path from/, 'self-issued tower')
  t.ok(Date.now() - start < 2000, 'quickly')
})

// DESIGN.md: "When no path reaches an anchor the code is UNTRUSTED"; CHAIN_INVALID is for "a path exists
// but breaks a rule": a path cut by maxChainLength is CHAIN_INVALID only when it does reach an anchor.
t.test('a chain too long for maxChainLength is CHAIN_INVALID only if it reaches an anchor', async (t) => {
  const long = await makeChain({ kind: 'ec256', intermediates: 7 })
  await verifyFails(t, { leaf: long.chainPem, trustAnchors: other.root.pem }, 'FST_MTLS_CERT_UNTRUSTED', /no path from/,
    '7 intermediates from an unknown root, default maxChainLength 8')
  await verifyFails(t, { leaf: ec2.chainPem, trustAnchors: other.root.pem, maxChainLength: 3 }, 'FST_MTLS_CERT_UNTRUSTED', /no path from/,
    '2 intermediates from an unknown root, maxChainLength 3')
  await verifyFails(t, { leaf: ec2.chainPem, trustAnchors: ec2.root.pem, maxChainLength: 3 }, 'FST_MTLS_CHAIN_INVALID',
    /^the only path to a trust anchor has 4 certificates, more than maxChainLength 3$/, 'the same chain from its own root: CHAIN_INVALID')
  await verifyFails(t, { leaf: long.chainPem, trustAnchors: long.root.pem }, 'FST_MTLS_CHAIN_INVALID',
    /has 9 certificates, more than maxChainLength 8/, '7 intermediates from their own root, default maxChainLength 8')
})

// maxChainLength counts the leaf, the anchor and every intermediate that is not self-issued: a CA's key
// rollover certificate (same name, new key) does not make a path longer (as x509-limbo's max-chain-depth
// cases expect). MAX_PATH_CERTS (24) still bounds self-issued towers.
t.test('maxChainLength does not count self-issued intermediates', async (t) => {
  const [kR, kOld, kNew, kLeaf] = await newKeys('ec256', 4)
  const root = await issue({ subject: 'CN=Count Root', key: kR, ca: true })
  const old = await issue({ subject: 'CN=Count CA', key: kOld, issuer: root, ca: true })
  const next = await issue({ subject: 'CN=Count CA', key: kNew, issuer: old, ca: true })
  const leaf = await issue({ subject: 'CN=count leaf', key: kLeaf, issuer: next })
  const opts = { leaf: leaf.pem + next.pem + old.pem, trustAnchors: root.pem }
  await verifyOk(t, { ...opts, maxChainLength: 3 }, '4 certificates, one self-issued: within maxChainLength 3')
  await verifyFails(t, { ...opts, maxChainLength: 2 }, 'FST_MTLS_CHAIN_INVALID', /has 3 certificates, more than maxChainLength 2/, 'but not within 2')
})

t.test('input errors reject; a bad leaf resolves to FST_MTLS_CERT_MALFORMED', async (t) => {
  const leaf = ec1.chainPem
  const anchors = ec1.root.pem
  const garbageCert = toPem(Buffer.from('3003020101', 'hex'))
  const privateKey = (await newKey('ec256')).privateKeyPem
  await inputError(t, { leaf }, /^trustAnchors is required$/, 'missing trustAnchors')
  await inputError(t, { leaf, trustAnchors: [] }, /at least one trust anchor is required/, 'empty trustAnchors')
  await inputError(t, { leaf, trustAnchors: garbageCert }, /^trustAnchors\[0\]: certificate #1 does not parse: /, 'anchor that does not parse')
  await inputError(t, { leaf, trustAnchors: [anchors, anchors + garbageCert] }, /^trustAnchors\[1\]: certificate #2 does not parse/, 'second anchor of a bundle')
  await inputError(t, { leaf, trustAnchors: privateKey }, /^trustAnchors\[0\]: unexpected PEM block "PRIVATE KEY" \(expected "CERTIFICATE"\)$/, 'private key as anchor')
  await inputError(t, { leaf, trustAnchors: anchors + privateKey }, /unexpected PEM block "PRIVATE KEY"/, 'private key inside an anchor bundle')
  await inputError(t, { leaf, trustAnchors: 'not a certificate' }, /^trustAnchors\[0\]: no PEM "CERTIFICATE" block and not DER$/)
  await inputError(t, { leaf, trustAnchors: [{ name: 'acme', cert: anchors }, { name: 'acme', cert: other.root.pem }] },
    /^trustAnchors\[1\]\.name "acme" is used twice$/, 'duplicate labels')
  await inputError(t, { leaf, trustAnchors: [{ name: 'acme', cert: anchors }, { name: 'globex', cert: anchors }] },
    /^trustAnchors\[1\]: the certificate ".*" is already an anchor named "acme"$/, 'one CA under two labels')
  await inputError(t, { leaf, trustAnchors: [{ name: '', cert: anchors }] }, /trustAnchors\[0\]\.name must be a non-empty string/)
  await inputError(t, { leaf, trustAnchors: anchors, purpose: 'emailProtection' }, /^purpose must be 'clientAuth', 'serverAuth' or 'any', got "emailProtection"$/)
  await inputError(t, { leaf, trustAnchors: anchors, maxChainLength: 0 }, /^maxChainLength must be an integer >= 2$/, 'maxChainLength 0')
  await inputError(t, { leaf, trustAnchors: anchors, maxChainLength: 1.5 }, /^maxChainLength must be an integer >= 2$/, 'maxChainLength 1.5')
  await inputError(t, { leaf, trustAnchors: anchors, maxChainLength: 1 }, /^maxChainLength must be an integer >= 2$/, 'maxChainLength 1')
  await inputError(t, { leaf, trustAnchors: anchors, maxChainLength: '8' }, /^maxChainLength must be an integer >= 2$/, 'maxChainLength as a string')
  await inputError(t, { leaf, trustAnchors: anchors, clockToleranceSec: -1 }, /^clockToleranceSec must be a number >= 0$/, 'negative tolerance')
  await inputError(t, { leaf, trustAnchors: anchors, clockToleranceSec: Number.NaN }, /^clockToleranceSec must be a number >= 0$/, 'NaN tolerance')
  await inputError(t, { leaf, trustAnchors: anchors, minRsaBits: 512 }, /^minRsaBits must be an integer >= 1024$/)
  await inputError(t, { leaf, trustAnchors: anchors, at: new Date('nope') }, /^at must be a valid Date$/)
  await inputError(t, { leaf, trustAnchors: anchors, at: Date.now() }, /^at must be a valid Date$/, 'at as a number')
  await inputError(t, { leaf, trustAnchors: anchors, requireClientAuthEku: 'yes' }, /^requireClientAuthEku must be a boolean$/)
  await inputError(t, { trustAnchors: anchors }, /^leaf is required$/)
  await inputError(t, null, /needs an options object/)
  await inputError(t, { leaf, trustAnchors: 42 }, /trustAnchors\[0\]: expected a PEM string or DER Buffer, got number/)

  await verifyFails(t, { leaf: garbageCert, trustAnchors: anchors }, 'FST_MTLS_CERT_MALFORMED', /^leaf certificate does not parse: /, 'leaf that does not parse')
  await verifyFails(t, { leaf: Buffer.from('3003020101', 'hex'), trustAnchors: anchors }, 'FST_MTLS_CERT_MALFORMED', /^leaf certificate does not parse: /, 'DER leaf that does not parse')
  await verifyFails(t, { leaf: 'hello', trustAnchors: anchors }, 'FST_MTLS_CERT_MALFORMED', /^leaf: no PEM "CERTIFICATE" block and not DER$/, 'leaf that is not PEM')
  await verifyFails(t, { leaf: privateKey, trustAnchors: anchors }, 'FST_MTLS_CERT_MALFORMED', /unexpected PEM block "PRIVATE KEY"/, 'private key as leaf')
  await verifyFails(t, { leaf: ec1.leaf.pem.slice(0, 200), trustAnchors: anchors }, 'FST_MTLS_CERT_MALFORMED', /malformed PEM/, 'truncated PEM leaf')

  await verifyOk(t, { leaf: ec1.leaf.pem + garbageCert + ecInt.pem, trustAnchors: anchors }, 'a presented certificate that does not parse is skipped')
  await verifyOk(t, { leaf: ec1.leaf.pem, intermediates: [garbageCert, ecInt.pem], trustAnchors: anchors }, 'a configured intermediate that does not parse is skipped')
})
