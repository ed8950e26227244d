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
import { crlSignedBy, SOFT_FAIL_VERDICT_MS, verifyPath, type PathOptions, type PathResult } from './verify/chain.js'
import type { CrlFetcher } from './revocation/crl-fetcher.js'
import type { OcspChecker } from './revocation/ocsp.js'
import { LearnedPool } from './verify/pool.js'
import { CertificateIndex, TrustStore, parseUntrusted, type IssuerSource } from './verify/trust.js'
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
type VerifiedPath = Extract<PathResult, { ok: true }>
interface Verified { kind: 'verified', result: VerifiedPath, leaf: ParsedCertificate, presented: IssuerSource }

/** Online revocation sources, both optional. */
export interface OnlineChecks {
  crlFetcher?: CrlFetcher
  ocsp?: { checker: OcspChecker, softFail: boolean }
}
interface Negative { epoch: number, poolVersion: number, outcome: Extract<Outcome, { kind: 'fail' }>, expires: number }

/**
 * The positive cache's key for a forwarded leaf (a TLS leaf's key is its fingerprint): the
 * identity records its source, so the verdicts of the two sources are kept apart. A caller
 * that looks the same leaf up often keeps this string rather than building it each time.
 */
export function forwardedCacheKey (leafFingerprint: string): string {
  return 'forwarded:' + leafFingerprint
}

export class Authenticator {
  private material: TrustMaterial
  private epochValue = 1
  readonly learned = new LearnedPool(256)
  private readonly positive = new LruCache<string, Positive>(4096)
  private readonly negative = new LruCache<string, Negative>(1024)
  verifications = 0

  constructor (material: TrustMaterial, private readonly settings: CheckSettings, private readonly online: OnlineChecks = {}, private readonly now: () => number = Date.now) {
    this.material = material
  }

  get epoch (): number {
    return this.epochValue
  }

  get trust (): TrustMaterial {
    return this.material
  }

  /**
   * Swaps the trust material at once; every cached verdict is from an older epoch from now on.
   * The learned intermediates stay: they are only candidates, a path must still reach a current
   * anchor, and resumed sessions (leaf only) of still-trusted CAs need them.
   */
  replace (material: TrustMaterial): void {
    this.material = material
    this.epochValue++
  }

  get cacheSizes (): { positive: number, negative: number, learnedIntermediates: number } {
    return { positive: this.positive.size, negative: this.negative.size, learnedIntermediates: this.learned.size }
  }

  /** Bumps the epoch without new material (a CRL fetched from a distribution point changes verdicts). */
  bumpEpoch (): void {
    this.epochValue++
  }

  /**
   * The verdict on a presented chain (DER, leaf first) whose leaf has this fingerprint.
   * Synchronous unless an online check (CRL distribution point, OCSP) has to be made.
   */
  /**
   * The current positive verdict for a leaf of this fingerprint, if one is cached: what
   * authenticate() would answer first, without the chain (which can cost far more to read
   * than the leaf's fingerprint).
   */
  cached (cacheKey: string): Extract<Outcome, { kind: 'ok' }> | undefined {
    const hit = this.positive.get(cacheKey)
    return hit !== undefined && hit.epoch === this.epochValue && hit.outcome.validUntil > this.now() ? hit.outcome : undefined
  }

  authenticate (leafFingerprint: string, chain: readonly Buffer[], source: 'tls' | 'forwarded' = 'tls'): Outcome | Promise<Outcome> {
    const now = this.now()
    const epoch = this.epochValue
    // the identity records its source: verdicts of the two sources are kept apart
    const cacheKey = source === 'tls' ? leafFingerprint : forwardedCacheKey(leafFingerprint)
    const hit = this.positive.get(cacheKey)
    if (hit !== undefined && hit.epoch === epoch && hit.outcome.validUntil > now) return hit.outcome

    const leafBytes = chain[0]
    if (leafBytes === undefined) throw new TypeError('authenticate needs a chain with a leaf')
    const negativeKey = source + this.negativeKey(epoch, leafBytes, chain)
    const miss = this.negative.get(negativeKey)
    if (miss !== undefined && miss.epoch === epoch && miss.poolVersion === this.learned.version && miss.expires > now) return miss.outcome

    const poolVersion = this.learned.version
    const remember = (outcome: Outcome): Outcome => {
      if (outcome.kind === 'ok') {
        this.positive.set(cacheKey, { epoch, outcome })
      } else {
        // remembered only while the learned intermediates stay as they were: a chain the
        // pool could not complete may be completable once it has learned more
        this.negative.set(negativeKey, { epoch, poolVersion, outcome, expires: now + NEGATIVE_TTL_MS })
      }
      return outcome
    }
    const verdict = this.verify(leafBytes, chain.slice(1), now)
    if (verdict.kind !== 'verified') return remember(verdict)
    if (this.online.crlFetcher === undefined && this.online.ocsp === undefined) return remember(this.accept(verdict.result, verdict.leaf, now, source))
    return this.checkOnline(verdict.result, verdict.leaf, verdict.presented, now, source).then(remember)
  }

