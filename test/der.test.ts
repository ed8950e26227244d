// The strict DER reader, certificate and CRL parsing, and a fuzz run over mutated inputs.
import t from 'tap'
import { X509Certificate } from 'node:crypto'
import {
  DerError, DerReader, TAG, parseOne, readBigInt, readBitString, readBoolean, readNamedBits, readOid, readString, readTime
} from '../lib/der/reader.js'
import { parseCertificate } from '../lib/der/certificate.js'
import { parseCrl } from '../lib/der/crl.js'
import { ipToString } from '../lib/der/general-name.js'
import { toDerList, InputError } from '../lib/der/pem.js'
import { getCertificate } from '../lib/der/store.js'
import { issue, makeChain, makeCrl, newKey, OID } from './helpers/pki.js'
import { xorshift } from './helpers/random.js'

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')
const one = (s: string) => parseOne(hex(s), 'test')

t.test('lengths and tags', async (t) => {
  t.same(one('0403aabbcc').end, 5)
  t.same(one('04 81 80' + 'aa'.repeat(128)).end, 131, 'long form')
  t.throws(() => one('0480aabb0000'), DerError, 'indefinite length')
  t.throws(() => one('048103aabbcc'), /non-minimal length/, 'long form for a short length')
  t.throws(() => one('04820080' + 'aa'.repeat(128)), /non-minimal length/, 'leading zero length byte')
  t.throws(() => one('0405aabb'), /runs past/, 'truncated content')
  t.throws(() => one('04'), /truncated length/)
  t.throws(() => one('0401aabb'), /trailing data/)
  t.throws(() => one('1f2201aa'), /multi-byte tags/)
  t.throws(() => one('0485ffffffffff'), /length too large/)
  t.throws(() => new DerReader(hex('')).read(), /unexpected end/)
  t.throws(() => DerReader.of(one('0401aa')), /primitive/)
  const r = new DerReader(hex('0500 0101ff'))
  t.equal(r.optional(TAG.BOOLEAN), undefined, 'optional skips another tag')
  t.throws(() => r.expect(TAG.INTEGER, 'x'), /expected tag 0x2, got 0x5/)
})

t.test('integers', async (t) => {
  t.equal(readBigInt(one('020100'), 'i'), 0n)
  t.equal(readBigInt(one('02020080'), 'i'), 128n)
  t.equal(readBigInt(one('0201ff'), 'i'), -1n)
  t.equal(readBigInt(one('02020100'), 'i'), 256n)
  t.throws(() => readBigInt(one('02020001'), 'i'), /non-minimal INTEGER/)
  t.throws(() => readBigInt(one('0202ff80'), 'i'), /non-minimal INTEGER/)
  t.throws(() => readBigInt(one('0200'), 'i'), /empty INTEGER/)
  t.throws(() => readBigInt(one('0401aa'), 'i'), /expected INTEGER/)
})

t.test('booleans, bit strings, named bits', async (t) => {
  t.equal(readBoolean(one('0101ff'), 'b'), true)
  t.equal(readBoolean(one('010100'), 'b'), false)
  t.throws(() => readBoolean(one('010101'), 'b'), /0x00 or 0xFF/)
  t.throws(() => readBoolean(one('0102ffff'), 'b'), /one byte/)
  t.same(readBitString(one('030200ff'), 'bs').unusedBits, 0)
  t.throws(() => readBitString(one('030201ff'), 'bs'), /unused bits must be zero/)
  t.throws(() => readBitString(one('030108'), 'bs'), /unused-bit count/)
  t.throws(() => readBitString(one('0300'), 'bs'), /empty BIT STRING/)
  t.throws(() => readBitString(one('030101'), 'bs'), /empty BIT STRING/)
  // keyUsage digitalSignature (bit 0) | keyCertSign (bit 5): 1000 0100, 2 unused bits
  t.equal(readNamedBits(one('03020284'), 'ku'), 1 | 32)
  t.throws(() => readNamedBits(one('03020384'), 'ku'), /unused bits must be zero/)
  t.throws(() => readNamedBits(one('03030080' + '00'), 'ku'), /trailing zero byte/)
  t.throws(() => readNamedBits(one('03020180'), 'ku'), /not minimally encoded/)
})

