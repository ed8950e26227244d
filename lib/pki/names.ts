// Distinguished names as RFC 4514 strings (most specific RDN first), read from DER.
import { Buffer } from 'node:buffer'
import { ATTRIBUTE_OIDS, childrenOf, tlvAt } from './engine.js'

const SHORT_NAMES = new Map(Object.entries(ATTRIBUTE_OIDS).map(([name, oid]) => [oid, name]))

function oidText (bytes: Buffer): string {
  const parts: number[] = []
  let value = 0
  for (const byte of bytes) {
    value = value * 128 + (byte & 0x7f)
    if ((byte & 0x80) === 0) {
      if (parts.length === 0) parts.push(value < 80 ? Math.floor(value / 40) : 2, value < 80 ? value % 40 : value - 80)
      else parts.push(value)
      value = 0
    }
  }
  return parts.join('.')
}

function stringValue (tag: number, bytes: Buffer): string | undefined {
  switch (tag) {
    case 0x0c: return bytes.toString('utf8')
    case 0x13: case 0x14: case 0x16: return bytes.toString('latin1')
    case 0x1e: return Buffer.from(bytes).swap16().toString('utf16le')
    default: return undefined
  }
}

function escapeValue (value: string): string {
  return value
    .replace(/[\\,+"<>;=]/g, (ch) => `\\${ch}`)
    .replace(/^[ #]/, (ch) => `\\${ch}`)
    .replace(/ $/, '\\ ')
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u001f\u007f]/g, (ch) => `\\${ch.charCodeAt(0).toString(16).padStart(2, '0').toUpperCase()}`)
    // C1 controls, and bidi and format characters that could reorder what is printed: as their UTF-8 bytes (RFC 4514 hexpairs)
    .replace(/[\u0080-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (ch) => Buffer.from(ch, 'utf8').toString('hex').toUpperCase().replace(/../g, '\\$&'))
}

/** 'CN=alice,O=Acme' from the DER of a Name; unknown attributes by dotted OID, non-string values as #hex. */
export function rfc4514 (nameDer: Buffer): string {
  const rdns = childrenOf(nameDer, tlvAt(nameDer, 0)).map((set) => childrenOf(nameDer, set).map((attr) => {
    const [oid, value] = childrenOf(nameDer, attr)
    if (oid === undefined || value === undefined) return ''
    const oidString = oidText(nameDer.subarray(oid.contentStart, oid.end))
    const text = stringValue(value.tag, nameDer.subarray(value.contentStart, value.end))
    const type = SHORT_NAMES.get(oidString) ?? oidString
    return `${type}=${text === undefined ? `#${nameDer.subarray(value.start, value.end).toString('hex')}` : escapeValue(text)}`
  }).join('+'))
  return rdns.reverse().join(',')
}
