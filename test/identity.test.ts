// ClientIdentity from a verified path: names straight from the DER, no string splitting.
import t from 'tap'
import { createHash, X509Certificate } from 'node:crypto'
import { buildIdentity, verifyCertificateChain, type ClientIdentity } from '../lib/index.js'
import { identityFromPath, isSpiffeId, spiffeIdOf } from '../lib/identity.js'
import { getCertificate } from '../lib/der/store.js'
import { issue, makeChain, newKey, type CertSpec, type Chain } from './helpers/pki.js'

async function identityOf (chain: Chain, anchors?: unknown): Promise<ClientIdentity> {
  const r = await verifyCertificateChain({
    leaf: chain.chainPem,
    trustAnchors: (anchors ?? chain.root.pem) as string
  })
  if (!r.ok) throw new Error(`fixture chain did not verify: ${r.code} ${r.message}`)
  return buildIdentity(r)
}

async function leafIdentity (leaf: Partial<CertSpec>): Promise<ClientIdentity> {
  return identityOf(await makeChain({ kind: 'ec256', intermediates: 0, leaf }))
}

t.test('hashes, serial and dates match node:crypto', async (t) => {
  const chain = await makeChain({ kind: 'rsa2048', leaf: { serial: '00F1E2D3C4B5A697' } })
  const id = await identityOf(chain, [{ name: 'acme', cert: chain.root.pem }])
  const x = new X509Certificate(chain.leaf.der)
  t.equal(id.source, 'tls')
  t.equal(id.fingerprint256, x.fingerprint256)
  t.equal(id.thumbprintSha256, createHash('sha256').update(chain.leaf.der).digest('base64url'))
  t.equal(id.spkiSha256, createHash('sha256').update(x.publicKey.export({ type: 'spki', format: 'der' })).digest('base64'))
  t.equal(id.serialNumber, 'F1E2D3C4B5A697', 'uppercase hex without the sign byte')
  t.equal(id.notAfter.getTime(), new Date(x.validTo).getTime())
  t.equal(id.notBefore.getTime(), new Date(x.validFrom).getTime())
  t.same(id.trustAnchor, { name: 'acme', fingerprint256: chain.root.cert.fingerprint256, spkiSha256: getCertificate(chain.root.der).spkiSha256 })
  t.equal(id.chain.length, 3)
  t.equal(id.chain[0]!.fingerprint256, x.fingerprint256)
  t.equal(id.chain[2]!.fingerprint256, chain.root.cert.fingerprint256)
  t.equal(id.certificate.fingerprint256, x.fingerprint256)
  t.equal(id.issuer.rfc4514, getCertificate(chain.intermediates[0]!.der).subject.rfc4514)
  t.ok(Object.isFrozen(id) && Object.isFrozen(id.subject) && Object.isFrozen(id.san) && Object.isFrozen(id.san.dns) && Object.isFrozen(id.chain))
  t.throws(() => { (id as { serialNumber: string }).serialNumber = 'x' }, TypeError, 'read-only')
  const unlabelled = await identityOf(chain)
  t.equal(unlabelled.trustAnchor.name, getCertificate(chain.root.der).subject.rfc4514, 'an unlabelled anchor is named by its subject')
})

t.test('names keep every RDN, in order, with multi-valued and repeated attributes', async (t) => {
  const id = await leafIdentity({
    subject: [
      [{ type: 'C', value: 'GB', tag: 'printable' }],
      [{ type: 'O', value: 'Acme' }],
      [{ type: 'OU', value: 'payments' }],
      [{ type: 'OU', value: 'eu-west' }],
      [{ type: 'CN', value: 'svc' }, { type: 'UID', value: '42' }],
      [{ type: '2.5.4.97', value: 'VATGB-123' }]
    ]
  })
  t.same(id.subject.attributes.OU, ['payments', 'eu-west'])
  t.same(id.subject.attributes.CN, ['svc'])
  t.same(id.subject.attributes.UID, ['42'])
  t.same(id.subject.attributes.organizationIdentifier, ['VATGB-123'])
  t.equal(id.subject.rdns.length, 6)
  t.same(id.subject.rdns[4]!.map((a) => [a.type, a.oid, a.value]), [['CN', '2.5.4.3', 'svc'], ['UID', '0.9.2342.19200300.100.1.1', '42']])
  t.equal(id.subject.rfc4514, 'organizationIdentifier=VATGB-123,CN=svc+UID=42,OU=eu-west,OU=payments,O=Acme,C=GB')
})

