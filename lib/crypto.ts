// Signature verification and key strength, on node:crypto.
import { constants, hash, verify as cryptoVerify, type KeyObject } from 'node:crypto'
import type { AlgorithmIdentifier } from './der/certificate.js'
import { OID } from './der/oids.js'
import { DerError, DerReader, TAG, ctx, parseOne, readNull, readOid, readSmallInt } from './der/reader.js'

interface SignatureScheme {
  /** node:crypto digest name, or null for EdDSA */
  hash: string | null
  keyTypes: readonly string[]
  weak: boolean
  pss?: { saltLength: number }
}

const RSA = ['rsa']
const PKCS1: Record<string, [string, boolean]> = {
  '1.2.840.113549.1.1.4': ['md5', true],
  '1.2.840.113549.1.1.5': ['sha1', true],
  '1.2.840.113549.1.1.14': ['sha224', false],
  '1.2.840.113549.1.1.11': ['sha256', false],
  '1.2.840.113549.1.1.12': ['sha384', false],
  '1.2.840.113549.1.1.13': ['sha512', false]
}
const ECDSA: Record<string, [string, boolean]> = {
  '1.2.840.10045.4.1': ['sha1', true],
  '1.2.840.10045.4.3.1': ['sha224', false],
  '1.2.840.10045.4.3.2': ['sha256', false],
  '1.2.840.10045.4.3.3': ['sha384', false],
  '1.2.840.10045.4.3.4': ['sha512', false]
}
const DSA: Record<string, [string, boolean]> = {
  '1.2.840.10040.4.3': ['sha1', true],
  '2.16.840.1.101.3.4.3.1': ['sha224', false],
  '2.16.840.1.101.3.4.3.2': ['sha256', false]
}
const HASH_OIDS: Record<string, string> = {
  [OID.sha256]: 'sha256',
  [OID.sha384]: 'sha384',
  [OID.sha512]: 'sha512'
}

function parsePssParams (params: Buffer | undefined): { hash: string, saltLength: number } {
  if (params === undefined) throw new DerError('RSASSA-PSS without parameters (SHA-1 defaults) is not accepted')
  const r = DerReader.of(parseOne(params, 'RSASSA-PSS-params'))
  const h = r.optional(ctx(0, true))
  const mgf = r.optional(ctx(1, true))
  const salt = r.optional(ctx(2, true))
  const trailer = r.optional(ctx(3, true))
  r.done('RSASSA-PSS-params')
  if (h === undefined || mgf === undefined) throw new DerError('RSASSA-PSS: SHA-1 defaults are not accepted')
  const hashOid = readAlgOid(DerReader.of(h).read(), 'RSASSA-PSS hashAlgorithm')
  const hash = HASH_OIDS[hashOid]
  if (hash === undefined) throw new DerError(`RSASSA-PSS: unsupported hash ${hashOid}`)
  const mr = DerReader.of(DerReader.of(mgf).expect(TAG.SEQUENCE, 'maskGenAlgorithm'))
  if (readOid(mr.read(), 'maskGenAlgorithm') !== OID.mgf1) throw new DerError('RSASSA-PSS: mask generation must be MGF1')
  const mgfHash = readAlgOid(mr.read(), 'MGF1 hash')
  mr.done('maskGenAlgorithm')
  if (mgfHash !== hashOid) throw new DerError('RSASSA-PSS: MGF1 hash differs from the signature hash')
  const saltLength = salt === undefined ? 20 : readSmallInt(DerReader.of(salt).read(), 'saltLength')
  if (trailer !== undefined && readSmallInt(DerReader.of(trailer).read(), 'trailerField') !== 1) throw new DerError('RSASSA-PSS: trailerField must be 1')
  if (saltLength < 0) throw new DerError('RSASSA-PSS: negative salt length')
  return { hash, saltLength }
}

function readAlgOid (t: ReturnType<DerReader['read']>, what: string): string {
  const r = DerReader.of(t)
  const oid = readOid(r.read(), what)
  if (!r.atEnd()) readNull(r.read(), `${what} parameters`)
  r.done(what)
  return oid
}

