// Regression tests from a security review of the verifier: each failed on the code
// as first written. One `t.test` per finding; the comment above each says what the
// attack was and what must happen instead (line numbers refer to that first version).
import t from 'tap'
import { createPublicKey, randomBytes, type KeyObject } from 'node:crypto'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { compilePolicy, verifyCertificateChain } from '../lib/index.js'
import { identityFromPath } from '../lib/identity.js'
import { parseName } from '../lib/der/name.js'
import { parseOne } from '../lib/der/reader.js'
import { getCertificate } from '../lib/der/store.js'
import { usableForSignatures } from '../lib/crypto.js'
import { TrustStore } from '../lib/verify/trust.js'
import { issue, makeChain, makeCrl, newKey, type Issued, type KeyPair } from './helpers/pki.js'

// ---------------------------------------------------------------------------
// 1. DoS (memory): the certificate parse cache (lib/der/store.ts, 4096 entries,
// keyed by SHA-256) keeps every certificate a client presents, BEFORE any
// signature or trust check, and it is bounded by count, not bytes. A
// self-signed junk certificate of ~60 KB holding 20 000 one-byte dNSNames ("-")
// parses into ~20 000 GeneralName objects plus ~20 000 profileErrors strings
// (lib/der/certificate.ts:321-327 pushes one message per bad SAN, although the
// verifier only ever reads profileErrors[0]): ~2.8 MB of heap retained per
// certificate. Changing one byte per request defeats the hash key, so
// 4096 entries x 2.8 MB ~ 11 GB: the process dies long before the LRU evicts.
// Expected: a bounded cost per cached entry (cap the number of names /
// extensions / bytes per certificate, keep one profile error, or bound the cache
// by bytes).
t.test('DoS: parse cache retains megabytes per junk client certificate', async (t) => {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const key = await newKey('ec256')
  const junk = await issue({ subject: 'CN=junk', key, signWith: key, san: { dns: Array.from({ length: 20000 }, () => '-') } })
  const anchors = (await makeChain({ kind: 'ec256' })).root.pem
  const N = 32
  gc()
  const before = process.memoryUsage().heapUsed
  for (let i = 0; i < N; i++) {
    const der = Buffer.from(junk.der)
    der.writeUInt16BE(i, der.length - 2) // another signature, another cache key
    const r = await verifyCertificateChain({ leaf: der, trustAnchors: anchors })
    t.equal(r.ok, false)
  }
  gc()
  const perCert = (process.memoryUsage().heapUsed - before) / N
  t.comment(`DER ${junk.der.length} bytes; heap retained per rejected certificate: ${Math.round(perCert / 1024)} KB; x4096 = ${Math.round(perCert * 4096 / 2 ** 20)} MB`)
  t.ok(perCert * 4096 < 512 * 2 ** 20, 'a full parse cache of hostile certificates stays under 512 MB')
})

