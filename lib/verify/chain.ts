// Path building and validation (RFC 5280 6.1, with the stricter profile the
// x509-limbo corpus grades). Candidates are found by name, ordered by key
// identifier, and accepted only by signature. Each complete path is validated
// check by check in the order of the rejection codes; the first path that passes
// wins, otherwise the failure of the path that got furthest is reported.
import { KU, type ParsedCertificate } from '../der/certificate.js'
import type { ParsedCrl } from '../der/crl.js'
import { OID } from '../der/oids.js'
import { LruCache } from '../cache.js'
import { keyWeakness, signatureScheme, usableForSignatures, verifySignature } from '../crypto.js'
import type { VerificationCode, VerifyPurpose } from '../types.js'
import { Budget, MAX_NC_COMPARISONS, checkNameConstraints, constrainedNames } from './name-constraints.js'
import type { IssuerSource, TrustAnchor, TrustStore } from './trust.js'

/** Verification settings, checked and normalised (see verify.ts normaliseOptions). */
export interface CheckOptions {
  /** validation time in ms */
  at: number
  toleranceMs: number
  purpose: VerifyPurpose
  requireClientAuthEku: boolean
  maxChainLength: number
  minRsaBits: number
}

export interface PathOptions extends CheckOptions {
  /** accept a certificate whose revocation status is unknown (stale or missing CRL), with a warning */
  revocationSoftFail?: boolean
  /** revocation is required for this certificate even when no CRL names its issuer (an allow-listed distribution point) */
  revocationRequired?: (cert: ParsedCertificate) => boolean
  trust: TrustStore
  /** certificates presented with the leaf (bounded by the caller) */
  presented: IssuerSource
  /** configured or learned intermediates, searched after the presented ones */
  pools: readonly IssuerSource[]
  crls: readonly ParsedCrl[]
  /**
   * Opt-in trace for `explain`: told of every signature check, every revocation decision and
   * every complete path validated, in order. Never set on the plugin's path; when unset nothing
   * is allocated for it, and it never changes a verdict.
   */
  trace?: (event: TraceEvent) => void
}

/** The checks of a complete path, in the order validatePath runs them. */
export type PathCheckName = 'weak' | 'validity' | 'structure' | 'constraints' | 'purpose' | 'revocation'

export type TraceEvent =
  /** a signature check of `child` by `issuer` while building paths (`anchor`: the issuer is a trust anchor) */
  | { kind: 'signature', child: ParsedCertificate, issuer: ParsedCertificate, anchor: boolean, ok: boolean }
  /** what revocation checking decided for one certificate of the path being validated */
  | { kind: 'revocation', cert: ParsedCertificate, status: 'no-crl' | 'good' | 'revoked' | 'unknown' | 'soft-fail', crl?: ParsedCrl, reason?: string }
  /** a complete path was validated: `failed` names the check that refused it (undefined: accepted) */
  | { kind: 'path', path: readonly ParsedCertificate[], anchor: TrustAnchor, failed?: PathCheckName, code?: VerificationCode, message?: string }

/** How long a verdict that soft-failed revocation may be reused: a fresh CRL should be picked up soon. */
export const SOFT_FAIL_VERDICT_MS = 60_000

export type PathResult =
  | { ok: true, path: ParsedCertificate[], anchor: TrustAnchor, validUntil: Date, warnings: string[] }
  | { ok: false, code: VerificationCode, message: string }

/** Signature checks allowed per verification (bounded work on hostile input). */
export const MAX_SIGNATURE_CHECKS = 64
/** Issuer candidates tried per step. */
export const MAX_CANDIDATES = 16
/** Absolute cap on path length, self-issued certificates included. */
const MAX_PATH_CERTS = 24

// rank of each failure class: a higher rank means the path passed more checks
const RANK = { WEAK: 0, VALIDITY: 1, CHAIN: 2, PURPOSE: 3, REVOCATION: 4 } as const

interface Failure { rank: number, code: VerificationCode, message: string }

