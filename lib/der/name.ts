// X.501 Name: structured form, RFC 4514 text, and a canonical key for comparing
// names the way RFC 5280 7.1 asks (case-insensitive, whitespace-folded strings).
import type { DistinguishedName, NameAttribute } from '../types.js'
import { ATTRIBUTE_NAMES } from './oids.js'
import { DerError, DerReader, TAG, readOid, readString, tlvBytes, type Tlv } from './reader.js'

export interface ParsedName extends DistinguishedName {
  /** Canonical comparison key: equal keys mean equal names. */
  readonly key: string
  /** Canonical key of each RDN, in order. */
  readonly rdnKeys: readonly string[]
  readonly empty: boolean
}

function escapeValue (value: string): string {
  let out = ''
  for (let i = 0; i < value.length; i++) {
    const c = value[i] as string
    const code = c.charCodeAt(0)
    if (c === ',' || c === '+' || c === '"' || c === '\\' || c === '<' || c === '>' || c === ';' || c === '=') {
      out += '\\' + c
    } else if (code < 0x20 || code === 0x7f) {
      out += '\\' + code.toString(16).padStart(2, '0')
    } else if ((i === 0 && (c === '#' || c === ' ')) || (i === value.length - 1 && c === ' ')) {
      out += '\\' + c
    } else {
      out += c
    }
  }
  return out
}

/** Canonical form of one attribute value: strings quoted (so no string can imitate a non-string), others as hex. */
function canonicalValue (raw: Buffer, text: string | undefined): string {
  if (text === undefined) return '#' + raw.toString('hex')
  // RFC 4518-lite: trim, fold runs of spaces, case-fold.
  return JSON.stringify(text.trim().replace(/ +/g, ' ').toLowerCase())
}

export function parseName (t: Tlv, what: string): ParsedName {
  if (t.tag !== TAG.SEQUENCE) throw new DerError(`${what}: Name must be a SEQUENCE`)
  const r = DerReader.of(t)
  const rdns: NameAttribute[][] = []
  const attributes: Record<string, string[]> = Object.create(null)
  const keyParts: string[] = []
  while (!r.atEnd()) {
    const set = r.expect(TAG.SET, `${what} RDN`)
    const sr = DerReader.of(set)
    if (sr.atEnd()) throw new DerError(`${what}: empty RDN`)
    const rdn: NameAttribute[] = []
    const rdnKeys: string[] = []
    while (!sr.atEnd()) {
      const atv = sr.expect(TAG.SEQUENCE, `${what} attribute`)
      const ar = DerReader.of(atv)
      const oid = readOid(ar.read(), `${what} attribute type`)
      const valueTlv = ar.read()
      ar.done(`${what} attribute`)
      const text = readString(valueTlv, `${what} ${oid}`)
      const value = text ?? '#' + tlvBytes(valueTlv).toString('hex')
      const type = ATTRIBUTE_NAMES[oid] ?? oid
      rdn.push(Object.freeze({ oid, type, value }))
      ;(attributes[type] ??= []).push(value)
      rdnKeys.push(oid + '=' + canonicalValue(tlvBytes(valueTlv), text))
    }
    rdns.push(rdn)
    keyParts.push(rdnKeys.sort().join('+'))
  }
  for (const k of Object.keys(attributes)) Object.freeze(attributes[k])
  const rfc4514 = rdns
    .slice()
    .reverse()
    .map((rdn) => rdn.map((a) => `${a.type}=${escapeValue(a.value)}`).join('+'))
    .join(',')
  return Object.freeze({
    rdns: Object.freeze(rdns.map((x) => Object.freeze(x))),
    attributes: Object.freeze(attributes),
    rfc4514,
    key: keyParts.join('\u0000'),
    rdnKeys: Object.freeze(keyParts),
    empty: rdns.length === 0
  })
}

/** True when `name` lies within the subtree `base` (RDN-wise prefix, RFC 5280 4.2.1.10 directoryName). */
export function nameWithin (name: ParsedName, base: ParsedName): boolean {
  if (base.empty) return true
  const a = name.rdnKeys
  const b = base.rdnKeys
  if (b.length > a.length) return false
  for (let i = 0; i < b.length; i++) if (a[i] !== b[i]) return false
  return true
}