// ---------------------------------------------------------------------------
// 2. DoS (CPU): issuer candidates are signature-checked with keys that are
// only checked for modulus <= 16384 bits (lib/crypto.ts:103-107, called from
// lib/verify/chain.ts:68); the strength check (keyWeakness) runs only on
// complete paths. OpenSSL allows an RSA public exponent as large as the modulus
// for moduli <= 3072 bits, so one "verify" with a 3072-bit e is a full modular
// exponentiation (~8.5 ms here, ~60x a normal verify; a 16384-bit modulus with
// a 64-bit e costs ~5 ms). A client presents its leaf plus 10 junk
// "intermediates" named like the leaf's issuer, each with such a key: no
// signatures needed, no trust needed, 10 slow verifies per request; with a
// self-signed DAG of them (signed once, replayed) path building does up to
// MAX_SIGNATURE_CHECKS = 256 (~2 s of CPU per request).
// Expected: refuse a candidate key before any signature check unless it is a
// key that could pass keyWeakness (RSA: minRsaBits <= n <= a sane maximum such
// as 8192, e small, e.g. <= 2^32 or 65537; no DSA); DESIGN.md: "key sizes
// checked before signatures".
t.test('DoS: issuer candidates with huge RSA public exponents are signature-checked', async (t) => {
  const rsaKeyPair = (n: Buffer, e: Buffer): KeyPair => {
    const publicKey: KeyObject = createPublicKey({ key: { kty: 'RSA', n: n.toString('base64url'), e: e.toString('base64url') }, format: 'jwk' })
    const spkiDer = publicKey.export({ type: 'spki', format: 'der' })
    return { kind: 'rsa3072', publicKey, privateKey: publicKey, privateKeyPem: '', publicKeyPem: '', spkiDer, keyId: randomBytes(20) }
  }
  const randomModulus = (): Buffer => {
    const n = randomBytes(384)
    n.fill(0xff, 0, 4) // above any 3072-bit signature value
    n[383] = (n[383] as number) | 1
    return n
  }
  const hugeE = (): Buffer => {
    const e = randomBytes(384)
    e[0] = 0x40
    e[383] = (e[383] as number) | 1
    return e
  }
  const signer = await newKey('ec256')
  // an RSA signature of the candidates' modulus size, or OpenSSL stops before the arithmetic
  const rsaSigner = await newKey('rsa3072')
  const leafKey = await newKey('rsa2048')
  const ISSUER = 'CN=Attacker CA'
  const leaf = await issue({ subject: 'CN=attacker', issuerName: ISSUER, key: leafKey, signWith: rsaSigner, authorityKeyIdentifier: randomBytes(20) })
  const fakes = async (e: () => Buffer): Promise<Issued[]> => Promise.all(Array.from({ length: 10 }, async () =>
    issue({ subject: ISSUER, key: rsaKeyPair(randomModulus(), e()), signWith: signer, ca: true })))
  const slow = await fakes(hugeE)
  const normal = await fakes(() => Buffer.from([1, 0, 1]))
  const anchors = (await makeChain({ kind: 'ec256' })).root.pem
  const time = async (inter: Issued[]): Promise<number> => {
    const start = process.hrtime.bigint()
    const r = await verifyCertificateChain({ leaf: [leaf, ...inter].map((c) => c.pem).join(''), trustAnchors: anchors })
    t.equal(r.ok, false)
    return Number(process.hrtime.bigint() - start) / 1e6
  }
  await time(normal) // warm-up: parse caches
  const tNormal = await time(normal)
  const tSlow = await time(slow)
  t.comment(`10 candidates with e = 65537: ${tNormal.toFixed(1)} ms; with a 3072-bit e: ${tSlow.toFixed(1)} ms`)
  // the property itself, not a timing (timings swing on a shared machine): no huge-exponent key is ever used
  t.ok(slow.every((c) => !usableForSignatures(getCertificate(c.der).publicKey)), 'keys with absurd public exponents are refused before any signature check')
  t.ok(normal.every((c) => usableForSignatures(getCertificate(c.der).publicKey)), 'ordinary keys are used')
})

// ---------------------------------------------------------------------------
// 3. FAIL-OPEN (revocation): lib/verify/chain.ts:221-223 keeps a CRL for an
// issuer only when the CRL's authorityKeyIdentifier equals the issuer
// certificate's subjectKeyIdentifier, and when NO CRL is kept the certificate
// is simply not revocation-checked (`continue`). So the holder of a revoked
// leaf presents another certificate for its issuing CA - same name, same key,
// signed by the same root, but with a different subjectKeyIdentifier (a
// re-issued/renewed or cross-signed CA certificate made by a tool that derives
// key ids differently; SKI values are not bound to the key) - and the
// revoking CRL, whose signature verifies with that very key, is ignored.
// (openssl verify -crl_check_all refuses this path: it will not take a CA
// certificate whose SKI differs from the child's AKI as the issuer.)
// Expected: FST_MTLS_CERT_REVOKED. The AKI is only a hint for choosing a key;
// select CRLs by issuer name and decide by the CRL signature (a same-name CRL
// that does not verify should at most be "unusable", never skip revocation).
t.test('fail-open: revocation skipped through an issuer certificate with another key id', async (t) => {
  const chain = await makeChain({ kind: 'ec256', label: 'review AKI' })
  const int = chain.intermediates[0] as Issued
  const revoking = await makeCrl({ issuer: int, revoked: [{ serial: chain.leaf }] })
  const base = { trustAnchors: chain.root.pem, crls: revoking.pem }
  const normal = await verifyCertificateChain({ ...base, leaf: chain.chainPem })
  t.equal(normal.ok ? 'ok' : normal.code, 'FST_MTLS_CERT_REVOKED', 'with the usual CA certificate the leaf is revoked')
  // the same CA (name, key, issuer) re-issued with another SKI value
  const reissued = await issue({ ...int.spec, serial: undefined, subjectKeyIdentifier: randomBytes(20) })
  const r = await verifyCertificateChain({ ...base, leaf: chain.leaf.pem + reissued.pem })
  t.equal(r.ok ? 'ok' : r.code, 'FST_MTLS_CERT_REVOKED', 'with the re-issued CA certificate the leaf is still revoked')
})

