// verifyCertificateChain: the rules a found path must keep — CA profile, path length,
// critical extensions, name constraints, chain length (FST_MTLS_CHAIN_INVALID),
// purpose (FST_MTLS_CERT_PURPOSE) and key/signature strength (FST_MTLS_CERT_WEAK).
import t from 'tap'
import { constants, generateKeyPairSync, sign, type KeyObject } from 'node:crypto'
import { AsnConvert } from '@peculiar/asn1-schema'
import * as ax from '@peculiar/asn1-x509'
import { verifyCertificateChain } from '../lib/index.js'
import { clearSignatureMemo } from '../lib/verify/chain.js'
import type { VerifyOptions } from '../lib/types.js'
import {
  issue, makeChain, nameDer, newKey, newKeys, OID, toPem, type CertSpec, type Chain, type ChainOptions, type Issued, type KeyPair
} from './helpers/pki.js'
import { verifyOk, verifyFails } from './helpers/verify.js'

/** An ec256 chain (fast keys) with the given overrides; verified as presented against its own root. */
async function ec (opts: ChainOptions = {}): Promise<Chain> {
  return makeChain({ kind: 'ec256', ...opts })
}
const presented = (c: Chain, extra: Partial<VerifyOptions> = {}): VerifyOptions => ({ leaf: c.chainPem, trustAnchors: c.root.pem, ...extra })

const INVALID = 'FST_MTLS_CHAIN_INVALID'
const PURPOSE = 'FST_MTLS_CERT_PURPOSE'
const WEAK = 'FST_MTLS_CERT_WEAK'
const UNKNOWN_CRITICAL = { oid: '1.3.6.1.4.1.55555.1', critical: true, valueDer: Buffer.from('0500', 'hex') }
const UNKNOWN_NON_CRITICAL = { ...UNKNOWN_CRITICAL, critical: false }

/** DER TLV with a short or long length. */
function tlv (tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content)
  const len = body.length < 0x80 ? Buffer.from([body.length]) : body.length < 0x100 ? Buffer.from([0x81, body.length]) : Buffer.from([0x82, body.length >> 8, body.length & 0xff])
  return Buffer.concat([Buffer.from([tag]), len, body])
}
const hex = (h: string): Buffer => Buffer.from(h.replace(/\s+/g, ''), 'hex')

t.test('FST_MTLS_CHAIN_INVALID: CA profile of issuers', async (t) => {
  const int = (spec: Partial<CertSpec>) => ec({ label: 'Profile', intermediate: spec })
  await verifyFails(t, presented(await int({ ca: false })), INVALID,
    /^"O=Fixture PKI,CN=Profile Intermediate CA 1" \(serial [0-9A-F]+\): issuer is not a CA \(basicConstraints cA is not TRUE\)$/, 'intermediate with CA:FALSE')
  await verifyFails(t, presented(await int({ basicConstraints: false, keyUsage: false })), INVALID,
    /Profile Intermediate CA 1.*: issuer is not a CA/, 'intermediate without basicConstraints')
  await verifyFails(t, presented(await int({ basicConstraints: false })), INVALID,
    /Profile Intermediate CA 1.*: keyCertSign without basicConstraints cA \(RFC 5280 4\.2\.1\.3\)$/, 'intermediate without basicConstraints but with keyCertSign')
  await verifyFails(t, presented(await int({ basicConstraints: { critical: false } })), INVALID,
    /Profile Intermediate CA 1.*: basicConstraints of a CA must be critical$/, 'CA basicConstraints not critical')
  await verifyFails(t, presented(await int({ keyUsage: ['cRLSign'] })), INVALID,
    /Profile Intermediate CA 1.*: issuer key usage lacks keyCertSign$/, 'CA keyUsage without keyCertSign')
  await verifyFails(t, presented(await int({ keyUsage: ['digitalSignature', 'cRLSign'] })), INVALID, /issuer key usage lacks keyCertSign/, 'digitalSignature, cRLSign')
  await verifyOk(t, presented(await int({ keyUsage: false })), 'a CA without keyUsage may sign certificates')
  await verifyOk(t, presented(await int({ keyUsage: ['keyCertSign'] })), 'keyCertSign alone')
  await verifyFails(t, presented(await int({ subjectKeyIdentifier: false })), INVALID,
    /Profile Intermediate CA 1.*: CA without subjectKeyIdentifier \(RFC 5280 4\.2\.1\.2\)$/, 'CA without SKI')
  await verifyFails(t, presented(await int({ authorityKeyIdentifier: false })), INVALID,
    /Profile Intermediate CA 1.*: no authorityKeyIdentifier keyIdentifier/, 'intermediate without AKI')
  await verifyFails(t, presented(await ec({ label: 'Profile leaf', leaf: { authorityKeyIdentifier: false } })), INVALID,
    /^"O=Fixture PKI,CN=Profile leaf leaf" \(serial [0-9A-F]+\): no authorityKeyIdentifier keyIdentifier \(RFC 5280 4\.2\.1\.1\)$/, 'leaf without AKI')
  await verifyFails(t, presented(await ec({ leaf: { keyUsage: ['digitalSignature', 'keyCertSign'] } })), INVALID,
    /leaf.*: keyCertSign without basicConstraints cA/, 'leaf with keyCertSign but not a CA')
  await verifyFails(t, presented(await ec({ root: { ca: false } })), INVALID,
    /Root CA.*: issuer is not a CA/, 'anchor that is not a CA')
})

