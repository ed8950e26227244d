// A small, strict DER reader. It accepts only what DER allows (definite, minimal
// lengths; single-byte tags; minimal INTEGERs; canonical BOOLEANs and BIT STRINGs)
// and throws DerError on anything else, so a certificate either parses into exactly
// one meaning or not at all.

export class DerError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'DerError'
  }
}

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  ENUMERATED: 0x0a,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  TELETEX_STRING: 0x14,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  VISIBLE_STRING: 0x1a,
  UNIVERSAL_STRING: 0x1c,
  BMP_STRING: 0x1e,
  SEQUENCE: 0x30,
  SET: 0x31
} as const

/** Context-specific tag number n, constructed or primitive. */
export const ctx = (n: number, constructed: boolean): number => (constructed ? 0xa0 : 0x80) | n

/** One decoded TLV: offsets into `buf`. */
export interface Tlv {
  readonly tag: number
  readonly buf: Buffer
  /** offset of the tag byte */
  readonly start: number
  /** offset of the first content byte */
  readonly valueStart: number
  /** offset just past the content */
  readonly end: number
}

export const tlvValue = (t: Tlv): Buffer => t.buf.subarray(t.valueStart, t.end)
export const tlvBytes = (t: Tlv): Buffer => t.buf.subarray(t.start, t.end)

const MAX_DEPTH_LENGTH_BYTES = 4

export class DerReader {
  private pos: number
  constructor (private readonly buf: Buffer, start = 0, private readonly end = buf.length) {
    this.pos = start
  }

  static of (t: Tlv): DerReader {
    if ((t.tag & 0x20) === 0) throw new DerError(`tag 0x${t.tag.toString(16)} is primitive, expected constructed`)
    return new DerReader(t.buf, t.valueStart, t.end)
  }

  atEnd (): boolean {
    return this.pos >= this.end
  }

  peekTag (): number | undefined {
    return this.pos < this.end ? this.buf[this.pos] : undefined
  }

  read (): Tlv {
    const { buf, end } = this
    const start = this.pos
    if (start >= end) throw new DerError('unexpected end of data')
    const tag = buf[start] as number
    if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte tags are not supported')
    if (start + 1 >= end) throw new DerError('truncated length')
    let p = start + 1
    const first = buf[p++] as number
    let len: number
    if (first < 0x80) {
      len = first
    } else {
      const n = first & 0x7f
      if (n === 0) throw new DerError('indefinite length is not DER')
      if (n > MAX_DEPTH_LENGTH_BYTES) throw new DerError('length too large')
      if (p + n > end) throw new DerError('truncated length')
      if (buf[p] === 0) throw new DerError('non-minimal length')
      len = 0
      for (let i = 0; i < n; i++) len = len * 256 + (buf[p++] as number)
      if (len < 0x80) throw new DerError('non-minimal length')
    }
    if (len > end - p) throw new DerError('content runs past its container')
    this.pos = p + len
    return { tag, buf, start, valueStart: p, end: p + len }
  }

