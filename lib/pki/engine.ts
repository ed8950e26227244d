/**
 * The signing engine shared by lib/pki (the public development PKI) and the
 * test fixtures (test/helpers/pki.ts): keys, names, extensions, certificates
 * and CRLs. Internal: the public API is lib/pki/index.ts.
 *
 * Which library builds what: a certificate whose subject key and signing key
 * are both RSA is built and signed with node-forge; any other certificate, and
 * every CRL, with @peculiar/x509. Keys come from node:crypto (forge imports
 * the PEM; WebCrypto imports the PKCS#8). Both libraries get names and
 * extension values as finished DER, so the bytes are the same whichever
 * library signs:
 *   - names are built with forge.asn1 from structured RDNs, byte for byte (any
 *     value, NUL and newline included, any string tag, multi-valued RDNs);
 *   - extension values are built with @peculiar/asn1-x509 classes.
 *
 * Names: a NameSpec is either RDNs in DER order (RdnAttr[][]; an inner array
 * with more than one entry is a multi-valued RDN) or a string such as
 * 'CN=leaf,O=Acme' read left to right in DER order, with '+' joining a
 * multi-valued RDN and '\,' '\+' '\=' '\\' '\XX' (one UTF-8 byte) escapes.
 *
 * Limits (the signing library decides):
 *   - version: 1, MD5 signatures and serials that are not positive and
 *     minimally encoded only work on the node-forge path (RSA subject key and
 *     RSA signing key). @peculiar/x509 always writes v3 and normalises the
 *     serial (positive, minimal; an all-zero serial becomes random).
 *   - Ed25519 signatures ignore signatureHash.
 *   - CRL entries are written with a positive, minimal serial, and reason 0
 *     (unspecified) is written as no reason code.
 *
 * These libraries are optional dependencies of the package: never import this
 * module from anything the plugin loads.
 */
import 'reflect-metadata'
import { Buffer } from 'node:buffer'
import { createHash, generateKeyPair, randomBytes, webcrypto, X509Certificate, type KeyObject } from 'node:crypto'
import { isIPv4, isIPv6 } from 'node:net'
import { promisify } from 'node:util'
import forge from 'node-forge'
import * as x509 from '@peculiar/x509'
import { AsnConvert } from '@peculiar/asn1-schema'
import * as ax from '@peculiar/asn1-x509'

x509.cryptoProvider.set(globalThis.crypto)

// ---------------------------------------------------------------- keys

export type KeyKind = 'rsa1024' | 'rsa2048' | 'rsa3072' | 'rsa4096' | 'ec256' | 'ec384' | 'ed25519'

export interface KeyPair {
  readonly kind: KeyKind
  readonly privateKey: KeyObject
  readonly publicKey: KeyObject
  /** PKCS#8 PEM */
  readonly privateKeyPem: string
  /** SPKI PEM */
  readonly publicKeyPem: string
  /** SubjectPublicKeyInfo DER */
  readonly spkiDer: Buffer
  /** RFC 5280 method-1 key identifier: SHA-1 of the subjectPublicKey bits */
  readonly keyId: Buffer
}

const generateKeyPairAsync = promisify(generateKeyPair)

/** A fresh key of `kind`, from node:crypto. */
export async function generateKeyPairOfKind (kind: KeyKind): Promise<KeyPair> {
  let pair: { publicKey: KeyObject, privateKey: KeyObject }
  switch (kind) {
    case 'rsa1024': pair = await generateKeyPairAsync('rsa', { modulusLength: 1024 }); break
    case 'rsa2048': pair = await generateKeyPairAsync('rsa', { modulusLength: 2048 }); break
    case 'rsa3072': pair = await generateKeyPairAsync('rsa', { modulusLength: 3072 }); break
    case 'rsa4096': pair = await generateKeyPairAsync('rsa', { modulusLength: 4096 }); break
    case 'ec256': pair = await generateKeyPairAsync('ec', { namedCurve: 'P-256' }); break
    case 'ec384': pair = await generateKeyPairAsync('ec', { namedCurve: 'P-384' }); break
    case 'ed25519': pair = await generateKeyPairAsync('ed25519'); break
    default: throw new Error(`unknown key kind ${String(kind)}`)
  }
  const spkiDer = pair.publicKey.export({ type: 'spki', format: 'der' })
  return Object.freeze({
    kind,
    privateKey: pair.privateKey,
    publicKey: pair.publicKey,
    privateKeyPem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    spkiDer,
    keyId: keyIdOfSpki(spkiDer)
  })
}
export const isRsa = (key: KeyPair): boolean => key.kind.startsWith('rsa')

// ---------------------------------------------------------------- DER reading (just enough)

export interface Tlv { tag: number, start: number, contentStart: number, end: number }

