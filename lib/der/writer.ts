// A small DER writer: enough to build OCSP requests (and, in tests, responses).
// Every helper returns the complete TLV as a Buffer; lengths are always definite
// and minimal, INTEGERs minimal two's complement, so the output reads back
// through the strict reader in ./reader.ts.
import { TAG, ctx } from './reader.js'

function encodeLength (n: number): Buffer {
  if (n < 0x80) return Buffer.from([n])
  const bytes: number[] = []
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

/** One TLV with a single-byte tag; the content is the concatenation of `content`. */
export function tlv (tag: number, ...content: Buffer[]): Buffer {
  if (!Number.isInteger(tag) || tag < 0 || tag > 0xff || (tag & 0x1f) === 0x1f) {
    throw new RangeError(`DER writer: tag ${tag} is not a single-byte tag`)
  }
  const body = Buffer.concat(content)
  return Buffer.concat([Buffer.from([tag]), encodeLength(body.length), body])
}

export const sequence = (...items: Buffer[]): Buffer => tlv(TAG.SEQUENCE, ...items)

/** SET OF: DER sorts the encoded elements. */
export const setOf = (...items: Buffer[]): Buffer => tlv(TAG.SET, ...items.slice().sort(Buffer.compare))

export const octetString = (bytes: Buffer): Buffer => tlv(TAG.OCTET_STRING, bytes)

export const nullValue = (): Buffer => Buffer.from([TAG.NULL, 0])

export const boolean = (value: boolean): Buffer => Buffer.from([TAG.BOOLEAN, 1, value ? 0xff : 0])

/** BIT STRING with `unusedBits` (0..7) unused bits in the last byte (which must be zero there). */
export function bitString (bytes: Buffer, unusedBits = 0): Buffer {
  if (!Number.isInteger(unusedBits) || unusedBits < 0 || unusedBits > 7 || (bytes.length === 0 && unusedBits !== 0)) {
    throw new RangeError(`DER writer: bad unused-bit count ${unusedBits}`)
  }
  return tlv(TAG.BIT_STRING, Buffer.from([unusedBits]), bytes)
}

/** Content octets of an INTEGER: minimal two's complement. */
export function integerBytes (value: bigint | number): Buffer {
  let n = BigInt(value)
  if (n === 0n) return Buffer.from([0])
  const negative = n < 0n
  // two's complement in the fewest bytes: find the byte count, then mask
  let len = 1
  while (negative ? n < -(1n << BigInt(len * 8 - 1)) : n >= (1n << BigInt(len * 8 - 1))) len++
  if (negative) n += 1n << BigInt(len * 8)
  return Buffer.from(n.toString(16).padStart(len * 2, '0'), 'hex')
}

export const integer = (value: bigint | number, tag: number = TAG.INTEGER): Buffer => tlv(tag, integerBytes(value))

export const enumerated = (value: number): Buffer => integer(value, TAG.ENUMERATED)

/** OBJECT IDENTIFIER from dotted decimal ("1.3.6.1.5.5.7.48.1"). */
export function oid (dotted: string): Buffer {
  if (!/^[0-9]+(\.[0-9]+)+$/.test(dotted)) throw new RangeError(`DER writer: ${JSON.stringify(dotted)} is not a dotted OID`)
  const arcs = dotted.split('.').map((s) => BigInt(s))
  const [first, second] = arcs as [bigint, bigint]
  if (first > 2n || (first < 2n && second >= 40n)) throw new RangeError(`DER writer: OID ${dotted} has invalid first arcs`)
  const out: number[] = []
  for (const arc of [first * 40n + second, ...arcs.slice(2)]) {
    const groups: number[] = [Number(arc & 0x7fn)]
    for (let v = arc >> 7n; v > 0n; v >>= 7n) groups.unshift(Number(v & 0x7fn) | 0x80)
    out.push(...groups)
  }
  return tlv(TAG.OID, Buffer.from(out))
}

/** GeneralizedTime YYYYMMDDHHMMSSZ (fractions of a second dropped, as RFC 5280 asks). */
export function generalizedTime (date: Date): Buffer {
  const ms = date.getTime()
  if (!Number.isFinite(ms)) throw new RangeError('DER writer: invalid date')
  const year = date.getUTCFullYear()
  if (year < 0 || year > 9999) throw new RangeError('DER writer: year out of range for GeneralizedTime')
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(date.toISOString().slice(0, 19).replace(/[-:T]/g, '') + 'Z', 'latin1'))
}

/** UTCTime YYMMDDHHMMSSZ, for years 1950..2049. */
export function utcTime (date: Date): Buffer {
  const year = date.getUTCFullYear()
  if (!(year >= 1950 && year <= 2049)) throw new RangeError('DER writer: year out of range for UTCTime')
  return tlv(TAG.UTC_TIME, Buffer.from(date.toISOString().slice(2, 19).replace(/[-:T]/g, '') + 'Z', 'latin1'))
}

export const ia5String = (s: string): Buffer => tlv(TAG.IA5_STRING, ascii(s))
export const utf8String = (s: string): Buffer => tlv(TAG.UTF8_STRING, Buffer.from(s, 'utf8'))

function ascii (s: string): Buffer {
  // eslint-disable-next-line no-control-regex
  if (!/^[\x00-\x7f]*$/.test(s)) throw new RangeError('DER writer: IA5String must be ASCII')
  return Buffer.from(s, 'latin1')
}

/** [n] EXPLICIT: a constructed context tag around complete TLVs. */
export const explicit = (n: number, ...inner: Buffer[]): Buffer => tlv(ctx(checkTagNumber(n), true), ...inner)

/** [n] IMPLICIT of a primitive type: a primitive context tag around raw content octets. */
export const implicitPrimitive = (n: number, content: Buffer): Buffer => tlv(ctx(checkTagNumber(n), false), content)

/** [n] IMPLICIT of a constructed type (SEQUENCE, SET): a constructed context tag around the elements. */
export const implicitConstructed = (n: number, ...elements: Buffer[]): Buffer => tlv(ctx(checkTagNumber(n), true), ...elements)

function checkTagNumber (n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 30) throw new RangeError(`DER writer: context tag number ${n} out of range`)
  return n
}

/** AlgorithmIdentifier; `params` is the DER of the parameters (omit for none, nullValue() for NULL). */
export const algorithmIdentifier = (algorithm: string, params?: Buffer): Buffer =>
  params === undefined ? sequence(oid(algorithm)) : sequence(oid(algorithm), params)

/** Extension ::= SEQUENCE { extnID, critical DEFAULT FALSE, extnValue OCTET STRING }; `value` is the extnValue contents. */
export const extension = (id: string, value: Buffer, critical = false): Buffer =>
  critical ? sequence(oid(id), boolean(true), octetString(value)) : sequence(oid(id), octetString(value))