const signatureMemo = new LruCache<string, boolean>(8192)

/** For tests and benchmarks: forget remembered signature checks. */
export function clearSignatureMemo (): void {
  signatureMemo.clear()
}

function describe (c: ParsedCertificate): string {
  return `"${c.subject.rfc4514 || '(empty subject)'}" (serial ${c.serialHex})`
}

function signedBy (subjectTbs: Buffer, alg: ParsedCertificate['signatureAlgorithm'], signature: Buffer, memoKey: string, issuer: ParsedCertificate): boolean {
  const memo = signatureMemo.get(memoKey)
  if (memo !== undefined) return memo
  let ok = false
  try {
    const key = issuer.publicKey
    ok = usableForSignatures(key) && verifySignature(alg, subjectTbs, signature, key)
  } catch {
    ok = false
  }
  signatureMemo.set(memoKey, ok)
  return ok
}

function certSignedBy (child: ParsedCertificate, issuer: ParsedCertificate): boolean {
  return signedBy(child.tbs, child.signatureAlgorithm, child.signature, child.sha256.toString('latin1') + issuer.sha256.toString('latin1'), issuer)
}

export function crlSignedBy (crl: ParsedCrl, issuer: ParsedCertificate): boolean {
  return signedBy(crl.tbs, crl.signatureAlgorithm, crl.signature, 'crl' + crl.sha256.toString('latin1') + issuer.sha256.toString('latin1'), issuer)
}

/** Key-identifier order: matching first, unknown next, mismatching last. */
function keyIdOrder (child: ParsedCertificate, candidate: ParsedCertificate): number {
  const aki = child.authorityKeyId?.keyId
  const ski = candidate.subjectKeyId
  if (aki === undefined || ski === undefined) return 1
  return aki.equals(ski) ? 0 : 2
}

function purposeOid (purpose: VerifyPurpose): string | undefined {
  return purpose === 'clientAuth' ? OID.clientAuth : purpose === 'serverAuth' ? OID.serverAuth : undefined
}

function checkWeak (path: ParsedCertificate[], o: PathOptions): Failure | undefined {
  for (let i = 0; i < path.length; i++) {
    const c = path[i] as ParsedCertificate
    let reason: string | undefined
    try {
      reason = keyWeakness(c.keyAlgorithm, c.publicKey, o.minRsaBits)
    } catch (err) {
      reason = (err as Error).message
    }
    if (reason !== undefined) return { rank: RANK.WEAK, code: 'FST_MTLS_CERT_WEAK', message: `${describe(c)}: ${reason}` }
    // the anchor's own signature is never relied upon, so its algorithm does not matter
    if (i < path.length - 1) {
      const scheme = signatureScheme(c.signatureAlgorithm)
      if (typeof scheme === 'string' || scheme.weak) {
        return { rank: RANK.WEAK, code: 'FST_MTLS_CERT_WEAK', message: `${describe(c)}: weak signature algorithm ${c.signatureAlgorithm.oid} (MD5 and SHA-1 are refused)` }
      }
    }
  }
  return undefined
}

function checkValidity (path: ParsedCertificate[], o: PathOptions): Failure | undefined {
  // certificate times have whole seconds: compare at that resolution
  const at = Math.floor(o.at / 1000) * 1000
  for (const c of path) {
    if (at > c.notAfter.getTime() + o.toleranceMs) {
      return { rank: RANK.VALIDITY, code: 'FST_MTLS_CERT_EXPIRED', message: `${describe(c)} expired at ${c.notAfter.toISOString()}` }
    }
    if (at < c.notBefore.getTime() - o.toleranceMs) {
      return { rank: RANK.VALIDITY, code: 'FST_MTLS_CERT_NOT_YET_VALID', message: `${describe(c)} is not valid before ${c.notBefore.toISOString()}` }
    }
  }
  return undefined
}

function chainInvalid (c: ParsedCertificate, reason: string): Failure {
  return { rank: RANK.CHAIN, code: 'FST_MTLS_CHAIN_INVALID', message: `${describe(c)}: ${reason}` }
}

