// verifyCertificateChain with CRLs (FST_MTLS_CERT_REVOKED, FST_MTLS_REVOCATION_UNKNOWN),
// the order of the rejection codes, and the choice among several candidate paths.
import t from 'tap'
import { verifyCertificateChain } from '../lib/index.js'
import { InputError } from '../lib/der/pem.js'
import type { VerifyOptions } from '../lib/types.js'
import { issue, makeChain, makeCrl, newKey, newKeys, toPem, type CrlSpec, type Issued } from './helpers/pki.js'
import { verifyOk, verifyFails } from './helpers/verify.js'

const DAY = 86400e3
const sec = (ms: number): Date => new Date(Math.floor(ms / 1000) * 1000)

const REVOKED = 'FST_MTLS_CERT_REVOKED'
const UNKNOWN = 'FST_MTLS_REVOCATION_UNKNOWN'

const now = Date.now()
// certificates valid for 30 days; CRLs default to nextUpdate in 7 days
const chain = await makeChain({ kind: 'ec256', label: 'CRL' })
const other = await makeChain({ kind: 'ec256', label: 'CRL other' })
const int = chain.intermediates[0] as Issued
const base: VerifyOptions = { leaf: chain.chainPem, trustAnchors: chain.root.pem }
const crl = async (spec: Partial<CrlSpec> = {}): Promise<string> => (await makeCrl({ issuer: int, ...spec })).pem
const earliestNotAfter = Math.min(...[chain.leaf, int, chain.root].map((c) => sec(c.spec.notAfter.getTime()).getTime()))

t.test('revoked and not revoked', async (t) => {
  const revokedOn = sec(now - 2 * 3600e3)
  await verifyFails(t, { ...base, crls: await crl({ revoked: [{ serial: chain.leaf, date: revokedOn, reason: 1 }] }) }, REVOKED,
    new RegExp(`^"O=Fixture PKI,CN=CRL leaf" \\(serial ${chain.leaf.serialHex.replace(/^00/, '')}\\) was revoked on ${revokedOn.toISOString()}$`), 'revoked leaf')
  await verifyFails(t, { ...base, crls: (await makeCrl({ issuer: chain.root, revoked: [{ serial: int }] })).pem }, REVOKED,
    /^"O=Fixture PKI,CN=CRL Intermediate CA 1" \(serial [0-9A-F]+\) was revoked on /, 'revoked intermediate, CRL from the root')
  const leafSerial = BigInt('0x' + chain.leaf.serialHex)
  await verifyFails(t, { ...base, crls: await crl({ revoked: [{ serial: leafSerial }] }) }, REVOKED, /was revoked/, 'serial compared as an integer')
  await verifyOk(t, { ...base, crls: await crl({ revoked: [{ serial: leafSerial + 1n }, { serial: leafSerial - 1n }, { serial: int }] }) }, 'neighbouring serials are not the leaf')
  await verifyOk(t, { ...base, crls: await crl() }, 'empty CRL from the issuer')
  await verifyOk(t, { ...base, crls: [await crl(), (await makeCrl({ issuer: chain.root })).pem] }, 'a CRL for every level')
  const otherInt = other.intermediates[0] as Issued
  await verifyOk(t, { ...base, crls: (await makeCrl({ issuer: otherInt, revoked: [{ serial: chain.leaf }, { serial: int }] })).pem },
    'a CRL from another issuer naming the same serials')
  await verifyOk(t, { ...base, crls: (await makeCrl({ issuer: chain.root, revoked: [{ serial: chain.leaf }] })).pem },
    'the leaf serial on its grandparent\'s CRL')
  await verifyFails(t, { ...base, crls: [await crl(), await crl({ revoked: [{ serial: chain.leaf }], thisUpdate: new Date(now - 1800e3), crlNumber: 2 })] }, REVOKED,
    /was revoked/, 'the newest usable CRL is used')
})