t.test('FST_MTLS_CHAIN_INVALID: path length', async (t) => {
  await verifyFails(t, presented(await ec({ intermediates: 2, intermediate: { pathLen: 0 } })), INVALID,
    /Intermediate CA 1.*: path length constraint 0 exceeded \(1 intermediate CAs below it\)$/, 'intermediate pathLen 0 with a CA below')
  await verifyOk(t, presented(await ec({ intermediates: 1, intermediate: { pathLen: 0 } })), 'pathLen 0 directly above the leaf')
  await verifyFails(t, presented(await ec({ intermediates: 1, root: { pathLen: 0 } })), INVALID,
    /Root CA.*: path length constraint 0 exceeded \(1 intermediate CAs below it\)/, 'root pathLen 0 with an intermediate')
  await verifyOk(t, presented(await ec({ intermediates: 0, root: { pathLen: 0 } })), 'root pathLen 0, no intermediate')
  await verifyFails(t, presented(await ec({ intermediates: 2, root: { pathLen: 1 } })), INVALID,
    /Root CA.*: path length constraint 1 exceeded \(2 intermediate CAs below it\)/, 'root pathLen 1 with two intermediates')

  // a self-issued intermediate (same subject, new key, signed by the old key) does not count
  const [kR, kOld, kNew, kLeaf] = await newKeys('ec256', 4)
  const build = async (rootPathLen: number, selfIssued: boolean): Promise<VerifyOptions> => {
    const root = await issue({ subject: 'CN=PathLen Root', key: kR, ca: true, pathLen: rootPathLen })
    const old = await issue({ subject: 'CN=PathLen CA', key: kOld, issuer: root, ca: true })
    const next = await issue({ subject: selfIssued ? 'CN=PathLen CA' : 'CN=PathLen CA 2', key: kNew, issuer: old, ca: true })
    const leaf = await issue({ subject: 'CN=pathlen leaf', key: kLeaf, issuer: next })
    return { leaf: leaf.pem + next.pem + old.pem, trustAnchors: root.pem }
  }
  const r = await verifyOk(t, await build(1, true), 'root pathLen 1 over a CA and its self-issued successor')
  t.equal(r?.chain.length, 4)
  await verifyFails(t, await build(1, false), INVALID, /path length constraint 1 exceeded \(2 intermediate CAs below it\)/, 'the same with a distinct name')
  await verifyFails(t, await build(0, true), INVALID, /path length constraint 0 exceeded \(1 intermediate CAs below it\)/, 'root pathLen 0 still counts the non-self-issued CA')
})

t.test('FST_MTLS_CHAIN_INVALID: unknown critical extensions', async (t) => {
  for (const where of ['leaf', 'intermediate', 'root'] as const) {
    const who = where === 'leaf' ? 'leaf' : where === 'root' ? 'Root CA' : 'Intermediate CA 1'
    await verifyFails(t, presented(await ec({ label: `Crit ${where}`, [where]: { extraExtensions: [UNKNOWN_CRITICAL] } })), INVALID,
      new RegExp(`^"O=Fixture PKI,CN=Crit ${where} ${who}" \\(serial [0-9A-F]+\\): unknown critical extension 1\\.3\\.6\\.1\\.4\\.1\\.55555\\.1$`), `in the ${where}`)
    await verifyOk(t, presented(await ec({ [where]: { extraExtensions: [UNKNOWN_NON_CRITICAL] } })), `non-critical in the ${where}`)
  }
  const policyConstraints = { oid: OID.policyConstraints, critical: true, valueDer: Buffer.from('3003800100', 'hex') }
  await verifyFails(t, presented(await ec({ intermediate: { extraExtensions: [policyConstraints] } })), INVALID,
    /unknown critical extension 2\.5\.29\.36/, 'critical policyConstraints is not processed')
  await verifyFails(t, presented(await ec({ intermediate: { extraExtensions: [{ ...policyConstraints, critical: false }] } })), INVALID,
    /policyConstraints must be critical/, 'non-critical policyConstraints')
})

