// The deny list: certificates refused at once, wherever they stand on the path.
// Prefer SPKI hashes or issuer + serial: an ECDSA signature can be re-encoded by
// anyone holding the certificate, which changes its fingerprint but not its key,
// issuer or serial.
import { colonHex } from './crypto.js'
import type { ParsedCertificate } from './der/certificate.js'
import type { DenyEntry } from './options.js'

export class DenyList {
  private readonly fingerprints = new Set<string>()
  private readonly spkis = new Set<string>()
  private readonly serials = new Set<string>()

  /** Throws a TypeError naming the entry that is not understood. */
  constructor (entries: readonly DenyEntry[]) {
    entries.forEach((entry, i) => {
      const what = `deny[${i}]`
      if (typeof entry === 'string') {
        const hex = entry.replace(/:/g, '')
        if (/^[0-9a-fA-F]{64}$/.test(hex)) {
          this.fingerprints.add(colonHex(hex))
          return
        }
        const b64 = entry.replace(/-/g, '+').replace(/_/g, '/')
        const bytes = Buffer.from(b64, 'base64')
        if (/^[A-Za-z0-9+/]{43}=?$/.test(b64) && bytes.length === 32) {
          this.spkis.add(bytes.toString('base64'))
          return
        }
        throw new TypeError(`${what}: ${JSON.stringify(entry)} is neither a SHA-256 fingerprint (64 hex digits) nor an SPKI SHA-256 hash (base64)`)
      }
      if (typeof entry === 'object' && entry !== null && typeof entry.issuer === 'string' && typeof entry.serialNumber === 'string') {
        const serial = entry.serialNumber.replace(/:/g, '').toUpperCase().replace(/^0+(?=.)/, '')
        if (!/^[0-9A-F]+$/.test(serial)) throw new TypeError(`${what}.serialNumber must be hex`)
        this.serials.add(entry.issuer + '\u0000' + serial)
        return
      }
      throw new TypeError(`${what}: expected a fingerprint, an SPKI hash or { issuer, serialNumber }`)
    })
  }

  get size (): number {
    return this.fingerprints.size + this.spkis.size + this.serials.size
  }

  /** Why a certificate on the path is denied, or undefined. */
  match (path: readonly ParsedCertificate[]): string | undefined {
    if (this.size === 0) return undefined
    for (const c of path) {
      if (this.fingerprints.has(c.fingerprint256)) return `certificate ${c.fingerprint256} is on the deny list`
      if (this.spkis.has(c.spkiSha256)) return `key ${c.spkiSha256} of "${c.subject.rfc4514}" is on the deny list`
      if (this.serials.has(c.issuer.rfc4514 + '\u0000' + c.serialHex.replace(/^0+(?=.)/, ''))) {
        return `serial ${c.serialHex} of issuer "${c.issuer.rfc4514}" is on the deny list`
      }
    }
    return undefined
  }
}