t.test('CRL input forms; a CRL that does not parse throws', async (t) => {
  const revoking = await makeCrl({ issuer: int, revoked: [{ serial: chain.leaf }] })
  await verifyFails(t, { ...base, crls: revoking.der }, REVOKED, /was revoked/, 'DER Buffer')
  await verifyFails(t, { ...base, crls: revoking.pem }, REVOKED, /was revoked/, 'PEM string')
  await verifyFails(t, { ...base, crls: Buffer.from(revoking.pem) }, REVOKED, /was revoked/, 'PEM Buffer')
  await verifyFails(t, { ...base, crls: new Uint8Array(revoking.der) }, REVOKED, /was revoked/, 'Uint8Array')
  await verifyFails(t, { ...base, crls: (await makeCrl({ issuer: chain.root })).pem + revoking.pem }, REVOKED, /was revoked/, 'two CRLs in one PEM string')
  await verifyOk(t, { ...base, crls: [] }, 'no CRLs')

  const rejects = async (crls: unknown, message: RegExp, what: string): Promise<void> => {
    try {
      await verifyCertificateChain({ ...base, crls: crls as string })
      t.fail(`${what}: resolved`)
    } catch (err) {
      t.ok(err instanceof InputError && err instanceof TypeError, `${what}: InputError`)
      t.match((err as Error).message, message, what)
    }
  }
  await rejects(toPem(Buffer.from('3003020101', 'hex'), 'X509 CRL'), /^crls\[0\]: CRL does not parse: /, 'CRL that does not parse')
  await rejects([revoking.pem, Buffer.from('300500030100ff', 'hex')], /^crls\[1\]: CRL does not parse: /, 'second CRL, DER that does not parse')
  await rejects(revoking.der.subarray(0, revoking.der.length - 3), /^crls\[0\]: CRL does not parse: /, 'truncated DER')
  await rejects('not a CRL', /^crls\[0\]: no PEM "X509 CRL" block and not DER$/, 'text')
  await rejects(chain.leaf.pem, /^crls\[0\]: unexpected PEM block "CERTIFICATE" \(expected "X509 CRL"\)$/, 'a certificate given as a CRL')
})