function checkStructure (path: ParsedCertificate[], anchor: TrustAnchor): Failure | undefined {
  for (let i = 0; i < path.length; i++) {
    const c = path[i] as ParsedCertificate
    const isIssuer = i > 0
    const first = c.profileErrors[0]
    if (first !== undefined) return chainInvalid(c, first)
    if (c.serialError !== undefined && c !== anchor.cert) return chainInvalid(c, c.serialError)
    if (c.unknownCritical.length > 0) return chainInvalid(c, `unknown critical extension ${c.unknownCritical.join(', ')}`)
    const aki = c.authorityKeyId
    if (!c.selfIssued && aki?.keyId === undefined) return chainInvalid(c, 'no authorityKeyIdentifier keyIdentifier (RFC 5280 4.2.1.1)')
    if (aki !== undefined && aki.keyId === undefined) return chainInvalid(c, 'authorityKeyIdentifier without keyIdentifier')
    if (c === anchor.cert && c.selfIssued && aki !== undefined) {
      if (aki.hasIssuer) return chainInvalid(c, 'self-issued certificate with authorityCertIssuer in its authorityKeyIdentifier')
      if (c.subjectKeyId !== undefined && aki.keyId !== undefined && !aki.keyId.equals(c.subjectKeyId)) {
        return chainInvalid(c, 'authorityKeyIdentifier of a self-signed anchor differs from its subjectKeyIdentifier')
      }
    }
    if (c.nameConstraints !== undefined && c.basicConstraints?.ca !== true) return chainInvalid(c, 'nameConstraints in a certificate that is not a CA')
    if (!isIssuer) continue
    const bc = c.basicConstraints
    if (bc === undefined || !bc.ca) return chainInvalid(c, 'issuer is not a CA (basicConstraints cA is not TRUE)')
    if (!c.extensions.some((e) => e.oid === OID.basicConstraints && e.critical)) return chainInvalid(c, 'basicConstraints of a CA must be critical')
    if (c.keyUsage !== undefined && (c.keyUsage & KU.keyCertSign) === 0) return chainInvalid(c, 'issuer key usage lacks keyCertSign')
    if (c.subject.empty) return chainInvalid(c, 'CA with an empty subject')
    if (c.subjectKeyId === undefined) return chainInvalid(c, 'CA without subjectKeyIdentifier (RFC 5280 4.2.1.2)')
    if (bc.pathLen !== undefined) {
      let below = 0
      for (let j = 1; j < i; j++) if (!(path[j] as ParsedCertificate).selfIssued) below++
      if (below > bc.pathLen) return chainInvalid(c, `path length constraint ${bc.pathLen} exceeded (${below} intermediate CAs below it)`)
    }
  }
  return undefined
}

function checkConstraints (path: ParsedCertificate[]): Failure | undefined {
  const budget = new Budget(MAX_NC_COMPARISONS)
  for (let i = 1; i < path.length; i++) {
    const ca = path[i] as ParsedCertificate
    if (ca.nameConstraints === undefined) continue
    for (let j = i - 1; j >= 0; j--) {
      const c = path[j] as ParsedCertificate
      // self-issued intermediates are exempt (RFC 5280 6.1.3(b)); the leaf never is
      if (j > 0 && c.selfIssued) continue
      const reason = checkNameConstraints(ca.nameConstraints, constrainedNames(c, true), budget)
      if (reason !== undefined) return chainInvalid(c, `name constraints of ${describe(ca)}: ${reason}`)
    }
  }
  return undefined
}

