// X.509 certificate parsing (RFC 5280 4.1) with the extensions a verifier needs.
// Structural rules are enforced here (DER, versions, serials, duplicate extensions,
// extension syntax); semantic rules (criticality, CA profile, path rules) are the
// verifier's, which reads the `profileErrors` list filled in here.
import { createHash, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto'
import { parseGeneralName, parseGeneralNames, type GeneralName } from './general-name.js'
import { parseName, type ParsedName } from './name.js'
import { OID } from './oids.js'
import { colonHex } from '../crypto.js'
import {
  DerError, DerReader, TAG, children, ctx, parseOne, readBigInt, readBoolean, readIntegerBytes,
  readExtensions, readNamedBits, readOctetString, readOid, readSmallInt, readTime, readBitString, tlvBytes,
  type Extension, type Tlv
} from './reader.js'

export interface AlgorithmIdentifier {
  oid: string
  /** DER of the parameters, if present */
  params: Buffer | undefined
  /** DER of the whole AlgorithmIdentifier, to compare the two copies in a certificate */
  der: Buffer
}

export interface BasicConstraints { ca: boolean, pathLen: number | undefined }

export interface NameConstraints { permitted: GeneralName[] | undefined, excluded: GeneralName[] | undefined }

export interface AuthorityKeyIdentifier { keyId: Buffer | undefined, hasIssuer: boolean, hasSerial: boolean }

export const KU = {
  digitalSignature: 1 << 0,
  nonRepudiation: 1 << 1,
  keyEncipherment: 1 << 2,
  dataEncipherment: 1 << 3,
  keyAgreement: 1 << 4,
  keyCertSign: 1 << 5,
  cRLSign: 1 << 6,
  encipherOnly: 1 << 7,
  decipherOnly: 1 << 8
} as const

export interface ParsedCertificate {
  readonly der: Buffer
  readonly sha256: Buffer
  /** uppercase colon-separated hex, as Node prints it */
  readonly fingerprint256: string
  readonly version: number
  readonly serial: bigint
  /** serial content bytes as uppercase hex (leading sign byte dropped) */
  readonly serialHex: string
  readonly serialBytes: number
  readonly tbs: Buffer
  readonly signatureAlgorithm: AlgorithmIdentifier
  readonly tbsSignatureAlgorithm: AlgorithmIdentifier
  readonly signature: Buffer
  readonly issuer: ParsedName
  readonly subject: ParsedName
  readonly notBefore: Date
  readonly notAfter: Date
  readonly spki: Buffer
  readonly spkiSha256: string
  readonly keyAlgorithm: AlgorithmIdentifier
  readonly extensions: readonly Extension[]
  readonly basicConstraints: BasicConstraints | undefined
  readonly keyUsage: number | undefined
  readonly extKeyUsage: readonly string[] | undefined
  readonly subjectAltNames: readonly GeneralName[] | undefined
  readonly nameConstraints: NameConstraints | undefined
  readonly subjectKeyId: Buffer | undefined
  readonly authorityKeyId: AuthorityKeyIdentifier | undefined
  readonly crlDistributionPoints: readonly string[] | undefined
  /** OIDs of critical extensions this verifier does not process */
  readonly unknownCritical: readonly string[]
  /** why the serial number breaks RFC 5280 4.1.2.2 (anchors are exempt: old roots have serial 0) */
  readonly serialError: string | undefined
  /** RFC 5280 profile violations found while parsing (the verifier turns these into rejections) */
  readonly profileErrors: readonly string[]
  readonly selfIssued: boolean
  /** node:crypto view, built on first use */
  readonly x509: X509Certificate
  /** public key, built on first use; throws DerError if Node cannot load it */
  readonly publicKey: KeyObject
}

/** Extensions whose meaning the verifier processes (or that carry no constraint on the path). */
const HANDLED = new Set<string>([
  OID.subjectKeyIdentifier, OID.keyUsage, OID.subjectAltName, OID.basicConstraints, OID.nameConstraints,
  OID.authorityKeyIdentifier, OID.extKeyUsage, OID.crlDistributionPoints
])

export function parseAlgorithmIdentifier (t: Tlv, what: string): AlgorithmIdentifier {
  if (t.tag !== TAG.SEQUENCE) throw new DerError(`${what}: AlgorithmIdentifier must be a SEQUENCE`)
  const r = DerReader.of(t)
  const oid = readOid(r.read(), what)
  const params = r.atEnd() ? undefined : tlvBytes(r.read())
  r.done(what)
  return { oid, params, der: tlvBytes(t) }
}

function parseBasicConstraints (v: Buffer): BasicConstraints {
  const t = parseOne(v, 'basicConstraints')
  const r = DerReader.of(t)
  let ca = false
  let pathLen: number | undefined
  if (r.peekTag() === TAG.BOOLEAN) {
    ca = readBoolean(r.read(), 'basicConstraints.cA')
    if (!ca) throw new DerError('basicConstraints.cA: DEFAULT FALSE must be omitted in DER')
  }
  if (!r.atEnd()) {
    pathLen = readSmallInt(r.read(), 'basicConstraints.pathLenConstraint')
    if (pathLen < 0) throw new DerError('basicConstraints.pathLenConstraint is negative')
  }
  r.done('basicConstraints')
  return { ca, pathLen }
}

function parseEku (v: Buffer): string[] {
  const list = children(parseOne(v, 'extKeyUsage')).map((t) => readOid(t, 'extKeyUsage'))
  return list
}

function parseAki (v: Buffer): AuthorityKeyIdentifier {
  const r = DerReader.of(parseOne(v, 'authorityKeyIdentifier'))
  const keyId = r.optional(ctx(0, false))
  const issuer = r.optional(ctx(1, true))
  const serial = r.optional(ctx(2, false))
  r.done('authorityKeyIdentifier')
  if (issuer !== undefined) parseGeneralNames(issuer, 'authorityKeyIdentifier.authorityCertIssuer')
  if (serial !== undefined) readBigInt(serial, 'authorityKeyIdentifier.authorityCertSerialNumber', ctx(2, false))
  if ((issuer === undefined) !== (serial === undefined)) throw new DerError('authorityKeyIdentifier: authorityCertIssuer and authorityCertSerialNumber must come together')
  return {
    keyId: keyId === undefined ? undefined : keyId.buf.subarray(keyId.valueStart, keyId.end),
    hasIssuer: issuer !== undefined,
    hasSerial: serial !== undefined
  }
}

function parseSubtrees (t: Tlv, what: string): GeneralName[] {
  const r = DerReader.of(t)
  const out: GeneralName[] = []
  while (!r.atEnd()) {
    const st = DerReader.of(r.expect(TAG.SEQUENCE, what))
    out.push(parseGeneralName(st.read(), what))
    // minimum DEFAULT 0 must be omitted; maximum is not used in this profile
    if (!st.atEnd()) throw new DerError(`${what}: minimum/maximum are not allowed (RFC 5280 4.2.1.10)`)
  }
  return out
}

function parseNameConstraints (v: Buffer): NameConstraints {
  const r = DerReader.of(parseOne(v, 'nameConstraints'))
  const p = r.optional(ctx(0, true))
  const e = r.optional(ctx(1, true))
  r.done('nameConstraints')
  if (p === undefined && e === undefined) throw new DerError('nameConstraints: neither permittedSubtrees nor excludedSubtrees')
  const permitted = p === undefined ? undefined : parseSubtrees(p, 'nameConstraints.permittedSubtrees')
  const excluded = e === undefined ? undefined : parseSubtrees(e, 'nameConstraints.excludedSubtrees')
  if (permitted?.length === 0 || excluded?.length === 0) throw new DerError('nameConstraints: empty subtrees')
  return { permitted, excluded }
}

function parseCrlDistributionPoints (v: Buffer): string[] {
  const uris: string[] = []
  for (const dp of children(parseOne(v, 'cRLDistributionPoints'))) {
    if (dp.tag !== TAG.SEQUENCE) throw new DerError('cRLDistributionPoints: DistributionPoint must be a SEQUENCE')
    const r = DerReader.of(dp)
    const name = r.optional(ctx(0, true))
    r.optional(ctx(1, false))
    r.optional(ctx(2, true))
    r.done('DistributionPoint')
    if (name === undefined) continue
    const nr = DerReader.of(name)
    const full = nr.optional(ctx(0, true))
    if (full !== undefined) {
      for (const gn of parseGeneralNames(full, 'DistributionPoint.fullName')) if (gn.kind === 'uri') uris.push(gn.value)
    } else {
      nr.read()
    }
    nr.done('DistributionPointName')
  }
  return uris
}

function parseAia (v: Buffer): void {
  const list = children(parseOne(v, 'authorityInfoAccess'))
  if (list.length === 0) throw new DerError('authorityInfoAccess: empty')
  for (const ad of list) {
    if (ad.tag !== TAG.SEQUENCE) throw new DerError('AccessDescription must be a SEQUENCE')
    const r = DerReader.of(ad)
    readOid(r.read(), 'AccessDescription.accessMethod')
    parseGeneralName(r.read(), 'AccessDescription.accessLocation')
    r.done('AccessDescription')
  }
}

function hex (b: Buffer): string {
  return b.toString('hex').toUpperCase()
}

/** Largest certificate accepted (bounded memory for the parse cache; real ones are a few KiB). */
export const MAX_CERTIFICATE_BYTES = 64 * 1024

export function parseCertificate (der: Buffer, sha256?: Buffer): ParsedCertificate {
  if (der.length > MAX_CERTIFICATE_BYTES) throw new DerError(`certificate larger than ${MAX_CERTIFICATE_BYTES} bytes`)
  const cert = parseOne(der, 'Certificate')
  if (cert.tag !== TAG.SEQUENCE) throw new DerError('Certificate must be a SEQUENCE')
  const cr = DerReader.of(cert)
  const tbsTlv = cr.expect(TAG.SEQUENCE, 'tbsCertificate')
  const signatureAlgorithm = parseAlgorithmIdentifier(cr.read(), 'signatureAlgorithm')
  const signature = readBitString(cr.read(), 'signatureValue')
  if (signature.unusedBits !== 0) throw new DerError('signatureValue has unused bits')
  cr.done('Certificate')

  const r = DerReader.of(tbsTlv)
  let version = 1
  const vTlv = r.optional(ctx(0, true))
  if (vTlv !== undefined) {
    const vr = DerReader.of(vTlv)
    version = readSmallInt(vr.read(), 'version') + 1
    vr.done('version')
    if (version === 1) throw new DerError('version: DEFAULT v1 must be omitted in DER')
    if (version > 3) throw new DerError(`unknown certificate version ${version}`)
  }
  const serialTlv = r.read()
  const serialContent = readIntegerBytes(serialTlv, 'serialNumber')
  const serial = readBigInt(serialTlv, 'serialNumber')
  const tbsSignatureAlgorithm = parseAlgorithmIdentifier(r.read(), 'signature')
  const issuer = parseName(r.read(), 'issuer')
  const validity = DerReader.of(r.expect(TAG.SEQUENCE, 'validity'))
  const notBefore = readTime(validity.read(), 'notBefore')
  const notAfter = readTime(validity.read(), 'notAfter')
  validity.done('validity')
  const subject = parseName(r.read(), 'subject')
  const spkiTlv = r.expect(TAG.SEQUENCE, 'subjectPublicKeyInfo')
  const sr = DerReader.of(spkiTlv)
  const keyAlgorithm = parseAlgorithmIdentifier(sr.read(), 'subjectPublicKeyInfo.algorithm')
  readBitString(sr.read(), 'subjectPublicKey')
  sr.done('subjectPublicKeyInfo')
  const issuerUid = r.optional(ctx(1, false))
  const subjectUid = r.optional(ctx(2, false))
  if ((issuerUid !== undefined || subjectUid !== undefined) && version < 2) throw new DerError('unique identifiers need version 2 or 3')
  let extensions: Extension[] = []
  const extTlv = r.optional(ctx(3, true))
  r.done('tbsCertificate')
  if (extTlv !== undefined) {
    if (version !== 3) throw new DerError('extensions need version 3')
    const er = DerReader.of(extTlv)
    extensions = readExtensions(er.read(), 'extensions')
    er.done('extensions')
  }

  const profileErrors: string[] = []
  const unknownCritical: string[] = []
  let basicConstraints: BasicConstraints | undefined
  let keyUsage: number | undefined
  let extKeyUsage: string[] | undefined
  let subjectAltNames: GeneralName[] | undefined
  let sanCritical = false
  let nameConstraints: NameConstraints | undefined
  let subjectKeyId: Buffer | undefined
  let authorityKeyId: AuthorityKeyIdentifier | undefined
  let crlDistributionPoints: string[] | undefined
  for (const ext of extensions) {
    switch (ext.oid) {
      case OID.basicConstraints:
        basicConstraints = parseBasicConstraints(ext.value)
        break
      case OID.keyUsage:
        keyUsage = readNamedBits(parseOne(ext.value, 'keyUsage'), 'keyUsage')
        if (keyUsage === 0) throw new DerError('keyUsage: no bits set')
        break
      case OID.extKeyUsage:
        extKeyUsage = parseEku(ext.value)
        if (extKeyUsage.length === 0) throw new DerError('extKeyUsage: empty')
        break
      case OID.subjectAltName:
        subjectAltNames = parseGeneralNames(parseOne(ext.value, 'subjectAltName'), 'subjectAltName')
        sanCritical = ext.critical
        break
      case OID.nameConstraints:
        nameConstraints = parseNameConstraints(ext.value)
        if (!ext.critical) profileErrors.push('nameConstraints must be critical (RFC 5280 4.2.1.10)')
        break
      case OID.subjectKeyIdentifier:
        subjectKeyId = readOctetString(parseOne(ext.value, 'subjectKeyIdentifier'), 'subjectKeyIdentifier')
        if (ext.critical) profileErrors.push('subjectKeyIdentifier must not be critical (RFC 5280 4.2.1.2)')
        break
      case OID.authorityKeyIdentifier:
        authorityKeyId = parseAki(ext.value)
        if (ext.critical) profileErrors.push('authorityKeyIdentifier must not be critical (RFC 5280 4.2.1.1)')
        break
      case OID.crlDistributionPoints:
        crlDistributionPoints = parseCrlDistributionPoints(ext.value)
        break
      case OID.authorityInfoAccess:
        parseAia(ext.value)
        if (ext.critical) profileErrors.push('authorityInfoAccess must not be critical (RFC 5280 4.2.2.1)')
        break
      case OID.policyConstraints:
        if (!ext.critical) profileErrors.push('policyConstraints must be critical (RFC 5280 4.2.1.11)')
        if (ext.critical) unknownCritical.push(ext.oid)
        break
      default:
        if (ext.critical && !HANDLED.has(ext.oid)) unknownCritical.push(ext.oid)
    }
  }

  const serialError = serial <= 0n
    ? 'serial number must be positive (RFC 5280 4.1.2.2)'
    : serialContent.length > 20 ? 'serial number longer than 20 octets (RFC 5280 4.1.2.2)' : undefined
  if (version !== 3) profileErrors.push(`version ${version} certificate (only v3 is accepted)`)
  if (issuer.empty) profileErrors.push('empty issuer name (RFC 5280 4.1.2.4)')
  if (subject.empty && (subjectAltNames === undefined || !sanCritical)) {
    profileErrors.push('empty subject needs a critical subjectAltName (RFC 5280 4.1.2.6)')
  }
  if (!tbsSignatureAlgorithm.der.equals(signatureAlgorithm.der)) {
    profileErrors.push('signatureAlgorithm differs from tbsCertificate.signature (RFC 5280 4.1.1.2)')
  }
  if (keyUsage !== undefined && (keyUsage & KU.keyCertSign) !== 0 && basicConstraints?.ca !== true) {
    profileErrors.push('keyCertSign without basicConstraints cA (RFC 5280 4.2.1.3)')
  }
  // the first malformed SAN is enough to refuse the certificate
  const badSan = subjectAltNames?.find((gn) => (gn.kind === 'dns' && !isPreferredDnsName(gn.value)) ||
    (gn.kind === 'ip' && gn.bytes.length !== 4 && gn.bytes.length !== 16) || (gn.kind === 'email' && !isMailbox(gn.value)))
  if (badSan?.kind === 'dns') profileErrors.push(`subjectAltName dNSName ${JSON.stringify(badSan.value)} is not a valid host name`)
  if (badSan?.kind === 'ip') profileErrors.push('subjectAltName iPAddress must be 4 or 16 bytes')
  if (badSan?.kind === 'email') profileErrors.push(`subjectAltName rfc822Name ${JSON.stringify(badSan.value)} is not a mailbox`)

  const tbs = tlvBytes(tbsTlv)
  const digest = sha256 ?? createHash('sha256').update(der).digest()
  const spki = tlvBytes(spkiTlv)
  let x509: X509Certificate | undefined
  let publicKey: KeyObject | undefined
  const selfIssued = issuer.key === subject.key

  return Object.freeze({
    der,
    sha256: digest,
    fingerprint256: colonHex(digest.toString('hex')),
    version,
    serial,
    serialHex: hex(serialContent[0] === 0 && serialContent.length > 1 ? serialContent.subarray(1) : serialContent),
    serialBytes: serialContent.length,
    tbs,
    signatureAlgorithm,
    tbsSignatureAlgorithm,
    signature: signature.bytes,
    issuer,
    subject,
    notBefore,
    notAfter,
    spki,
    spkiSha256: createHash('sha256').update(spki).digest('base64'),
    keyAlgorithm,
    extensions,
    basicConstraints,
    keyUsage,
    extKeyUsage,
    subjectAltNames,
    nameConstraints,
    subjectKeyId,
    authorityKeyId,
    crlDistributionPoints,
    unknownCritical,
    serialError,
    profileErrors,
    selfIssued,
    get x509 () {
      x509 ??= new X509Certificate(der)
      return x509
    },
    get publicKey () {
      if (publicKey === undefined) {
        try {
          publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' })
        } catch (err) {
          throw new DerError(`public key does not load: ${(err as Error).message}`)
        }
      }
      return publicKey
    }
  })
}

const LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/

/** RFC 1034 preferred name syntax as amended by RFC 1123; a leading `*.` wildcard label is tolerated. */
export function isPreferredDnsName (name: string): boolean {
  if (name.length === 0 || name.length > 253) return false
  const labels = name.split('.')
  if (labels[0] === '*') labels.shift()
  if (labels.length === 0) return false
  return labels.every((l) => LABEL.test(l))
}

/** A mailbox local@domain with exactly one `@` and a host-name domain. */
export function isMailbox (value: string): boolean {
  const at = value.indexOf('@')
  if (at <= 0 || at !== value.lastIndexOf('@')) return false
  return isPreferredDnsName(value.slice(at + 1))
}