t.test('FST_MTLS_REVOCATION_UNKNOWN: unusable CRLs', async (t) => {
  const unknown = async (spec: Partial<CrlSpec>, reason: RegExp, what: string, extra: Partial<VerifyOptions> = {}): Promise<void> => {
    await verifyFails(t, { ...base, ...extra, crls: await crl(spec) }, UNKNOWN, reason, what)
  }
  const prefix = '^"O=Fixture PKI,CN=CRL leaf" \\(serial [0-9A-F]+\\): no usable CRL from its issuer \\('
  await unknown({ signWith: await newKey('ec256', { fresh: true }) }, new RegExp(prefix + 'CRL signature does not verify with the issuer key\\)$'), 'signed by another key')
  await unknown({ thisUpdate: new Date(now - 10 * DAY), nextUpdate: new Date(now - DAY) }, new RegExp(prefix + 'CRL is stale \\(nextUpdate .*\\)\\)$'), 'stale')
  await unknown({ thisUpdate: new Date(now + 3600e3) }, /CRL thisUpdate .* is in the future/, 'thisUpdate in the future')
  await unknown({ nextUpdate: null }, /CRL has no nextUpdate/, 'no nextUpdate')
  await unknown({ deltaCrlIndicator: 1, crlNumber: 2 }, /delta CRLs are not supported/, 'delta CRL')
  await unknown({ crlNumber: false }, /CRL has no cRLNumber \(RFC 5280 5\.2\.3\)/, 'no cRLNumber')
  await unknown({ signatureHash: 'sha1' }, /CRL signed with a weak or unsupported algorithm/, 'SHA-1 CRL')
  await unknown({ issuingDistributionPoint: { onlyContainsCACerts: true } }, /CRL scope limited to CA certificates/, 'CA-only scope')
  await unknown({ issuingDistributionPoint: { uri: 'http://crl.example/part1.crl' } }, /partitioned CRLs are not supported/, 'partitioned CRL')
  await unknown({ extraExtensions: [{ oid: '1.3.6.1.4.1.55555.2', critical: true, valueDer: Buffer.from('0500', 'hex') }] },
    /unknown critical CRL extension 1\.3\.6\.1\.4\.1\.55555\.2/, 'unknown critical CRL extension')
  // scoped CRLs: an end-entity-only CRL covers the leaf, a CA-only CRL covers the intermediate, not the other way round
  await verifyOk(t, { ...base, crls: await crl({ issuingDistributionPoint: { onlyContainsUserCerts: true } }) }, 'user-certificates-only CRL covers the leaf')
  await verifyFails(t, { ...base, crls: await crl({ issuingDistributionPoint: { onlyContainsUserCerts: true }, revoked: [{ serial: chain.leaf }] }) },
    REVOKED, /was revoked/, 'and its entries count')
  const caOnly = async (revoked: Issued[]): Promise<string> => (await makeCrl({ issuer: chain.root, issuingDistributionPoint: { onlyContainsCACerts: true }, revoked: revoked.map((serial) => ({ serial })) })).pem
  await verifyOk(t, { ...base, crls: await caOnly([]) }, 'CA-only CRL from the root covers the intermediate')
  await verifyFails(t, { ...base, crls: await caOnly([int]) }, REVOKED, /Intermediate CA 1.* was revoked/, 'CA-only CRL revokes the intermediate')
  const userOnlyFromRoot = await makeCrl({ issuer: chain.root, issuingDistributionPoint: { onlyContainsUserCerts: true } })
  await verifyFails(t, { ...base, crls: userOnlyFromRoot.pem }, UNKNOWN, /CRL scope limited to end-entity certificates/, 'a user-only CRL does not cover a CA')
  await verifyOk(t, { ...base, crls: await crl({ thisUpdate: new Date(now + 3600e3) }), clockToleranceSec: 7200 }, 'clock tolerance covers a CRL from the near future')
  await verifyOk(t, { ...base, crls: await crl({ thisUpdate: new Date(now - 10 * DAY), nextUpdate: new Date(now - 1800e3) }), clockToleranceSec: 3600 },
    'clock tolerance covers a CRL just past nextUpdate')
  await verifyOk(t, { ...base, crls: await crl({ thisUpdate: new Date(now - 10 * DAY), nextUpdate: new Date(now - 600e3) }), at: new Date(now - 1800e3) },
    'a CRL is current at an earlier `at`')
  await unknown({ authorityKeyIdentifier: false, signWith: await newKey('ec256', { fresh: true }) }, /CRL signature does not verify/,
    'no AKI: matched by name, then the signature decides')
  // a CRL is chosen by name and the signature decides: a CRL naming the issuer that does not verify
  // (here: claiming another key of the issuer) makes the status unknown, never unchecked
  await unknown({ authorityKeyIdentifier: Buffer.alloc(20, 0x11), signWith: await newKey('ec256', { fresh: true }) }, /CRL signature does not verify/,
    'a CRL whose AKI names another key of the issuer')

  await verifyFails(t, { ...base, crls: [await crl({ thisUpdate: new Date(now - 10 * DAY), nextUpdate: new Date(now - DAY) }), await crl({ crlNumber: false })] }, UNKNOWN,
    /no usable CRL from its issuer \(CRL is stale .*; CRL has no cRLNumber/, 'every reason is listed')
})

t.test('the CRL issuer must be allowed to sign CRLs', async (t) => {
  const noCrlSign = await makeChain({ kind: 'ec256', label: 'No cRLSign', intermediate: { keyUsage: ['keyCertSign'] } })
  const nInt = noCrlSign.intermediates[0] as Issued
  const opts = { leaf: noCrlSign.chainPem, trustAnchors: noCrlSign.root.pem }
  await verifyOk(t, opts, 'the chain itself is fine')
  await verifyFails(t, { ...opts, crls: (await makeCrl({ issuer: nInt })).pem }, UNKNOWN,
    /No cRLSign leaf.*: no usable CRL from its issuer \(the issuer is not allowed to sign CRLs \(no cRLSign key usage\)\)$/, 'issuer keyUsage lacks cRLSign')

  const noKu = await makeChain({ kind: 'ec256', label: 'No KU', intermediate: { keyUsage: false } })
  const kInt = noKu.intermediates[0] as Issued
  const opts2 = { leaf: noKu.chainPem, trustAnchors: noKu.root.pem }
  await verifyOk(t, { ...opts2, crls: (await makeCrl({ issuer: kInt })).pem }, 'issuer without keyUsage: its CRL is used')
  await verifyFails(t, { ...opts2, crls: (await makeCrl({ issuer: kInt, revoked: [{ serial: noKu.leaf }] })).pem }, REVOKED, /No KU leaf.*was revoked/,
    'and can revoke')
})

t.test('several CRLs from one issuer', async (t) => {
  const stale = { thisUpdate: new Date(now - 10 * DAY), nextUpdate: new Date(now - DAY) }
  const staleEmpty = await crl(stale)
  const staleRevoking = await crl({ ...stale, revoked: [{ serial: chain.leaf }] })
  const current = await crl({ crlNumber: 2 })
  const currentRevoking = await crl({ crlNumber: 2, revoked: [{ serial: chain.leaf }] })
  await verifyFails(t, { ...base, crls: [staleEmpty, currentRevoking] }, REVOKED, /was revoked/, 'stale empty + current revoking: current used')
  await verifyFails(t, { ...base, crls: [currentRevoking, staleEmpty] }, REVOKED, /was revoked/, 'order does not matter')
  await verifyOk(t, { ...base, crls: [staleRevoking, current] }, 'stale revoking + current empty: current used')
  await verifyOk(t, { ...base, crls: [current, staleRevoking] }, 'order does not matter')
  const older = await crl({ thisUpdate: new Date(now - 3 * DAY), revoked: [{ serial: chain.leaf }], crlNumber: 1 })
  const newer = await crl({ thisUpdate: new Date(now - DAY), crlNumber: 2 })
  await verifyOk(t, { ...base, crls: [older, newer] }, 'two current CRLs: the newer decides')
  await verifyOk(t, { ...base, crls: [newer, older] }, 'two current CRLs, other order')
})

t.test('validUntil and CRL nextUpdate', async (t) => {
  const soon = sec(now + 2 * DAY)
  let r = await verifyOk(t, { ...base, crls: await crl({ nextUpdate: soon }) }, 'CRL with an early nextUpdate')
  t.equal(r?.validUntil.getTime(), soon.getTime(), 'validUntil is the CRL nextUpdate')
  r = await verifyOk(t, { ...base, crls: [await crl({ nextUpdate: sec(now + 3 * DAY) }), (await makeCrl({ issuer: chain.root, nextUpdate: soon })).pem] }, 'two levels')
  t.equal(r?.validUntil.getTime(), soon.getTime(), 'the earliest nextUpdate of the CRLs used')
  r = await verifyOk(t, { ...base, crls: await crl({ nextUpdate: new Date(now + 60 * DAY) }) }, 'CRL with a late nextUpdate')
  t.equal(r?.validUntil.getTime(), earliestNotAfter, 'validUntil is the earliest notAfter')
  r = await verifyOk(t, base, 'no CRL')
  t.equal(r?.validUntil.getTime(), earliestNotAfter)
  r = await verifyOk(t, { ...base, crls: (await makeCrl({ issuer: other.intermediates[0] as Issued, nextUpdate: soon })).pem }, 'an unrelated CRL')
  t.equal(r?.validUntil.getTime(), earliestNotAfter, 'an unrelated CRL does not shorten validUntil')
})

t.test('rejection order: PURPOSE before REVOKED, and the furthest path wins', async (t) => {
  const serverOnly = await makeChain({ kind: 'ec256', intermediates: 0, leaf: { extKeyUsage: ['serverAuth'] } })
  await verifyFails(t, {
    leaf: serverOnly.chainPem,
    trustAnchors: serverOnly.root.pem,
    crls: (await makeCrl({ issuer: serverOnly.root, revoked: [{ serial: serverOnly.leaf }] })).pem
  }, 'FST_MTLS_CERT_PURPOSE', /extended key usage does not allow clientAuth/, 'wrong EKU and revoked: PURPOSE')
  const expired = await makeChain({ kind: 'ec256', intermediates: 0, leaf: { notBefore: new Date(now - 10 * DAY), notAfter: new Date(now - DAY) } })
  await verifyFails(t, {
    leaf: expired.chainPem,
    trustAnchors: expired.root.pem,
    crls: (await makeCrl({ issuer: expired.root, thisUpdate: new Date(now - 10 * DAY), nextUpdate: new Date(now - DAY) })).pem
  }, 'FST_MTLS_CERT_EXPIRED', /expired at/, 'expired with a stale CRL: EXPIRED')

  // one intermediate key cross-signed by a weak root (RSA-1024) and a good one; the leaf is revoked
  const [kGood, kX, kLeaf] = await newKeys('ec256', 3)
  const weakRoot = await issue({ subject: 'CN=Weak Cross Root', key: await newKey('rsa1024'), ca: true })
  const goodRoot = await issue({ subject: 'CN=Good Cross Root', key: kGood, ca: true })
  const xWeak = await issue({ subject: 'CN=Cross Issuing CA', key: kX, issuer: weakRoot, ca: true })
  const xGood = await issue({ subject: 'CN=Cross Issuing CA', key: kX, issuer: goodRoot, ca: true })
  const xExpired = await issue({ subject: 'CN=Cross Issuing CA', key: kX, issuer: goodRoot, ca: true, notBefore: new Date(now - 10 * DAY), notAfter: new Date(now - DAY) })
  const leaf = await issue({ subject: 'CN=cross revoked leaf', key: kLeaf, issuer: xGood })
  const revoking = (await makeCrl({ issuer: xGood, revoked: [{ serial: leaf }] })).pem
  const anchors = [weakRoot.pem, goodRoot.pem]
  for (const [what, bundle] of [['weak path first', [xWeak, xGood]], ['weak path last', [xGood, xWeak]]] as const) {
    await verifyFails(t, { leaf: leaf.pem + bundle.map((c) => c.pem).join(''), trustAnchors: anchors, crls: revoking }, REVOKED,
      /^"CN=cross revoked leaf" \(serial [0-9A-F]+\) was revoked on /, `${what}: REVOKED (the path that got furthest) is reported, not WEAK`)
  }
  await verifyFails(t, { leaf: leaf.pem + xWeak.pem + xExpired.pem, trustAnchors: anchors }, 'FST_MTLS_CERT_EXPIRED',
    /"CN=Cross Issuing CA" \(serial [0-9A-F]+\) expired at/, 'WEAK path and EXPIRED path: EXPIRED')
  await verifyFails(t, { leaf: leaf.pem + xExpired.pem + xWeak.pem, trustAnchors: anchors }, 'FST_MTLS_CERT_EXPIRED',
    /expired at/, 'same, other order')
  await verifyFails(t, { leaf: leaf.pem + xWeak.pem, trustAnchors: anchors }, 'FST_MTLS_CERT_WEAK', /Weak Cross Root.*RSA key of 1024 bits/, 'only the weak path')
  await verifyOk(t, { leaf: leaf.pem + xWeak.pem + xGood.pem, trustAnchors: anchors }, 'without the CRL the good path verifies')
})

t.test('an issuer without a CRL is not checked when others have one', async (t) => {
  // revocation data is per issuer: a CRL for the root says nothing about the leaf
  await verifyOk(t, { ...base, crls: (await makeCrl({ issuer: chain.root })).pem }, 'root CRL only')
})
