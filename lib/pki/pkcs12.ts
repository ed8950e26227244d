// PKCS#12 (RFC 7292) for every key type, from node-forge's ASN.1, PBES2 and PKCS#12
// key derivation: forge's own pkcs12 writer only takes RSA keys in its own form.
// Algorithms as OpenSSL 3 writes by default, so that no reader needs a "legacy" mode:
// the key bag is shrouded with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC); the
// certificates sit in a plain data SafeContents; the MAC is HMAC-SHA256 over the
// AuthenticatedSafe with the RFC 7292 appendix B key.
import { Buffer } from 'node:buffer'
import { createHash, randomBytes } from 'node:crypto'
import forge from 'node-forge'

const asn1 = forge.asn1
const U = asn1.Class.UNIVERSAL
const C = asn1.Class.CONTEXT_SPECIFIC
const T = asn1.Type

const OIDS = {
  data: '1.2.840.113549.1.7.1',
  pkcs8ShroudedKeyBag: '1.2.840.113549.1.12.10.1.2',
  certBag: '1.2.840.113549.1.12.10.1.3',
  x509Certificate: '1.2.840.113549.1.9.22.1',
  friendlyName: '1.2.840.113549.1.9.20',
  localKeyId: '1.2.840.113549.1.9.21',
  sha256: '2.16.840.1.101.3.4.2.1'
}

const ITERATIONS = 2048

const bin = (buf: Buffer): string => buf.toString('binary')
const oid = (dotted: string): forge.asn1.Asn1 => asn1.create(U, T.OID, false, asn1.oidToDer(dotted).getBytes())
const seq = (items: forge.asn1.Asn1[]): forge.asn1.Asn1 => asn1.create(U, T.SEQUENCE, true, items)
const octets = (bytes: string): forge.asn1.Asn1 => asn1.create(U, T.OCTETSTRING, false, bytes)
const der = (node: forge.asn1.Asn1): string => asn1.toDer(node).getBytes()

function dataContentInfo (content: forge.asn1.Asn1): forge.asn1.Asn1 {
  return seq([oid(OIDS.data), asn1.create(C, 0, true, [octets(der(content))])])
}

function bagAttributes (localKeyId: Buffer, friendlyName: string | undefined): forge.asn1.Asn1 {
  const attrs = [seq([oid(OIDS.localKeyId), asn1.create(U, T.SET, true, [octets(bin(localKeyId))])])]
  if (friendlyName !== undefined) {
    attrs.push(seq([oid(OIDS.friendlyName), asn1.create(U, T.SET, true, [asn1.create(U, T.BMPSTRING, false, friendlyName)])]))
  }
  return asn1.create(U, T.SET, true, attrs)
}

function certBag (certDer: Buffer, attributes: forge.asn1.Asn1 | undefined): forge.asn1.Asn1 {
  const bag = [
    oid(OIDS.certBag),
    asn1.create(C, 0, true, [seq([oid(OIDS.x509Certificate), asn1.create(C, 0, true, [octets(bin(certDer))])])])
  ]
  if (attributes !== undefined) bag.push(attributes)
  return seq(bag)
}

export interface Pkcs12Input {
  pkcs8Der: Buffer
  certDer: Buffer
  chainDers: Buffer[]
  password: string
  friendlyName?: string | undefined
}

export function buildPkcs12 (input: Pkcs12Input): Buffer {
  const localKeyId = createHash('sha1').update(input.certDer).digest()
  const attributes = bagAttributes(localKeyId, input.friendlyName)
  const certs = seq([certBag(input.certDer, attributes), ...input.chainDers.map((d) => certBag(d, undefined))])
  const shrouded = forge.pki.encryptPrivateKeyInfo(asn1.fromDer(bin(input.pkcs8Der)), forge.util.encodeUtf8(input.password), {
    algorithm: 'aes256',
    count: ITERATIONS,
    saltSize: 16,
    prfAlgorithm: 'sha256'
  })
  const keys = seq([seq([oid(OIDS.pkcs8ShroudedKeyBag), asn1.create(C, 0, true, [shrouded]), attributes])])
  const authSafe = der(seq([dataContentInfo(certs), dataContentInfo(keys)]))

  const salt = randomBytes(16)
  const macKey = forge.pkcs12.generateKey(input.password, forge.util.createBuffer(bin(salt)), 3, ITERATIONS, 32, forge.md.sha256.create())
  const hmac = forge.hmac.create()
  hmac.start('sha256', macKey.getBytes())
  hmac.update(authSafe)
  const macData = seq([
    seq([seq([oid(OIDS.sha256), asn1.create(U, T.NULL, false, '')]), octets(hmac.digest().getBytes())]),
    octets(bin(salt)),
    asn1.create(U, T.INTEGER, false, asn1.integerToDer(ITERATIONS).getBytes())
  ])
  const pfx = seq([
    asn1.create(U, T.INTEGER, false, asn1.integerToDer(3).getBytes()),
    seq([oid(OIDS.data), asn1.create(C, 0, true, [octets(authSafe)])]),
    macData
  ])
  return Buffer.from(der(pfx), 'binary')
}
