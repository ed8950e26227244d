// lib/pki (the public development PKI, fastify-mtls-auth/pki): every key type, checked
// by node:crypto, by the plugin's own verifier, by OpenSSL and over real TLS.
import 'reflect-metadata'
import t, { type Test } from 'tap'
import { Buffer } from 'node:buffer'
import { execFile } from 'node:child_process'
import { createPublicKey, X509Certificate } from 'node:crypto'
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls, { type TLSSocket } from 'node:tls'
import * as x509 from '@peculiar/x509'
import {
  createCertificate, createCrl, createCsr, createDevPki, createPkcs12, generateKey, issueClient, loadCertificate, loadKey,
  PkiError, readCsr, signCsr, type KeyType
} from '../lib/pki/index.js'
import { verifyCertificateChain } from '../lib/index.js'
import { issue, newKey } from './helpers/pki.js'

const KEY_TYPES: KeyType[] = ['ec', 'rsa', 'ed25519']

const tmp = await mkdtemp(join(tmpdir(), 'pki-test-'))
t.teardown(() => rm(tmp, { recursive: true, force: true }))

function run (cmd: string, args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr })
    })
  })
}

let fileCounter = 0
async function tmpFile (data: string | Buffer, ext: string): Promise<string> {
  const path = join(tmp, `f${++fileCounter}.${ext}`)
  await writeFile(path, data)
  return path
}

const pkis = new Map(await Promise.all(KEY_TYPES.map(async (type) => [type, await createDevPki({ keyType: type })] as const)))
const pkiOf = (type: KeyType) => pkis.get(type) as Awaited<ReturnType<typeof createDevPki>>

