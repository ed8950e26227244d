// GeneralName (RFC 5280 4.2.1.6), as used by SAN, name constraints, CRL distribution points and AKI.
import { parseName, type ParsedName } from './name.js'
import { DerError, DerReader, TAG, readIA5, readOid, tlvValue, type Tlv } from './reader.js'

export type GeneralName =
  | { kind: 'dns', value: string }
  | { kind: 'email', value: string }
  | { kind: 'uri', value: string }
  | { kind: 'ip', bytes: Buffer }
  | { kind: 'dirName', name: ParsedName }
  | { kind: 'otherName', typeId: string }
  | { kind: 'registeredId', oid: string }
  | { kind: 'x400' }
  | { kind: 'ediParty' }

export function parseGeneralName (t: Tlv, what: string): GeneralName {
  switch (t.tag) {
    case 0xa0: {
      const r = DerReader.of(t)
      const typeId = readOid(r.read(), `${what} otherName`)
      r.expect(0xa0, `${what} otherName value`)
      r.done(`${what} otherName`)
      return { kind: 'otherName', typeId }
    }
    case 0x81: return { kind: 'email', value: readIA5(t, what) }
    case 0x82: return { kind: 'dns', value: readIA5(t, what) }
    case 0xa3: return { kind: 'x400' }
    case 0xa4: {
      const r = DerReader.of(t)
      const name = parseName(r.read(), `${what} directoryName`)
      r.done(`${what} directoryName`)
      return { kind: 'dirName', name }
    }
    case 0xa5: return { kind: 'ediParty' }
    case 0x86: return { kind: 'uri', value: readIA5(t, what) }
    case 0x87: return { kind: 'ip', bytes: tlvValue(t) }
    case 0x88: return { kind: 'registeredId', oid: readOid({ ...t, tag: TAG.OID }, what) }
    default:
      throw new DerError(`${what}: unknown GeneralName tag 0x${t.tag.toString(16)}`)
  }
}

export const MAX_GENERAL_NAMES = 1024

/** GeneralNames ::= SEQUENCE SIZE (1..MAX) OF GeneralName */
export function parseGeneralNames (t: Tlv, what: string, allowEmpty = false): GeneralName[] {
  if (t.tag !== TAG.SEQUENCE && t.tag !== 0xa0 && t.tag !== 0xa1 && (t.tag & 0x20) === 0) throw new DerError(`${what}: expected GeneralNames`)
  const r = DerReader.of(t)
  const out: GeneralName[] = []
  while (!r.atEnd()) {
    // bounded memory per parsed (and cached) certificate
    if (out.length === MAX_GENERAL_NAMES) throw new DerError(`${what}: more than ${MAX_GENERAL_NAMES} names`)
    out.push(parseGeneralName(r.read(), what))
  }
  if (out.length === 0 && !allowEmpty) throw new DerError(`${what}: empty GeneralNames`)
  return out
}

/** Text form of an IP address from its bytes (dotted IPv4, RFC 5952 IPv6). */
export function ipToString (b: Buffer): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`
  if (b.length !== 16) return '#' + b.toString('hex')
  const words: number[] = []
  for (let i = 0; i < 16; i += 2) words.push(b.readUInt16BE(i))
  // longest run of two or more zero words is compressed (first one on ties)
  let bestStart = -1
  let bestLen = 1
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) { i++; continue }
    let j = i
    while (j < 8 && words[j] === 0) j++
    if (j - i > bestLen) { bestStart = i; bestLen = j - i }
    i = j
  }
  const hex = words.map((w) => w.toString(16))
  if (bestStart < 0) return hex.join(':')
  return hex.slice(0, bestStart).join(':') + '::' + hex.slice(bestStart + bestLen).join(':')
}