t.test('a certificate with a duplicated extension does not parse', async (t) => {
  const dupBc = { oid: OID.basicConstraints, critical: true, valueDer: Buffer.from('3000', 'hex') }
  const c = await ec({ leaf: { extraExtensions: [dupBc] } })
  await verifyFails(t, presented(c), 'FST_MTLS_CERT_MALFORMED',
    /^leaf certificate does not parse: extensions: extension 2\.5\.29\.19 appears more than once$/, 'leaf with two basicConstraints: refused before path building')
  const c2 = await ec({ intermediate: { extraExtensions: [{ ...dupBc, valueDer: Buffer.from('30030101ff', 'hex') }] } })
  await verifyFails(t, presented(c2), 'FST_MTLS_CERT_UNTRUSTED', /no path from/, 'such an intermediate is skipped: no path')
  await t.rejects(verifyCertificateChain({ leaf: c.leaf.pem, trustAnchors: c2.intermediates[0]?.pem ?? '' }),
    { name: 'InputError', message: /^trustAnchors\[0\]: certificate #1 does not parse: extensions: extension 2\.5\.29\.19 appears more than once$/ }, 'as an anchor: an input error')
})

t.test('FST_MTLS_CHAIN_INVALID: maxChainLength', async (t) => {
  const c2 = await ec({ intermediates: 2 })
  await verifyFails(t, presented(c2, { maxChainLength: 3 }), INVALID, /^the only path to a trust anchor has 4 certificates, more than maxChainLength 3$/, '2 intermediates, max 3')
  await verifyOk(t, presented(c2, { maxChainLength: 4 }), '2 intermediates, max 4')
  const c0 = await ec({ intermediates: 0 })
  await verifyOk(t, presented(c0, { maxChainLength: 2 }), 'leaf and root, max 2')
  const c1 = await ec({ intermediates: 1 })
  await verifyFails(t, presented(c1, { maxChainLength: 2 }), INVALID, /has 3 certificates, more than maxChainLength 2/, '1 intermediate, max 2')
  const c7 = await ec({ intermediates: 7 })
  await verifyFails(t, presented(c7), INVALID, /has 9 certificates, more than maxChainLength 8/, 'default 8: 7 intermediates are too many')
  const c6 = await ec({ intermediates: 6 })
  await verifyOk(t, presented(c6), 'default 8: 6 intermediates')
  await verifyOk(t, { ...presented(c7), trustAnchors: c7.intermediates[0]?.pem ?? '' }, 'a shorter path to an intermediate anchor')
})

t.test('FST_MTLS_CHAIN_INVALID: name constraints', async (t) => {
  type NC = NonNullable<CertSpec['nameConstraints']>
  /** constraint in the root (no intermediate) or in the intermediate */
  const nc = async (constraints: NC, leaf: Partial<CertSpec>, where: 'root' | 'intermediate' = 'root'): Promise<VerifyOptions> =>
    presented(await ec(where === 'root'
      ? { intermediates: 0, root: { nameConstraints: constraints }, leaf }
      : { intermediates: 1, intermediate: { nameConstraints: constraints }, leaf }))
  const outside = (what: string): RegExp => new RegExp(`^".*" \\(serial [0-9A-F]+\\): name constraints of ".*" \\(serial [0-9A-F]+\\): ${what} is outside the permitted subtrees$`)
  const excluded = (what: string): RegExp => new RegExp(`^".*" \\(serial [0-9A-F]+\\): name constraints of ".*" \\(serial [0-9A-F]+\\): ${what} is in an excluded subtree$`)

  for (const where of ['root', 'intermediate'] as const) {
    const dns = { permitted: { dns: ['example.com'] } }
    await verifyOk(t, await nc(dns, { san: { dns: ['api.example.com', 'example.com'] } }, where), `${where}: DNS inside`)
    await verifyFails(t, await nc(dns, { san: { dns: ['api.example.com', 'api.example.org'] } }, where), INVALID, outside('dNSName "api.example.org"'), `${where}: DNS outside`)
  }
  const dns = { permitted: { dns: ['example.com'] } }
  await verifyFails(t, await nc(dns, { san: { dns: ['notexample.com'] } }), INVALID, outside('dNSName "notexample.com"'), 'DNS suffix without a dot boundary')
  await verifyOk(t, await nc(dns, { san: { email: ['a@elsewhere.org'] } }), 'DNS constraints do not apply to other name types')
  await verifyOk(t, await nc(dns, {}), 'a leaf without SAN')
  const exDns = { excluded: { dns: ['bad.example.com'] } }
  await verifyFails(t, await nc(exDns, { san: { dns: ['x.bad.example.com'] } }), INVALID, excluded('dNSName "x.bad.example.com"'), 'DNS excluded')
  await verifyFails(t, await nc(exDns, { san: { dns: ['BAD.Example.COM'] } }), INVALID, excluded('dNSName "BAD.Example.COM"'), 'DNS excluded, case-insensitive')
  await verifyFails(t, await nc(exDns, { san: { dns: ['*.example.com'] } }), INVALID, excluded('dNSName "\\*.example.com"'), 'a wildcard that may cover the excluded subtree')
  await verifyOk(t, await nc(exDns, { san: { dns: ['good.example.com'] } }), 'DNS not excluded')

  const email = { permitted: { email: ['example.com'] } }
  await verifyOk(t, await nc(email, { san: { email: ['alice@example.com'] } }), 'email on the host')
  await verifyFails(t, await nc(email, { san: { email: ['alice@evil.com'] } }), INVALID, outside('rfc822Name "alice@evil.com"'), 'email outside')
  await verifyFails(t, await nc(email, { san: { email: ['alice@mail.example.com'] } }), INVALID, outside('rfc822Name "alice@mail.example.com"'), 'host form excludes subdomains')
  await verifyFails(t, await nc(email, { subject: 'O=Fixture PKI,CN=eve,emailAddress=eve@evil.com' }), INVALID,
    outside('rfc822Name "eve@evil.com"'), 'emailAddress in the subject DN is constrained too')
  const emailDomain = { permitted: { email: ['.example.com'] } }
  await verifyOk(t, await nc(emailDomain, { san: { email: ['bob@mail.example.com'] } }), 'email domain form: subdomain')
  await verifyFails(t, await nc(emailDomain, { san: { email: ['bob@example.com'] } }), INVALID, outside('rfc822Name "bob@example.com"'), 'email domain form: not the domain itself')
  const mailbox = { excluded: { email: ['mallory@example.com'] } }
  await verifyFails(t, await nc(mailbox, { san: { email: ['mallory@example.com'] } }), INVALID, excluded('rfc822Name "mallory@example.com"'), 'excluded mailbox')
  await verifyOk(t, await nc(mailbox, { san: { email: ['alice@example.com'] } }), 'another mailbox')

  const uri = { permitted: { uri: ['.example.com'] } }
  await verifyOk(t, await nc(uri, { san: { uri: ['https://api.example.com/path'] } }), 'URI host in the domain')
  await verifyFails(t, await nc(uri, { san: { uri: ['https://example.org/'] } }), INVALID, outside('URI "https://example.org/"'), 'URI host outside')
  await verifyFails(t, await nc(uri, { san: { uri: ['https://example.com/'] } }), INVALID, outside('URI "https://example.com/"'), 'a leading-dot URI constraint excludes the host itself')
  await verifyFails(t, await nc(uri, { san: { uri: ['urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66'] } }), INVALID,
    /URI "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66" has no host name to check against URI constraints$/, 'URI without a host')
  await verifyOk(t, await nc({ permitted: { uri: ['example.com'] } }, { san: { uri: ['spiffe://example.com/ns/prod/sa/api'] } }), 'URI exact host')
  await verifyFails(t, await nc({ excluded: { uri: ['evil.example.com'] } }, { san: { uri: ['https://user@evil.example.com:8443/x'] } }), INVALID,
    excluded('URI "https://user@evil.example.com:8443/x"'), 'excluded URI host with userinfo and port')

  const ip4 = { permitted: { ip: ['10.0.0.0/8'] } }
  await verifyOk(t, await nc(ip4, { san: { ip: ['10.1.2.3'] } }), 'IPv4 inside')
  await verifyFails(t, await nc(ip4, { san: { ip: ['192.168.0.1'] } }), INVALID, outside('iPAddress c0a80001'), 'IPv4 outside')
  await verifyFails(t, await nc(ip4, { san: { ip: ['::ffff:10.1.2.3'] } }), INVALID, outside('iPAddress 00000000000000000000ffff0a010203'), 'IPv6 against IPv4 constraints')
  const ip6 = { permitted: { ip: ['fd00::/8'] } }
  await verifyOk(t, await nc(ip6, { san: { ip: ['fd12::1'] } }), 'IPv6 inside')
  await verifyFails(t, await nc(ip6, { san: { ip: ['2001:db8::1'] } }), INVALID, outside('iPAddress 20010db8000000000000000000000001'), 'IPv6 outside')
  await verifyFails(t, await nc({ excluded: { ip: ['10.1.0.0/16'] } }, { san: { ip: ['10.1.200.3'] } }), INVALID, excluded('iPAddress 0a01c803'), 'IPv4 excluded')
  await verifyOk(t, await nc({ excluded: { ip: ['10.1.0.0/16'] } }, { san: { ip: ['10.2.0.1'] } }), 'IPv4 not excluded')

  const dir = { permitted: { dirName: ['O=Acme'] } }
  await verifyOk(t, await nc(dir, { subject: 'O=Acme,CN=alice' }), 'subject inside the permitted directoryName')
  await verifyFails(t, await nc(dir, { subject: 'O=Evil,CN=mallory' }), INVALID, outside('directoryName "CN=mallory,O=Evil"'), 'subject outside')
  await verifyFails(t, await nc(dir, { subject: 'C=US,O=Acme,CN=alice' }), INVALID, outside('directoryName "CN=alice,O=Acme,C=US"'), 'RDNs compared from the top')
  await verifyOk(t, await nc(dir, { subject: 'O=ACME,CN=alice' }), 'case-insensitive')
  await verifyFails(t, await nc(dir, { subject: 'O=Acme,CN=alice', san: { dirName: ['O=Other,CN=alice'] } }), INVALID,
    outside('directoryName "CN=alice,O=Other"'), 'a directoryName SAN is constrained too')
  const exDir = { excluded: { dirName: ['O=Acme,OU=Contractors'] } }
  await verifyFails(t, await nc(exDir, { subject: 'O=Acme,OU=Contractors,CN=bob' }), INVALID, excluded('directoryName "CN=bob,OU=Contractors,O=Acme"'), 'directoryName excluded')
  await verifyOk(t, await nc(exDir, { subject: 'O=Acme,OU=Staff,CN=alice' }), 'directoryName not excluded')

  // the root's constraints bind the intermediate's own names too
  const rootDir = (intermediateSubject: string): Promise<Chain> => ec({
    intermediates: 1,
    root: { nameConstraints: dir },
    intermediate: { subject: intermediateSubject },
    leaf: { subject: 'O=Acme,CN=carol' }
  })
  await verifyFails(t, presented(await rootDir('CN=Fixture Issuing CA')), INVALID,
    /^"CN=Fixture Issuing CA" \(serial [0-9A-F]+\): name constraints of .*Root CA.*: directoryName "CN=Fixture Issuing CA" is outside the permitted subtrees$/, 'intermediate subject outside the root constraint')
  await verifyOk(t, presented(await rootDir('O=Acme,CN=Acme Issuing CA')), 'intermediate subject inside')
  // both levels constrain: the leaf must satisfy each
  const both = await ec({
    intermediates: 1,
    root: { nameConstraints: { permitted: { dns: ['example.com'] } } },
    intermediate: { nameConstraints: { excluded: { dns: ['internal.example.com'] } } },
    leaf: { san: { dns: ['db.internal.example.com'] } }
  })
  await verifyFails(t, presented(both), INVALID, excluded('dNSName "db.internal.example.com"'), 'excluded by the intermediate, permitted by the root')

  await verifyFails(t, presented(await ec({ intermediate: { nameConstraints: { permitted: { dns: ['example.com'] }, critical: false } } })), INVALID,
    /Intermediate CA 1.*: nameConstraints must be critical \(RFC 5280 4\.2\.1\.10\)$/, 'non-critical nameConstraints')
  await verifyFails(t, presented(await ec({ leaf: { nameConstraints: { permitted: { dns: ['example.com'] } }, san: { dns: ['a.example.com'] } } })), INVALID,
    /leaf.*: nameConstraints in a certificate that is not a CA$/, 'nameConstraints in a leaf')
  await verifyFails(t, await nc({ permitted: { dns: ['*.example.com'] } }, { san: { dns: ['a.example.com'] } }), INVALID,
    /malformed dNSName constraint "\*\.example\.com"/, 'a malformed constraint fails closed')
  await verifyFails(t, await nc({ permitted: { email: ['not a host'] } }, { san: { email: ['a@example.com'] } }), INVALID,
    /malformed rfc822Name constraint/, 'malformed email constraint')
  await verifyFails(t, await nc({ permitted: { uri: ['http://example.com/'] } }, { san: { uri: ['http://example.com/'] } }), INVALID,
    /malformed URI constraint/, 'a URI constraint must be a host')
})

t.test('FST_MTLS_CERT_PURPOSE', async (t) => {
  const leaf = (spec: Partial<CertSpec>, label = 'Purpose'): Promise<Chain> => ec({ intermediates: 0, label, leaf: spec })
  const serverOnly = await leaf({ extKeyUsage: ['serverAuth'] })
  await verifyFails(t, presented(serverOnly), PURPOSE,
    /^"O=Fixture PKI,CN=Purpose leaf" \(serial [0-9A-F]+\): extended key usage does not allow clientAuth \(has 1\.3\.6\.1\.5\.5\.7\.3\.1\)$/, 'serverAuth-only leaf, default purpose')
  await verifyOk(t, presented(serverOnly, { purpose: 'serverAuth' }), 'purpose serverAuth')
  await verifyOk(t, presented(serverOnly, { purpose: 'any' }), 'purpose any')
  const clientOnly = await leaf({})
  await verifyFails(t, presented(clientOnly, { purpose: 'serverAuth' }), PURPOSE, /extended key usage does not allow serverAuth \(has 1\.3\.6\.1\.5\.5\.7\.3\.2\)/, 'clientAuth leaf for serverAuth')
  await verifyOk(t, presented(clientOnly, { purpose: 'clientAuth', requireClientAuthEku: true }), 'clientAuth EKU with requireClientAuthEku')

  const noEku = await leaf({ extKeyUsage: false })
  await verifyOk(t, presented(noEku), 'no EKU: any purpose by default')
  await verifyOk(t, presented(noEku, { purpose: 'serverAuth' }), 'no EKU, serverAuth')
  await verifyFails(t, presented(noEku, { requireClientAuthEku: true }), PURPOSE,
    /Purpose leaf.*: no clientAuth extended key usage \(required by requireClientAuthEku\)$/, 'no EKU with requireClientAuthEku')
  await verifyOk(t, presented(noEku, { requireClientAuthEku: true, purpose: 'serverAuth' }), 'requireClientAuthEku applies to clientAuth only')

  const anyEku = await leaf({ extKeyUsage: ['anyExtendedKeyUsage'] })
  await verifyOk(t, presented(anyEku), 'anyExtendedKeyUsage')
  await verifyOk(t, presented(anyEku, { purpose: 'serverAuth' }), 'anyExtendedKeyUsage for serverAuth')
  await verifyOk(t, presented(await leaf({ extKeyUsage: ['codeSigning', 'clientAuth'] })), 'clientAuth among others')
  await verifyFails(t, presented(await leaf({ extKeyUsage: ['codeSigning', 'emailProtection'] })), PURPOSE,
    /does not allow clientAuth \(has 1\.3\.6\.1\.5\.5\.7\.3\.3, 1\.3\.6\.1\.5\.5\.7\.3\.4\)/, 'other EKUs only')

  await verifyFails(t, presented(await leaf({ ca: true })), PURPOSE,
    /Purpose leaf.*: a CA certificate cannot be used as an end-entity certificate$/, 'CA certificate as leaf')
  const c = await ec({ intermediates: 1 })
  await verifyFails(t, { leaf: c.intermediates[0]?.pem ?? '', trustAnchors: c.root.pem }, PURPOSE,
    /Intermediate CA 1.*: a CA certificate cannot be used as an end-entity certificate/, 'an intermediate presented as the client certificate')

  const keyEnc = await leaf({ keyUsage: ['keyEncipherment'] })
  await verifyFails(t, presented(keyEnc), PURPOSE, /Purpose leaf.*: key usage lacks digitalSignature$/, 'keyUsage without digitalSignature')
  await verifyOk(t, presented(keyEnc, { purpose: 'any' }), 'purpose any does not check key usage')
  await verifyOk(t, presented(await leaf({ keyUsage: ['keyEncipherment'], extKeyUsage: ['serverAuth'] }), { purpose: 'serverAuth' }),
    'keyEncipherment suffices for serverAuth')
  await verifyFails(t, presented(await leaf({ keyUsage: ['nonRepudiation'], extKeyUsage: ['serverAuth'] }), { purpose: 'serverAuth' }), PURPOSE,
    /key usage allows neither digitalSignature, keyEncipherment nor keyAgreement$/, 'serverAuth with nonRepudiation only')
  await verifyOk(t, presented(await leaf({ keyUsage: false })), 'no keyUsage at all')
  await verifyOk(t, presented(await leaf({ keyUsage: ['digitalSignature', 'keyAgreement'] })), 'digitalSignature among others')

  const intEku = (eku: string[]): Promise<Chain> => ec({ label: 'Int EKU', intermediate: { extKeyUsage: eku } })
  await verifyFails(t, presented(await intEku(['serverAuth'])), PURPOSE,
    /^"O=Fixture PKI,CN=Int EKU Intermediate CA 1" \(serial [0-9A-F]+\): extended key usage does not allow clientAuth \(has 1\.3\.6\.1\.5\.5\.7\.3\.1\)$/,
    'intermediate EKU without clientAuth')
  await verifyOk(t, presented(await intEku(['clientAuth', 'serverAuth'])), 'intermediate EKU with clientAuth')
  await verifyOk(t, presented(await intEku(['anyExtendedKeyUsage'])), 'intermediate anyExtendedKeyUsage')
  await verifyOk(t, presented(await ec({ root: { extKeyUsage: ['serverAuth'] } })), 'the anchor\'s EKU is not checked')
})

t.test('FST_MTLS_CERT_WEAK', async (t) => {
  const rsa1024Leaf = await ec({ intermediates: 0, leafKind: 'rsa1024', label: 'Weak' })
  await verifyFails(t, presented(rsa1024Leaf), WEAK,
    /^"O=Fixture PKI,CN=Weak leaf" \(serial [0-9A-F]+\): RSA key of 1024 bits is below the minimum of 2048$/, 'RSA-1024 leaf')
  await verifyOk(t, presented(rsa1024Leaf, { minRsaBits: 1024 }), 'RSA-1024 leaf with minRsaBits 1024')

  const weakInt = await ec({ label: 'Weak int', intermediate: { key: await newKey('rsa1024') } })
  await verifyFails(t, presented(weakInt), WEAK, /Weak int Intermediate CA 1.*: RSA key of 1024 bits is below the minimum of 2048$/, 'RSA-1024 intermediate')
  const weakRoot = await ec({ label: 'Weak root', root: { key: await newKey('rsa1024') } })
  await verifyFails(t, presented(weakRoot), WEAK, /Weak root Root CA.*: RSA key of 1024 bits/, 'RSA-1024 anchor')

  const rsa = await makeChain({ kind: 'rsa2048', intermediates: 0 })
  await verifyOk(t, presented(rsa), 'RSA-2048 by default')
  await verifyFails(t, presented(rsa, { minRsaBits: 3072 }), WEAK, /RSA key of 2048 bits is below the minimum of 3072$/, 'minRsaBits 3072')
  await verifyFails(t, { ...presented(rsa, { minRsaBits: 3072 }), at: new Date(Date.now() + 365 * 86400e3) }, WEAK, /below the minimum of 3072/,
    'WEAK is reported before EXPIRED')

  await verifyFails(t, presented(await ec({ intermediates: 0, leaf: { signatureHash: 'sha1' } })), WEAK,
    /leaf.*: weak signature algorithm 1\.2\.840\.10045\.4\.1 \(MD5 and SHA-1 are refused\)$/, 'ECDSA-SHA1 leaf')
  await verifyFails(t, presented(await makeChain({ kind: 'rsa2048', intermediates: 0, leaf: { signatureHash: 'sha1' } })), WEAK,
    /leaf.*: weak signature algorithm 1\.2\.840\.113549\.1\.1\.5 /, 'RSA-SHA1 leaf')
  await verifyFails(t, presented(await makeChain({ kind: 'rsa2048', intermediates: 0, leaf: { signatureHash: 'md5' } })), WEAK,
    /leaf.*: weak signature algorithm 1\.2\.840\.113549\.1\.1\.4 /, 'RSA-MD5 leaf')
  await verifyFails(t, presented(await ec({ label: 'Sha1 int', intermediate: { signatureHash: 'sha1' } })), WEAK,
    /Sha1 int Intermediate CA 1.*: weak signature algorithm/, 'intermediate signed with SHA-1')

  await verifyOk(t, presented(await ec({ root: { signatureHash: 'sha1' } })), 'the anchor\'s own SHA-1 self-signature is exempt (ECDSA)')
  await verifyOk(t, presented(await makeChain({ kind: 'rsa2048', root: { signatureHash: 'sha1' } })), 'the anchor\'s own SHA-1 self-signature is exempt (RSA)')
  await verifyOk(t, presented(await makeChain({ kind: 'rsa2048', intermediates: 0, root: { signatureHash: 'md5' } })), 'even MD5')
  await verifyOk(t, presented(await makeChain({ kind: 'rsa2048', intermediates: 0, leaf: { signatureHash: 'sha512' } })), 'RSA-SHA512')
  await verifyOk(t, presented(await makeChain({ kind: 'ec384', intermediates: 0 })), 'P-384 with SHA-384')
  await verifyOk(t, presented(await ec({ intermediates: 0, leaf: { signatureHash: 'sha384' } })), 'P-256 key, SHA-384 signature')

  // leaf keys of other kinds: the subject key is only written into the certificate, the EC root signs
  const base = await newKey('ec256')
  const withKey = (publicKey: KeyObject): KeyPair => ({ ...base, publicKey, spkiDer: publicKey.export({ type: 'spki', format: 'der' }) })
  const leafWith = async (publicKey: KeyObject): Promise<Chain> => ec({ intermediates: 0, label: 'Key kinds', leaf: { key: withKey(publicKey) } })
  await verifyFails(t, presented(await leafWith(generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey)), WEAK,
    /Key kinds leaf.*: EC key on curve secp256k1 \(P-256, P-384 or P-521 required\)$/, 'secp256k1 leaf')
  await verifyFails(t, presented(await leafWith(generateKeyPairSync('dsa', { modulusLength: 2048, divisorLength: 256 }).publicKey)), WEAK,
    /Key kinds leaf.*: dsa keys are not accepted$/, 'DSA leaf')
  await verifyFails(t, presented(await leafWith(generateKeyPairSync('rsa', { modulusLength: 2052 }).publicKey)), WEAK,
    /RSA key of 2052 bits is not a whole number of bytes$/, 'RSA key of 2052 bits')
  await verifyOk(t, presented(await leafWith(generateKeyPairSync('ed448').publicKey)), 'Ed448 leaf')
  await verifyOk(t, presented(await leafWith(generateKeyPairSync('ec', { namedCurve: 'P-521' }).publicKey)), 'P-521 leaf')
})

t.test('checks run in order on the path found', async (t) => {
  const now = Date.now()
  const expiredLeaf = { notBefore: new Date(now - 10 * 86400e3), notAfter: new Date(now - 86400e3) }
  await verifyFails(t, presented(await ec({ intermediates: 0, leafKind: 'rsa1024', leaf: expiredLeaf })), WEAK,
    /RSA key of 1024 bits/, 'weak and expired: WEAK')
  await verifyFails(t, presented(await ec({ intermediate: { ca: false }, leaf: expiredLeaf })), 'FST_MTLS_CERT_EXPIRED',
    /leaf.* expired at/, 'expired and issuer not a CA: EXPIRED')
  await verifyFails(t, presented(await ec({ intermediate: { ca: false }, leaf: { notBefore: new Date(now + 86400e3) } })), 'FST_MTLS_CERT_NOT_YET_VALID',
    /leaf.* is not valid before/, 'not yet valid and issuer not a CA: NOT_YET_VALID')
  await verifyFails(t, presented(await ec({ intermediate: { ca: false }, leaf: { extKeyUsage: ['serverAuth'] } })), INVALID,
    /issuer is not a CA/, 'CA rule broken and wrong EKU: CHAIN_INVALID')
  await verifyFails(t, presented(await ec({ intermediates: 0, root: { nameConstraints: { permitted: { dns: ['example.com'] } } }, leaf: { san: { dns: ['x.org'] }, ca: true } })), INVALID,
    /outside the permitted subtrees/, 'name constraints before purpose')
  await verifyFails(t, presented(await ec({ intermediates: 0, leaf: { extKeyUsage: ['serverAuth'], signatureHash: 'sha1' } })), WEAK,
    /weak signature algorithm/, 'weak signature and wrong EKU: WEAK')
})

t.test('FST_MTLS_CHAIN_INVALID: serial numbers, anchor key identifiers, self-issued CAs under constraints', async (t) => {
  // serials that are not positive need the node-forge path (RSA keys)
  await verifyFails(t, presented(await makeChain({ intermediates: 1, label: 'Serial', intermediate: { serial: '00' } })), INVALID,
    /Serial Intermediate CA 1.*: serial number must be positive \(RFC 5280 4\.1\.2\.2\)$/, 'intermediate serial 0')
  await verifyFails(t, presented(await makeChain({ intermediates: 0, leaf: { serial: 'FF01' } })), INVALID,
    /leaf.*: serial number must be positive/, 'negative leaf serial')
  await verifyFails(t, presented(await makeChain({ intermediates: 0, leaf: { serial: '01'.repeat(21) } })), INVALID,
    /leaf.*: serial number longer than 20 octets/, '21-octet serial')
  await verifyOk(t, presented(await makeChain({ intermediates: 0, root: { serial: '00' } })), 'an anchor may have serial 0')

  const akiWithIssuer = (keyId: Buffer): { oid: string, valueDer: Buffer } => ({
    oid: OID.authorityKeyIdentifier,
    valueDer: tlv(0x30, tlv(0x80, keyId), tlv(0xa1, tlv(0xa4, nameDer('CN=Some Issuer'))), tlv(0x82, Buffer.from([1])))
  })
  const rootKey = await newKey('ec256')
  await verifyFails(t, presented(await ec({ intermediates: 0, root: { key: rootKey, authorityKeyIdentifier: false, extraExtensions: [akiWithIssuer(rootKey.keyId)] } })), INVALID,
    /Root CA.*: self-issued certificate with authorityCertIssuer in its authorityKeyIdentifier$/, 'anchor AKI with authorityCertIssuer')
  await verifyFails(t, presented(await ec({ intermediates: 0, root: { authorityKeyIdentifier: Buffer.alloc(20, 7) } })), INVALID,
    /Root CA.*: authorityKeyIdentifier of a self-signed anchor differs from its subjectKeyIdentifier$/, 'anchor AKI differs from its SKI')
  await verifyOk(t, presented(await ec({ intermediates: 0, root: { key: rootKey, authorityKeyIdentifier: rootKey.keyId } })), 'anchor AKI equal to its SKI')
  await verifyFails(t, presented(await ec({ intermediates: 0, root: { authorityKeyIdentifier: false, extraExtensions: [{ oid: OID.authorityKeyIdentifier, valueDer: hex('3000') }] } })), INVALID,
    /authorityKeyIdentifier without keyIdentifier/, 'AKI without keyIdentifier')

  // a CA carrying constraints its own name does not meet, and its self-issued successor: exempt (RFC 5280 6.1.3(b))
  const [kRoot, kOld, kNew, kLeaf] = await newKeys('ec256', 4)
  const root = await issue({ subject: 'CN=SI Root', key: kRoot, ca: true })
  const old = await issue({ subject: 'CN=SI CA', key: kOld, issuer: root, ca: true, nameConstraints: { permitted: { dirName: ['O=Acme'] } } })
  const next = await issue({ subject: 'CN=SI CA', key: kNew, issuer: old, ca: true })
  const leafIn = await issue({ subject: 'O=Acme,CN=si leaf', key: kLeaf, issuer: next })
  const leafOut = await issue({ subject: 'O=Other,CN=si leaf', key: kLeaf, issuer: next })
  await verifyOk(t, { leaf: leafIn.pem + next.pem + old.pem, trustAnchors: root.pem }, 'self-issued intermediate is exempt from its parent\'s constraints')
  await verifyFails(t, { leaf: leafOut.pem + next.pem + old.pem, trustAnchors: root.pem }, INVALID,
    /"CN=si leaf,O=Other".*: name constraints of "CN=SI CA".*: directoryName "CN=si leaf,O=Other" is outside/, 'the leaf below it is not')
})

t.test('name constraints: odd names and the comparison budget', async (t) => {
  const nc = async (constraints: NonNullable<CertSpec['nameConstraints']>, leaf: Partial<CertSpec>): Promise<VerifyOptions> =>
    presented(await ec({ intermediates: 0, root: { nameConstraints: constraints }, leaf }))
  await verifyFails(t, await nc({ permitted: { email: ['example.com'] } }, { subject: 'O=Fixture PKI,CN=x,emailAddress=not-a-mailbox' }), INVALID,
    /rfc822Name "not-a-mailbox" is not a mailbox$/, 'subject emailAddress that is not a mailbox, under email constraints')
  await verifyOk(t, await nc({ permitted: { dns: ['example.com'] } }, { subject: 'O=Fixture PKI,CN=x,emailAddress=not-a-mailbox' }), 'the same without email constraints')

  const registeredId = (oid: string): Buffer => Buffer.from(AsnConvert.serialize(new ax.GeneralName({ registeredID: oid })))
  const sanRid = { oid: OID.subjectAltName, valueDer: tlv(0x30, registeredId('1.3.6.1.4.1.55555.9')) }
  const ncRid = { oid: OID.nameConstraints, critical: true, valueDer: tlv(0x30, tlv(0xa0, tlv(0x30, registeredId('1.3.6.1.4.1.55555')))) }
  await verifyFails(t, presented(await ec({ intermediates: 0, root: { extraExtensions: [ncRid] }, leaf: { extraExtensions: [sanRid] } })), INVALID,
    /a registeredId name cannot be checked against registeredId constraints$/, 'registeredID names under registeredID constraints fail closed')
  await verifyOk(t, await nc({ permitted: { dns: ['example.com'] } }, { extraExtensions: [sanRid] }), 'registeredID names under DNS constraints are not constrained')

  await verifyOk(t, await nc({ permitted: { dns: [''] } }, { san: { dns: ['anything.example'] } }), 'an empty DNS constraint permits every name')
  await verifyFails(t, await nc({ excluded: { dns: [''] } }, { san: { dns: ['anything.example'] } }), INVALID, /dNSName "anything\.example" is in an excluded subtree/,
    'an empty excluded DNS constraint excludes every name')

  const many = Array.from({ length: 257 }, (_, i) => `d${i}.example.com`)
  const sans = Array.from({ length: 256 }, (_, i) => `h${i}.d${i}.example.com`)
  await verifyFails(t, await nc({ permitted: { dns: many } }, { san: { dns: sans } }), INVALID, /name constraints need too many comparisons$/,
    '257 constraints x 257 names exceed the budget')
  await verifyOk(t, await nc({ permitted: { dns: many.slice(0, 100) } }, { san: { dns: sans.slice(0, 100) } }), '100 x 101 is within it')
})

/** Re-sign `issued` with another AlgorithmIdentifier (both copies) and signature function. */
function resign (issued: Issued, algorithm: string, params: Buffer | undefined, signTbs: (tbs: Buffer) => Buffer): string {
  const cert = AsnConvert.parse(issued.der, ax.Certificate)
  const alg = new ax.AlgorithmIdentifier({ algorithm })
  if (params !== undefined) alg.parameters = new Uint8Array(params).buffer
  cert.tbsCertificate.signature = alg
  cert.signatureAlgorithm = alg
  const tbs = Buffer.from(AsnConvert.serialize(cert.tbsCertificate))
  cert.signatureValue = new Uint8Array(signTbs(tbs)).buffer
  return toPem(Buffer.from(AsnConvert.serialize(cert)))
}

t.test('signature schemes and unusable keys', async (t) => {
  clearSignatureMemo()
  const rsa = await makeChain({ kind: 'rsa2048', intermediates: 0, label: 'Schemes' })
  const ecc = await ec({ intermediates: 0, label: 'Schemes EC' })
  const sha256Alg = hex('300d 0609 608648016503040201 0500')
  const pssParams = (hashAlg: Buffer, mgfHashAlg: Buffer, salt?: number): Buffer => tlv(0x30,
    tlv(0xa0, hashAlg),
    tlv(0xa1, tlv(0x30, hex('0609 2a864886f70d010108'), mgfHashAlg)),
    ...(salt === undefined ? [] : [tlv(0xa2, tlv(0x02, Buffer.from([salt])))]))
  const pss = (key: KeyPair, saltLength: number) => (tbs: Buffer): Buffer =>
    sign('sha256', tbs, { key: key.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength })
  const PSS = '1.2.840.113549.1.1.10'
  const opts = (leaf: string): VerifyOptions => ({ leaf, trustAnchors: rsa.root.pem })

  await verifyOk(t, opts(resign(rsa.leaf, PSS, pssParams(sha256Alg, sha256Alg, 32), pss(rsa.root.key, 32))), 'RSASSA-PSS, SHA-256, salt 32')
  await verifyOk(t, opts(resign(rsa.leaf, PSS, pssParams(sha256Alg, sha256Alg), pss(rsa.root.key, 20))), 'RSASSA-PSS, default salt length 20')
  const untrusted = async (leaf: string, what: string): Promise<void> =>
    verifyFails(t, opts(leaf), 'FST_MTLS_CERT_UNTRUSTED', /no path from "O=Fixture PKI,CN=Schemes leaf"/, what)
  await untrusted(resign(rsa.leaf, PSS, pssParams(sha256Alg, sha256Alg, 20), pss(rsa.root.key, 32)), 'PSS salt length differs from the parameters')
  await untrusted(resign(rsa.leaf, PSS, undefined, pss(rsa.root.key, 32)), 'PSS without parameters')
  await untrusted(resign(rsa.leaf, PSS, pssParams(sha256Alg, sha256Alg, 250), pss(rsa.root.key, 32)), 'PSS salt length too large for the key')
  await untrusted(resign(rsa.leaf, PSS, hex('3000'), pss(rsa.root.key, 20)), 'PSS with SHA-1 defaults')
  const sha512Alg = hex('300d 0609 608648016503040203 0500')
  await untrusted(resign(rsa.leaf, PSS, pssParams(sha256Alg, sha512Alg, 32), pss(rsa.root.key, 32)), 'PSS with an MGF1 hash that differs')
  await untrusted(resign(rsa.leaf, PSS, pssParams(hex('3009 0605 2b0e03021a 0500'), hex('3009 0605 2b0e03021a 0500'), 20), pss(rsa.root.key, 20)), 'PSS with SHA-1')
  await untrusted(resign(rsa.leaf, '1.2.840.113549.1.1.11', hex('0403010203'), (tbs) => sign('sha256', tbs, rsa.root.key.privateKey)), 'RSA PKCS#1 with parameters that are not NULL')
  await untrusted(resign(rsa.leaf, '1.2.840.113549.1.1.99', undefined, (tbs) => sign('sha256', tbs, rsa.root.key.privateKey)), 'unknown signature algorithm')
  await verifyOk(t, opts(resign(rsa.leaf, '1.2.840.113549.1.1.11', undefined, (tbs) => sign('sha256', tbs, rsa.root.key.privateKey))), 'sha256WithRSAEncryption with absent parameters')
  await verifyFails(t, { leaf: resign(ecc.leaf, '1.2.840.10045.4.3.2', hex('0500'), (tbs) => sign('sha256', tbs, ecc.root.key.privateKey)), trustAnchors: ecc.root.pem },
    'FST_MTLS_CERT_UNTRUSTED', /no path from/, 'ECDSA with NULL parameters')
  await verifyFails(t, { leaf: resign(ecc.leaf, '1.2.840.113549.1.1.11', undefined, (tbs) => sign('sha256', tbs, ecc.root.key.privateKey)), trustAnchors: ecc.root.pem },
    'FST_MTLS_CERT_UNTRUSTED', /no path from/, 'an RSA algorithm with an EC issuer key')

  // a public key Node cannot load (a P-256 point off the curve)
  const good = await newKey('ec256', { fresh: true })
  const spkiDer = Buffer.from(good.spkiDer)
  spkiDer[spkiDer.length - 1] = (spkiDer[spkiDer.length - 1] as number) ^ 0x01
  const badKey: KeyPair = { ...good, spkiDer }
  const badLeaf = await issue({ subject: 'CN=bad key leaf', key: badKey, issuer: ecc.root })
  await verifyFails(t, { leaf: badLeaf.pem, trustAnchors: ecc.root.pem }, WEAK, /^"CN=bad key leaf" \(serial [0-9A-F]+\): public key does not load: /,
    'a leaf whose key does not load')
  const badCa = await issue({ subject: 'CN=bad key CA', key: badKey, issuer: ecc.root, ca: true })
  const underBadCa = await issue({ subject: 'CN=under bad key', key: await newKey('ec256'), issuer: badCa, signWith: good })
  await verifyFails(t, { leaf: underBadCa.pem + badCa.pem, trustAnchors: ecc.root.pem }, 'FST_MTLS_CERT_UNTRUSTED', /no path from "CN=under bad key"/,
    'an issuer whose key does not load verifies nothing')
  await verifyOk(t, presented(await ec({ intermediates: 0, leafKind: 'ec384' }), { minRsaBits: 4096 }), 'minRsaBits does not concern EC keys')
})
