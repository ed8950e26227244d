// Rejection log lines under OpenTelemetry's attribute names, rate limited so that a
// flood of bad certificates cannot fill the disk.
import type { FastifyBaseLogger } from 'fastify'
import type { ParsedCertificate } from './der/certificate.js'
import type { CertificateSummary } from './options.js'

export function summarise (leaf: ParsedCertificate): CertificateSummary {
  return {
    subject: leaf.subject.rfc4514,
    issuer: leaf.issuer.rfc4514,
    fingerprint256: leaf.fingerprint256,
    serialNumber: leaf.serialHex,
    notAfter: leaf.notAfter.toISOString()
  }
}

export interface AuditFields {
  code: string
  reason: string
  certificate: CertificateSummary | null
  address: string | undefined
  enforced: boolean
  /** request.log already carries tls.client.subject and tls.client.hash.sha256 */
  logBound?: boolean
}

/** At most `perMinute` lines a minute; the next line after a quiet spell says how many were left out. */
export class RejectionLog {
  private windowStart = 0
  private count = 0
  private suppressed = 0

  constructor (private readonly perMinute: number, private readonly now: () => number = Date.now) {}

  write (log: FastifyBaseLogger, f: AuditFields): void {
    const t = this.now()
    if (t - this.windowStart >= 60_000) {
      this.windowStart = t
      this.count = 0
    }
    if (this.count >= this.perMinute) {
      this.suppressed++
      return
    }
    this.count++
    const line: Record<string, unknown> = {
      'mtls.code': f.code,
      'mtls.reason': f.reason,
      'client.address': f.address
    }
    if (f.certificate !== null) {
      // request.log may carry the subject and hash already (logIdentity): a key twice in one
      // JSON line is refused by some log pipelines
      if (f.logBound !== true) {
        line['tls.client.subject'] = f.certificate.subject
        line['tls.client.hash.sha256'] = f.certificate.fingerprint256.replace(/:/g, '')
      }
      line['tls.client.issuer'] = f.certificate.issuer
      line['tls.client.serial_number'] = f.certificate.serialNumber
      line['tls.client.not_after'] = f.certificate.notAfter
    }
    if (this.suppressed > 0) {
      line['mtls.suppressed'] = this.suppressed
      this.suppressed = 0
    }
    log.warn(line, f.enforced ? 'client certificate rejected' : 'client certificate would be rejected (enforce: false)')
  }
}