function checkPurpose (path: ParsedCertificate[], o: PathOptions): Failure | undefined {
  const leaf = path[0] as ParsedCertificate
  const fail = (c: ParsedCertificate, reason: string): Failure => ({ rank: RANK.PURPOSE, code: 'FST_MTLS_CERT_PURPOSE', message: `${describe(c)}: ${reason}` })
  if (leaf.basicConstraints?.ca === true) return fail(leaf, 'a CA certificate cannot be used as an end-entity certificate')
  const ku = leaf.keyUsage
  if (ku !== undefined) {
    if (o.purpose === 'clientAuth' && (ku & KU.digitalSignature) === 0) return fail(leaf, 'key usage lacks digitalSignature')
    if (o.purpose === 'serverAuth' && (ku & (KU.digitalSignature | KU.keyEncipherment | KU.keyAgreement)) === 0) {
      return fail(leaf, 'key usage allows neither digitalSignature, keyEncipherment nor keyAgreement')
    }
  }
  const want = purposeOid(o.purpose)
  if (want === undefined) return undefined
  const eku = leaf.extKeyUsage
  if (o.requireClientAuthEku && o.purpose === 'clientAuth' && (eku === undefined || !eku.includes(OID.clientAuth))) {
    return fail(leaf, 'no clientAuth extended key usage (required by requireClientAuthEku)')
  }
  for (let i = 0; i < path.length - 1; i++) {
    const c = path[i] as ParsedCertificate
    const e = c.extKeyUsage
    if (e !== undefined && !e.includes(want) && !e.includes(OID.anyExtendedKeyUsage)) {
      return fail(c, `extended key usage does not allow ${o.purpose} (has ${e.join(', ')})`)
    }
  }
  return undefined
}

interface RevocationOutcome { failure?: Failure, nextUpdate?: number, warnings: string[] }

function checkRevocation (path: ParsedCertificate[], o: PathOptions): RevocationOutcome {
  const warnings: string[] = []
  if (o.crls.length === 0 && o.revocationRequired === undefined) return { warnings }
  let nextUpdate: number | undefined
  // the anchor itself is never revocation-checked
  for (let i = 0; i < path.length - 1; i++) {
    const c = path[i] as ParsedCertificate
    const issuer = path[i + 1] as ParsedCertificate
    // chosen by name; the signature decides whether the CRL is the issuer's (a CRL that names the
    // issuer but does not verify makes the status unknown, never unchecked)
    const mine = o.crls.filter((crl) => crl.issuer.key === issuer.subject.key)
    if (mine.length === 0 && o.revocationRequired?.(c) !== true) {
      o.trace?.({ kind: 'revocation', cert: c, status: 'no-crl' })
      continue
    }
    const reasons: string[] = mine.length === 0 ? ['no CRL from its allow-listed distribution point is available'] : []
    let best: ParsedCrl | undefined
    const isCa = c.basicConstraints?.ca === true
    for (const crl of mine) {
      const why = crl.scope === 'user' && isCa
        ? 'CRL scope limited to end-entity certificates'
        : crl.scope === 'ca' && !isCa ? 'CRL scope limited to CA certificates' : crlUnusable(crl, issuer, o)
      if (why !== undefined) {
        reasons.push(why)
      } else if (best === undefined || crl.thisUpdate > best.thisUpdate) {
        best = crl
      }
    }
    if (best === undefined) {
      // a CRL that is only late still proves what it lists: a serial on a genuine (signed, in scope) CRL is revoked
      const listed = mine.find((crl) => crl.revoked.has(c.serial) && crl.unusableReason === undefined &&
        !(crl.scope === 'user' && isCa) && !(crl.scope === 'ca' && !isCa) && crlSignedBy(crl, issuer))
      const entry = listed?.revoked.get(c.serial)
      if (entry !== undefined) {
        o.trace?.({ kind: 'revocation', cert: c, status: 'revoked', crl: listed, reason: reasons.join('; ') })
        return { failure: { rank: RANK.REVOCATION, code: 'FST_MTLS_CERT_REVOKED', message: `${describe(c)} was revoked on ${entry.revocationDate.toISOString()} (listed on a CRL that is itself not current: ${reasons.join('; ')})` }, warnings }
      }
      const message = `${describe(c)}: no usable CRL from its issuer (${reasons.join('; ')})`
      if (o.revocationSoftFail === true) {
        o.trace?.({ kind: 'revocation', cert: c, status: 'soft-fail', reason: reasons.join('; ') })
        warnings.push(message)
        nextUpdate = Math.min(nextUpdate ?? Infinity, o.at + SOFT_FAIL_VERDICT_MS)
        continue
      }
      o.trace?.({ kind: 'revocation', cert: c, status: 'unknown', reason: reasons.join('; ') })
      return { failure: { rank: RANK.REVOCATION, code: 'FST_MTLS_REVOCATION_UNKNOWN', message }, warnings }
    }
    const entry = best.revoked.get(c.serial)
    o.trace?.({ kind: 'revocation', cert: c, status: entry === undefined ? 'good' : 'revoked', crl: best })
    if (entry !== undefined) {
      return { failure: { rank: RANK.REVOCATION, code: 'FST_MTLS_CERT_REVOKED', message: `${describe(c)} was revoked on ${entry.revocationDate.toISOString()}` }, warnings }
    }
    if (best.nextUpdate !== undefined) nextUpdate = Math.min(nextUpdate ?? Infinity, best.nextUpdate.getTime())
  }
  return nextUpdate === undefined ? { warnings } : { nextUpdate, warnings }
}