  /** Reads the next TLV and checks its tag. */
  expect (tag: number, what: string): Tlv {
    const t = this.read()
    if (t.tag !== tag) throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, got 0x${t.tag.toString(16)}`)
    return t
  }

  /** Reads the next TLV only if it has this tag. */
  optional (tag: number): Tlv | undefined {
    return this.peekTag() === tag ? this.read() : undefined
  }

  done (what: string): void {
    if (this.pos !== this.end) throw new DerError(`${what}: trailing data`)
  }
}

/** Parses a buffer that must hold exactly one TLV. */
export function parseOne (buf: Buffer, what: string): Tlv {
  const r = new DerReader(buf)
  const t = r.read()
  r.done(what)
  return t
}

export function children (t: Tlv): Tlv[] {
  const r = DerReader.of(t)
  const out: Tlv[] = []
  while (!r.atEnd()) out.push(r.read())
  return out
}

function checkIntegerEncoding (v: Buffer, what: string): void {
  if (v.length === 0) throw new DerError(`${what}: empty INTEGER`)
  if (v.length > 1) {
    const a = v[0] as number
    const b = v[1] as number
    if ((a === 0x00 && b < 0x80) || (a === 0xff && b >= 0x80)) throw new DerError(`${what}: non-minimal INTEGER`)
  }
}

export function readBigInt (t: Tlv, what: string, tag: number = TAG.INTEGER): bigint {
  if (t.tag !== tag) throw new DerError(`${what}: expected INTEGER`)
  const v = tlvValue(t)
  checkIntegerEncoding(v, what)
  let n = BigInt('0x' + v.toString('hex'))
  if (((v[0] as number) & 0x80) !== 0) n -= 1n << BigInt(v.length * 8)
  return n
}

export function readSmallInt (t: Tlv, what: string, tag: number = TAG.INTEGER): number {
  const n = readBigInt(t, what, tag)
  if (n < -0x7fffffffn || n > 0x7fffffffn) throw new DerError(`${what}: INTEGER out of range`)
  return Number(n)
}

/** The INTEGER's content bytes, checked for minimal encoding (for serial numbers). */
export function readIntegerBytes (t: Tlv, what: string): Buffer {
  if (t.tag !== TAG.INTEGER) throw new DerError(`${what}: expected INTEGER`)
  const v = tlvValue(t)
  checkIntegerEncoding(v, what)
  return v
}

export function readBoolean (t: Tlv, what: string): boolean {
  if (t.tag !== TAG.BOOLEAN) throw new DerError(`${what}: expected BOOLEAN`)
  if (t.end - t.valueStart !== 1) throw new DerError(`${what}: BOOLEAN must be one byte`)
  const b = t.buf[t.valueStart]
  if (b === 0xff) return true
  if (b === 0x00) return false
  throw new DerError(`${what}: BOOLEAN must be 0x00 or 0xFF in DER`)
}

export function readNull (t: Tlv, what: string): void {
  if (t.tag !== TAG.NULL || t.end !== t.valueStart) throw new DerError(`${what}: expected NULL`)
}

export interface BitString { bytes: Buffer, unusedBits: number }

export function readBitString (t: Tlv, what: string, tag: number = TAG.BIT_STRING): BitString {
  if (t.tag !== tag) throw new DerError(`${what}: expected BIT STRING`)
  const v = tlvValue(t)
  if (v.length === 0) throw new DerError(`${what}: empty BIT STRING`)
  const unusedBits = v[0] as number
  if (unusedBits > 7) throw new DerError(`${what}: bad unused-bit count`)
  const bytes = v.subarray(1)
  if (bytes.length === 0 && unusedBits !== 0) throw new DerError(`${what}: unused bits in an empty BIT STRING`)
  if (unusedBits > 0 && (((bytes[bytes.length - 1] as number) & ((1 << unusedBits) - 1)) !== 0)) {
    throw new DerError(`${what}: unused bits must be zero in DER`)
  }
  return { bytes, unusedBits }
}

/** Named-bit BIT STRING (KeyUsage) as a number, bit 0 = most significant bit of the first byte. */
export function readNamedBits (t: Tlv, what: string): number {
  const { bytes, unusedBits } = readBitString(t, what)
  if (bytes.length > 2) throw new DerError(`${what}: too many bits`)
  // DER: trailing zero bits of a named-bit list are removed.
  if (bytes.length > 0 && (bytes[bytes.length - 1] as number) === 0) throw new DerError(`${what}: trailing zero byte in named bits`)
  if (bytes.length > 0 && unusedBits > 0 && (((bytes[bytes.length - 1] as number) >> unusedBits) & 1) === 0) {
    throw new DerError(`${what}: named bits not minimally encoded`)
  }
  let n = 0
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i] as number
    for (let b = 0; b < 8; b++) if ((byte & (0x80 >> b)) !== 0) n |= 1 << (i * 8 + b)
  }
  return n
}

export function readOctetString (t: Tlv, what: string): Buffer {
  if (t.tag !== TAG.OCTET_STRING) throw new DerError(`${what}: expected OCTET STRING`)
  return tlvValue(t)
}

const oidCache = new Map<string, string>()

export function readOid (t: Tlv, what: string): string {
  if (t.tag !== TAG.OID) throw new DerError(`${what}: expected OBJECT IDENTIFIER`)
  const v = tlvValue(t)
  if (v.length === 0) throw new DerError(`${what}: empty OBJECT IDENTIFIER`)
  if (v.length > 64) throw new DerError(`${what}: OBJECT IDENTIFIER too long`)
  const key = v.toString('latin1')
  const cached = oidCache.get(key)
  if (cached !== undefined) return cached
  const parts: string[] = []
  let n = 0n
  let first = true
  for (let i = 0; i < v.length; i++) {
    const byte = v[i] as number
    if (n === 0n && byte === 0x80) throw new DerError(`${what}: non-minimal OBJECT IDENTIFIER arc`)
    n = (n << 7n) | BigInt(byte & 0x7f)
    if ((byte & 0x80) === 0) {
      if (first) {
        const a = n < 40n ? 0n : n < 80n ? 1n : 2n
        parts.push(String(a), String(n - a * 40n))
        first = false
      } else {
        parts.push(String(n))
      }
      n = 0n
    } else if (i === v.length - 1) {
      throw new DerError(`${what}: truncated OBJECT IDENTIFIER`)
    }
  }
  const oid = parts.join('.')
  if (oidCache.size < 4096) oidCache.set(key, oid)
  return oid
}

const digits = (s: string): boolean => /^[0-9]+$/.test(s)

/** UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ), the only forms RFC 5280 allows. */
export function readTime (t: Tlv, what: string): Date {
  const s = tlvValue(t).toString('latin1')
  let year: number
  let rest: string
  if (t.tag === TAG.UTC_TIME) {
    if (s.length !== 13 || s[12] !== 'Z' || !digits(s.slice(0, 12))) throw new DerError(`${what}: UTCTime must be YYMMDDHHMMSSZ`)
    const yy = Number(s.slice(0, 2))
    year = yy >= 50 ? 1900 + yy : 2000 + yy
    rest = s.slice(2, 12)
  } else if (t.tag === TAG.GENERALIZED_TIME) {
    if (s.length !== 15 || s[14] !== 'Z' || !digits(s.slice(0, 14))) throw new DerError(`${what}: GeneralizedTime must be YYYYMMDDHHMMSSZ`)
    year = Number(s.slice(0, 4))
    rest = s.slice(4, 14)
  } else {
    throw new DerError(`${what}: expected UTCTime or GeneralizedTime`)
  }
  const month = Number(rest.slice(0, 2))
  const day = Number(rest.slice(2, 4))
  const hour = Number(rest.slice(4, 6))
  const minute = Number(rest.slice(6, 8))
  const second = Number(rest.slice(8, 10))
  const ms = Date.UTC(year, month - 1, day, hour, minute, second)
  const d = new Date(ms)
  if (month < 1 || month > 12 || d.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59 || d.getUTCFullYear() !== year) {
    throw new DerError(`${what}: invalid date`)
  }
  return d
}

/** Decodes a directory string; returns undefined for non-string tags. */
export function readString (t: Tlv, what: string): string | undefined {
  const v = tlvValue(t)
  switch (t.tag) {
    case TAG.UTF8_STRING: {
      const s = v.toString('utf8')
      if (!Buffer.from(s, 'utf8').equals(v)) throw new DerError(`${what}: invalid UTF-8`)
      return s
    }
    case TAG.PRINTABLE_STRING:
      if (!/^[A-Za-z0-9 '()+,\-./:=?]*$/.test(v.toString('latin1'))) throw new DerError(`${what}: invalid PrintableString`)
      return v.toString('latin1')
    case TAG.IA5_STRING:
    case TAG.VISIBLE_STRING:
      for (const b of v) if (b > 0x7f) throw new DerError(`${what}: non-ASCII byte in IA5String`)
      return v.toString('latin1')
    case TAG.TELETEX_STRING:
      // T.61 is treated as Latin-1, as OpenSSL does.
      return v.toString('latin1')
    case TAG.BMP_STRING: {
      if (v.length % 2 !== 0) throw new DerError(`${what}: odd-length BMPString`)
      const swapped = Buffer.from(v)
      swapped.swap16()
      const s = swapped.toString('utf16le')
      if (!s.isWellFormed()) throw new DerError(`${what}: BMPString with an unpaired surrogate`)
      return s
    }
    case TAG.UNIVERSAL_STRING: {
      if (v.length % 4 !== 0) throw new DerError(`${what}: bad UniversalString length`)
      let s = ''
      for (let i = 0; i < v.length; i += 4) {
        const cp = v.readUInt32BE(i)
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) throw new DerError(`${what}: bad code point`)
        s += String.fromCodePoint(cp)
      }
      return s
    }
    default:
      return undefined
  }
}

/** IA5String content (used by GeneralName dNSName, rfc822Name, URI). */
export function readIA5 (t: Tlv, what: string): string {
  const v = tlvValue(t)
  for (const b of v) if (b > 0x7f) throw new DerError(`${what}: non-ASCII byte in IA5String`)
  return v.toString('latin1')
}

export interface Extension { oid: string, critical: boolean, value: Buffer }

/**
 * Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension, each OID at most once, DEFAULT FALSE omitted.
 * `allowEmpty` tolerates the empty SEQUENCE some CRL generators write for entries without extensions.
 */
export function readExtensions (list: Tlv, what: string, allowEmpty = false): Extension[] {
  if (list.tag !== TAG.SEQUENCE) throw new DerError(`${what}: expected a SEQUENCE`)
  const out: Extension[] = []
  const seen = new Set<string>()
  const r = DerReader.of(list)
  while (!r.atEnd()) {
    const xr = DerReader.of(r.expect(TAG.SEQUENCE, `${what} Extension`))
    const oid = readOid(xr.read(), `${what} extnID`)
    let critical = false
    if (xr.peekTag() === TAG.BOOLEAN) {
      critical = readBoolean(xr.read(), `${what} ${oid} critical`)
      if (!critical) throw new DerError(`${what}: extension ${oid}: critical DEFAULT FALSE must be omitted in DER`)
    }
    const value = readOctetString(xr.read(), `${what} ${oid} extnValue`)
    xr.done(`${what} Extension`)
    if (seen.has(oid)) throw new DerError(`${what}: extension ${oid} appears more than once`)
    seen.add(oid)
    out.push({ oid, critical, value })
  }
  if (out.length === 0 && !allowEmpty) throw new DerError(`${what}: empty SEQUENCE`)
  return out
}