// ---------------------------------------------------------------------------
// 4. FAIL-OPEN (configuration): lib/der/pem.ts:3 and :29-47 silently skip a PEM
// block that does not match (wrong END label, truncated block, a '-' in the
// body) as long as some other block in the same text matches. A CRL bundle in
// which the CRL of one CA is damaged therefore loads "fine" without it, and
// revocation for that CA is skipped altogether (no CRL for an issuer = not
// checked). The same applies to `ca` and `intermediates` bundles (there it is
// only a denial). Expected: any BEGIN line that does not start a well-formed
// block is an InputError (DESIGN.md: anything wrong in new material rejects).
t.test('fail-open: a damaged CRL in a bundle is silently dropped', async (t) => {
  const chain = await makeChain({ kind: 'ec256', label: 'review PEM' })
  const other = await makeChain({ kind: 'ec256', label: 'review PEM other' })
  const int = chain.intermediates[0] as Issued
  const revoking = await makeCrl({ issuer: int, revoked: [{ serial: chain.leaf }] })
  const unrelated = await makeCrl({ issuer: other.intermediates[0] as Issued })
  // a copy-paste error: the END line of the revoking CRL lost its label
  const damaged = revoking.pem.replace('-----END X509 CRL-----', '-----END CRL-----')
  let outcome: string
  try {
    const r = await verifyCertificateChain({ leaf: chain.chainPem, trustAnchors: chain.root.pem, crls: damaged + unrelated.pem })
    outcome = r.ok ? 'accepted' : r.code
  } catch (err) {
    outcome = (err as Error).name
  }
  t.not(outcome, 'accepted', 'a revoked leaf is not accepted because its CRL was mangled')
  t.equal(outcome, 'InputError', 'the damaged bundle is refused as input')
})

// ---------------------------------------------------------------------------
// 5. FAIL-OPEN (name constraints): uriHost (lib/verify/name-constraints.ts:48-53)
// takes everything up to the first '@' as userinfo, backslash included. For
// "https://evil.example\@good.example/" it checks host good.example, while a
// WHATWG URL parser (new URL() in Node and browsers) reads host evil.example
// ('\' ends the authority in special schemes), and RFC 3986 does not allow '\'
// in a URI at all (openssl verify reports "permitted subtree violation"). A CA constrained to URIs on
// good.example can so issue a certificate that applications reading
// identity.san.uri with new URL() attribute to evil.example; the same trick
// slips past an excluded URI subtree.
// Expected: refuse (CHAIN_INVALID) a URI that is not RFC 3986 syntax (at least
// any '\', and any character outside RFC 3986's set in the authority) whenever
// URI constraints apply.
t.test('fail-open: URI name constraint and backslash in the authority', async (t) => {
  const uri = 'https://evil.example\\@good.example/'
  t.equal(new URL(uri).hostname, 'evil.example', 'what applications see')
  const permitted = await makeChain({ kind: 'ec256', label: 'review URI', intermediate: { nameConstraints: { permitted: { uri: ['good.example'] } } }, leaf: { san: { uri: [uri] } } })
  const r1 = await verifyCertificateChain({ leaf: permitted.chainPem, trustAnchors: permitted.root.pem })
  t.equal(r1.ok ? 'ok' : r1.code, 'FST_MTLS_CHAIN_INVALID', 'outside permitted good.example')
  const excluded = await makeChain({ kind: 'ec256', label: 'review URI 2', intermediate: { nameConstraints: { excluded: { uri: ['evil.example'] } } }, leaf: { san: { uri: [uri] } } })
  const r2 = await verifyCertificateChain({ leaf: excluded.chainPem, trustAnchors: excluded.root.pem })
  t.equal(r2.ok ? 'ok' : r2.code, 'FST_MTLS_CHAIN_INVALID', 'inside excluded evil.example')
})

