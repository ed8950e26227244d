// X.509 CRL parsing (RFC 5280 5). Entries go into a map keyed by serial, so a
// lookup costs the same whatever the CRL's size.
import { createHash } from 'node:crypto'
import { parseAlgorithmIdentifier, type AlgorithmIdentifier } from './certificate.js'
import { parseGeneralNames } from './general-name.js'
import { parseName, type ParsedName } from './name.js'
import { OID } from './oids.js'
import {
  DerError, DerReader, TAG, ctx, parseOne, readBigInt, readBitString, readBoolean, readExtensions, readSmallInt, readTime, tlvBytes
} from './reader.js'

export interface RevokedEntry { revocationDate: Date, reason: number | undefined }

export interface ParsedCrl {
  readonly der: Buffer
  readonly sha256: Buffer
  readonly tbs: Buffer
  readonly signatureAlgorithm: AlgorithmIdentifier
  readonly tbsSignatureAlgorithm: AlgorithmIdentifier
  readonly signature: Buffer
  readonly issuer: ParsedName
  readonly thisUpdate: Date
  readonly nextUpdate: Date | undefined
  readonly crlNumber: bigint | undefined
  readonly authorityKeyId: Buffer | undefined
  readonly isDelta: boolean
  /** which certificates the CRL covers (issuingDistributionPoint onlyContainsUserCerts / onlyContainsCACerts) */
  readonly scope: CrlScope
  /** Why this CRL cannot be used as complete revocation data for its issuer, if it cannot. */
  readonly unusableReason: string | undefined
  /** revoked serials (as bigint) */
  readonly revoked: ReadonlyMap<bigint, RevokedEntry>
}

export const MAX_CRL_BYTES = 16 * 1024 * 1024

export type CrlScope = 'all' | 'user' | 'ca'

/** The scope an issuingDistributionPoint gives a CRL, or why the CRL cannot be used. */
function parseIdp (v: Buffer): { scope: CrlScope, unusable?: string } {
  const r = DerReader.of(parseOne(v, 'issuingDistributionPoint'))
  const dp = r.optional(ctx(0, true))
  const onlyUser = r.optional(ctx(1, false))
  const onlyCa = r.optional(ctx(2, false))
  const someReasons = r.optional(ctx(3, false))
  const indirect = r.optional(ctx(4, false))
  const onlyAttr = r.optional(ctx(5, false))
  r.done('issuingDistributionPoint')
  const flag = (t: typeof onlyUser, what: string): boolean => {
    if (t === undefined) return false
    // DEFAULT FALSE must be omitted in DER
    if (!readBoolean({ ...t, tag: TAG.BOOLEAN }, what)) throw new DerError(`${what}: DEFAULT FALSE must be omitted in DER`)
    return true
  }
  const user = flag(onlyUser, 'onlyContainsUserCerts')
  const ca = flag(onlyCa, 'onlyContainsCACerts')
  const attr = flag(onlyAttr, 'onlyContainsAttributeCerts')
  if (Number(user) + Number(ca) + Number(attr) > 1) throw new DerError('issuingDistributionPoint: more than one onlyContains flag')
  const scope: CrlScope = user ? 'user' : ca ? 'ca' : 'all'
  if (dp !== undefined) return { scope, unusable: 'issuingDistributionPoint names a distribution point (partitioned CRLs are not supported)' }
  if (someReasons !== undefined) return { scope, unusable: 'CRL covers only some revocation reasons' }
  if (flag(indirect, 'indirectCRL')) return { scope, unusable: 'indirect CRLs are not supported' }
  if (attr) return { scope, unusable: 'CRL scope limited to attribute certificates' }
  return { scope }
}