function crlUnusable (crl: ParsedCrl, issuer: ParsedCertificate, o: PathOptions): string | undefined {
  if (crl.unusableReason !== undefined) return crl.unusableReason
  if (issuer.keyUsage !== undefined && (issuer.keyUsage & KU.cRLSign) === 0) return 'the issuer is not allowed to sign CRLs (no cRLSign key usage)'
  if (crl.thisUpdate.getTime() - o.toleranceMs > o.at) return `CRL thisUpdate ${crl.thisUpdate.toISOString()} is in the future`
  if (crl.nextUpdate === undefined) return 'CRL has no nextUpdate'
  if (crl.nextUpdate.getTime() + o.toleranceMs < o.at) return `CRL is stale (nextUpdate ${crl.nextUpdate.toISOString()})`
  const scheme = signatureScheme(crl.signatureAlgorithm)
  if (typeof scheme === 'string' || scheme.weak) return 'CRL signed with a weak or unsupported algorithm'
  if (!crlSignedBy(crl, issuer)) return 'CRL signature does not verify with the issuer key'
  return undefined
}

type PathCheck = (path: ParsedCertificate[], anchor: TrustAnchor) => Failure | undefined

const CHECK_NAMES: readonly PathCheckName[] = ['weak', 'validity', 'structure', 'constraints', 'purpose']

function validatePath (path: ParsedCertificate[], anchor: TrustAnchor, o: PathOptions): PathResult | Failure {
  const checks: PathCheck[] = [
    (p) => checkWeak(p, o),
    (p) => checkValidity(p, o),
    (p, a) => checkStructure(p, a),
    (p) => checkConstraints(p),
    (p) => checkPurpose(p, o)
  ]
  for (let i = 0; i < checks.length; i++) {
    const f = (checks[i] as PathCheck)(path, anchor)
    if (f !== undefined) {
      o.trace?.({ kind: 'path', path, anchor, failed: CHECK_NAMES[i], code: f.code, message: f.message })
      return f
    }
  }
  const rev = checkRevocation(path, o)
  if (rev.failure !== undefined) {
    o.trace?.({ kind: 'path', path, anchor, failed: 'revocation', code: rev.failure.code, message: rev.failure.message })
    return rev.failure
  }
  o.trace?.({ kind: 'path', path, anchor })
  let validUntil = rev.nextUpdate ?? Infinity
  for (const c of path) validUntil = Math.min(validUntil, c.notAfter.getTime() + o.toleranceMs)
  return { ok: true, path, anchor, validUntil: new Date(validUntil), warnings: rev.warnings }
}