t.test('special characters in values never become extra attributes', async (t) => {
  const nasty = 'evil,O=Admins+CN=root\\"x"\n\u0000=;<>#'
  const id = await leafIdentity({ subject: [[{ type: 'CN', value: nasty }], [{ type: 'O', value: ' lead and trail ' }], [{ type: 'OU', value: '#hash' }]] })
  t.same(id.subject.attributes.CN, [nasty], 'the value is kept byte for byte')
  t.same(id.subject.attributes.O, [' lead and trail '])
  t.equal(id.subject.rdns.length, 3)
  t.same(Object.keys(id.subject.attributes).sort(), ['CN', 'O', 'OU'])
  t.equal(id.subject.rfc4514, 'OU=\\#hash,O=\\ lead and trail\\ ,CN=evil\\,O\\=Admins\\+CN\\=root\\\\\\"x\\"\\0a\\00\\=\\;\\<\\>#')
  t.notOk(id.subject.rfc4514.includes('\n') || id.subject.rfc4514.includes('\u0000'), 'no raw newline or NUL in the string form')
})

t.test('SANs by type; text that looks like another SAN stays one value', async (t) => {
  const id = await leafIdentity({
    san: {
      dns: ['api.example.com', 'b.example.com'],
      uri: ['https://example.com/a, DNS:evil.example.com'],
      email: ['ops@example.com'],
      ip: ['192.0.2.10', '2001:db8:0:0:0:0:0:1', '::ffff:192.0.2.1']
    }
  })
  t.same(id.san.dns, ['api.example.com', 'b.example.com'])
  t.same(id.san.uri, ['https://example.com/a, DNS:evil.example.com'])
  t.same(id.san.email, ['ops@example.com'])
  t.same(id.san.ip, ['192.0.2.10', '2001:db8::1', '::ffff:c000:201'], 'IPs written from the bytes (16-byte mapped address stays IPv6)')
  t.equal(id.spiffeId, null, 'an https URI is not a SPIFFE ID')
  const none = await leafIdentity({})
  t.same(none.san, { dns: [], uri: [], email: [], ip: [] })
})

t.test('spiffeId follows the X.509-SVID rules', async (t) => {
  const svid = await leafIdentity({ san: { uri: ['spiffe://example.org/ns/prod/sa/api'] } })
  t.equal(svid.spiffeId, 'spiffe://example.org/ns/prod/sa/api')
  const two = await leafIdentity({ san: { uri: ['spiffe://example.org/a', 'spiffe://example.org/b'] } })
  t.equal(two.spiffeId, null, 'more than one URI SAN')
  t.same(two.san.uri, ['spiffe://example.org/a', 'spiffe://example.org/b'])
  for (const [uri, ok] of [
    ['spiffe://example.org/a/b', true],
    ['spiffe://example.org', true],
    ['spiffe://Example.org/a', false],
    ['spiffe://example.org/a/../b', false],
    ['spiffe://example.org/a/./b', false],
    ['spiffe://example.org/a//b', false],
    ['spiffe://example.org/a/', false],
    ['spiffe://example.org/a?x=1', false],
    ['spiffe://example.org/a#f', false],
    ['spiffe://user@example.org/a', false],
    ['spiffe://example.org:443/a', false],
    ['spiffe:///a', false],
    ['SPIFFE://example.org/a', false],
    ['https://example.org/a', false]
  ] as const) {
    t.equal(isSpiffeId(uri), ok, uri)
  }
  t.equal(isSpiffeId('spiffe://example.org/' + 'a'.repeat(2048)), false, 'too long')
  // a bare trust domain is a valid SPIFFE ID but names no workload
  const bare = getCertificate((await issue({ subject: 'CN=x', key: await newKey('ec256'), san: { uri: ['spiffe://example.org'] } })).der)
  t.equal(spiffeIdOf(bare, ['spiffe://example.org']), null)
  const ca = getCertificate((await issue({ subject: 'CN=ca', key: await newKey('ec256'), ca: true, san: { uri: ['spiffe://example.org/ca'] } })).der)
  t.equal(spiffeIdOf(ca, ['spiffe://example.org/ca']), null, 'a CA certificate has no SPIFFE ID')
})

t.test('bad input', async (t) => {
  t.throws(() => buildIdentity({ ok: false } as never), /successful verifyCertificateChain result/)
  t.throws(() => identityFromPath({ path: [], trustAnchor: { name: 'x', fingerprint256: '', spkiSha256: '' }, source: 'tls' }), /non-empty path/)
  const chain = await makeChain({ kind: 'ec256', intermediates: 0 })
  const r = await verifyCertificateChain({ leaf: chain.leaf.pem, trustAnchors: chain.root.pem })
  t.ok(r.ok)
  if (r.ok) t.equal(buildIdentity(r, 'forwarded').source, 'forwarded')
})