export function tlvAt (der: Buffer, offset: number): Tlv {
  const tag = der.readUInt8(offset)
  let length = der.readUInt8(offset + 1)
  let p = offset + 2
  if (length & 0x80) {
    const n = length & 0x7f
    length = 0
    for (let i = 0; i < n; i++) length = length * 256 + der.readUInt8(p++)
  }
  return { tag, start: offset, contentStart: p, end: p + length }
}

export function childrenOf (der: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = []
  for (let p = parent.contentStart; p < parent.end;) {
    const child = tlvAt(der, p)
    out.push(child)
    p = child.end
  }
  return out
}

export function keyIdOfSpki (spkiDer: Buffer): Buffer {
  const bits = childrenOf(spkiDer, tlvAt(spkiDer, 0))[1]
  if (bits === undefined) throw new Error('bad SubjectPublicKeyInfo')
  // skip the unused-bits octet of the BIT STRING
  return createHash('sha1').update(spkiDer.subarray(bits.contentStart + 1, bits.end)).digest()
}

/** The serial number INTEGER's content octets, uppercase hex, exactly as encoded. */
export function serialOf (certDer: Buffer): string {
  const tbs = tlvAt(certDer, tlvAt(certDer, 0).contentStart)
  const fields = childrenOf(certDer, tbs)
  const serial = fields[0]?.tag === 0xa0 ? fields[1] : fields[0]
  if (serial === undefined) throw new Error('bad certificate')
  return certDer.subarray(serial.contentStart, serial.end).toString('hex').toUpperCase()
}

