// Intermediates learned from full handshakes whose chains verified. A resumed TLS
// session presents only the leaf; this bounded pool keeps it verifiable. Only
// certificates that were on a validated path get in, so a client cannot fill the
// pool with junk that hides the real issuer.
import type { ParsedCertificate } from '../der/certificate.js'
import { LruCache } from '../cache.js'
import type { IssuerSource } from './trust.js'

export class LearnedPool implements IssuerSource {
  private readonly certs: LruCache<string, ParsedCertificate>
  private bySubject = new Map<string, ParsedCertificate[]>()
  private dirty = false
  /** grows whenever a certificate is learned: a failure remembered under an older version may now pass */
  version = 0

  constructor (readonly max = 256) {
    this.certs = new LruCache(max)
  }

  get size (): number {
    return this.certs.size
  }

  learn (cert: ParsedCertificate): void {
    const key = cert.sha256.toString('latin1')
    if (this.certs.get(key) !== undefined) return
    this.certs.set(key, cert)
    this.dirty = true
    this.version++
  }

  bySubjectKey (key: string): readonly ParsedCertificate[] {
    if (this.dirty) this.reindex()
    return this.bySubject.get(key) ?? []
  }

  clear (): void {
    this.certs.clear()
    this.bySubject = new Map()
    this.dirty = false
  }

  private reindex (): void {
    const index = new Map<string, ParsedCertificate[]>()
    for (const cert of this.certs.values()) {
      const list = index.get(cert.subject.key)
      if (list === undefined) index.set(cert.subject.key, [cert])
      else list.push(cert)
    }
    this.bySubject = index
    this.dirty = false
  }
}