t.test('object identifiers', async (t) => {
  t.equal(readOid(one('0603551d13'), 'o'), '2.5.29.19')
  t.equal(readOid(one('06082a864886f70d0101'), 'o'), '1.2.840.113549.1.1')
  t.equal(readOid(one('0603883703'), 'o'), '2.999.3')
  t.throws(() => readOid(one('06035580 1d'.replace(' ', '')), 'o'), /non-minimal/)
  t.throws(() => readOid(one('060255 86'.replace(' ', '')), 'o'), /truncated/)
  t.throws(() => readOid(one('0600'), 'o'), /empty/)
})

t.test('times', async (t) => {
  const utc = (s: string) => readTime(parseOne(Buffer.concat([Buffer.from([0x17, s.length]), Buffer.from(s)]), 't'), 't')
  const gen = (s: string) => readTime(parseOne(Buffer.concat([Buffer.from([0x18, s.length]), Buffer.from(s)]), 't'), 't')
  t.equal(utc('490101000000Z').toISOString(), '2049-01-01T00:00:00.000Z')
  t.equal(utc('500101000000Z').toISOString(), '1950-01-01T00:00:00.000Z')
  t.equal(gen('20500101120000Z').toISOString(), '2050-01-01T12:00:00.000Z')
  t.throws(() => utc('4901010000Z'), /YYMMDDHHMMSSZ/, 'seconds are required')
  t.throws(() => utc('490101000000+0100'), /YYMMDDHHMMSSZ/)
  t.throws(() => gen('20500101120000.5Z'), /YYYYMMDDHHMMSSZ/, 'no fractions')
  t.throws(() => gen('20230230120000Z'), /invalid date/, '30 February')
  t.throws(() => gen('20231301120000Z'), /invalid date/)
  t.throws(() => gen('20230101240000Z'), /invalid date/)
  t.throws(() => readTime(one('0401aa'), 't'), /UTCTime or GeneralizedTime/)
})

t.test('strings', async (t) => {
  const str = (tag: number, b: Buffer) => readString(parseOne(Buffer.concat([Buffer.from([tag, b.length]), b]), 's'), 's')
  t.equal(str(TAG.UTF8_STRING, Buffer.from('é\u0000,x', 'utf8')), 'é\u0000,x')
  t.throws(() => str(TAG.UTF8_STRING, hex('c328')), /invalid UTF-8/)
  t.equal(str(TAG.PRINTABLE_STRING, Buffer.from('Acme, Inc.')), 'Acme, Inc.')
  t.throws(() => str(TAG.PRINTABLE_STRING, Buffer.from('a@b')), /PrintableString/)
  t.throws(() => str(TAG.IA5_STRING, hex('e9')), /non-ASCII/)
  t.equal(str(TAG.BMP_STRING, hex('00410042')), 'AB')
  t.throws(() => str(TAG.BMP_STRING, hex('004100')), /odd-length/)
  t.equal(str(TAG.UNIVERSAL_STRING, hex('0001f600')), '\u{1f600}')
  t.throws(() => str(TAG.UNIVERSAL_STRING, hex('0000d800')), /code point/)
  t.equal(str(TAG.TELETEX_STRING, hex('e9')), 'é')
  t.equal(str(TAG.INTEGER, hex('01')), undefined, 'not a string type')
})

t.test('IP addresses print from their bytes', async (t) => {
  t.equal(ipToString(hex('c0000201')), '192.0.2.1')
  t.equal(ipToString(hex('20010db8000000000000000000000001')), '2001:db8::1')
  t.equal(ipToString(hex('00000000000000000000000000000001')), '::1')
  t.equal(ipToString(hex('20010db8000100000001000000000000')), '2001:db8:1:0:1::', 'longest zero run compressed')
  t.equal(ipToString(hex('20010db8000000010000000000010001')), '2001:db8:0:1::1:1')
  t.equal(ipToString(hex('20010db8aaaabbbbccccddddeeeeffff')), '2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff')
  t.equal(ipToString(hex('0a0000')), '#0a0000')
})