  private negativeKey (epoch: number, leaf: Buffer, chain: readonly Buffer[]): string {
    const h = createHash('sha256').update(String(epoch)).update(leaf)
    for (const der of chain.slice(1)) h.update(der)
    return h.digest('base64')
  }

  private pathOptions (presented: IssuerSource, now: number, extraCrls: readonly ParsedCrl[] = [], fetcher?: CrlFetcher): PathOptions {
    const m = this.material
    const s = this.settings
    return {
      trust: m.trust,
      presented,
      pools: [m.configured, this.learned],
      crls: extraCrls.length === 0 ? m.crls : [...m.crls, ...extraCrls],
      at: now,
      toleranceMs: s.toleranceMs,
      purpose: s.purpose,
      requireClientAuthEku: s.requireClientAuthEku,
      maxChainLength: s.maxChainLength,
      minRsaBits: s.minRsaBits,
      revocationSoftFail: s.revocationSoftFail,
      ...(fetcher === undefined ? {} : { revocationRequired: (c: ParsedCertificate) => fetcher.allowedUrls(c).length > 0 })
    }
  }

  private verify (leafDer: Buffer, extra: readonly Buffer[], now: number): Extract<Outcome, { kind: 'fail' }> | Verified {
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
    const result = verifyPath(leaf, this.pathOptions(presented, now))
    if (!result.ok) return { kind: 'fail', code: result.code, reason: result.message, leaf }
    const denied = this.material.deny.match(result.path)
    if (denied !== undefined) return { kind: 'fail', code: 'FST_MTLS_CERT_REVOKED', reason: denied, leaf }
    // learned before the online checks: a CRL fetched for this path may be issued by one of them
    // (the verifier still checks every CRL against the issuer on the path)
    for (const c of result.path.slice(1, -1)) this.learned.learn(c)
    return { kind: 'verified', result, leaf, presented }
  }

  private accept (result: VerifiedPath, leaf: ParsedCertificate, now: number, source: 'tls' | 'forwarded', extra: { validUntil?: number, warnings?: readonly string[] } = {}): Outcome {
    // the deny list as it is now: an online check may have waited across a reload
    const denied = this.material.deny.match(result.path)
    if (denied !== undefined) return { kind: 'fail', code: 'FST_MTLS_CERT_REVOKED', reason: denied, leaf }
    return {
      kind: 'ok',
      identity: identityFromPath({ path: result.path, trustAnchor: result.anchor.info, source }),
      leaf,
      validUntil: Math.min(result.validUntil.getTime(), now + this.settings.maxVerdictAgeMs, extra.validUntil ?? Infinity),
      warnings: [...result.warnings, ...extra.warnings ?? []]
    }
  }

  /** Revocation checks that need the network, made only once the chain verified to an anchor. */
  private async checkOnline (first: VerifiedPath, leaf: ParsedCertificate, presented: IssuerSource, now: number, source: 'tls' | 'forwarded'): Promise<Outcome> {
    let result = first
    const fetcher = this.online.crlFetcher
    if (fetcher !== undefined) {
      const urls = [...new Set(result.path.slice(0, -1).flatMap((c) => fetcher.allowedUrls(c)))]
      if (urls.length > 0) {
        await fetcher.ensure(urls)
        const again = verifyPath(leaf, this.pathOptions(presented, now, fetcher.crlsFor(urls), fetcher))
        if (!again.ok) return { kind: 'fail', code: again.code, reason: again.message, leaf }
        result = again
      }
    }
    const ocsp = this.online.ocsp
    if (ocsp === undefined) return this.accept(result, leaf, now, source)
    const issuer = result.path[1] as ParsedCertificate
    const answer = await ocsp.checker.check(leaf, issuer)
    if (answer.status === 'good') return this.accept(result, leaf, now, source, { validUntil: answer.nextUpdate })
    if (answer.status === 'revoked') {
      return { kind: 'fail', code: 'FST_MTLS_CERT_REVOKED', reason: `OCSP (${answer.responder}): revoked on ${answer.revocationTime.toISOString()}`, leaf }
    }
    const reason = `OCSP ${answer.status}${answer.responder === undefined ? '' : ` (${answer.responder})`}: ${answer.reason}`
    if (ocsp.softFail) return this.accept(result, leaf, now, source, { validUntil: now + SOFT_FAIL_VERDICT_MS, warnings: [reason] })
    return { kind: 'fail', code: 'FST_MTLS_REVOCATION_UNKNOWN', reason, leaf }
  }
}