export function parseCrl (der: Buffer): ParsedCrl {
  if (der.length > MAX_CRL_BYTES) throw new DerError(`CRL larger than ${MAX_CRL_BYTES} bytes`)
  const crl = parseOne(der, 'CertificateList')
  if (crl.tag !== TAG.SEQUENCE) throw new DerError('CertificateList must be a SEQUENCE')
  const cr = DerReader.of(crl)
  const tbsTlv = cr.expect(TAG.SEQUENCE, 'tbsCertList')
  const signatureAlgorithm = parseAlgorithmIdentifier(cr.read(), 'signatureAlgorithm')
  const sig = readBitString(cr.read(), 'signatureValue')
  if (sig.unusedBits !== 0) throw new DerError('signatureValue has unused bits')
  cr.done('CertificateList')

  const r = DerReader.of(tbsTlv)
  let version = 1
  if (r.peekTag() === TAG.INTEGER) {
    version = readSmallInt(r.read(), 'version') + 1
    if (version !== 2) throw new DerError(`CRL version must be v2 when present, got v${version}`)
  }
  const tbsSignatureAlgorithm = parseAlgorithmIdentifier(r.read(), 'signature')
  const issuer = parseName(r.read(), 'issuer')
  const thisUpdate = readTime(r.read(), 'thisUpdate')
  let nextUpdate: Date | undefined
  const nt = r.peekTag()
  if (nt === TAG.UTC_TIME || nt === TAG.GENERALIZED_TIME) nextUpdate = readTime(r.read(), 'nextUpdate')
  const revoked = new Map<bigint, RevokedEntry>()
  let unusableReason: string | undefined
  const entries = r.optional(TAG.SEQUENCE)
  if (entries !== undefined) {
    const er = DerReader.of(entries)
    if (er.atEnd()) throw new DerError('revokedCertificates: empty SEQUENCE must be omitted')
    while (!er.atEnd()) {
      const entry = DerReader.of(er.expect(TAG.SEQUENCE, 'revokedCertificate'))
      const serial = readBigInt(entry.read(), 'userCertificate')
      const revocationDate = readTime(entry.read(), 'revocationDate')
      let reason: number | undefined
      const ext = entry.optional(TAG.SEQUENCE)
      entry.done('revokedCertificate')
      if (ext !== undefined) {
        for (const { oid, critical, value } of readExtensions(ext, 'crlEntryExtensions', true)) {
          if (oid === OID.crlReason) {
            reason = readSmallInt(parseOne(value, 'reasonCode'), 'reasonCode', TAG.ENUMERATED)
          } else if (oid === OID.certificateIssuer) {
            parseGeneralNames(parseOne(value, 'certificateIssuer'), 'certificateIssuer')
            unusableReason ??= 'entries with a certificateIssuer (indirect CRL) are not supported'
          } else if (critical && oid !== OID.invalidityDate) {
            unusableReason ??= `unknown critical CRL entry extension ${oid}`
          }
        }
      }
      // A serial listed twice keeps its first entry.
      if (!revoked.has(serial)) revoked.set(serial, { revocationDate, reason })
    }
  }
  let crlNumber: bigint | undefined
  let authorityKeyId: Buffer | undefined
  let isDelta = false
  let scope: CrlScope = 'all'
  const extTlv = r.optional(ctx(0, true))
  r.done('tbsCertList')
  if (extTlv !== undefined) {
    if (version !== 2) throw new DerError('CRL extensions need version 2')
    const xr = DerReader.of(extTlv)
    const list = readExtensions(xr.read(), 'crlExtensions')
    xr.done('crlExtensions')
    for (const { oid, critical, value } of list) {
      switch (oid) {
        case OID.crlNumber:
          crlNumber = readBigInt(parseOne(value, 'cRLNumber'), 'cRLNumber')
          if (crlNumber < 0n) throw new DerError('cRLNumber is negative')
          if (critical) unusableReason ??= 'cRLNumber must not be critical (RFC 5280 5.2.3)'
          break
        case OID.authorityKeyIdentifier: {
          const ar = DerReader.of(parseOne(value, 'authorityKeyIdentifier'))
          const k = ar.optional(ctx(0, false))
          if (k !== undefined) authorityKeyId = tlvBytes(k).subarray(k.valueStart - k.start)
          break
        }
        case OID.deltaCrlIndicator:
          isDelta = true
          break
        case OID.issuingDistributionPoint: {
          const idp = parseIdp(value)
          scope = idp.scope
          unusableReason ??= idp.unusable
          break
        }
        default:
          if (critical) unusableReason ??= `unknown critical CRL extension ${oid}`
      }
    }
  }
  if (crlNumber === undefined) unusableReason ??= 'CRL has no cRLNumber (RFC 5280 5.2.3)'
  if (isDelta) unusableReason ??= 'delta CRLs are not supported'
  if (!tbsSignatureAlgorithm.der.equals(signatureAlgorithm.der)) unusableReason ??= 'signatureAlgorithm differs from tbsCertList.signature'
  return Object.freeze({
    der,
    sha256: createHash('sha256').update(der).digest(),
    tbs: tlvBytes(tbsTlv),
    signatureAlgorithm,
    tbsSignatureAlgorithm,
    signature: sig.bytes,
    issuer,
    thisUpdate,
    nextUpdate,
    crlNumber,
    authorityKeyId,
    isDelta,
    scope,
    unusableReason,
    revoked
  })
}
