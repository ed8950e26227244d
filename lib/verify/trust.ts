// Trust anchors and untrusted intermediates, indexed for path building.
import type { TrustAnchorInfo, TrustAnchorInput, CertificateInput, LabelledCertificate } from '../types.js'
import type { ParsedCertificate } from '../der/certificate.js'
import { InputError, toDerList } from '../der/pem.js'
import { getCertificate } from '../der/store.js'

export interface TrustAnchor {
  readonly cert: ParsedCertificate
  readonly info: TrustAnchorInfo
  readonly labelled: boolean
}

function isLabelled (x: unknown): x is LabelledCertificate {
  return typeof x === 'object' && x !== null && !(x instanceof Uint8Array) && 'cert' in x
}

function parseList (input: CertificateInput, what: string): ParsedCertificate[] {
  return toDerList(input, 'CERTIFICATE', what).map((der, i) => {
    try {
      return getCertificate(der)
    } catch (err) {
      throw new InputError(`${what}: certificate #${i + 1} does not parse: ${(err as Error).message}`)
    }
  })
}

/** Where path building looks for issuer candidates. */
export interface IssuerSource {
  bySubjectKey: (key: string) => readonly ParsedCertificate[]
}

/** Indexes certificates by subject so that issuer candidates are found by name. */
export class CertificateIndex implements IssuerSource {
  private readonly bySubject = new Map<string, ParsedCertificate[]>()
  private readonly hashes = new Set<string>()
  readonly all: ParsedCertificate[] = []

  add (cert: ParsedCertificate): boolean {
    const h = cert.sha256.toString('latin1')
    if (this.hashes.has(h)) return false
    this.hashes.add(h)
    this.all.push(cert)
    const list = this.bySubject.get(cert.subject.key)
    if (list === undefined) this.bySubject.set(cert.subject.key, [cert])
    else list.push(cert)
    return true
  }

  has (cert: ParsedCertificate): boolean {
    return this.hashes.has(cert.sha256.toString('latin1'))
  }

  bySubjectKey (key: string): readonly ParsedCertificate[] {
    return this.bySubject.get(key) ?? []
  }
}

export class TrustStore {
  readonly anchors: readonly TrustAnchor[]
  private readonly index = new CertificateIndex()
  private readonly byHash = new Map<string, TrustAnchor>()

  /** `option` names the input in error messages ('trustAnchors' for verifyCertificateChain, 'ca' for the plugin). */
  constructor (input: TrustAnchorInput, option = 'trustAnchors') {
    const items = Array.isArray(input) ? input as ReadonlyArray<CertificateInput | LabelledCertificate> : [input as CertificateInput | LabelledCertificate]
    const anchors: TrustAnchor[] = []
    const labels = new Set<string>()
    items.forEach((item, i) => {
      const what = `${option}[${i}]`
      let label: string | undefined
      let certs: ParsedCertificate[]
      if (isLabelled(item)) {
        if (typeof item.name !== 'string' || item.name.length === 0) throw new InputError(`${what}.name must be a non-empty string`)
        if (labels.has(item.name)) throw new InputError(`${what}.name "${item.name}" is used twice`)
        labels.add(item.name)
        label = item.name
        certs = parseList(item.cert, `${what}.cert`)
      } else {
        certs = parseList(item as CertificateInput, what)
      }
      for (const cert of certs) {
        if (!this.index.add(cert)) {
          const earlier = this.byHash.get(cert.sha256.toString('latin1')) as TrustAnchor
          // the same CA under two labels would make a policy naming the second label never match
          if (label !== undefined && earlier.info.name !== label) throw new InputError(`${what}: the certificate "${cert.subject.rfc4514}" is already an anchor named "${earlier.info.name}"`)
          continue
        }
        const anchor: TrustAnchor = {
          cert,
          labelled: label !== undefined,
          info: Object.freeze({ name: label ?? cert.subject.rfc4514, fingerprint256: cert.fingerprint256, spkiSha256: cert.spkiSha256 })
        }
        anchors.push(anchor)
        this.byHash.set(cert.sha256.toString('latin1'), anchor)
      }
    })
    if (anchors.length === 0) throw new InputError(`${option}: at least one trust anchor is required`)
    // an unlabelled anchor is named by its subject: a label equal to it would let a policy's
    // `anchor` match either CA
    for (const a of anchors) {
      if (!a.labelled && labels.has(a.info.name)) {
        throw new InputError(`${option}: the label "${a.cert.subject.rfc4514}" is also the subject of an unlabelled anchor; label that anchor too`)
      }
    }
    this.anchors = Object.freeze(anchors)
  }

  candidatesFor (cert: ParsedCertificate): TrustAnchor[] {
    return this.index.bySubjectKey(cert.issuer.key).map((c) => this.byHash.get(c.sha256.toString('latin1')) as TrustAnchor)
  }

  isAnchor (cert: ParsedCertificate): boolean {
    return this.index.has(cert)
  }

  get labels (): string[] {
    return this.anchors.map((a) => a.info.name)
  }
}

/** Parses untrusted certificates; the ones that do not parse are skipped and reported. */
export function parseUntrusted (inputs: ReadonlyArray<CertificateInput>, what: string): { certs: ParsedCertificate[], errors: string[] } {
  const certs: ParsedCertificate[] = []
  const errors: string[] = []
  inputs.forEach((input, i) => {
    for (const der of toDerList(input, 'CERTIFICATE', `${what}[${i}]`)) {
      try {
        certs.push(getCertificate(der))
      } catch (err) {
        errors.push(`${what}[${i}]: ${(err as Error).message}`)
      }
    }
  })
  return { certs, errors }
}
