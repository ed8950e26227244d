// Small core modules: the LRU cache, error constructors, signature schemes and key strength.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { generateKeyPairSync, createPublicKey } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LruCache } from '../lib/cache.js'
import * as errors from '../lib/errors.js'
import { keyWeakness, signatureScheme, usableForSignatures, verifySignature } from '../lib/crypto.js'
import { parseAlgorithmIdentifier } from '../lib/der/certificate.js'
import { DerReader, parseOne } from '../lib/der/reader.js'
import { toDerList } from '../lib/der/pem.js'
import { getCertificate, getCrl, clearParseCache } from '../lib/der/store.js'
import { verifyCertificateChain } from '../lib/index.js'
import { makeChain, makeCrl } from './helpers/pki.js'

t.test('LruCache keeps the most recently used entries', async (t) => {
  const c = new LruCache<string, number>(2)
  c.set('a', 1)
  c.set('b', 2)
  t.equal(c.get('a'), 1, 'a is now the most recent')
  c.set('c', 3)
  t.equal(c.get('b'), undefined, 'b was the least recently used and is gone')
  t.equal(c.get('a'), 1)
  t.equal(c.size, 2)
  t.ok(c.delete('a'))
  t.notOk(c.delete('a'))
  c.clear()
  t.equal(c.size, 0)
  t.throws(() => new LruCache(0), RangeError)
  t.throws(() => new LruCache(1.5), RangeError)
})

t.test('LruCache moves a hit only once it has aged by half the capacity, and never evicts a key read that often', async (t) => {
  const c = new LruCache<string, number>(8)
  for (let i = 0; i < 8; i++) c.set(`k${i}`, i)
  t.same([...c.values()], [0, 1, 2, 3, 4, 5, 6, 7])
  t.equal(c.get('k6'), 6, 'a young hit')
  t.same([...c.values()], [0, 1, 2, 3, 4, 5, 6, 7], 'is not moved')
  t.equal(c.get('k0'), 0, 'an old hit')
  t.same([...c.values()], [1, 2, 3, 4, 5, 6, 7, 0], 'is moved to the young end')
  c.set('k8', 8)
  t.equal(c.get('k1'), undefined, 'the oldest by last move is evicted')
  t.equal(c.get('k0'), 0)
  // a key read every 3 writes (less than max/2 = 4) survives any number of other keys
  for (let i = 9; i < 200; i++) {
    c.set(`k${i}`, i)
    if (i % 3 === 0) t.equal(c.get('k0'), 0, `k0 still there after k${i}`)
  }
  t.equal(c.size, 8)
})

t.test('every rejection code has a constructor with its status and a client message', async (t) => {
  const expected: Record<string, number> = {
    FST_MTLS_CERT_MISSING: 401,
    FST_MTLS_CERT_UNTRUSTED: 401,
    FST_MTLS_CERT_EXPIRED: 401,
    FST_MTLS_CERT_NOT_YET_VALID: 401,
    FST_MTLS_CHAIN_INVALID: 401,
    FST_MTLS_CERT_PURPOSE: 401,
    FST_MTLS_CERT_WEAK: 401,
    FST_MTLS_CERT_REVOKED: 401,
    FST_MTLS_REVOCATION_UNKNOWN: 401,
    FST_MTLS_CERT_MALFORMED: 400,
    FST_MTLS_FORWARDED_UNTRUSTED: 401,
    FST_MTLS_FORBIDDEN: 403,
    FST_MTLS_TOKEN_NOT_BOUND: 401
  }
  t.same(Object.keys(errors.rejectionErrors).sort(), Object.keys(expected).sort())
  for (const [code, status] of Object.entries(expected)) {
    const err = errors.rejectionError(code as keyof typeof expected as never)
    t.equal(err.code, code)
    t.equal(err.statusCode, status, `${code} is ${status}`)
    t.ok(err instanceof Error)
    t.ok(err.message.length > 20, `${code} says what to do`)
  }
  const reload = new errors.MtlsReloadInvalidError('the new CA does not parse')
  t.equal(reload.code, 'FST_MTLS_RELOAD_INVALID')
  t.equal(reload.message, 'Trust material refused: the new CA does not parse')
  t.equal(new errors.MtlsInvalidOptionsError('ca is required').message, 'Invalid fastify-mtls-auth options: ca is required')
})

const alg = (hex: string) => parseAlgorithmIdentifier(parseOne(Buffer.from(hex, 'hex'), 'alg'), 'alg')

