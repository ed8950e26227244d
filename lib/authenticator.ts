// Certificate -> verdict, with the caches of DESIGN.md ("Caching verdicts"). No Fastify here.
import { createHash } from 'node:crypto'
import type { ParsedCertificate } from './der/certificate.js'
import type { ParsedCrl } from './der/crl.js'
import { getCertificate } from './der/store.js'
import { LruCache } from './cache.js'
import { DenyList } from './deny.js'
import { identityFromPath } from './identity.js'
import type { DenyEntry } from './options.js'
import type { ClientIdentity, CertificateInput, TrustAnchorInput, VerificationCode, VerifyPurpose } from './types.js'
import { crlSignedBy, verifyPath } from './verify/chain.js'
import { LearnedPool } from './verify/pool.js'
import { CertificateIndex, TrustStore, parseUntrusted } from './verify/trust.js'
import { MAX_PRESENTED, parseCrls } from './verify/verify.js'

export type Outcome =
  | { kind: 'ok', identity: ClientIdentity, leaf: ParsedCertificate, validUntil: number, warnings: readonly string[] }
  | { kind: 'fail', code: VerificationCode | 'FST_MTLS_CERT_REVOKED', reason: string, leaf: ParsedCertificate | undefined }

export interface TrustMaterialInput {
  ca: TrustAnchorInput
  intermediates: readonly CertificateInput[]
  crl: readonly CertificateInput[]
  deny: readonly DenyEntry[]
}

/** Parsed, checked trust material; built whole before it replaces the old one. */
export class TrustMaterial {
  readonly trust: TrustStore
  readonly configured = new CertificateIndex()
  readonly crls: readonly ParsedCrl[]
  readonly deny: DenyList

  /** Throws a TypeError that says what is wrong with the material. */
  constructor (input: TrustMaterialInput) {
    this.trust = new TrustStore(input.ca, 'ca')
    const { certs, errors } = parseUntrusted(input.intermediates, 'intermediates')
    if (errors.length > 0) throw new TypeError(errors[0])
    for (const c of certs) this.configured.add(c)
    this.crls = parseCrls(input.crl, 'crl')
    this.deny = new DenyList(input.deny)
    // a CRL that does not verify with the CA it names would make every client of that CA unknown;
    // a CRL from a CA known only from clients' chains is checked when it is used
    this.crls.forEach((crl, i) => {
      const issuers = [...this.trust.anchors.map((a) => a.cert), ...this.configured.all].filter((c) => c.subject.key === crl.issuer.key)
      if (issuers.length === 0) {
        this.warnings.push(`crl[${i}]: its issuer "${crl.issuer.rfc4514}" is neither in ca nor in intermediates, so its signature is checked only when a client presents that CA (add it to intermediates to check it now)`)
      } else if (!issuers.some((c) => crlSignedBy(crl, c))) {
        throw new TypeError(`crl[${i}]: the signature of the CRL from "${crl.issuer.rfc4514}" does not verify with that CA's key`)
      }
    })
  }

  /** Things worth a warning that do not make the material unusable. */
  readonly warnings: string[] = []

  /** Labels of the labelled anchors (what a policy's `anchor` may name). */
  get anchorLabels (): string[] {
    return this.trust.anchors.filter((a) => a.labelled).map((a) => a.info.name)
  }
}

export interface CheckSettings {
  revocationSoftFail: boolean
  purpose: VerifyPurpose
  requireClientAuthEku: boolean
  maxChainLength: number
  minRsaBits: number
  toleranceMs: number
  maxVerdictAgeMs: number
}

/** How long a failed verdict is remembered for the same full input. */
export const NEGATIVE_TTL_MS = 10_000

interface Positive { epoch: number, outcome: Extract<Outcome, { kind: 'ok' }> }
interface Negative { epoch: number, poolVersion: number, outcome: Extract<Outcome, { kind: 'fail' }>, expires: number }

export class Authenticator {
  private material: TrustMaterial
  private epochValue = 1
  readonly learned = new LearnedPool(256)
  private readonly positive = new LruCache<string, Positive>(4096)
  private readonly negative = new LruCache<string, Negative>(1024)
  verifications = 0