export function verifyPath (leaf: ParsedCertificate, o: PathOptions): PathResult {
  if (o.trust.isAnchor(leaf)) {
    return { ok: false, code: 'FST_MTLS_CERT_UNTRUSTED', message: `${describe(leaf)} is itself a trust anchor; anchors must be the CAs that issue client certificates` }
  }
  let sigChecks = 0
  let exhausted = false
  let lengthCut = false
  let best: Failure | undefined
  const countsToward = (c: ParsedCertificate): number => (c.selfIssued ? 0 : 1)

  // probe: only asks whether any path reaches an anchor (used to tell "too long" from "untrusted")
  const search = (path: ParsedCertificate[], counted: number, limit: number, probe: boolean): PathResult | undefined => {
    const cur = path[path.length - 1] as ParsedCertificate
    const check = (cand: ParsedCertificate): boolean => {
      if (sigChecks >= MAX_SIGNATURE_CHECKS) {
        exhausted = true
        return false
      }
      sigChecks++
      const ok = certSignedBy(cur, cand)
      o.trace?.({ kind: 'signature', child: cur, issuer: cand, anchor: o.trust.isAnchor(cand), ok })
      return ok
    }
    const anchors = o.trust.candidatesFor(cur).sort((a, b) => keyIdOrder(cur, a.cert) - keyIdOrder(cur, b.cert)).slice(0, MAX_CANDIDATES)
    for (const anchor of anchors) {
      if (anchor.cert === cur) continue
      if (!check(anchor.cert)) continue
      if (probe) {
        return { ok: false, code: 'FST_MTLS_CHAIN_INVALID', message: `the only path to a trust anchor has ${counted + 1} certificates, more than maxChainLength ${o.maxChainLength}` }
      }
      const r = validatePath([...path, anchor.cert], anchor, o)
      if ('ok' in r) return r
      if (best === undefined || r.rank > best.rank) best = r
    }
    if (path.length + 1 >= MAX_PATH_CERTS) return undefined
    const seen = new Set<ParsedCertificate>()
    const candidates: ParsedCertificate[] = []
    for (const index of [o.presented, ...o.pools]) {
      for (const c of index.bySubjectKey(cur.issuer.key)) {
        if (seen.has(c) || o.trust.isAnchor(c)) continue
        seen.add(c)
        candidates.push(c)
      }
    }
    candidates.sort((a, b) => keyIdOrder(cur, a) - keyIdOrder(cur, b))
    for (const cand of candidates.slice(0, MAX_CANDIDATES)) {
      // no certificate twice, and no (name, key) pair twice: cycles end here
      if (path.some((p) => p === cand || (p.subject.key === cand.subject.key && p.spki.equals(cand.spki)))) continue
      const nextCount = counted + countsToward(cand)
      if (nextCount + 1 > limit) {
        lengthCut = true
        continue
      }
      if (!check(cand)) continue
      const r = search([...path, cand], nextCount, limit, probe)
      if (r !== undefined) return r
      if (exhausted) return undefined
    }
    return undefined
  }

  const found = search([leaf], 1, o.maxChainLength, false)
  if (found !== undefined) return found
  if (best !== undefined) return { ok: false, code: best.code, message: best.message }
  if (lengthCut && !exhausted) {
    const tooLong = search([leaf], 1, MAX_PATH_CERTS, true)
    if (tooLong !== undefined) return tooLong
  }
  if (exhausted) return { ok: false, code: 'FST_MTLS_CERT_UNTRUSTED', message: `path building stopped after ${MAX_SIGNATURE_CHECKS} signature checks without reaching a trust anchor` }
  if (leaf.selfIssued && certSignedBy(leaf, leaf)) {
    return { ok: false, code: 'FST_MTLS_CERT_UNTRUSTED', message: `${describe(leaf)} is self-signed and not issued by a trusted CA` }
  }
  return { ok: false, code: 'FST_MTLS_CERT_UNTRUSTED', message: `no path from ${describe(leaf)} to a trust anchor (issuer "${leaf.issuer.rfc4514}" not found or its signature does not verify)` }
}