t.test('signature schemes', async (t) => {
  t.match(signatureScheme(alg('300d06092a864886f70d01010b0500')), { hash: 'sha256', weak: false }, 'sha256WithRSA, NULL params')
  t.match(signatureScheme(alg('300b06092a864886f70d01010b')), { hash: 'sha256' }, 'sha256WithRSA, absent params')
  t.match(signatureScheme(alg('300d06092a864886f70d0101050500')), { hash: 'sha1', weak: true })
  t.match(signatureScheme(alg('300d06092a864886f70d0101040500')), { hash: 'md5', weak: true })
  t.match(signatureScheme(alg('300a06082a8648ce3d040302')), { hash: 'sha256', keyTypes: ['ec'] })
  t.match(signatureScheme(alg('300c06082a8648ce3d0403020500')), /with parameters/)
  t.match(signatureScheme(alg('300506032b6570')), { hash: null, keyTypes: ['ed25519'] })
  t.match(signatureScheme(alg('300706032b65700500')), /with parameters/)
  t.match(signatureScheme(alg('300f06092a864886f70d01010b0402abcd')), /expected NULL/, 'RSA parameters must be NULL')
  t.match(signatureScheme(alg('300b06092b0601040182370a03')), /unsupported signature algorithm/)
  t.match(signatureScheme(alg('300b0609608648016503040302')), { hash: 'sha256', keyTypes: ['dsa'] })
  // RSASSA-PSS: SHA-256, MGF1-SHA-256, salt 32
  const pss = '3041' + '06092a864886f70d01010a' + '3034' +
    'a00f300d06096086480165030402010500' +
    'a11c301a06092a864886f70d010108300d06096086480165030402010500' +
    'a203020120'
  t.match(signatureScheme(alg(pss)), { hash: 'sha256', pss: { saltLength: 32 } })
  t.match(signatureScheme(alg('300b06092a864886f70d01010a')), /SHA-1 defaults/, 'PSS without parameters')
  const pssMgfSha1 = '3041' + '06092a864886f70d01010a' + '3034' +
    'a00f300d06096086480165030402010500' +
    'a11c301a06092a864886f70d010108300d06096086480165030402030500' +
    'a203020120'
  t.match(signatureScheme(alg(pssMgfSha1)), /MGF1 hash differs/)
})

t.test('key strength', async (t) => {
  const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey
  const rsa2048 = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey
  const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey
  const k256 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey
  const ed = generateKeyPairSync('ed25519').publicKey
  const dsa = generateKeyPairSync('dsa', { modulusLength: 2048, divisorLength: 256 }).publicKey
  const algOf = (k: typeof p256) => parseAlgorithmIdentifier(DerReader.of(parseOne(k.export({ type: 'spki', format: 'der' }), 'spki')).read(), 'spki.algorithm')
  t.match(keyWeakness(algOf(rsa1024), rsa1024, 2048), /1024 bits is below the minimum of 2048/)
  t.equal(keyWeakness(algOf(rsa2048), rsa2048, 2048), undefined)
  t.match(keyWeakness(algOf(rsa2048), rsa2048, 3072), /below the minimum of 3072/)
  t.equal(keyWeakness(algOf(p256), p256, 2048), undefined)
  t.match(keyWeakness(algOf(k256), k256, 2048), /curve secp256k1/)
  t.equal(keyWeakness(algOf(ed), ed, 2048), undefined)
  t.match(keyWeakness(algOf(dsa), dsa, 2048), /dsa keys are not accepted/)
  t.match(keyWeakness({ oid: '1.2.840.10045.2.1', params: Buffer.from('3000', 'hex'), der: Buffer.alloc(0) }, p256, 2048), /explicit curve/)
  t.ok(usableForSignatures(rsa2048))
  t.notOk(usableForSignatures(dsa), 'DSA keys never check signatures')
  // node:crypto will not generate such a key, but imports one
  const bigE = createPublicKey({ key: { ...rsa2048.export({ format: 'jwk' }), e: Buffer.from('0100000001', 'hex').toString('base64url') }, format: 'jwk' })
  t.notOk(usableForSignatures(bigE), 'an RSA exponent above 2^32 is refused before any signature check')
  t.match(keyWeakness(algOf(bigE), bigE, 2048), /public exponent 4294967297/)
  t.notOk(usableForSignatures(generateKeyPairSync('x25519').publicKey), 'key agreement keys never check signatures')
  t.notOk(verifySignature(alg('300a06082a8648ce3d040302'), Buffer.from('x'), Buffer.from('y'), rsa2048), 'ECDSA scheme with an RSA key')
  t.notOk(verifySignature(alg('300b06092b0601040182370a03'), Buffer.from('x'), Buffer.from('y'), rsa2048), 'unsupported scheme')
  t.notOk(verifySignature(alg('300a06082a8648ce3d040302'), Buffer.from('x'), Buffer.from('not DER'), p256), 'garbage signature')
  t.ok(createPublicKey(rsa2048.export({ type: 'spki', format: 'pem' })).equals(rsa2048))
})

t.test('RSASSA-PSS certificates verify (made with the openssl command line)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mtls-pss-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  const pss = ['-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:32', '-sha256']
  writeFileSync(join(dir, 'leaf.ext'), 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n')
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=PSS CA', '-days', '2', ...pss,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=pss-client')
  openssl('x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-out', 'leaf.pem', '-days', '1', '-extfile', 'leaf.ext', '-set_serial', '0x4242', ...pss)
  const r = await verifyCertificateChain({ leaf: readFileSync(join(dir, 'leaf.pem')), trustAnchors: readFileSync(join(dir, 'ca.pem')) })
  t.equal(r.ok, true, r.ok ? '' : `${r.code} ${r.message}`)
  const [leafDer] = toDerList(readFileSync(join(dir, 'leaf.pem')), 'CERTIFICATE', 'leaf')
  t.equal(getCertificate(leafDer!).signatureAlgorithm.oid, '1.2.840.113549.1.1.10', 'the leaf really is RSASSA-PSS signed')
})

t.test('parse caches can be cleared', async (t) => {
  const { root } = await makeChain({ kind: 'ec256', intermediates: 0 })
  const crl = await makeCrl({ issuer: root })
  const a = getCertificate(root.der)
  const c1 = getCrl(crl.der)
  t.equal(getCrl(crl.der), c1, 'CRLs are parsed once')
  clearParseCache()
  t.not(getCertificate(root.der), a, 'parsed again after clearing')
  t.not(getCrl(crl.der), c1)
})
