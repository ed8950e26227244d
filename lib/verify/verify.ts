// verifyCertificateChain: the public entry of the verifier (DESIGN.md, "Public API contract").
import type { X509Certificate } from 'node:crypto'
import type { ParsedCertificate } from '../der/certificate.js'
import type { ParsedCrl } from '../der/crl.js'
import { InputError, toDerList } from '../der/pem.js'
import { getCertificate, getCrl } from '../der/store.js'
import type { CertificateInput, VerifyOptions, VerifyPurpose, VerifyResult } from '../types.js'
import { verifyPath, type CheckOptions, type PathResult, type TraceEvent } from './chain.js'
import { CertificateIndex, TrustStore, parseUntrusted } from './trust.js'

export const DEFAULTS = Object.freeze({
  purpose: 'clientAuth' as VerifyPurpose,
  maxChainLength: 8,
  minRsaBits: 2048,
  clockToleranceSec: 0,
  requireClientAuthEku: false
})

/** Most certificates a client may present with its leaf; more are refused before any work. */
export const MAX_PRESENTED = 10
/** Most untrusted certificates a single call may name. */
export const MAX_UNTRUSTED = 256

const PURPOSES = new Set(['clientAuth', 'serverAuth', 'any'])

function asList (x: CertificateInput | ReadonlyArray<CertificateInput> | undefined): ReadonlyArray<CertificateInput> {
  if (x === undefined) return []
  return Array.isArray(x) ? x as ReadonlyArray<CertificateInput> : [x as CertificateInput]
}

function intOption (v: unknown, name: string, min: number, fallback: number): number {
  if (v === undefined) return fallback
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new InputError(`${name} must be an integer >= ${min}`)
  return v
}

export function normaliseOptions (o: Partial<VerifyOptions>): CheckOptions {
  const purpose = o.purpose ?? DEFAULTS.purpose
  if (!PURPOSES.has(purpose)) throw new InputError(`purpose must be 'clientAuth', 'serverAuth' or 'any', got ${JSON.stringify(purpose)}`)
  if (o.at !== undefined && (!(o.at instanceof Date) || Number.isNaN(o.at.getTime()))) throw new InputError('at must be a valid Date')
  const tolerance = o.clockToleranceSec ?? 0
  if (typeof tolerance !== 'number' || !Number.isFinite(tolerance) || tolerance < 0) throw new InputError('clockToleranceSec must be a number >= 0')
  if (o.requireClientAuthEku !== undefined && typeof o.requireClientAuthEku !== 'boolean') throw new InputError('requireClientAuthEku must be a boolean')
  return {
    at: (o.at ?? new Date()).getTime(),
    toleranceMs: tolerance * 1000,
    purpose,
    requireClientAuthEku: o.requireClientAuthEku ?? false,
    maxChainLength: intOption(o.maxChainLength, 'maxChainLength', 2, DEFAULTS.maxChainLength),
    minRsaBits: intOption(o.minRsaBits, 'minRsaBits', 1024, DEFAULTS.minRsaBits)
  }
}

export function parseCrls (inputs: ReadonlyArray<CertificateInput>, what: string): ParsedCrl[] {
  const out: ParsedCrl[] = []
  inputs.forEach((input, i) => {
    for (const der of toDerList(input, 'X509 CRL', `${what}[${i}]`)) {
      try {
        out.push(getCrl(der))
      } catch (err) {
        throw new InputError(`${what}[${i}]: CRL does not parse: ${(err as Error).message}`)
      }
    }
  })
  return out
}

export interface InternalVerifyResult { result: PathResult, leaf?: ParsedCertificate }

/**
 * Verifies a certificate chain. Input errors (bad options, anchors or CRLs that do
 * not parse) throw a TypeError; verdicts on the certificates resolve to a result.
 */
export async function verifyCertificateChain (options: VerifyOptions): Promise<VerifyResult> {
  const { result } = verifyCertificateChainSync(options)
  if (!result.ok) return { ok: false, code: result.code, message: result.message }
  const path = result.path
  let chain: X509Certificate[] | undefined
  // node:crypto certificates cost ~0.3 ms each to build: only when someone reads them
  return {
    ok: true,
    get chain () {
      chain ??= path.map((c) => c.x509)
      return chain
    },
    trustAnchor: result.anchor.info,
    validUntil: result.validUntil
  }
}

/** `trace` (for `explain`) is told what the verifier does; see PathOptions.trace. */
export function verifyCertificateChainSync (options: VerifyOptions, trace?: (event: TraceEvent) => void): InternalVerifyResult {
  if (typeof options !== 'object' || options === null) throw new InputError('verifyCertificateChain needs an options object')
  const o = normaliseOptions(options)
  if (options.trustAnchors === undefined) throw new InputError('trustAnchors is required')
  const trust = new TrustStore(options.trustAnchors)
  const crls = parseCrls(asList(options.crls), 'crls')
  if (options.leaf === undefined) throw new InputError('leaf is required')
  let leafDers: Buffer[]
  try {
    leafDers = toDerList(options.leaf, 'CERTIFICATE', 'leaf')
  } catch (err) {
    return { result: { ok: false, code: 'FST_MTLS_CERT_MALFORMED', message: (err as Error).message } }
  }
  let leaf: ParsedCertificate
  try {
    leaf = getCertificate(leafDers[0] as Buffer)
  } catch (err) {
    return { result: { ok: false, code: 'FST_MTLS_CERT_MALFORMED', message: `leaf certificate does not parse: ${(err as Error).message}` } }
  }
  if (leafDers.length - 1 > MAX_PRESENTED) {
    return { result: { ok: false, code: 'FST_MTLS_CHAIN_INVALID', message: `more than ${MAX_PRESENTED} certificates presented with the leaf` }, leaf }
  }
  const presented = new CertificateIndex()
  for (const der of leafDers.slice(1)) {
    try {
      presented.add(getCertificate(der))
    } catch {
      // an unparseable extra certificate cannot be on a valid path; skip it
    }
  }
  const untrusted = asList(options.intermediates)
  const { certs } = parseUntrusted(untrusted, 'intermediates')
  const pool = new CertificateIndex()
  for (const c of certs) pool.add(c)
  if (pool.all.length > MAX_UNTRUSTED) throw new InputError(`intermediates: more than ${MAX_UNTRUSTED} distinct certificates`)
  const result = verifyPath(leaf, trace === undefined ? { trust, presented, pools: [pool], crls, ...o } : { trust, presented, pools: [pool], crls, ...o, trace })
  return { result, leaf }
}