t.test('PEM input', async (t) => {
  const { leaf } = await makeChain({ kind: 'ec256', intermediates: 0 })
  t.same(toDerList(leaf.pem, 'CERTIFICATE', 'x'), [leaf.der])
  t.same(toDerList(leaf.der, 'CERTIFICATE', 'x'), [leaf.der])
  t.same(toDerList(new Uint8Array(leaf.der), 'CERTIFICATE', 'x'), [leaf.der])
  t.same(toDerList(leaf.pem.replace(/\n/g, '\r\n'), 'CERTIFICATE', 'x'), [leaf.der], 'CRLF line ends')
  t.equal(toDerList(leaf.pem + leaf.pem, 'CERTIFICATE', 'x').length, 2)
  t.throws(() => toDerList('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n', 'CERTIFICATE', 'ca'), InputError)
  t.throws(() => toDerList('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n', 'CERTIFICATE', 'ca'), /unexpected PEM block "PRIVATE KEY"/)
  t.throws(() => toDerList('-----BEGIN CERTIFICATE-----\nA*AA\n-----END CERTIFICATE-----\n', 'CERTIFICATE', 'ca'), /invalid base64/)
  t.throws(() => toDerList('-----BEGIN CERTIFICATE-----\nAAAA\n', 'CERTIFICATE', 'ca'), /malformed PEM/)
  t.throws(() => toDerList('hello', 'CERTIFICATE', 'ca'), /no PEM/)
  t.throws(() => toDerList(42 as unknown as string, 'CERTIFICATE', 'ca'), /expected a PEM string or DER Buffer/)
  t.throws(() => toDerList('-----BEGIN TRUSTED CERTIFICATE-----\nAAAA\n-----END TRUSTED CERTIFICATE-----\n', 'CERTIFICATE', 'ca'), /TRUSTED CERTIFICATE/)
})

t.test('certificates parse to what node:crypto reads', async (t) => {
  const rsa = await makeChain({ kind: 'rsa2048' })
  const ec = await makeChain({ kind: 'ec256', leaf: { san: { dns: ['a.example.com'], uri: ['spiffe://example.org/x'], email: ['a@example.com'], ip: ['192.0.2.7', '2001:db8::7'] } } })
  const ed = await makeChain({ kind: 'ed25519' })
  for (const issued of [rsa.root, rsa.intermediates[0]!, rsa.leaf, ec.root, ec.leaf, ed.leaf]) {
    const c = parseCertificate(issued.der)
    const x = new X509Certificate(issued.der)
    t.equal(c.fingerprint256, x.fingerprint256)
    t.equal(c.serialHex.replace(/^0+(?=.)/, ''), x.serialNumber.replace(/^0+(?=.)/, ''))
    t.equal(c.notBefore.getTime(), new Date(x.validFrom).getTime())
    t.equal(c.notAfter.getTime(), new Date(x.validTo).getTime())
    t.equal(c.subject.attributes.CN?.[0], /CN=(.*)/.exec(x.subject)?.[1])
    t.ok(c.spki.equals(x.publicKey.export({ type: 'spki', format: 'der' })), 'SPKI bytes')
    t.ok(c.publicKey.equals(x.publicKey), 'public key')
    t.equal(c.x509.fingerprint256, x.fingerprint256)
    t.same(c.profileErrors, [])
  }
  const leaf = parseCertificate(ec.leaf.der)
  t.same(leaf.subjectAltNames?.map((g) => g.kind), ['dns', 'email', 'uri', 'ip', 'ip'])
  t.same(leaf.extKeyUsage, [OID.clientAuth])
  t.equal(leaf.basicConstraints?.ca, false)
  t.ok(leaf.authorityKeyId?.keyId?.equals(parseCertificate(ec.intermediates[0]!.der).subjectKeyId!))
  t.equal(getCertificate(ec.leaf.der), getCertificate(Buffer.from(ec.leaf.der)), 'parsed once, cached by SHA-256')
})