// ---------------------------------------------------------------------------
// 6. CRASH: the verifier accepts names OpenSSL cannot decode (here a BMPString
// holding a lone surrogate, U+D800: lib/der/reader.ts:301-306 decodes it
// without complaint), and never builds node:crypto's X509Certificate while
// verifying. The path verifies, and then every lazy `x509` getter
// (lib/der/certificate.ts:368) throws a plain OpenSSL Error: result.chain,
// identity.certificate, identity.chain - and a compiled policy with
// `issuerSpkiSha256` throws from the predicate itself (lib/policy.ts:584 calls
// identity.chain outside its try). Needs a trusted CA to sign such a name, so
// it is a robustness problem, not an outsider's attack.
// Expected: refuse at parse time what node:crypto cannot load (reject
// BMPString/UniversalString surrogates, or build the X509Certificate for path
// certificates before accepting), and take issuer SPKI hashes from the parsed
// path (ParsedCertificate.spkiSha256), not from X509Certificate.
t.test('crash: a verified chain that node:crypto cannot load', async (t) => {
  const chain = await makeChain({ kind: 'ec256', label: 'review BMP' })
  const int = chain.intermediates[0] as Issued
  const leaf = await issue({ subject: [[{ type: 'CN', value: 'a\ud800b', tag: 'bmp' }]], issuer: int, key: await newKey('ec256') })
  const r = await verifyCertificateChain({ leaf: leaf.pem + int.pem, trustAnchors: chain.root.pem })
  if (!r.ok) {
    t.pass(`refused: ${r.code}`)
    return
  }
  t.doesNotThrow(() => r.chain, 'result.chain can be read')
  const identity = identityFromPath({ path: [getCertificate(leaf.der), getCertificate(int.der), getCertificate(chain.root.der)], trustAnchor: r.trustAnchor, source: 'tls' })
  const policy = compilePolicy({ issuerSpkiSha256: getCertificate(int.der).spkiSha256 })
  t.doesNotThrow(() => policy(identity, {}), 'a policy predicate never throws')
})

// ---------------------------------------------------------------------------
// 7. FAIL-OPEN (low): lib/der/name.ts:33-37 gives a value that is not a
// directory string the key '#<tag><hex of its TLV>', which is also the key of
// a UTF8String whose text is that same '#...'. Two different names then
// compare equal - for issuer lookup (the signature still decides), for
// dirName constraints (lib/der/name.ts:84-91) and for `selfIssued`
// (lib/der/certificate.ts:334), which exempts an intermediate from path-length
// and name constraints. The same collision exists in the public
// `subject.attributes` values a policy matches on (name.ts:58).
// Expected: distinct keys (e.g. prefix string values and raw values with
// different markers that cannot collide).
t.test('fail-open (low): a raw attribute value and a string collide in name keys', async (t) => {
  // SEQUENCE { SET { SEQUENCE { OID 2.5.4.3, <value> } } }
  const name = (value: Buffer): ReturnType<typeof parseName> => {
    const atv = Buffer.concat([Buffer.from('0603550403', 'hex'), value])
    const seq = Buffer.concat([Buffer.from([0x30, atv.length]), atv])
    const set = Buffer.concat([Buffer.from([0x31, seq.length]), seq])
    return parseName(parseOne(Buffer.concat([Buffer.from([0x30, set.length]), set]), 'name'), 'name')
  }
  const raw = name(Buffer.from('0403666f6f', 'hex')) // OCTET STRING 'foo'
  const text = '#40403666f6f'
  const utf8 = name(Buffer.concat([Buffer.from([0x0c, text.length]), Buffer.from(text)]))
  t.not(raw.key, utf8.key, 'OCTET STRING "foo" and UTF8String "#40403666f6f" are different names')
})

// ---------------------------------------------------------------------------
// 8. Policy `anchor` (low): an unlabelled anchor is named by its subject's
// RFC 4514 string (lib/verify/trust.ts:83) and nothing stops a label from
// being that same string, or two unlabelled anchors from having the same
// subject text; `anchor: 'CN=Acme Root'` then admits paths to a CA that is not
// the one meant. Expected: anchor names are unique (refuse a collision at
// construction, or do not let unlabelled anchors be named at all).
t.test('policy anchor names are unique across labelled and unlabelled anchors', async (t) => {
  const a = await makeChain({ kind: 'ec256', label: 'review anchor A' })
  const b = await makeChain({ kind: 'ec256', label: 'review anchor B' })
  const imposter = getCertificate(a.root.der).subject.rfc4514
  t.throws(() => new TrustStore([a.root.pem, { name: imposter, cert: b.root.pem }]), /name|label|twice|already/i,
    `label ${JSON.stringify(imposter)} equals the implicit name of another anchor`)
})