for (const type of KEY_TYPES) {
  t.test(`${type}: dev PKI and a client certificate verify with node:crypto and the plugin's verifier`, async (t) => {
    const steps: string[] = []
    const pki = await createDevPki({ keyType: type, onProgress: (s) => steps.push(s) })
    t.equal(steps.length, 3, 'one progress line per key')
    t.ok(steps.every((s) => s.includes(type)))
    const { root, clientCa, server } = pki
    t.equal(root.key?.type, type)
    const client = await issueClient(pki, { cn: 'alice', o: 'Acme', ou: ['Eng', 'Ops'], spiffe: 'spiffe://example.org/alice', altNames: { dns: ['alice.example'] } })
    t.equal(client.key.type, type, 'the client key defaults to the CA key type')
    const [xRoot, xCa, xServer, xLeaf] = [root, clientCa, server, client].map((c) => new X509Certificate(c.der)) as X509Certificate[]
    t.ok(xRoot?.verify(xRoot.publicKey), 'root self-signed')
    t.ok(xCa?.verify(xRoot!.publicKey), 'client CA signed by the root')
    t.ok(xServer?.verify(xRoot!.publicKey), 'server signed by the root')
    t.ok(xLeaf?.verify(xCa!.publicKey), 'client signed by the client CA')
    t.notOk(xLeaf?.verify(xRoot!.publicKey), 'and not by the root')
    t.ok(xRoot?.ca)
    t.ok(xCa?.ca)
    t.notOk(xLeaf?.ca)
    t.equal(xServer?.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1')
    t.equal(xLeaf?.subjectAltName, 'DNS:alice.example, URI:spiffe://example.org/alice')
    t.equal(client.subject, 'CN=alice,OU=Ops,OU=Eng,O=Acme')
    t.equal(client.fingerprint256, xLeaf?.fingerprint256)
    t.equal(client.serialHex, xLeaf?.serialNumber.toUpperCase())
    t.equal(client.notBefore.getTime(), new Date(xLeaf!.validFrom).getTime())
    t.ok(client.notBefore.getTime() < Date.now(), 'notBefore in the past')
    t.equal(Math.round((client.notAfter.getTime() - client.notBefore.getTime()) / 86400e3), 397, 'a leaf: 397 days')
    t.equal(Math.round((root.notAfter.getTime() - root.notBefore.getTime()) / 86400e3), 3650, 'a CA: 3650 days')
    t.equal(client.chainPem, client.pem + clientCa.pem)
    t.equal(client.key.privateKeyPem.split('\n')[0], '-----BEGIN PRIVATE KEY-----', 'PKCS#8')

    const ok = await verifyCertificateChain({ leaf: client.chainPem, trustAnchors: root.pem })
    t.equal(ok.ok, true, 'client chain to the root')
    const toCa = await verifyCertificateChain({ leaf: client.pem, trustAnchors: clientCa.pem })
    t.equal(toCa.ok, true, 'client to the client CA as anchor')
    const serverOk = await verifyCertificateChain({ leaf: server.pem, trustAnchors: root.pem, purpose: 'serverAuth' })
    t.equal(serverOk.ok, true, 'server certificate for serverAuth')
    const serverAsClient = await verifyCertificateChain({ leaf: server.pem, trustAnchors: root.pem })
    t.match(serverAsClient, { ok: false, code: 'FST_MTLS_CERT_PURPOSE' }, 'the server certificate is no client certificate')
    const caAsClient = await verifyCertificateChain({ leaf: clientCa.pem, trustAnchors: root.pem })
    t.match(caAsClient, { ok: false }, 'nor is the client CA')

    const openssl = await run('openssl', ['verify', '-purpose', 'sslclient', '-CAfile', await tmpFile(root.pem, 'pem'), '-untrusted', await tmpFile(clientCa.pem, 'pem'), await tmpFile(client.pem, 'pem')])
    t.equal(openssl.code, 0, openssl.stderr)
    t.match(openssl.stdout, /: OK$/m)
  })
}

t.test('two dev PKIs never share CA names', async (t) => {
  t.not(pkiOf('ec').root.subject, (await createDevPki()).root.subject)
})

t.test('generateKey: types, sizes, refusals', async (t) => {
  const rsa = await generateKey('rsa', { rsaBits: 3072 })
  t.equal(rsa.publicKey.asymmetricKeyDetails?.modulusLength, 3072)
  t.equal((await generateKey()).type, 'ec', 'ec by default')
  t.equal((await generateKey('ec')).publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1')
  t.equal((await generateKey('rsa')).publicKey.asymmetricKeyDetails?.modulusLength, 2048)
  await t.rejects(generateKey('rsa', { rsaBits: 1024 }), PkiError)
  await t.rejects(generateKey('dsa' as KeyType), { name: 'PkiError', message: /unknown key type "dsa"/ })
  const loaded = loadKey(rsa.privateKeyPem)
  t.equal(loaded.type, 'rsa')
  t.throws(() => loadKey('not a key'), PkiError)
})

t.test('createCertificate: options, dates and refusals', async (t) => {
  const root = pkiOf('ec').root
  const ca = await createCertificate({ subject: { cn: 'Sub CA', o: 'Acme', c: 'de', st: 'Berlin', l: 'Berlin' }, issuer: root, ca: { pathLength: 0 }, crlDistributionPoints: ['http://127.0.0.1/ca.crl'] })
  t.equal(ca.subject, 'CN=Sub CA,O=Acme,L=Berlin,ST=Berlin,C=DE')
  const parsed = new x509.X509Certificate(ca.der)
  t.equal(parsed.getExtension(x509.BasicConstraintsExtension)?.pathLength, 0)
  t.equal(parsed.getExtension(x509.BasicConstraintsExtension)?.ca, true)
  t.equal(parsed.getExtension(x509.ExtendedKeyUsageExtension), null, 'a CA has no EKU by default')
  t.ok(parsed.getExtension('2.5.29.31'), 'CRL distribution points written')

  const server = await createCertificate({ subject: { cn: 'both' }, issuer: ca, extKeyUsage: ['serverAuth', 'clientAuth'], altNames: { ip: ['10.0.0.1', 'fd00::1'], uri: ['https://example.org/x'], email: ['a@example.org'] } })
  t.same(new x509.X509Certificate(server.der).getExtension(x509.ExtendedKeyUsageExtension)?.usages, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'])
  t.equal(new X509Certificate(server.der).subjectAltName, 'email:a@example.org, URI:https://example.org/x, IP Address:10.0.0.1, IP Address:FD00:0:0:0:0:0:0:1')
  const noEku = await createCertificate({ subject: { cn: 'no eku' }, issuer: ca, extKeyUsage: [] })
  t.equal(new x509.X509Certificate(noEku.der).getExtension(x509.ExtendedKeyUsageExtension), null, '[] writes no EKU')
  t.equal(server.key?.type, 'ec', 'a fresh EC key when none is given')

  const selfSigned = await createCertificate({ subject: { cn: 'self' } })
  t.ok(new X509Certificate(selfSigned.der).verify(new X509Certificate(selfSigned.der).publicKey))
  t.match(await verifyCertificateChain({ leaf: selfSigned.pem, trustAnchors: root.pem }), { ok: false, code: 'FST_MTLS_CERT_UNTRUSTED' })

  const pki = pkiOf('ec')
  const expired = await issueClient(pki, { cn: 'old', notBefore: new Date(Date.now() - 10 * 86400e3), notAfter: new Date(Date.now() - 86400e3) })
  t.match(await verifyCertificateChain({ leaf: expired.chainPem, trustAnchors: pki.root.pem }), { ok: false, code: 'FST_MTLS_CERT_EXPIRED' })
  const future = await issueClient(pki, { cn: 'new', notBefore: new Date(Date.now() + 86400e3), days: 2 })
  t.match(await verifyCertificateChain({ leaf: future.chainPem, trustAnchors: pki.root.pem }), { ok: false, code: 'FST_MTLS_CERT_NOT_YET_VALID' })
  t.equal(future.notAfter.getTime() - future.notBefore.getTime(), 2 * 86400e3, 'days count from notBefore')
  const short = await issueClient(pki, { cn: 'short', days: 1, keyType: 'ed25519' })
  t.equal(short.key.type, 'ed25519')
  t.equal((await verifyCertificateChain({ leaf: short.chainPem, trustAnchors: pki.root.pem })).ok, true, 'an Ed25519 leaf under an EC CA')

  await t.rejects(createCertificate({ subject: {} }), { name: 'PkiError', message: /at least one attribute/ })
  await t.rejects(createCertificate({ subject: { cn: 'x', c: 'Germany' } }), { name: 'PkiError', message: /two-letter/ })
  await t.rejects(createCertificate({ subject: { cn: 'x' }, altNames: { ip: ['localhost'] } }), { name: 'PkiError', message: /not an IP address/ })
  await t.rejects(createCertificate({ subject: { cn: 'x' }, days: 0 }), { name: 'PkiError', message: /days/ })
  await t.rejects(createCertificate({ subject: { cn: 'x' }, notBefore: new Date(), notAfter: new Date(Date.now() - 1000) }), { name: 'PkiError', message: /after notBefore/ })
  await t.rejects(createCertificate({ subject: { cn: 'x' }, issuer: { ...root } }), { name: 'PkiError', message: /from this module/ }, 'a look-alike issuer')
  const withoutKey = loadCertificate(root.pem)
  await t.rejects(createCertificate({ subject: { cn: 'x' }, issuer: withoutKey }), { name: 'PkiError', message: /does not carry its private key/ })
  await t.rejects(createCertificate({ subject: { cn: 'x' }, extKeyUsage: ['codeSigning' as 'clientAuth'] }), { name: 'PkiError', message: /extKeyUsage/ })
  await t.rejects(issueClient(pki, { cn: 'x', spiffe: 'https://example.org' }), { name: 'PkiError', message: /spiffe:\/\// })
})

t.test('loadCertificate: a CA read back from PEM signs, a wrong key is refused', async (t) => {
  const pki = pkiOf('rsa')
  const clientCaKey = pki.clientCa.key
  if (clientCaKey === undefined) throw new Error('client CA without key')
  const loadedCa = loadCertificate(pki.clientCa.pem, loadKey(clientCaKey.privateKeyPem))
  t.equal(loadedCa.subject, pki.clientCa.subject)
  t.equal(loadedCa.fingerprint256, pki.clientCa.fingerprint256)
  const leaf = await createCertificate({ subject: { cn: 'from loaded' }, issuer: loadedCa, key: await generateKey('rsa') })
  t.equal((await verifyCertificateChain({ leaf: leaf.pem, intermediates: pki.clientCa.pem, trustAnchors: pki.root.pem })).ok, true, 'RSA by RSA (node-forge path)')
  t.throws(() => loadCertificate(pki.clientCa.pem, pki.root.key), { name: 'PkiError', message: /does not match/ })
  t.throws(() => loadCertificate('nope'), PkiError)
})

t.test('CSR: create, read, sign with the signer\'s names only', async (t) => {
  for (const type of KEY_TYPES) {
    const pki = pkiOf(type)
    const key = await generateKey(type)
    const csr = await createCsr({ subject: { cn: 'mallory', o: 'Evil' }, key, altNames: { dns: ['admin.example'], uri: ['spiffe://example.org/admin'] } })
    t.match(csr, /^-----BEGIN CERTIFICATE REQUEST-----\n/)
    const verified = await run('openssl', ['req', '-in', await tmpFile(csr, 'csr'), '-noout', '-verify'])
    t.equal(verified.code, 0, `${type}: openssl req -verify`)
    t.match(verified.stdout + verified.stderr, /verify OK/)
    const info = await readCsr(csr)
    t.equal(info.subject, 'CN=mallory,O=Evil')
    t.equal(info.keyType, type)
    t.same(info.altNames, { dns: ['admin.example'], ip: [], uri: ['spiffe://example.org/admin'], email: [] })
    t.ok(info.publicKey.equals(key.publicKey))

    const cert = await signCsr(Buffer.from(csr), { issuer: pki.clientCa, subject: { cn: 'bob', o: 'Partner' }, altNames: { dns: ['bob.example'] } })
    t.equal(cert.subject, 'CN=bob,O=Partner', `${type}: the subject is the signer's`)
    const x = new X509Certificate(cert.der)
    t.equal(x.subjectAltName, 'DNS:bob.example', 'no name copied from the CSR')
    t.ok(x.publicKey.equals(key.publicKey), 'the CSR\'s public key')
    t.equal(cert.key, undefined, 'we do not hold the requester\'s key')
    t.equal((await verifyCertificateChain({ leaf: cert.pem, intermediates: pki.clientCa.pem, trustAnchors: pki.root.pem })).ok, true)
    const noNames = await signCsr(csr, { issuer: pki.clientCa, subject: { cn: 'carol' } })
    t.equal(new X509Certificate(noNames.der).subjectAltName, undefined, 'no SAN at all unless the signer gives one')
  }
})

t.test('CSR: tampered or not a CSR is refused', async (t) => {
  const pki = pkiOf('ec')
  const csr = await createCsr({ subject: { cn: 'alice' }, key: await generateKey('ec') })
  const der = Buffer.from(csr.replace(/-----[^-]+-----/g, '').replace(/\s/g, ''), 'base64')
  const cnAt = der.indexOf(Buffer.from('alice'))
  t.ok(cnAt > 0)
  const renamed = Buffer.from(der)
  renamed.write('admin', cnAt)
  const toPem = (d: Buffer) => `-----BEGIN CERTIFICATE REQUEST-----\n${d.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`
  await t.rejects(readCsr(toPem(renamed)), { name: 'PkiError', message: /signature does not verify/ }, 'subject changed after signing')
  await t.rejects(signCsr(toPem(renamed), { issuer: pki.clientCa, subject: { cn: 'admin' } }), { name: 'PkiError', message: /signature does not verify/ })
  const flipped = Buffer.from(der)
  flipped[flipped.length - 1] = (flipped[flipped.length - 1] as number) ^ 1
  await t.rejects(readCsr(toPem(flipped)), { name: 'PkiError', message: /signature does not verify/ }, 'signature bit flipped')
  await t.rejects(readCsr(pki.root.pem), { name: 'PkiError', message: /not a certificate signing request/ })
  await t.rejects(readCsr('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n'), { name: 'PkiError', message: /does not parse/ })
  await t.rejects(signCsr(csr, {} as never), PkiError)
})

t.test('CRL: OpenSSL reads it, the plugin\'s verifier reports FST_MTLS_CERT_REVOKED', async (t) => {
  for (const type of KEY_TYPES) {
    const pki = pkiOf(type)
    const revoked = await issueClient(pki, { cn: 'revoked' })
    const good = await issueClient(pki, { cn: 'good' })
    const crl = await createCrl({ issuer: pki.clientCa, revoked: [{ serialHex: revoked.serialHex, reason: 'keyCompromise' }, { serialHex: 'de:ad:be:ef' }], crlNumber: 42n })
    t.match(crl.pem, /^-----BEGIN X509 CRL-----\n/)
    const crlFile = await tmpFile(crl.pem, 'pem')
    const text = await run('openssl', ['crl', '-in', crlFile, '-noout', '-text'])
    t.equal(text.code, 0, `${type}: openssl crl -text`)
    t.match(text.stdout, new RegExp(`Serial Number: ${revoked.serialHex}`))
    t.match(text.stdout, /Serial Number: DEADBEEF/)
    t.match(text.stdout, /Key Compromise/)
    t.match(text.stdout, /X509v3 CRL Number: \n\s+42/)
    const sig = await run('openssl', ['crl', '-in', crlFile, '-noout', '-CAfile', await tmpFile(pki.clientCa.pem, 'pem')])
    t.match(sig.stdout + sig.stderr, /verify OK/, 'signed by the client CA')
    t.match(await verifyCertificateChain({ leaf: revoked.chainPem, trustAnchors: pki.root.pem, crls: crl.der }), { ok: false, code: 'FST_MTLS_CERT_REVOKED' })
    t.equal((await verifyCertificateChain({ leaf: good.chainPem, trustAnchors: pki.root.pem, crls: crl.pem })).ok, true, 'the other certificate is fine')
  }
  const pki = pkiOf('ec')
  const empty = await createCrl({ issuer: pki.clientCa })
  const parsed = new x509.X509Crl(empty.der)
  t.equal(parsed.entries.length, 0)
  t.equal(parsed.nextUpdate!.getTime() - parsed.thisUpdate.getTime(), 7 * 86400e3, 'nextUpdate = thisUpdate + 7 days')
  await t.rejects(createCrl({ issuer: pki.clientCa, revoked: [{ serialHex: '01', reason: 'bored' as 'superseded' }] }), { name: 'PkiError', message: /unknown revocation reason/ })
  await t.rejects(createCrl({ issuer: pki.clientCa, revoked: [{ serialHex: 'xyz' }] }), { name: 'PkiError', message: /bad serial/ })
  await t.rejects(createCrl({ issuer: pki.clientCa, crlNumber: -1 }), { name: 'PkiError', message: /crlNumber/ })
  await t.rejects(createCrl({ issuer: pki.clientCa, thisUpdate: new Date(), nextUpdate: new Date(Date.now() - 1) }), { name: 'PkiError', message: /nextUpdate/ })
  await t.rejects(createCrl({ issuer: loadCertificate(pki.clientCa.pem) }), { name: 'PkiError', message: /private key/ })
})

async function tlsRoundTrip (t: Test, pki: Awaited<ReturnType<typeof createDevPki>>, client: { pfx: Buffer, passphrase: string }): Promise<string | undefined> {
  const server = tls.createServer({ key: pki.server.key?.privateKeyPem, cert: pki.server.pem, ca: pki.root.pem, requestCert: true, rejectUnauthorized: true })
  const peers: string[] = []
  server.on('secureConnection', (socket: TLSSocket) => {
    peers.push(socket.getPeerX509Certificate()?.subject ?? '')
    socket.end('hi')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const { port } = server.address() as { port: number }
  const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.root.pem, pfx: client.pfx, passphrase: client.passphrase })
  await once(socket, 'secureConnect')
  const [data] = await once(socket, 'data') as [Buffer]
  socket.destroy()
  t.equal(data.toString(), 'hi')
  return peers[0]
}

t.test('PKCS#12: loads in node:tls and OpenSSL 3 without -legacy, and authenticates over real TLS', async (t) => {
  for (const type of KEY_TYPES) {
    const pki = pkiOf(type)
    const client = await issueClient(pki, { cn: `p12-${type}` })
    const pfx = createPkcs12({ key: client.key, certificate: client, chain: [pki.clientCa], password: 'correct horse', friendlyName: `p12 ${type}` })
    t.doesNotThrow(() => tls.createSecureContext({ pfx, passphrase: 'correct horse' }), `${type}: node:tls loads it`)
    t.throws(() => tls.createSecureContext({ pfx, passphrase: 'wrong' }), `${type}: not with a wrong password`)
    const file = await tmpFile(pfx, 'p12')
    const info = await run('openssl', ['pkcs12', '-info', '-nokeys', '-in', file, '-passin', 'pass:correct horse'])
    t.equal(info.code, 0, `${type}: openssl pkcs12 -info: ${info.stderr}`)
    t.match(info.stderr + info.stdout, /MAC: sha256/)
    t.match(info.stderr + info.stdout, /PBES2, PBKDF2, AES-256-CBC/)
    t.match(info.stdout, `friendlyName: p12 ${type}`)
    t.equal(info.stdout.match(/BEGIN CERTIFICATE/g)?.length, 2, 'leaf and client CA')
    const keyOut = await run('openssl', ['pkcs12', '-in', file, '-passin', 'pass:correct horse', '-nocerts', '-nodes'])
    t.equal(keyOut.code, 0)
    const extracted = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n/.exec(keyOut.stdout)?.[0]
    t.ok(extracted !== undefined && createPublicKey(extracted).equals(client.key.publicKey), 'the same key comes out')
    const wrong = await run('openssl', ['pkcs12', '-info', '-nokeys', '-in', file, '-passin', 'pass:nope'])
    t.not(wrong.code, 0, 'OpenSSL refuses a wrong password (MAC)')
    const peer = await tlsRoundTrip(t, pki, { pfx, passphrase: 'correct horse' })
    t.match(peer, `CN=p12-${type}`, `${type}: the server saw the client certificate from the bundle`)
  }
  const pki = pkiOf('ec')
  const client = await issueClient(pki, { cn: 'x' })
  t.throws(() => createPkcs12({ key: client.key, certificate: client, password: '' }), { name: 'PkiError', message: /password/ })
  t.throws(() => createPkcs12({ key: client.key, certificate: pki.clientCa, password: 'x' }), { name: 'PkiError', message: /does not match/ })
  const alone = createPkcs12({ key: client.key, certificate: client, password: 'x' })
  const info = await run('openssl', ['pkcs12', '-info', '-nokeys', '-in', await tmpFile(alone, 'p12'), '-passin', 'pass:x'])
  t.equal(info.stdout.match(/BEGIN CERTIFICATE/g)?.length, 1, 'without a chain: the leaf alone')
})

t.test('names: string types, escapes, unknown attributes read back as RFC 4514', async (t) => {
  const rsa = await newKey('rsa2048')
  const odd = await issue({
    key: rsa,
    subject: [
      [{ type: 'DC', value: 'org' }],
      [{ type: 'emailAddress', value: 'a@example.org' }],
      [{ type: 'O', value: 'Ünïcode GmbH', tag: 'bmp' }],
      [{ type: 'OU', value: 'tele', tag: 'teletex' }, { type: 'L', value: 'x' }],
      [{ type: '1.2.3.4', value: 'wide', tag: 'universal' }],
      [{ type: 'CN', value: '#a, b+c "d" <e>;f=g\\ ' }]
    ],
    version: 1
  })
  const loaded = loadCertificate(odd.der)
  t.equal(loaded.subject, 'CN=\\#a\\, b\\+c \\"d\\" \\<e\\>\\;f\\=g\\\\\\ ,1.2.3.4=#1c1000000077000000690000006400000065,L=x+OU=tele,O=Ünïcode GmbH,emailAddress=a@example.org,DC=org')
  t.equal(loaded.notAfter.getTime(), Date.parse(new X509Certificate(odd.der).validTo), 'a version 1 certificate loads')
  const ctl = await issue({ key: rsa, subject: [[{ type: 'CN', value: 'line\nbreak' }]] })
  t.equal(loadCertificate(ctl.pem).subject, 'CN=line\\0Abreak')
})

t.test('keys and inputs from JavaScript callers: checked, refused with PkiError', async (t) => {
  t.equal(loadKey((await newKey('rsa3072')).privateKeyPem).type, 'rsa')
  t.equal(loadKey((await newKey('rsa4096')).privateKeyPem).type, 'rsa')
  const p384 = loadKey((await newKey('ec384')).privateKeyPem)
  t.equal(p384.type, 'ec')
  const csr384 = await createCsr({ subject: { cn: 'p384' }, key: p384, altNames: { ip: ['127.0.0.1'], email: ['p@example.org'] } })
  t.same((await readCsr(csr384)).altNames, { dns: [], ip: ['127.0.0.1'], uri: [], email: ['p@example.org'] }, 'a P-384 CSR with IP and email names')
  const rsa1024 = (await newKey('rsa1024')).privateKeyPem
  t.throws(() => loadKey(rsa1024), { name: 'PkiError', message: /at least 2048 bits/ })
  const { generateKeyPairSync } = await import('node:crypto')
  const k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).privateKey.export({ type: 'pkcs8', format: 'pem' })
  t.throws(() => loadKey(k1), { name: 'PkiError', message: /unsupported EC curve/ })
  const x25519 = generateKeyPairSync('x25519').privateKey.export({ type: 'pkcs8', format: 'pem' })
  t.throws(() => loadKey(x25519), { name: 'PkiError', message: /unsupported key type x25519/ })
  const ec = await generateKey('ec')
  const encrypted = ec.privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'pw' })
  t.ok(loadKey(encrypted, 'pw').publicKey.equals(ec.publicKey), 'an encrypted key with its passphrase')
  t.throws(() => loadKey(encrypted, 'wrong'), PkiError)

  const homemade = { type: 'ec' as const, privateKey: ec.privateKey, publicKey: ec.publicKey, privateKeyPem: ec.privateKeyPem }
  const fromHomemade = await createCertificate({ subject: { cn: 'homemade' }, key: homemade })
  t.ok(new X509Certificate(fromHomemade.der).publicKey.equals(ec.publicKey), 'a Key object made by the caller')
  await t.rejects(createCertificate({ subject: { cn: 'x' }, key: {} as never }), { name: 'PkiError', message: /a key must be a Key/ })

  const pki = pkiOf('ec')
  const bad: Array<[() => Promise<unknown>, RegExp]> = [
    [() => createCertificate(null as never), /options must be an object/],
    [() => createCertificate({ subject: 'CN=x' as never }), /subject must be an object/],
    [() => createCertificate({ subject: { cn: ' ' } }), /subject CN must be a non-empty string/],
    [() => createCertificate({ subject: { cn: 'x'.repeat(65) } }), /longer than 64/],
    [() => createCertificate({ subject: { cn: 'x', ou: 'one unit' }, altNames: { dns: 'a.example' as never } }), /altNames.dns must be an array/],
    [() => createCertificate({ subject: { cn: 'x' }, notBefore: new Date('nope') }), /notBefore must be a valid Date/],
    [() => createCertificate({ subject: { cn: 'x' }, ca: { pathLength: -1 } }), /pathLength/],
    [() => createCsr(null as never), /options must be an object/],
    [() => createCrl(null as never), /options must be an object/],
    [() => createCrl({ issuer: pki.clientCa, revoked: [{ serialHex: 7 as never }] }), /bad serial/],
    [() => issueClient({} as never, { cn: 'x' }), /needs a DevPki/],
    [() => issueClient(pki, { cn: '' }), /needs a cn/],
    [() => issueClient({ ...pki, clientCa: loadCertificate(pki.clientCa.pem) }, { cn: 'x' }), /does not carry its private key/]
  ]
  for (const [call, message] of bad) await t.rejects(call(), { name: 'PkiError', message })
  t.throws(() => createPkcs12(null as never), { name: 'PkiError', message: /options must be an object/ })
  const oddSerial = await createCrl({ issuer: pki.clientCa, revoked: [{ serialHex: '0x1:23' }] })
  t.equal(new x509.X509Crl(oddSerial.der).entries[0]?.serialNumber, '0123', 'hex with 0x, colons and an odd length')
  const numbered = new x509.X509Crl((await createCrl({ issuer: pki.clientCa, crlNumber: 2 })).der).getExtension('2.5.29.20')
  t.equal(Buffer.from(numbered!.value).toString('hex'), '020102', 'crlNumber 2')
})

t.test('the client CA is limited to clientAuth: a server certificate under it is refused by OpenSSL', async (t) => {
  const pki = pkiOf('ec')
  t.equal(new x509.X509Certificate(pki.clientCa.der).getExtension(x509.ExtendedKeyUsageExtension)?.usages.join(), '1.3.6.1.5.5.7.3.2', 'client CA: extendedKeyUsage clientAuth')
  const rogue = await createCertificate({ subject: { cn: 'localhost' }, issuer: pki.clientCa, altNames: { dns: ['localhost'] }, extKeyUsage: ['serverAuth'] })
  const [rootFile, caFile, rogueFile] = await Promise.all([tmpFile(pki.root.pem, 'pem'), tmpFile(pki.clientCa.pem, 'pem'), tmpFile(rogue.pem, 'pem')])
  const r = await run('openssl', ['verify', '-purpose', 'sslserver', '-CAfile', rootFile, '-untrusted', caFile, rogueFile])
  t.not(r.code, 0, 'a serverAuth certificate minted with the client CA key does not verify as a server')
  t.match(r.stdout + r.stderr, /unsupported certificate purpose|purpose/)
  const client = await issueClient(pki, { cn: 'eku-check' })
  const ok = await run('openssl', ['verify', '-purpose', 'sslclient', '-CAfile', rootFile, '-untrusted', caFile, await tmpFile(client.pem, 'pem')])
  t.equal(ok.code, 0, `clients still verify: ${ok.stdout}${ok.stderr}`)
})

t.test('SANs: non-ASCII, spaces and control characters in DNS, URI and email names are refused', async (t) => {
  const pki = pkiOf('ec')
  const key = await generateKey('ec')
  const bad: Array<[string, { dns?: string[], uri?: string[], email?: string[] }]> = [
    ['IDN not in xn-- form', { dns: ['bücher.example'] }],
    ['control character in a DNS name', { dns: ['a\u0000b.example'] }],
    ['non-ASCII URI', { uri: ['spiffe://example.org/ü'] }],
    ['a space in a URI', { uri: ['https://example.org/a b'] }],
    ['newline in an email', { email: ['a@example.org\nb'] }],
    ['non-ASCII email', { email: ['ü@example.org'] }]
  ]
  for (const [what, altNames] of bad) {
    await t.rejects(createCertificate({ subject: { cn: 'x' }, issuer: pki.clientCa, altNames }), PkiError, `createCertificate: ${what}`)
    await t.rejects(createCsr({ subject: { cn: 'x' }, key, altNames }), PkiError, `createCsr: ${what}`)
  }
  const csr = await createCsr({ subject: { cn: 'x' }, key })
  await t.rejects(signCsr(csr, { subject: { cn: 'x' }, issuer: pki.clientCa, altNames: { dns: ['bücher.example'] } }), /altNames\.dns .* non-ASCII/, 'signCsr')
  await t.rejects(issueClient(pki, { cn: 'x', altNames: { email: ['ü@example.org'] } }), PkiError, 'issueClient')
  const good = await createCertificate({ subject: { cn: 'x' }, issuer: pki.clientCa, altNames: { dns: ['xn--bcher-kva.example'], uri: ['https://example.org/a%20b'], email: ['a@example.org'] } })
  t.match(new X509Certificate(good.der).subjectAltName, /DNS:xn--bcher-kva\.example/, 'ASCII forms are accepted')
})

t.test('createCrl refuses invalid dates; readIndex refuses a bad revocation date', async (t) => {
  const issuer = pkiOf('ec').clientCa
  const nan = new Date(NaN)
  await t.rejects(createCrl({ issuer, thisUpdate: nan }), /thisUpdate must be a valid Date/)
  await t.rejects(createCrl({ issuer, nextUpdate: nan }), /nextUpdate must be a valid Date/)
  await t.rejects(createCrl({ issuer, nextUpdate: '2030-01-01' as unknown as Date }), /nextUpdate must be a valid Date/)
  await t.rejects(createCrl({ issuer, revoked: [{ serialHex: '01', date: nan }] }), /revocation date of "01" must be a valid Date/)
  await t.rejects(createCrl({ issuer, revoked: [{ serialHex: '01', date: 5 as unknown as Date }] }), PkiError)
  const { readIndex } = await import('../lib/pki/directory.js')
  const dir = await mkdtemp(join(tmp, 'index-'))
  const index = { version: 1, crlNumber: 1, issued: [], revoked: [{ serialHex: '01', date: 'yesterday' }] }
  await writeFile(join(dir, 'index.json'), JSON.stringify(index))
  await t.rejects(readIndex(dir), /revoked entry without a valid serialHex and date/)
  index.revoked[0]!.date = new Date().toISOString()
  await writeFile(join(dir, 'index.json'), JSON.stringify(index))
  t.match(await readIndex(dir), { crlNumber: 1 }, 'control: a valid date loads')
})

t.test('names: C1 controls and bidi/format characters are escaped where names are printed', async (t) => {
  const cert = await createCertificate({ subject: { cn: 'a\u0085b\u202ec\u2066d\u200fe', o: 'x\u009by' } })
  t.equal(cert.subject, 'CN=a\\C2\\85b\\E2\\80\\AEc\\E2\\81\\A6d\\E2\\80\\8Fe,O=x\\C2\\9By')
  t.notMatch(cert.subject, /[\u0080-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/, 'no raw control or bidi character')
  t.equal(loadCertificate(cert.pem).subject, cert.subject, 'the same when read back')
})

t.test('the folder lock: one holder at a time; a held lock ends in a one-line error naming it', async (t) => {
  const { withLock, LOCK_FILE } = await import('../lib/pki/directory.js')
  const dir = await mkdtemp(join(tmp, 'lock-'))
  let active = 0
  let most = 0
  const order: number[] = []
  await Promise.all([0, 1, 2, 3].map((i) => withLock(dir, async () => {
    active++
    most = Math.max(most, active)
    await new Promise((resolve) => setImmediate(resolve))
    await writeFile(join(dir, 'x'), String(i))
    order.push(i)
    active--
  })))
  t.equal(most, 1, 'never two holders at once')
  t.equal(order.length, 4, 'every caller ran')
  await t.rejects(stat(join(dir, LOCK_FILE)), { code: 'ENOENT' }, 'the lock is removed after use')
  await writeFile(join(dir, LOCK_FILE), '1\n')
  await t.rejects(withLock(dir, async () => {}, { timeoutMs: 100 }), { name: 'PkiError', message: new RegExp(`^the PKI folder is busy: ${join(dir, LOCK_FILE).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} exists`) })
  await t.rejects(withLock(join(dir, 'missing'), async () => {}), /no PKI in .*missing/)
  await t.rejects(withLock(dir, async () => { throw new Error('inside') }, { timeoutMs: 100 }), /busy/, 'the stale lock is left alone')
})