t.test('structural rules of certificates', async (t) => {
  const root = (await makeChain({ kind: 'ec256', intermediates: 0 })).root
  const bc = Buffer.from('30030101ff', 'hex')
  const dup = await issue({ subject: 'CN=dup', issuer: root, key: await newKey('ec256'), extraExtensions: [{ oid: '2.5.29.19', valueDer: bc }] })
  t.throws(() => parseCertificate(dup.der), /appears more than once/)
  const falseCa = await issue({ subject: 'CN=f', issuer: root, key: await newKey('ec256'), basicConstraints: false, extraExtensions: [{ oid: '2.5.29.19', valueDer: hex('3003010100') }] })
  t.throws(() => parseCertificate(falseCa.der), /DEFAULT FALSE must be omitted/)
  const emptyEku = await issue({ subject: 'CN=e', issuer: root, key: await newKey('ec256'), extKeyUsage: false, extraExtensions: [{ oid: '2.5.29.37', valueDer: hex('3000') }] })
  t.throws(() => parseCertificate(emptyEku.der), /extKeyUsage: empty/)
  const unknown = await issue({ subject: 'CN=u', issuer: root, key: await newKey('ec256'), extraExtensions: [{ oid: '1.3.6.1.4.1.55738.666.1', critical: true, valueDer: hex('0500') }] })
  t.same(parseCertificate(unknown.der).unknownCritical, ['1.3.6.1.4.1.55738.666.1'])
  const negative = await issue({ subject: 'CN=n', issuer: (await makeChain({ intermediates: 0 })).root, serial: 'FF01' })
  t.match(parseCertificate(negative.der).serialError, /must be positive/)
  const longSerial = await issue({ subject: 'CN=l', issuer: root, key: await newKey('ec256'), serial: BigInt('0x' + '7f'.repeat(21)) })
  t.match(parseCertificate(longSerial.der).serialError, /longer than 20 octets/)
  const underscore = await issue({ subject: 'CN=s', issuer: root, key: await newKey('ec256'), san: { dns: ['a_b.example.com'] } })
  t.match(parseCertificate(underscore.der).profileErrors, [/not a valid host name/])
  t.throws(() => parseCertificate(Buffer.concat([root.der, hex('00')])), /trailing data/)
})

t.test('CRLs', async (t) => {
  const { root, leaf } = await makeChain({ kind: 'ec256', intermediates: 0 })
  const crl = parseCrl((await makeCrl({ issuer: root, revoked: [{ serial: leaf, reason: 1 }, { serial: 5n }] })).der)
  t.equal(crl.revoked.size, 2)
  t.equal(crl.revoked.get(BigInt('0x' + leaf.serialHex))?.reason, 1)
  t.ok(crl.revoked.has(5n))
  t.equal(crl.crlNumber, 1n)
  t.equal(crl.unusableReason, undefined)
  t.equal(crl.issuer.key, parseCertificate(root.der).subject.key)
  const delta = parseCrl((await makeCrl({ issuer: root, deltaCrlIndicator: 1 })).der)
  t.ok(delta.isDelta)
  t.match(delta.unusableReason, /delta/)
  t.match(parseCrl((await makeCrl({ issuer: root, crlNumber: false })).der).unusableReason, /no cRLNumber/)
  const caOnly = parseCrl((await makeCrl({ issuer: root, issuingDistributionPoint: { onlyContainsCACerts: true } })).der)
  t.equal(caOnly.scope, 'ca')
  t.equal(caOnly.unusableReason, undefined, 'a scoped CRL is usable for its scope')
  t.equal(parseCrl((await makeCrl({ issuer: root, issuingDistributionPoint: { onlyContainsUserCerts: true } })).der).scope, 'user')
  t.equal(crl.scope, 'all')
  t.match(parseCrl((await makeCrl({ issuer: root, issuingDistributionPoint: { onlySomeReasons: ['keyCompromise'] } })).der).unusableReason, /only some revocation reasons/)
  t.match(parseCrl((await makeCrl({ issuer: root, issuingDistributionPoint: { indirectCRL: true } })).der).unusableReason, /indirect/)
  t.match(parseCrl((await makeCrl({ issuer: root, issuingDistributionPoint: { uri: 'http://crl.example/a.crl' } })).der).unusableReason, /partitioned/)
  t.equal(parseCrl((await makeCrl({ issuer: root, nextUpdate: null })).der).nextUpdate, undefined)
})