export function toPem (der: Buffer, label = 'CERTIFICATE'): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`
}

// ---------------------------------------------------------------- names

export type StringTag = 'utf8' | 'printable' | 'ia5' | 'bmp' | 'teletex' | 'universal'

export interface RdnAttr {
  /** 'CN', 'O', 'OU', 'C', 'ST', 'L', 'street', 'SN' (surname), 'GN', 'title', 'serialNumber',
   *  'emailAddress', 'DC', 'UID', 'organizationIdentifier', or a dotted OID */
  type: string
  value: string
  /** default: printable for C and serialNumber, ia5 for emailAddress and DC, utf8 otherwise */
  tag?: StringTag
}

/** RDNs in DER order, or an RFC 4514-like string read in DER order ('CN=leaf,O=Acme'). */
export type NameSpec = string | RdnAttr[][]

export const ATTRIBUTE_OIDS: Record<string, string> = {
  CN: '2.5.4.3',
  SN: '2.5.4.4',
  serialNumber: '2.5.4.5',
  C: '2.5.4.6',
  L: '2.5.4.7',
  ST: '2.5.4.8',
  street: '2.5.4.9',
  O: '2.5.4.10',
  OU: '2.5.4.11',
  title: '2.5.4.12',
  GN: '2.5.4.42',
  initials: '2.5.4.43',
  pseudonym: '2.5.4.65',
  organizationIdentifier: '2.5.4.97',
  emailAddress: '1.2.840.113549.1.9.1',
  DC: '0.9.2342.19200300.100.1.25',
  UID: '0.9.2342.19200300.100.1.1'
}

const STRING_TAGS: Record<StringTag, number> = {
  utf8: 0x0c, printable: 0x13, teletex: 0x14, ia5: 0x16, universal: 0x1c, bmp: 0x1e
}

function attributeOid (type: string): string {
  if (/^\d+(\.\d+)+$/.test(type)) return type
  const oid = ATTRIBUTE_OIDS[type]
  if (oid === undefined) throw new Error(`unknown attribute type ${type}`)
  return oid
}

function defaultTag (oid: string): StringTag {
  if (oid === '2.5.4.6' || oid === '2.5.4.5') return 'printable'
  if (oid === '1.2.840.113549.1.9.1' || oid === '0.9.2342.19200300.100.1.25') return 'ia5'
  return 'utf8'
}

function stringOctets (value: string, tag: StringTag): Buffer {
  switch (tag) {
    case 'utf8': return Buffer.from(value, 'utf8')
    case 'universal': {
      const cps = Array.from(value, (ch) => ch.codePointAt(0) ?? 0)
      const out = Buffer.alloc(cps.length * 4)
      cps.forEach((cp, i) => out.writeUInt32BE(cp, i * 4))
      return out
    }
    // printable, ia5, teletex: one octet per character, as given (no charset check, on purpose)
    default: return Buffer.from(value, 'latin1')
  }
}

function parseNameString (text: string): RdnAttr[][] {
  const rdns: RdnAttr[][] = []
  let rdn: RdnAttr[] = []
  let type: string | undefined
  let bytes: number[] = []
  const finishAttr = (): void => {
    const value = Buffer.from(bytes).toString('utf8').trim()
    if (type === undefined) {
      if (value === '' && rdn.length === 0 && rdns.length === 0) return
      throw new Error(`bad name string: ${JSON.stringify(text)}`)
    }
    rdn.push({ type: type.trim(), value })
    type = undefined
    bytes = []
  }
  for (let i = 0; i < text.length; i++) {
    const ch = text.charAt(i)
    if (ch === '\\') {
      const hex = text.slice(i + 1, i + 3)
      if (/^[0-9a-fA-F]{2}$/.test(hex)) {
        bytes.push(parseInt(hex, 16))
        i += 2
      } else {
        bytes.push(...Buffer.from(text.charAt(i + 1), 'utf8'))
        i += 1
      }
    } else if (ch === '=' && type === undefined) {
      type = Buffer.from(bytes).toString('utf8')
      bytes = []
    } else if (ch === '+' || ch === ',') {
      finishAttr()
      if (ch === ',') {
        rdns.push(rdn)
        rdn = []
      }
    } else {
      bytes.push(...Buffer.from(ch, 'utf8'))
    }
  }
  finishAttr()
  if (rdn.length > 0) rdns.push(rdn)
  return rdns
}

const asn1 = forge.asn1
const UNIVERSAL = asn1.Class.UNIVERSAL

export function forgeNode (der: Buffer): forge.asn1.Asn1 {
  return asn1.fromDer(forge.util.createBuffer(der.toString('binary')))
}

export function forgeDer (node: forge.asn1.Asn1): Buffer {
  return Buffer.from(asn1.toDer(node).getBytes(), 'binary')
}

/** DER of a Name. Attributes of a multi-valued RDN are sorted as DER's SET OF requires. */
export function nameDer (name: NameSpec): Buffer {
  const rdns = typeof name === 'string' ? parseNameString(name) : name
  const sets = rdns.map((rdn) => {
    if (rdn.length === 0) throw new Error('an RDN needs at least one attribute')
    const attrs = rdn.map((attr) => {
      const oid = attributeOid(attr.type)
      const tag = attr.tag ?? defaultTag(oid)
      return forgeDer(asn1.create(UNIVERSAL, asn1.Type.SEQUENCE, true, [
        asn1.create(UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(oid).getBytes()),
        // forge.asn1 takes a BMPString as text and writes UTF-16 itself; every other string as octets
        asn1.create(UNIVERSAL, STRING_TAGS[tag], false, tag === 'bmp' ? attr.value : stringOctets(attr.value, tag).toString('binary'))
      ]))
    }).sort(Buffer.compare)
    return asn1.create(UNIVERSAL, asn1.Type.SET, true, attrs.map(forgeNode))
  })
  return forgeDer(asn1.create(UNIVERSAL, asn1.Type.SEQUENCE, true, sets))
}

// ---------------------------------------------------------------- extensions

export interface RawExtension {
  oid: string
  critical?: boolean
  /** the extnValue contents (what goes inside the OCTET STRING) */
  valueDer: Buffer
}

/** SAN entries, and name-constraint subtrees (ip then takes CIDRs: '10.0.0.0/8', 'fd00::/8'). */
export interface GeneralNamesSpec {
  dns?: string[]
  email?: string[]
  uri?: string[]
  /** v4 or v6 text; in name constraints a CIDR */
  ip?: string[]
  dirName?: NameSpec[]
}

export type KeyUsageName = 'digitalSignature' | 'nonRepudiation' | 'keyEncipherment' | 'dataEncipherment' |
  'keyAgreement' | 'keyCertSign' | 'cRLSign' | 'encipherOnly' | 'decipherOnly'

export type EkuName = 'clientAuth' | 'serverAuth' | 'codeSigning' | 'emailProtection' | 'timeStamping' |
  'ocspSigning' | 'anyExtendedKeyUsage'

const EKU_OIDS: Record<EkuName, string> = {
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  codeSigning: '1.3.6.1.5.5.7.3.3',
  emailProtection: '1.3.6.1.5.5.7.3.4',
  timeStamping: '1.3.6.1.5.5.7.3.8',
  ocspSigning: '1.3.6.1.5.5.7.3.9',
  anyExtendedKeyUsage: '2.5.29.37.0'
}

export const OID = {
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  cRLNumber: '2.5.29.20',
  cRLReason: '2.5.29.21',
  issuingDistributionPoint: '2.5.29.28',
  deltaCRLIndicator: '2.5.29.27',
  nameConstraints: '2.5.29.30',
  cRLDistributionPoints: '2.5.29.31',
  certificatePolicies: '2.5.29.32',
  policyConstraints: '2.5.29.36',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  ...EKU_OIDS
} as const

export const ser = (value: unknown): Buffer => Buffer.from(AsnConvert.serialize(value))

function ipForAsn (text: string): string {
  const [address = '', prefix] = text.split('/')
  const suffix = prefix === undefined ? '' : `/${prefix}`
  if (isIPv4(address)) return address + suffix
  if (!isIPv6(address)) throw new Error(`not an IP address: ${text}`)
  // the converter expands '::' but knows nothing of an embedded IPv4 tail
  let v6 = address
  const v4Tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(v6)
  if (v4Tail?.[1] !== undefined) {
    const b = v4Tail[1].split('.').map(Number)
    const hi = (((b[0] ?? 0) << 8) | (b[1] ?? 0)).toString(16)
    const lo = (((b[2] ?? 0) << 8) | (b[3] ?? 0)).toString(16)
    v6 = `${v6.slice(0, -v4Tail[1].length)}${hi}:${lo}`
  }
  return v6 + suffix
}

export function generalNames (spec: GeneralNamesSpec): ax.GeneralName[] {
  return [
    ...(spec.dns ?? []).map((dNSName) => new ax.GeneralName({ dNSName })),
    ...(spec.email ?? []).map((rfc822Name) => new ax.GeneralName({ rfc822Name })),
    ...(spec.uri ?? []).map((uniformResourceIdentifier) => new ax.GeneralName({ uniformResourceIdentifier })),
    ...(spec.ip ?? []).map((ip) => new ax.GeneralName({ iPAddress: ipForAsn(ip) })),
    ...(spec.dirName ?? []).map((n) => new ax.GeneralName({ directoryName: AsnConvert.parse(nameDer(n), ax.Name) }))
  ]
}

function subtrees (spec: GeneralNamesSpec | undefined): ax.GeneralSubtrees | undefined {
  if (spec === undefined) return undefined
  return new ax.GeneralSubtrees(generalNames(spec).map((base) => new ax.GeneralSubtree({ base })))
}

function keyUsageFlags (usages: KeyUsageName[]): number {
  return usages.reduce((flags, usage) => flags | ax.KeyUsageFlags[usage], 0)
}

// ---------------------------------------------------------------- certificates

export type SignatureHash = 'md5' | 'sha1' | 'sha256' | 'sha384' | 'sha512'

export interface CertSpec {
  subject: NameSpec
  /** omitted: self-signed with `key` */
  issuer?: Issued
  /** the issuer field; default: the issuer's subject bytes (or `subject` when self-signed) */
  issuerName?: NameSpec
  /** subject key (issueWithKey requires it; the test fixtures default to a pooled rsa2048 key that is not the signing key) */
  key?: KeyPair
  /** sign with this key instead of the issuer's (a wrong-key signature when it is not the issuer's) */
  signWith?: KeyPair
  /** hex (used as the INTEGER's octets as given on the forge path) or bigint; default 16 random octets, positive */
  serial?: string | bigint
  /** default now - 1 h */
  notBefore?: Date
  /** default now + 30 days */
  notAfter?: Date
  /** 1: no version field and no standard extensions (extraExtensions are still written). forge path only. Default 3 */
  version?: 1 | 3
  /** basicConstraints cA; default false */
  ca?: boolean
  pathLen?: number
  /** false: no basicConstraints at all; default critical */
  basicConstraints?: false | { critical?: boolean }
  /** default CA: keyCertSign, cRLSign; RSA leaf: digitalSignature, keyEncipherment; other leaf: digitalSignature */
  keyUsage?: KeyUsageName[] | false
  /** default true */
  keyUsageCritical?: boolean
  /** names or dotted OIDs; default leaf: clientAuth, CA: none */
  extKeyUsage?: Array<EkuName | string> | false
  /** default false */
  extKeyUsageCritical?: boolean
  san?: GeneralNamesSpec
  /** default false */
  sanCritical?: boolean
  /** default critical */
  nameConstraints?: { permitted?: GeneralNamesSpec, excluded?: GeneralNamesSpec, critical?: boolean }
  /** true: SHA-1 of the key (default); a Buffer: that value; false: none */
  subjectKeyIdentifier?: boolean | Buffer
  /** true: the issuer's key id (default unless self-signed); a Buffer: that value; false: none */
  authorityKeyIdentifier?: boolean | Buffer
  /** URIs */
  crlDistributionPoints?: string[]
  /** appended after the standard extensions; may duplicate one of them */
  extraExtensions?: RawExtension[]
  /** default sha384 for an ec384 signer, sha256 otherwise */
  signatureHash?: SignatureHash
}

/** The spec as issued: defaults filled in, so `issue({ ...issued.spec, ... })` re-issues it. */
export interface ResolvedCertSpec extends CertSpec {
  key: KeyPair
  serial: string
  notBefore: Date
  notAfter: Date
}

export interface Issued {
  /** node:crypto view, parsed on first access (throws if OpenSSL cannot parse the certificate) */
  readonly cert: X509Certificate
  readonly pem: string
  readonly der: Buffer
  /** the subject key */
  readonly key: KeyPair
  readonly spec: ResolvedCertSpec
  /** serial INTEGER content octets as encoded, uppercase hex */
  readonly serialHex: string
  /** DER of the subject Name */
  readonly subjectDer: Buffer
  /** the subjectKeyIdentifier written, if any */
  readonly subjectKeyId: Buffer | undefined
  readonly builtWith: 'node-forge' | '@peculiar/x509'
}

export function serialHexOf (serial: string | bigint | undefined): string {
  if (serial === undefined) {
    const bytes = randomBytes(16)
    bytes[0] = (bytes.readUInt8(0) & 0x7f) || 0x01
    return bytes.toString('hex').toUpperCase()
  }
  if (typeof serial === 'bigint') {
    if (serial >= 0n) {
      let hex = serial.toString(16)
      if (hex.length % 2 === 1) hex = `0${hex}`
      if (parseInt(hex.slice(0, 2), 16) > 0x7f) hex = `00${hex}`
      return hex.toUpperCase()
    }
    // two's complement, minimal length
    let len = 1
    while (-serial > 1n << BigInt(8 * len - 1)) len++
    return ((1n << BigInt(8 * len)) + serial).toString(16).padStart(2 * len, '0').toUpperCase()
  }
  let hex = serial.replace(/^0x/i, '').replace(/[:\s]/g, '')
  if (!/^[0-9a-fA-F]+$/.test(hex)) throw new Error(`bad serial ${serial}`)
  if (hex.length % 2 === 1) hex = `0${hex}`
  return hex.toUpperCase()
}

export function defaultHash (signer: KeyPair): SignatureHash {
  return signer.kind === 'ec384' ? 'sha384' : 'sha256'
}

function buildExtensions (spec: ResolvedCertSpec, selfSigned: boolean): RawExtension[] {
  const exts: RawExtension[] = []
  if (spec.version === 1) return [...(spec.extraExtensions ?? [])]
  const ca = spec.ca === true

  let ski: Buffer | undefined
  if (spec.subjectKeyIdentifier !== false) {
    ski = Buffer.isBuffer(spec.subjectKeyIdentifier) ? spec.subjectKeyIdentifier : spec.key.keyId
    exts.push({ oid: OID.subjectKeyIdentifier, valueDer: ser(new ax.SubjectKeyIdentifier(ski)) })
  }
  const aki = spec.authorityKeyIdentifier ?? !selfSigned
  if (aki !== false) {
    const keyId = Buffer.isBuffer(aki)
      ? aki
      : spec.issuer?.subjectKeyId ?? spec.issuer?.key.keyId ?? spec.key.keyId
    exts.push({
      oid: OID.authorityKeyIdentifier,
      valueDer: ser(new ax.AuthorityKeyIdentifier({ keyIdentifier: new ax.KeyIdentifier(keyId) }))
    })
  }
  if (spec.basicConstraints !== false) {
    exts.push({
      oid: OID.basicConstraints,
      critical: spec.basicConstraints?.critical ?? true,
      valueDer: ser(new ax.BasicConstraints({ cA: ca, pathLenConstraint: spec.pathLen }))
    })
  }
  const keyUsage = spec.keyUsage ?? (ca
    ? ['keyCertSign', 'cRLSign']
    : isRsa(spec.key) ? ['digitalSignature', 'keyEncipherment'] : ['digitalSignature'])
  if (keyUsage !== false) {
    exts.push({
      oid: OID.keyUsage,
      critical: spec.keyUsageCritical ?? true,
      valueDer: ser(new ax.KeyUsage(keyUsageFlags(keyUsage)))
    })
  }
  const eku = spec.extKeyUsage ?? (ca ? false : ['clientAuth'])
  if (eku !== false) {
    const oids = eku.map((name) => (EKU_OIDS as Record<string, string>)[name] ?? name)
    exts.push({ oid: OID.extKeyUsage, critical: spec.extKeyUsageCritical ?? false, valueDer: ser(new ax.ExtendedKeyUsage(oids)) })
  }
  if (spec.san !== undefined) {
    exts.push({
      oid: OID.subjectAltName,
      critical: spec.sanCritical ?? false,
      valueDer: ser(new ax.SubjectAlternativeName(generalNames(spec.san)))
    })
  }
  if (spec.nameConstraints !== undefined) {
    const nc = spec.nameConstraints
    exts.push({
      oid: OID.nameConstraints,
      critical: nc.critical ?? true,
      valueDer: ser(new ax.NameConstraints({ permittedSubtrees: subtrees(nc.permitted), excludedSubtrees: subtrees(nc.excluded) }))
    })
  }
  if (spec.crlDistributionPoints !== undefined) {
    exts.push({
      oid: OID.cRLDistributionPoints,
      valueDer: ser(new ax.CRLDistributionPoints(spec.crlDistributionPoints.map((uri) => new ax.DistributionPoint({
        distributionPoint: new ax.DistributionPointName({ fullName: [new ax.GeneralName({ uniformResourceIdentifier: uri })] })
      }))))
    })
  }
  exts.push(...(spec.extraExtensions ?? []))
  return exts
}

// forge keeps RSA keys in pure JS; parse each PEM once
const forgeKeys = new WeakMap<KeyPair, forge.pki.rsa.PrivateKey>()
function forgePrivateKey (key: KeyPair): forge.pki.rsa.PrivateKey {
  let forgeKey = forgeKeys.get(key)
  if (forgeKey === undefined) {
    forgeKey = forge.pki.privateKeyFromPem(key.privateKeyPem)
    forgeKeys.set(key, forgeKey)
  }
  return forgeKey
}

const forgePki = forge.pki as typeof forge.pki & { getTBSCertificate(cert: forge.pki.Certificate): forge.asn1.Asn1 }

interface TbsParts {
  spec: ResolvedCertSpec
  signer: KeyPair
  hash: SignatureHash
  subjectDer: Buffer
  issuerDer: Buffer
  extensions: RawExtension[]
}

/**
 * forge.asn1.toDer drops one redundant leading 00 (or FF) octet of an INTEGER;
 * give it one more so that a deliberately non-minimal serial is written as asked.
 */
function forgeIntegerHex (hex: string): string {
  const [b0 = 0, b1 = 0] = Buffer.from(hex, 'hex')
  if (hex.length >= 4 && ((b0 === 0 && (b1 & 0x80) === 0) || (b0 === 0xff && (b1 & 0x80) !== 0))) {
    return hex.slice(0, 2) + hex
  }
  return hex
}

function buildWithForge (p: TbsParts): Buffer {
  const cert = forge.pki.createCertificate()
  cert.version = 2
  cert.serialNumber = forgeIntegerHex(p.spec.serial)
  cert.validity.notBefore = p.spec.notBefore
  cert.validity.notAfter = p.spec.notAfter
  cert.publicKey = forge.pki.publicKeyFromPem(p.spec.key.publicKeyPem)
  cert.setExtensions(p.extensions.map((e) => ({ id: e.oid, critical: e.critical === true, value: e.valueDer.toString('binary') })))
  const md = forge.md[p.hash].create()
  const algorithmOid = forge.pki.oids[`${p.hash}WithRSAEncryption`]
  if (algorithmOid === undefined) throw new Error(`node-forge has no OID for ${p.hash}WithRSAEncryption`)
  cert.md = md
  cert.signatureOid = cert.siginfo.algorithmOid = algorithmOid
  // forge writes one SET per attribute and its own string types, so the names are spliced in as built
  const tbs = forgePki.getTBSCertificate(cert)
  const fields = tbs.value as forge.asn1.Asn1[]
  fields[3] = forgeNode(p.issuerDer)
  fields[5] = forgeNode(p.subjectDer)
  if (p.spec.version === 1) fields.shift()
  cert.tbsCertificate = tbs
  md.update(asn1.toDer(tbs).getBytes())
  cert.signature = forgePrivateKey(p.signer).sign(md)
  return forgeDer(forge.pki.certificateToAsn1(cert))
}

const WEB_HASH: Record<SignatureHash, string> = {
  md5: 'MD5', sha1: 'SHA-1', sha256: 'SHA-256', sha384: 'SHA-384', sha512: 'SHA-512'
}

// the DOM CryptoKey type that @peculiar/x509 declares; node:crypto's webcrypto.CryptoKey is the same object
export type X509SigningKey = Parameters<typeof x509.X509CrlGenerator.create>[0]['signingKey']

export interface WebSigner { signingKey: webcrypto.CryptoKey, signingAlgorithm: { name: string, hash?: string } }

const webKeys = new WeakMap<KeyPair, Map<string, Promise<WebSigner>>>()

async function importWebSigner (key: KeyPair, hash: SignatureHash): Promise<WebSigner> {
  const pkcs8 = key.privateKey.export({ type: 'pkcs8', format: 'der' })
  const import_ = (algorithm: webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams | webcrypto.Algorithm) =>
    webcrypto.subtle.importKey('pkcs8', pkcs8, algorithm, false, ['sign'])
  if (key.kind === 'ed25519') {
    return { signingKey: await import_({ name: 'Ed25519' }), signingAlgorithm: { name: 'Ed25519' } }
  }
  if (hash === 'md5') throw new Error('@peculiar/x509 (WebCrypto) cannot sign with MD5: use RSA subject and signing keys (node-forge path)')
  if (isRsa(key)) {
    const algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: WEB_HASH[hash] }
    return { signingKey: await import_(algorithm), signingAlgorithm: algorithm }
  }
  const namedCurve = key.kind === 'ec384' ? 'P-384' : 'P-256'
  return {
    signingKey: await import_({ name: 'ECDSA', namedCurve }),
    signingAlgorithm: { name: 'ECDSA', hash: WEB_HASH[hash] }
  }
}

export function webSigner (key: KeyPair, hash: SignatureHash): Promise<WebSigner> {
  let byHash = webKeys.get(key)
  if (byHash === undefined) {
    byHash = new Map()
    webKeys.set(key, byHash)
  }
  let signer = byHash.get(hash)
  if (signer === undefined) {
    signer = importWebSigner(key, hash)
    byHash.set(hash, signer)
    signer.catch(() => byHash.delete(hash))
  }
  return signer
}

async function buildWithPeculiar (p: TbsParts): Promise<Buffer> {
  if (p.spec.version === 1) throw new Error('version 1 certificates need RSA subject and signing keys (node-forge path)')
  const { signingKey, signingAlgorithm } = await webSigner(p.signer, p.hash)
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: p.spec.serial,
    subject: new x509.Name(p.subjectDer),
    issuer: new x509.Name(p.issuerDer),
    notBefore: p.spec.notBefore,
    notAfter: p.spec.notAfter,
    publicKey: p.spec.key.spkiDer,
    signingKey: signingKey as X509SigningKey,
    signingAlgorithm,
    extensions: p.extensions.map((e) => new x509.Extension(e.oid, e.critical === true, e.valueDer))
  })
  return Buffer.from(cert.rawData)
}

export function makeIssued (der: Buffer, spec: ResolvedCertSpec, subjectDer: Buffer, subjectKeyId: Buffer | undefined,
  builtWith: Issued['builtWith']): Issued {
  let parsed: X509Certificate | undefined
  return Object.freeze({
    get cert (): X509Certificate {
      parsed ??= new X509Certificate(der)
      return parsed
    },
    pem: toPem(der),
    der,
    key: spec.key,
    spec,
    serialHex: serialOf(der),
    subjectDer,
    subjectKeyId,
    builtWith
  })
}

/** Issue one certificate with the subject key `spec.key`. See CertSpec for every other default. */
export async function issueWithKey (spec: CertSpec & { key: KeyPair }): Promise<Issued> {
  const selfSigned = spec.issuer === undefined
  const key = spec.key
  const signer = spec.signWith ?? spec.issuer?.key ?? key
  const now = Date.now()
  const resolved: ResolvedCertSpec = {
    ...spec,
    key,
    serial: serialHexOf(spec.serial),
    notBefore: spec.notBefore ?? new Date(now - 3600e3),
    notAfter: spec.notAfter ?? new Date(now + 30 * 86400e3)
  }
  const subjectDer = nameDer(spec.subject)
  const issuerDer = spec.issuerName !== undefined
    ? nameDer(spec.issuerName)
    : spec.issuer?.subjectDer ?? subjectDer
  const extensions = buildExtensions(resolved, selfSigned)
  const parts: TbsParts = {
    spec: resolved,
    signer,
    hash: spec.signatureHash ?? defaultHash(signer),
    subjectDer,
    issuerDer,
    extensions
  }
  const useForge = isRsa(key) && isRsa(signer)
  const der = useForge ? buildWithForge(parts) : await buildWithPeculiar(parts)
  const written = resolved.version === 1 || spec.subjectKeyIdentifier === false
    ? undefined
    : Buffer.isBuffer(spec.subjectKeyIdentifier) ? spec.subjectKeyIdentifier : key.keyId
  return makeIssued(der, resolved, subjectDer, written, useForge ? 'node-forge' : '@peculiar/x509')
}

/** The same certificate with the last bit of its signature flipped. */
export function tamperSignature (issued: Pick<Issued, 'der'>): { der: Buffer, pem: string } {
  const der = Buffer.from(issued.der)
  // the signature BIT STRING ends the certificate; for ECDSA this changes s and keeps the DER valid
  der[der.length - 1] = der.readUInt8(der.length - 1) ^ 0x01
  return { der, pem: toPem(der) }
}

// ---------------------------------------------------------------- CRLs

export interface RevokedEntry {
  /** a serial (hex or bigint) or the certificate itself */
  serial: string | bigint | Issued
  /** revocationDate; default now - 1 h */
  date?: Date
  /** CRLReason code (1 keyCompromise, 4 superseded, ...); 0 is written as no reason */
  reason?: number
  invalidityDate?: Date
  /** raw crlEntryExtensions, appended */
  extensions?: RawExtension[]
}

export interface CrlSpec {
  issuer: Issued
  revoked?: RevokedEntry[]
  /** default now - 1 h */
  thisUpdate?: Date
  /** default now + 7 days; null omits nextUpdate */
  nextUpdate?: Date | null
  /** default 1; false omits the cRLNumber extension */
  crlNumber?: number | false
  /** BaseCRLNumber: makes this a delta CRL (critical extension) */
  deltaCrlIndicator?: number
  /** issuingDistributionPoint, critical unless told otherwise */
  issuingDistributionPoint?: {
    uri?: string
    onlyContainsUserCerts?: boolean
    onlyContainsCACerts?: boolean
    onlySomeReasons?: ReasonFlagName[]
    indirectCRL?: boolean
    critical?: boolean
  }
  /** true: the issuer's key id (default); a Buffer: that value; false: none */
  authorityKeyIdentifier?: boolean | Buffer
  /** the issuer field; default the issuer certificate's subject bytes */
  issuerName?: NameSpec
  /** sign with another key (a bad CRL signature) */
  signWith?: KeyPair
  signatureHash?: Exclude<SignatureHash, 'md5'>
  extraExtensions?: RawExtension[]
}

/** ReasonFlags bits (RFC 5280 4.2.1.13); not the CRLReason codes of CRL entries */
export type ReasonFlagName = keyof typeof ax.ReasonFlags

export interface Crl { der: Buffer, pem: string }

/** A CRL signed with @peculiar/x509. */
export async function makeCrl (spec: CrlSpec): Promise<Crl> {
  const issuer = spec.issuer
  const signer = spec.signWith ?? issuer.key
  const { signingKey, signingAlgorithm } = await webSigner(signer, spec.signatureHash ?? defaultHash(signer))
  const now = Date.now()
  const extensions: RawExtension[] = []
  const aki = spec.authorityKeyIdentifier ?? true
  if (aki !== false) {
    const keyId = Buffer.isBuffer(aki) ? aki : issuer.subjectKeyId ?? issuer.key.keyId
    extensions.push({ oid: OID.authorityKeyIdentifier, valueDer: ser(new ax.AuthorityKeyIdentifier({ keyIdentifier: new ax.KeyIdentifier(keyId) })) })
  }
  const crlNumber = spec.crlNumber ?? 1
  if (crlNumber !== false) extensions.push({ oid: OID.cRLNumber, valueDer: ser(new ax.CRLNumber(crlNumber)) })
  if (spec.deltaCrlIndicator !== undefined) {
    extensions.push({ oid: OID.deltaCRLIndicator, critical: true, valueDer: ser(new ax.BaseCRLNumber(spec.deltaCrlIndicator)) })
  }
  const idp = spec.issuingDistributionPoint
  if (idp !== undefined) {
    const value = new ax.IssuingDistributionPoint({
      onlyContainsUserCerts: idp.onlyContainsUserCerts === true,
      onlyContainsCACerts: idp.onlyContainsCACerts === true,
      indirectCRL: idp.indirectCRL === true
    })
    if (idp.uri !== undefined) {
      value.distributionPoint = new ax.DistributionPointName({ fullName: [new ax.GeneralName({ uniformResourceIdentifier: idp.uri })] })
    }
    if (idp.onlySomeReasons !== undefined) {
      value.onlySomeReasons = new ax.Reason(idp.onlySomeReasons.reduce((flags, name) => flags | ax.ReasonFlags[name], 0))
    }
    extensions.push({ oid: OID.issuingDistributionPoint, critical: idp.critical ?? true, valueDer: ser(value) })
  }
  extensions.push(...(spec.extraExtensions ?? []))
  const toExtension = (e: RawExtension): x509.Extension => new x509.Extension(e.oid, e.critical === true, e.valueDer)
  const crl = await x509.X509CrlGenerator.create({
    issuer: new x509.Name(spec.issuerName !== undefined ? nameDer(spec.issuerName) : issuer.subjectDer),
    thisUpdate: spec.thisUpdate ?? new Date(now - 3600e3),
    nextUpdate: spec.nextUpdate === null ? undefined : spec.nextUpdate ?? new Date(now + 7 * 86400e3),
    entries: (spec.revoked ?? []).map((entry) => ({
      serialNumber: typeof entry.serial === 'object' ? entry.serial.serialHex : serialHexOf(entry.serial),
      revocationDate: entry.date ?? new Date(now - 3600e3),
      reason: entry.reason,
      invalidity: entry.invalidityDate,
      extensions: entry.extensions?.map(toExtension)
    })),
    signingKey: signingKey as X509SigningKey,
    signingAlgorithm,
    extensions: extensions.map(toExtension)
  })
  const der = Buffer.from(crl.rawData)
  return { der, pem: toPem(der, 'X509 CRL') }
}