/** The signature scheme of an AlgorithmIdentifier, or a reason it is not usable. */
export function signatureScheme (alg: AlgorithmIdentifier): SignatureScheme | string {
  try {
    const pk = PKCS1[alg.oid]
    if (pk !== undefined) {
      if (alg.params !== undefined) readNull(parseOne(alg.params, 'parameters'), 'RSA signature parameters')
      return { hash: pk[0], keyTypes: RSA, weak: pk[1] }
    }
    const ec = ECDSA[alg.oid] ?? DSA[alg.oid]
    if (ec !== undefined) {
      if (alg.params !== undefined) return 'ECDSA/DSA signature algorithm with parameters'
      return { hash: ec[0], keyTypes: ECDSA[alg.oid] !== undefined ? ['ec'] : ['dsa'], weak: ec[1] }
    }
    if (alg.oid === OID.ed25519 || alg.oid === OID.ed448) {
      if (alg.params !== undefined) return 'EdDSA signature algorithm with parameters'
      return { hash: null, keyTypes: [alg.oid === OID.ed25519 ? 'ed25519' : 'ed448'], weak: false }
    }
    if (alg.oid === OID.rsassaPss) {
      const p = parsePssParams(alg.params)
      return { hash: p.hash, keyTypes: ['rsa', 'rsa-pss'], weak: false, pss: { saltLength: p.saltLength } }
    }
  } catch (err) {
    return (err as Error).message
  }
  return `unsupported signature algorithm ${alg.oid}`
}

export const MAX_RSA_BITS = 8192
const MAX_RSA_EXPONENT = 0xffffffffn

/**
 * Whether a key may be used to check signatures at all. Bounded work: a signature
 * check with an RSA key of absurd size or public exponent costs milliseconds, so
 * such keys are refused before any signature is checked (as are DSA keys, which
 * keyWeakness refuses anyway).
 */
export function usableForSignatures (key: KeyObject): boolean {
  const type = key.asymmetricKeyType
  if (type === 'rsa' || type === 'rsa-pss') {
    const details = key.asymmetricKeyDetails
    const bits = details?.modulusLength ?? 0
    const e = details?.publicExponent ?? 0n
    return bits >= 1024 && bits <= MAX_RSA_BITS && e >= 3n && e <= MAX_RSA_EXPONENT
  }
  return type === 'ec' || type === 'ed25519' || type === 'ed448'
}

export function verifySignature (alg: AlgorithmIdentifier, data: Buffer, signature: Buffer, key: KeyObject): boolean {
  const scheme = signatureScheme(alg)
  if (typeof scheme === 'string') return false
  if (!scheme.keyTypes.includes(key.asymmetricKeyType ?? '')) return false
  if (!usableForSignatures(key)) return false
  try {
    if (scheme.pss !== undefined) {
      return cryptoVerify(scheme.hash, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: scheme.pss.saltLength }, signature)
    }
    return cryptoVerify(scheme.hash, data, key, signature)
  } catch {
    return false
  }
}

const STRONG_CURVES = new Set(['prime256v1', 'secp384r1', 'secp521r1'])

/**
 * Why a public key is too weak to accept, or undefined when it is acceptable.
 * RSA below the minimum (or not a whole number of bytes), EC outside P-256/P-384/P-521
 * or with explicit parameters, DSA and anything else unknown are refused.
 */
export function keyWeakness (keyAlgorithm: AlgorithmIdentifier, key: KeyObject, minRsaBits: number): string | undefined {
  const type = key.asymmetricKeyType
  if (type === 'rsa' || type === 'rsa-pss') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0
    if (bits < minRsaBits) return `RSA key of ${bits} bits is below the minimum of ${minRsaBits}`
    if (bits % 8 !== 0) return `RSA key of ${bits} bits is not a whole number of bytes`
    if (bits > MAX_RSA_BITS) return `RSA key of ${bits} bits is above the maximum of ${MAX_RSA_BITS}`
    const e = key.asymmetricKeyDetails?.publicExponent ?? 0n
    if (e < 3n || e > MAX_RSA_EXPONENT || e % 2n === 0n) return `RSA public exponent ${e} is not an odd number between 3 and 2^32`
    return undefined
  }
  if (type === 'ec') {
    if (keyAlgorithm.params === undefined || keyAlgorithm.params[0] !== TAG.OID) return 'EC key with explicit curve parameters'
    const curve = key.asymmetricKeyDetails?.namedCurve
    if (curve === undefined || !STRONG_CURVES.has(curve)) return `EC key on curve ${curve ?? 'unknown'} (P-256, P-384 or P-521 required)`
    return undefined
  }
  if (type === 'ed25519' || type === 'ed448') return undefined
  return `${type ?? 'unknown'} keys are not accepted`
}

/** A SHA-256 fingerprint as Node prints one (`fingerprint256`): upper-case hex pairs joined by colons. */
export function colonHex (hex: string): string {
  const upper = hex.toUpperCase()
  // one flat string (join), not a chain of concatenations: it keys Maps on every request
  const pairs: string[] = []
  for (let i = 0; i < upper.length; i += 2) pairs.push(upper.slice(i, i + 2))
  return pairs.join(':')
}

/** The SHA-256 fingerprint of DER bytes, formatted as Node's `fingerprint256`. */
export function sha256Fingerprint (der: Buffer): string {
  return colonHex(hash('sha256', der))
}