function mutate (input: Buffer, rnd: () => number): Buffer {
  const b = Buffer.from(input)
  const op = Math.floor(rnd() * 5)
  const at = Math.floor(rnd() * b.length)
  switch (op) {
    case 0: { // flip one to four bits
      const n = 1 + Math.floor(rnd() * 4)
      for (let i = 0; i < n; i++) { const p = Math.floor(rnd() * b.length); b[p] = (b[p] as number) ^ (1 << Math.floor(rnd() * 8)) }
      return b
    }
    case 1: return b.subarray(0, at) // truncate
    case 2: return Buffer.concat([b.subarray(0, at), Buffer.from([Math.floor(rnd() * 256)]), b.subarray(at)]) // insert
    case 3: return Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]) // delete
    default: { // set a byte to a boundary value (lengths, tags)
      const values = [0x00, 0x7f, 0x80, 0x81, 0x82, 0xff, 0x30, 0xa0]
      b[at] = values[Math.floor(rnd() * values.length)] as number
      return b
    }
  }
}

t.test('fuzz: mutated certificates and CRLs either parse or throw DerError', async (t) => {
  const ec = await makeChain({ kind: 'ec256', leaf: { san: { dns: ['a.example.com'], uri: ['spiffe://example.org/x'], ip: ['2001:db8::1'] }, crlDistributionPoints: ['http://crl.example/c.crl'] }, intermediate: { nameConstraints: { permitted: { dns: ['example.com'], ip: ['192.0.2.0/24'] } } } })
  const rsa = await makeChain({ kind: 'rsa2048', intermediates: 0 })
  const crl = await makeCrl({ issuer: ec.root, revoked: [{ serial: 1n, reason: 1 }, { serial: 2n }] })
  const seeds = [ec.leaf.der, ec.intermediates[0]!.der, rsa.leaf.der]
  const rnd = xorshift(0x5eed)
  const iterations = 4000
  let accepted = 0
  let rejected = 0
  const unexpected: string[] = []
  let slowest = 0
  for (let i = 0; i < iterations; i++) {
    const isCrl = i % 5 === 4
    const input = mutate(isCrl ? crl.der : seeds[i % seeds.length] as Buffer, rnd)
    const start = process.hrtime.bigint()
    try {
      if (isCrl) {
        parseCrl(input)
      } else {
        const c = parseCertificate(input)
        // every field a verifier reads must be usable on an accepted input
        if (typeof c.subject.rfc4514 !== 'string' || typeof c.issuer.key !== 'string' || typeof c.serial !== 'bigint' || c.spkiSha256.length !== 44) {
          unexpected.push(`iteration ${i}: accepted input with unusable fields`)
        }
      }
      accepted++
    } catch (err) {
      if (err instanceof DerError) rejected++
      else unexpected.push(`iteration ${i}: ${(err as Error).name}: ${(err as Error).message}`)
    }
    slowest = Math.max(slowest, Number(process.hrtime.bigint() - start) / 1e6)
  }
  t.same(unexpected, [], 'no exception other than DerError')
  t.equal(accepted + rejected, iterations)
  t.ok(rejected > iterations / 2, `most mutations are refused (${rejected} refused, ${accepted} accepted)`)
  // a loose bound (the machine may be busy): it catches runaway parsing, not slowness
  t.ok(slowest < 1000, `no input takes long (slowest ${slowest.toFixed(2)} ms)`)
})

t.test('fuzz: random bytes after a SEQUENCE header', async (t) => {
  const rnd = xorshift(42)
  const unexpected: string[] = []
  for (let i = 0; i < 2000; i++) {
    const len = Math.floor(rnd() * 64)
    const body = Buffer.alloc(len)
    for (let j = 0; j < len; j++) body[j] = Math.floor(rnd() * 256)
    const input = Buffer.concat([Buffer.from([0x30, len]), body])
    try {
      parseCertificate(input)
      unexpected.push(`iteration ${i} parsed as a certificate`)
    } catch (err) {
      if (!(err instanceof DerError)) unexpected.push(`iteration ${i}: ${(err as Error).message}`)
    }
  }
  t.same(unexpected, [])
})