  constructor (material: TrustMaterial, private readonly settings: CheckSettings, private readonly now: () => number = Date.now) {
    this.material = material
  }

  get epoch (): number {
    return this.epochValue
  }

  get trust (): TrustMaterial {
    return this.material
  }

  /** Swaps the trust material at once; every cached verdict is from an older epoch from now on. */
  replace (material: TrustMaterial): void {
    this.material = material
    this.epochValue++
    this.learned.clear()
  }

  get cacheSizes (): { positive: number, negative: number, learnedIntermediates: number } {
    return { positive: this.positive.size, negative: this.negative.size, learnedIntermediates: this.learned.size }
  }

  /** The verdict on a presented chain (DER, leaf first) whose leaf has this fingerprint. */
  authenticate (leafFingerprint: string, chain: readonly Buffer[]): Outcome {
    const now = this.now()
    const epoch = this.epochValue
    const hit = this.positive.get(leafFingerprint)
    if (hit !== undefined && hit.epoch === epoch && hit.outcome.validUntil > now) return hit.outcome

    const leafBytes = chain[0]
    if (leafBytes === undefined) throw new TypeError('authenticate needs a chain with a leaf')
    const negativeKey = this.negativeKey(epoch, leafBytes, chain)
    const miss = this.negative.get(negativeKey)
    if (miss !== undefined && miss.epoch === epoch && miss.poolVersion === this.learned.version && miss.expires > now) return miss.outcome

    const poolVersion = this.learned.version
    const outcome = this.verify(leafBytes, chain.slice(1), now)
    if (outcome.kind === 'ok') {
      this.positive.set(leafFingerprint, { epoch, outcome })
    } else {
      // remembered only while the learned intermediates stay as they were: a chain the
      // pool could not complete may be completable once it has learned more
      this.negative.set(negativeKey, { epoch, poolVersion, outcome, expires: now + NEGATIVE_TTL_MS })
    }
    return outcome
  }

  private negativeKey (epoch: number, leaf: Buffer, chain: readonly Buffer[]): string {
    const h = createHash('sha256').update(String(epoch)).update(leaf)
    for (const der of chain.slice(1)) h.update(der)
    return h.digest('base64')
  }

  private verify (leafDer: Buffer, extra: readonly Buffer[], now: number): Outcome {
    this.verifications++
    let leaf: ParsedCertificate
    try {
      leaf = getCertificate(leafDer)
    } catch (err) {
      return { kind: 'fail', code: 'FST_MTLS_CERT_UNTRUSTED', reason: `the client certificate does not parse: ${(err as Error).message}`, leaf: undefined }
    }
    if (extra.length > MAX_PRESENTED) {
      return { kind: 'fail', code: 'FST_MTLS_CHAIN_INVALID', reason: `more than ${MAX_PRESENTED} certificates presented with the leaf`, leaf }
    }
    const presented = new CertificateIndex()
    for (const der of extra) {
      try {
        presented.add(getCertificate(der))
      } catch {
        // a certificate that does not parse cannot be on a valid path
      }
    }
    const m = this.material
    const s = this.settings
    const result = verifyPath(leaf, {
      trust: m.trust,
      presented,
      pools: [m.configured, this.learned],
      crls: m.crls,
      at: now,
      toleranceMs: s.toleranceMs,
      purpose: s.purpose,
      requireClientAuthEku: s.requireClientAuthEku,
      maxChainLength: s.maxChainLength,
      minRsaBits: s.minRsaBits,
      revocationSoftFail: s.revocationSoftFail
    })
    if (!result.ok) return { kind: 'fail', code: result.code, reason: result.message, leaf }
    const denied = m.deny.match(result.path)
    if (denied !== undefined) return { kind: 'fail', code: 'FST_MTLS_CERT_REVOKED', reason: denied, leaf }
    for (const c of result.path.slice(1, -1)) this.learned.learn(c)
    return {
      kind: 'ok',
      identity: identityFromPath({ path: result.path, trustAnchor: result.anchor.info, source: 'tls' }),
      leaf,
      validUntil: Math.min(result.validUntil.getTime(), now + s.maxVerdictAgeMs),
      warnings: result.warnings
    }
  }
}
