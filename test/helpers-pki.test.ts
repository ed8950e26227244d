// Checks that the fixture PKI (test/helpers/pki.ts) makes what it claims,
// using OpenSSL's command line and node:crypto as independent readers.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  issue, makeChain, makeCrl, nameDer, newKey, newKeys, signedByWrongKey, tamperSignature, toPem,
  type Issued
} from './helpers/pki.js'

interface Run { status: number | null, stdout: string, stderr: string, out: string }

function openssl (args: string[], input?: string | Buffer): Run {
  const r = spawnSync('openssl', args, { input, encoding: 'utf8' })
  if (r.error !== undefined) throw r.error
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, out: r.stdout + r.stderr }
}

const certText = (c: { pem: string }): string => openssl(['x509', '-noout', '-text'], c.pem).stdout
const crlText = (pem: string): string => openssl(['crl', '-noout', '-text'], pem).stdout

/** Write files into a fresh temporary directory, run fn with their paths, remove them. */
function withFiles<T> (files: Record<string, string | Buffer>, fn: (path: (name: string) => string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'pki-fixture-'))
  try {
    for (const [name, data] of Object.entries(files)) writeFileSync(join(dir, name), data)
    return fn((name) => join(dir, name))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** openssl verify of leaf against root with untrusted intermediates, as a TLS client certificate. */
function verify (root: Issued, intermediates: Issued[], leaf: { pem: string }, extra: string[] = [], files: Record<string, string> = {}): Run {
  return withFiles({
    'root.pem': root.pem,
    'int.pem': intermediates.map((c) => c.pem).join('') || root.pem,
    'leaf.pem': leaf.pem,
    ...files
  }, (p) => openssl(['verify', '-CAfile', p('root.pem'), '-untrusted', p('int.pem'), '-purpose', 'sslclient',
    ...extra.map((a) => a.startsWith('@') ? p(a.slice(1)) : a), p('leaf.pem')]))
}

const colonHex = (b: Buffer): string => b.toString('hex').toUpperCase().replace(/(..)(?!$)/g, '$1:')

t.test('RSA chain root -> intermediate -> leaf, built with node-forge', async (t) => {
  const { root, intermediates, leaf, chainPem } = await makeChain({ intermediates: 1 })
  const [int] = intermediates
  if (int === undefined) throw new Error('no intermediate')
  t.equal(root.builtWith, 'node-forge')
  t.equal(leaf.builtWith, 'node-forge')
  t.match(verify(root, [int], leaf).out, /leaf\.pem: OK/)
  t.equal(chainPem, leaf.pem + int.pem)
  t.ok(leaf.cert.verify(int.cert.publicKey), 'node:crypto verifies the leaf with the intermediate key')
  t.ok(leaf.cert.checkIssued(int.cert))
  t.equal(new Set([root.key, int.key, leaf.key]).size, 3, 'three distinct keys')
  t.equal(leaf.cert.publicKey.asymmetricKeyDetails?.modulusLength, 2048)

  const text = certText(leaf)
  t.match(text, /Signature Algorithm: sha256WithRSAEncryption/)
  t.match(text, /X509v3 Basic Constraints: critical\s+CA:FALSE/)
  t.match(text, /X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment/)
  t.match(text, /X509v3 Extended Key Usage:\s+TLS Web Client Authentication/)
  t.match(text, new RegExp(`X509v3 Authority Key Identifier:\\s+(keyid:)?${colonHex(int.key.keyId)}`))
  t.match(text, new RegExp(`X509v3 Subject Key Identifier:\\s+${colonHex(leaf.key.keyId)}`))
  const rootText = certText(root)
  t.match(rootText, /X509v3 Basic Constraints: critical\s+CA:TRUE\n/)
  t.match(rootText, /X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign/)
  t.notMatch(rootText, /Authority Key Identifier|Extended Key Usage/)
  t.equal(leaf.cert.serialNumber.replace(/^0+/, ''), leaf.serialHex.replace(/^0+/, ''))
  t.ok(Math.abs(new Date(leaf.cert.validFrom).getTime() - (Date.now() - 3600e3)) < 120e3, 'notBefore is now - 1 h')
})

t.test('ECDSA and Ed25519 chains, built with @peculiar/x509', async (t) => {
  const ec = await makeChain({ kind: 'ec256' })
  t.equal(ec.leaf.builtWith, '@peculiar/x509')
  t.equal(ec.leaf.cert.publicKey.asymmetricKeyType, 'ec')
  t.equal(ec.leaf.cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1')
  t.match(certText(ec.leaf), /Signature Algorithm: ecdsa-with-SHA256/)
  t.match(certText(ec.leaf), /X509v3 Key Usage: critical\s+Digital Signature\n/)
  t.match(verify(ec.root, ec.intermediates, ec.leaf).out, /OK/)

  const ed = await makeChain({ kind: 'ed25519', intermediates: 2 })
  t.equal(ed.leaf.cert.publicKey.asymmetricKeyType, 'ed25519')
  t.match(certText(ed.leaf), /Signature Algorithm: ED25519/)
  t.match(verify(ed.root, ed.intermediates, ed.leaf).out, /OK/)

  const p384 = await makeChain({ kind: 'ec384', intermediates: 0 })
  t.equal(p384.leaf.cert.publicKey.asymmetricKeyDetails?.namedCurve, 'secp384r1')
  t.match(certText(p384.leaf), /Signature Algorithm: ecdsa-with-SHA384/)
  t.match(verify(p384.root, [], p384.leaf).out, /OK/)

  // mixed: an RSA CA signing an EC leaf, and an EC CA signing an RSA leaf
  const mixed = await makeChain({ kind: 'rsa2048', leafKind: 'ec256' })
  t.equal(mixed.leaf.builtWith, '@peculiar/x509')
  t.match(certText(mixed.leaf), /Signature Algorithm: sha256WithRSAEncryption[\s\S]*id-ecPublicKey/)
  t.match(verify(mixed.root, mixed.intermediates, mixed.leaf).out, /OK/)
  const mixed2 = await makeChain({ kind: 'ec256', leafKind: 'rsa2048' })
  t.match(verify(mixed2.root, mixed2.intermediates, mixed2.leaf).out, /OK/)
})

t.test('key pool and key kinds', async (t) => {
  const a = await newKey()
  const b = await newKey()
  t.not(a, b, 'consecutive pooled keys differ')
  t.not(await newKey('rsa2048', { fresh: true }), a)
  const distinct = await newKeys('ec256', 5)
  t.equal(new Set(distinct).size, 5)
  const weak = await issue({ subject: 'CN=weak', key: await newKey('rsa1024') })
  t.equal(weak.cert.publicKey.asymmetricKeyDetails?.modulusLength, 1024)
  const strong = await issue({ subject: 'CN=strong', key: await newKey('rsa3072') })
  t.match(certText(strong), /Public-Key: \(3072 bit\)/)
  t.equal(strong.cert.publicKey.export({ type: 'spki', format: 'pem' }), strong.key.publicKeyPem)
})

t.test('basic constraints, path length and key usage', async (t) => {
  const root = await issue({ subject: 'CN=pathlen root', ca: true, pathLen: 0 })
  t.match(certText(root), /CA:TRUE, pathlen:0/)
  const int = await issue({ subject: 'CN=pathlen int', issuer: root, ca: true })
  const leaf = await issue({ subject: 'CN=pathlen leaf', issuer: int })
  t.match(verify(root, [int], leaf).out, /path length constraint exceeded/)
  t.match(verify(root, [], int, ['-purpose', 'any']).out, /OK/, 'one level below the root is fine')

  const noBc = await issue({ subject: 'CN=no bc', issuer: root, basicConstraints: false })
  t.notMatch(certText(noBc), /Basic Constraints/)
  const softBc = await issue({ subject: 'CN=soft bc', issuer: root, ca: true, basicConstraints: { critical: false } })
  t.match(certText(softBc), /X509v3 Basic Constraints: \n\s+CA:TRUE/)

  const ku = await issue({ subject: 'CN=ku', issuer: root, keyUsage: ['keyAgreement', 'decipherOnly'], keyUsageCritical: false, extKeyUsage: ['serverAuth', '1.2.3.4.5'] })
  const kuText = certText(ku)
  t.match(kuText, /X509v3 Key Usage: \n\s+Key Agreement, Decipher Only/)
  t.match(kuText, /TLS Web Server Authentication, 1\.2\.3\.4\.5/)
  const bare = await issue({ subject: 'CN=bare', issuer: root, keyUsage: false, extKeyUsage: false, subjectKeyIdentifier: false, authorityKeyIdentifier: false })
  t.notMatch(certText(bare), /X509v3 (Key Usage|Extended Key Usage|Subject Key Identifier|Authority Key Identifier)/)
  t.equal(bare.subjectKeyId, undefined)
})

t.test('name constraints', async (t) => {
  const root = await issue({
    subject: 'CN=nc root',
    ca: true,
    nameConstraints: {
      permitted: { dns: ['example.com'], ip: ['10.0.0.0/8', 'fd00::/8'], email: ['example.com'], uri: ['.example.com'], dirName: ['O=Acme'] },
      excluded: { dns: ['bad.example.com'], ip: ['10.9.0.0/16'] }
    }
  })
  const text = certText(root)
  t.match(text, /X509v3 Name Constraints: critical\s+Permitted:\s+DNS:example\.com\s+email:example\.com\s+URI:\.example\.com\s+IP:10\.0\.0\.0\/255\.0\.0\.0\s+IP:FD00:0:0:0:0:0:0:0\/FF00:0:0:0:0:0:0:0\s+DirName:O = Acme\s+Excluded:\s+DNS:bad\.example\.com\s+IP:10\.9\.0\.0\/255\.255\.0\.0/)
  const inside = await issue({ subject: 'O=Acme,CN=in', issuer: root, san: { dns: ['a.example.com'], ip: ['10.1.2.3'] } })
  t.match(verify(root, [], inside).out, /OK/)
  const outside = await issue({ subject: 'O=Acme,CN=out', issuer: root, san: { dns: ['a.example.org'] } })
  t.match(verify(root, [], outside).out, /permitted subtree violation/)
  const excluded = await issue({ subject: 'O=Acme,CN=excl', issuer: root, san: { ip: ['10.9.1.1'] } })
  t.match(verify(root, [], excluded).out, /excluded subtree violation/)
  const soft = await issue({ subject: 'CN=soft nc', ca: true, nameConstraints: { excluded: { dns: ['x.test'] }, critical: false } })
  t.match(certText(soft), /X509v3 Name Constraints: \n\s+Excluded:\s+DNS:x\.test/)
})

t.test('subject alternative names', async (t) => {
  const c = await issue({
    subject: [],
    sanCritical: true,
    san: {
      dns: ['a.example.com'],
      email: ['x@example.com'],
      uri: ['spiffe://example.org/ns/a/sa/b'],
      ip: ['192.0.2.1', '2001:db8::1', '::ffff:192.0.2.2'],
      dirName: [[[{ type: 'CN', value: 'dir' }]]]
    }
  })
  const text = certText(c)
  t.match(text, /Subject: \n|Subject:\s*\n/, 'empty subject')
  t.match(text, /X509v3 Subject Alternative Name: critical\s+DNS:a\.example\.com, email:x@example\.com, URI:spiffe:\/\/example\.org\/ns\/a\/sa\/b, IP Address:192\.0\.2\.1, IP Address:2001:DB8:0:0:0:0:0:1, IP Address:0:0:0:0:0:FFFF:C000:202, DirName:(\/CN=dir|CN = dir)/)
  t.equal(c.cert.subjectAltName?.includes('IP Address:2001:DB8:0:0:0:0:0:1'), true)
})

t.test('names: multi-valued RDNs, string types and injection characters survive byte for byte', async (t) => {
  const nasty = 'a,b+c="d"\n\u0000e\\ é'
  const subject = [
    [{ type: 'C', value: 'US' }],
    [{ type: 'CN', value: nasty }, { type: 'O', value: 'x' }],
    [{ type: 'OU', value: 'bmp ü', tag: 'bmp' as const }],
    [{ type: 'OU', value: 'tele\u00e9', tag: 'teletex' as const }],
    [{ type: 'emailAddress', value: 'a@b.example' }],
    [{ type: '2.5.4.97', value: 'VATDE-1', tag: 'printable' as const }]
  ]
  const c = await issue({ subject, ca: true })
  t.ok(c.der.includes(Buffer.concat([Buffer.from([0x0c, Buffer.byteLength(nasty)]), Buffer.from(nasty, 'utf8')])),
    'the CN is one UTF8String with its bytes unchanged')
  t.ok(c.der.includes(c.subjectDer))
  const parsed = openssl(['asn1parse', '-inform', 'DER'], c.subjectDer).stdout
  t.match(parsed, /SET\s*\n.*SEQUENCE\s*\n.*OBJECT\s+:countryName\s*\n.*PRINTABLESTRING\s+:US/)
  t.match(parsed, /d=1 .*SET\s*\n.*d=2 .*SEQUENCE\s*\n.*:organizationName\s*\n.*:x\s*\n.*d=2 .*SEQUENCE\s*\n.*:commonName/,
    'O and CN in one SET, in DER order')
  t.ok(c.der.includes(Buffer.from('1e0a0062006d0070002000fc', 'hex')), 'BMPString in UTF-16BE')
  t.ok(c.der.includes(Buffer.from('140574656c65e9', 'hex')), 'T61String octets as given')
  t.match(parsed, /T61STRING/)
  t.match(parsed, /IA5STRING\s+:a@b\.example/)
  t.match(parsed, /organizationIdentifier\s*\n.*PRINTABLESTRING\s+:VATDE-1/)
  t.match(c.cert.subject, /\+/, 'node:crypto shows the multi-valued RDN')
  t.match(openssl(['x509', '-noout', '-subject', '-nameopt', 'RFC2253'], c.pem).stdout, /CN=a\\,b\\\+c=\\"d\\"\\0A\\00e\\\\ \\C3\\A9\+O=x,/)

  // string form: DER order as written, escapes, '+'
  t.same(nameDer('CN=leaf,O=Acme'), nameDer([[{ type: 'CN', value: 'leaf' }], [{ type: 'O', value: 'Acme' }]]))
  t.same(nameDer('CN=a\\,b+O=c\\2Bd'), nameDer([[{ type: 'CN', value: 'a,b' }, { type: 'O', value: 'c+d' }]]))
  t.same(nameDer(''), Buffer.from('3000', 'hex'))
  t.throws(() => nameDer('CN'))
  t.throws(() => nameDer('XX=1'))

  // the issuer field copies the issuer's subject bytes
  const child = await issue({ subject: 'CN=child', issuer: c })
  t.ok(child.der.includes(c.subjectDer))
  t.ok(child.cert.checkIssued(c.cert))
  const renamed = await issue({ subject: 'CN=renamed', issuer: c, issuerName: 'CN=someone else' })
  t.match(certText(renamed), /Issuer: CN = someone else/)
})

t.test('extensions: unknown critical, duplicates, CRL distribution points', async (t) => {
  const root = await issue({ subject: 'CN=ext root', ca: true })
  const unknown = await issue({
    subject: 'CN=unknown critical',
    issuer: root,
    extraExtensions: [{ oid: '1.3.6.1.4.1.99999.1', critical: true, valueDer: Buffer.from('0500', 'hex') }]
  })
  t.match(certText(unknown), /1\.3\.6\.1\.4\.1\.99999\.1: critical/)
  t.match(verify(root, [], unknown).out, /unhandled critical extension|unsupported certificate extension/)

  const dup = await issue({
    subject: 'CN=duplicate',
    issuer: root,
    extraExtensions: [{ oid: '2.5.29.19', critical: true, valueDer: Buffer.from('30030101ff', 'hex') }]
  })
  t.equal(certText(dup).match(/X509v3 Basic Constraints/g)?.length, 2)
  t.not(verify(root, [], dup).status, 0, 'OpenSSL refuses a duplicate extension')

  const dp = await issue({ subject: 'CN=dp', issuer: root, crlDistributionPoints: ['http://crl.example/ca.crl'] })
  t.match(certText(dp), /X509v3 CRL Distribution Points:\s+Full Name:\s+URI:http:\/\/crl\.example\/ca\.crl/)
  const ski = await issue({ subject: 'CN=ski', issuer: root, subjectKeyIdentifier: Buffer.from('0102', 'hex'), authorityKeyIdentifier: Buffer.from('0304', 'hex') })
  t.match(certText(ski), /Subject Key Identifier:\s+01:02[\s\S]*Authority Key Identifier:\s+(keyid:)?03:04|Authority Key Identifier:\s+(keyid:)?03:04[\s\S]*Subject Key Identifier:\s+01:02/)
})

t.test('signatures: weak hashes, tampering, wrong key', async (t) => {
  const root = await issue({ subject: 'CN=sig root', ca: true })
  const sha1 = await issue({ subject: 'CN=sha1', issuer: root, signatureHash: 'sha1' })
  t.match(certText(sha1), /Signature Algorithm: sha1WithRSAEncryption/)
  const md5 = await issue({ subject: 'CN=md5', issuer: root, signatureHash: 'md5' })
  t.match(certText(md5), /Signature Algorithm: md5WithRSAEncryption/)
  t.ok(md5.cert.verify(root.cert.publicKey), 'the MD5 signature is genuine')
  const ecRoot = await issue({ subject: 'CN=ec sig root', ca: true, key: await newKey('ec256') })
  const ecSha1 = await issue({ subject: 'CN=ec sha1', issuer: ecRoot, key: await newKey('ec256'), signatureHash: 'sha1' })
  t.match(certText(ecSha1), /Signature Algorithm: ecdsa-with-SHA1/)
  t.ok(ecSha1.cert.verify(ecRoot.cert.publicKey))
  await t.rejects(issue({ subject: 'CN=ec md5', issuer: ecRoot, signatureHash: 'md5' }), /MD5/)

  for (const kind of ['rsa2048', 'ec256', 'ed25519'] as const) {
    const { root: r, leaf } = await makeChain({ kind, intermediates: 0 })
    const bad = tamperSignature(leaf)
    t.equal(bad.der.length, leaf.der.length)
    t.equal(bad.der.compare(leaf.der), leaf.der.at(-1)! & 1 ? -1 : 1)
    t.match(verify(r, [], bad).out, /certificate signature failure|signature/i, `${kind}: tampered signature fails`)
    const wrong = await signedByWrongKey(leaf)
    t.equal(wrong.serialHex, leaf.serialHex)
    t.same(wrong.subjectDer, leaf.subjectDer)
    t.equal(wrong.cert.issuer, leaf.cert.issuer)
    t.notOk(wrong.cert.verify(r.cert.publicKey), `${kind}: wrong-key signature does not verify`)
    t.match(verify(r, [], wrong).out, /certificate signature failure/)
  }
})

t.test('validity, serials and versions', async (t) => {
  const root = await issue({ subject: 'CN=time root', ca: true })
  const day = 86400e3
  const expired = await issue({ subject: 'CN=expired', issuer: root, notBefore: new Date(Date.now() - 10 * day), notAfter: new Date(Date.now() - day) })
  t.match(verify(root, [], expired).out, /certificate has expired/)
  const future = await issue({ subject: 'CN=future', issuer: root, notBefore: new Date(Date.now() + day), notAfter: new Date(Date.now() + 10 * day) })
  t.match(verify(root, [], future).out, /certificate is not yet valid/)
  const y2050 = await issue({ subject: 'CN=2050', issuer: root, notAfter: new Date(Date.UTC(2051, 0, 1)) })
  t.match(y2050.cert.validTo, /2051/)

  const big = await issue({ subject: 'CN=serial', issuer: root, serial: 0x80n })
  t.equal(big.serialHex, '0080')
  const neg = await issue({ subject: 'CN=negative', issuer: root, serial: -1n })
  t.equal(neg.serialHex, 'FF')
  t.match(certText(neg), /Serial Number: -1 \(-0x1\)|\(Negative\)/)
  const raw = await issue({ subject: 'CN=raw', issuer: root, serial: '00:00:01' })
  t.equal(raw.serialHex, '000001', 'a hex serial is written as given (forge path)')
  const ecSerial = await issue({ subject: 'CN=ec serial', issuer: root, key: await newKey('ec256'), serial: 'FF01' })
  t.equal(ecSerial.serialHex, '00FF01', '@peculiar/x509 makes serials positive')

  const v1 = await issue({ subject: 'CN=v1', issuer: root, version: 1 })
  const v1Text = certText(v1)
  t.match(v1Text, /Version: 1 \(0x0\)/)
  t.notMatch(v1Text, /X509v3/)
  t.ok(v1.cert.verify(root.cert.publicKey))
  await t.rejects(issue({ subject: 'CN=v1 ec', key: await newKey('ec256'), version: 1 }), /version 1/)

  // a self-signed leaf and a cross-signed CA
  const selfLeaf = await issue({ subject: 'CN=self leaf' })
  t.ok(selfLeaf.cert.verify(selfLeaf.cert.publicKey))
  t.equal(selfLeaf.cert.issuer, selfLeaf.cert.subject)
  const other = await issue({ subject: 'CN=other root', ca: true })
  const cross = await issue({ ...root.spec, issuer: other, serial: undefined })
  t.same(cross.subjectDer, root.subjectDer)
  t.equal(cross.key, root.key)
  t.ok(cross.cert.verify(other.cert.publicKey))
})

t.test('CRLs', async (t) => {
  const { root, intermediates: [int], leaf } = await makeChain()
  if (int === undefined) throw new Error('no intermediate')
  const crl = await makeCrl({ issuer: int, revoked: [{ serial: leaf, reason: 1 }, { serial: 0x1234n }], crlNumber: 7 })
  const text = crlText(crl.pem)
  t.match(text, new RegExp(`Serial Number: ${leaf.serialHex}`))
  t.match(text, /Serial Number: 1234/)
  t.match(text, /Key Compromise/)
  t.match(text, /X509v3 CRL Number:\s+7/)
  t.match(text, new RegExp(`Authority Key Identifier:\\s+(keyid:)?${colonHex(int.key.keyId)}`))
  t.match(text, /Next Update: /)
  t.ok(crl.der.includes(int.subjectDer), 'the CRL issuer copies the CA subject bytes')
  withFiles({ 'int.pem': int.pem, 'crl.pem': crl.pem, 'chain.pem': root.pem + int.pem }, (p) => {
    t.match(openssl(['crl', '-in', p('crl.pem'), '-CAfile', p('int.pem'), '-noout']).out, /verify OK/)
  })
  const rootCrl = await makeCrl({ issuer: root })
  t.match(verify(root, [int], leaf, ['-crl_check', '-CRLfile', '@crls.pem'], { 'crls.pem': crl.pem + rootCrl.pem }).out,
    /certificate revoked/)
  const emptyCrl = await makeCrl({ issuer: int })
  t.match(verify(root, [int], leaf, ['-crl_check_all', '-CRLfile', '@crls.pem'], { 'crls.pem': emptyCrl.pem + rootCrl.pem }).out,
    /leaf\.pem: OK/)

  const special = await makeCrl({
    issuer: int,
    nextUpdate: null,
    deltaCrlIndicator: 6,
    crlNumber: 8,
    issuingDistributionPoint: { uri: 'http://crl.example/int.crl', onlyContainsUserCerts: true, onlySomeReasons: ['keyCompromise', 'cACompromise'] }
  })
  const specialText = crlText(special.pem)
  t.match(specialText, /Next Update: NONE/)
  t.match(specialText, /X509v3 Delta CRL Indicator: critical\s+6/)
  t.match(specialText, /X509v3 Issuing Distribution Point: critical\s+Full Name:\s+URI:http:\/\/crl\.example\/int\.crl\s+Only User Certificates\s+Only Some Reasons:\s+Key Compromise, CA Compromise/)
  t.match(specialText, /No Revoked Certificates/)

  const ecChain = await makeChain({ kind: 'ec256', intermediates: 0 })
  const ecCrl = await makeCrl({ issuer: ecChain.root, revoked: [{ serial: ecChain.leaf }] })
  t.match(crlText(ecCrl.pem), /Signature Algorithm: ecdsa-with-SHA256/)
  const badCrl = await makeCrl({ issuer: ecChain.root, signWith: await newKey('ec256', { fresh: true }) })
  withFiles({ 'ca.pem': ecChain.root.pem, 'ok.pem': ecCrl.pem, 'bad.pem': badCrl.pem }, (p) => {
    t.match(openssl(['crl', '-in', p('ok.pem'), '-CAfile', p('ca.pem'), '-noout']).out, /verify OK/)
    t.match(openssl(['crl', '-in', p('bad.pem'), '-CAfile', p('ca.pem'), '-noout']).out, /verify failure/)
  })
  const stale = await makeCrl({ issuer: ecChain.root, thisUpdate: new Date(Date.now() - 10 * 86400e3), nextUpdate: new Date(Date.now() - 86400e3) })
  t.match(verify(ecChain.root, [], ecChain.leaf, ['-crl_check', '-CRLfile', '@crl.pem'], { 'crl.pem': stale.pem }).out, /CRL has expired/)
})

t.test('toPem wraps at 64 columns', async (t) => {
  const pem = toPem(Buffer.alloc(100, 1), 'THING')
  t.match(pem, /^-----BEGIN THING-----\n([A-Za-z0-9+/]{64}\n){2}[A-Za-z0-9+/=]{8}\n-----END THING-----\n$/)
})
