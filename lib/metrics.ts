// Request counters and their export as OpenTelemetry-shaped metrics, without any
// OpenTelemetry dependency. Counting is a plain integer increment on a field of a
// fixed-shape object; nothing here runs per request except those increments, and
// nothing grows: every key is known when the plugin starts.
import type { RejectionCode } from './types.js'

/** Every code a request can be refused with, in the order of the README's table. */
export const REJECTION_CODES: readonly RejectionCode[] = Object.freeze([
  'FST_MTLS_CERT_MISSING',
  'FST_MTLS_CERT_UNTRUSTED',
  'FST_MTLS_CERT_EXPIRED',
  'FST_MTLS_CERT_NOT_YET_VALID',
  'FST_MTLS_CHAIN_INVALID',
  'FST_MTLS_CERT_PURPOSE',
  'FST_MTLS_CERT_WEAK',
  'FST_MTLS_CERT_REVOKED',
  'FST_MTLS_REVOCATION_UNKNOWN',
  'FST_MTLS_CERT_MALFORMED',
  'FST_MTLS_FORWARDED_UNTRUSTED',
  'FST_MTLS_FORBIDDEN',
  'FST_MTLS_TOKEN_NOT_BOUND'
] as const satisfies readonly RejectionCode[])

export type CountsByCode = Record<RejectionCode, number>

/** A fresh object with every rejection code at zero (always the same keys in the same order). */
export function zeroByCode (): CountsByCode {
  const out = {} as CountsByCode
  for (const code of REJECTION_CODES) out[code] = 0
  return out
}

/** The counters the plugin keeps; mutated in place by the plugin, copied out by status() and metrics(). */
export class MtlsCounters {
  /** verified identity, global and route policies matched (counted by the plugin's onRequest hook) */
  accepted = 0
  /** optional mode, no certificate, let through with clientIdentity === null */
  withoutCertificate = 0
  /** routes with config.mtls === false */
  exempt = 0
  /** refused by the plugin's onRequest hook, by code */
  readonly rejected: CountsByCode = zeroByCode()
  /** enforce: false let through what would have been refused, by the first code that would have refused it */
  readonly wouldReject: CountsByCode = zeroByCode()
  /** refused by app.mtls.require() or requireBoundToken(), counted when the refusal is sent */
  readonly guardRejected: CountsByCode = zeroByCode()
  /** guards with enforce: false that would have refused */
  readonly guardWouldReject: CountsByCode = zeroByCode()
  /** requests answered by the verdict remembered on their TLS connection */
  connectionReuses = 0
  /** new TLS connections whose leaf had a cached positive verdict (no chain read, no verification) */
  cacheHits = 0
}

export interface RequestCounts {
  accepted: number
  withoutCertificate: number
  exempt: number
  rejected: CountsByCode
  wouldReject: CountsByCode
}

export interface GuardCounts {
  rejected: CountsByCode
  wouldReject: CountsByCode
}

/** One data point: attributes (OpenTelemetry attribute names) and a value. */
export interface MtlsMetricPoint {
  readonly attributes: Readonly<Record<string, string>>
  readonly value: number
}

/**
 * One instrument. `counter`: monotonic, cumulative since the plugin started (an OpenTelemetry
 * ObservableCounter, a Prometheus counter). `gauge`: the current value (ObservableGauge).
 */
export interface MtlsMetric {
  readonly name: string
  readonly description: string
  /** UCUM, as OpenTelemetry writes it: 's', or an annotation such as '{request}' */
  readonly unit: string
  readonly kind: 'counter' | 'gauge'
  readonly points: readonly MtlsMetricPoint[]
}

/** What metrics() needs beyond the counters: read from status() at call time. */
export interface MetricsInput {
  counters: MtlsCounters
  verifications: number
  connectionsSeen: number
  caches: { positive: number, negative: number, learnedIntermediates: number }
  epoch: number
  /** fingerprint: SHA-256 of the DER, hex (two anchors or CRLs may share a name) */
  anchors: ReadonlyArray<{ name: string, fingerprint: string, notAfter: string }>
  crls: ReadonlyArray<{ issuer: string, fingerprint: string, nextUpdate: string | null }>
  now: number
}

const byCode = (counts: CountsByCode, outcome: string): MtlsMetricPoint[] =>
  REJECTION_CODES.map((code) => ({ attributes: { 'mtls.outcome': outcome, 'mtls.code': code }, value: counts[code] }))

const secondsUntil = (iso: string, now: number): number => Math.floor((Date.parse(iso) - now) / 1000)

export function buildMetrics (m: MetricsInput): MtlsMetric[] {
  const c = m.counters
  return [
    {
      name: 'mtls.requests',
      description: 'Requests judged by the plugin\'s onRequest hook, once each, by outcome (and rejection code)',
      unit: '{request}',
      kind: 'counter',
      points: [
        { attributes: { 'mtls.outcome': 'accepted' }, value: c.accepted },
        { attributes: { 'mtls.outcome': 'no_certificate' }, value: c.withoutCertificate },
        { attributes: { 'mtls.outcome': 'exempt' }, value: c.exempt },
        ...byCode(c.rejected, 'rejected'),
        ...byCode(c.wouldReject, 'would_reject')
      ]
    },
    {
      name: 'mtls.guard.rejections',
      description: 'Refusals by app.mtls.require() and requireBoundToken() guards (requests the hook had let through)',
      unit: '{request}',
      kind: 'counter',
      points: [...byCode(c.guardRejected, 'rejected'), ...byCode(c.guardWouldReject, 'would_reject')]
    },
    {
      name: 'mtls.verifications',
      description: 'Certificate path verifications (verdict cache misses)',
      unit: '{verification}',
      kind: 'counter',
      points: [{ attributes: {}, value: m.verifications }]
    },
    {
      name: 'mtls.verdict.reuses',
      description: 'Verdicts reused without verifying: remembered on the TLS connection, or found in the verdict cache for a new connection',
      unit: '{verdict}',
      kind: 'counter',
      points: [
        { attributes: { 'mtls.reuse': 'connection' }, value: c.connectionReuses },
        { attributes: { 'mtls.reuse': 'cache' }, value: c.cacheHits }
      ]
    },
    {
      name: 'mtls.connections',
      description: 'TLS connections (or HTTP/2 sessions) judged since start',
      unit: '{connection}',
      kind: 'counter',
      points: [{ attributes: {}, value: m.connectionsSeen }]
    },
    {
      name: 'mtls.cache.entries',
      description: 'Entries in the verdict caches and the pool of learned intermediates',
      unit: '{entry}',
      kind: 'gauge',
      points: [
        { attributes: { 'mtls.cache': 'positive' }, value: m.caches.positive },
        { attributes: { 'mtls.cache': 'negative' }, value: m.caches.negative },
        { attributes: { 'mtls.cache': 'learned_intermediates' }, value: m.caches.learnedIntermediates }
      ]
    },
    {
      name: 'mtls.trust.epoch',
      description: 'Trust epoch: goes up on every reload or new CRL',
      unit: '{epoch}',
      kind: 'gauge',
      points: [{ attributes: {}, value: m.epoch }]
    },
    {
      name: 'mtls.anchor.expiry',
      description: 'Seconds until each trust anchor expires (negative once expired)',
      unit: 's',
      kind: 'gauge',
      points: m.anchors.map((a) => ({ attributes: { 'mtls.anchor': a.name, 'mtls.anchor.hash.sha256': a.fingerprint }, value: secondsUntil(a.notAfter, m.now) }))
    },
    {
      name: 'mtls.crl.next_update',
      description: 'Seconds until each configured CRL\'s nextUpdate (negative: stale); CRLs without nextUpdate are left out',
      unit: 's',
      kind: 'gauge',
      points: m.crls.filter((x) => x.nextUpdate !== null).map((x) => ({ attributes: { 'mtls.crl.issuer': x.issuer, 'mtls.crl.hash.sha256': x.fingerprint }, value: secondsUntil(x.nextUpdate as string, m.now) }))
    }
  ]
}

// ---- Prometheus text exposition format (version 0.0.4)

const promName = (s: string): string => s.replace(/[^a-zA-Z0-9_:]/g, '_').replace(/^([^a-zA-Z_:])/, '_$1')
const promLabel = (s: string): string => s.replace(/[^a-zA-Z0-9_]/g, '_').replace(/^([^a-zA-Z_])/, '_$1')
const promValue = (s: string): string => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
const promHelp = (s: string): string => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')
const promNumber = (n: number): string => Number.isNaN(n) ? 'NaN' : n === Infinity ? '+Inf' : n === -Infinity ? '-Inf' : String(n)

/**
 * Metrics in the Prometheus text format, named as OpenTelemetry's Prometheus exporter names them:
 * dots become underscores, a unit of seconds adds `_seconds`, counters end in `_total`
 * (`mtls.requests` -> `mtls_requests_total`, `mtls.anchor.expiry` -> `mtls_anchor_expiry_seconds`).
 */
export function toPrometheus (metrics: readonly MtlsMetric[]): string {
  let out = ''
  for (const m of metrics) {
    let name = promName(m.name)
    if (m.unit === 's' && !name.endsWith('_seconds')) name += '_seconds'
    if (m.kind === 'counter') name += '_total'
    out += `# HELP ${name} ${promHelp(m.description)}\n# TYPE ${name} ${m.kind === 'counter' ? 'counter' : 'gauge'}\n`
    for (const p of m.points) {
      const labels = Object.entries(p.attributes).map(([k, v]) => `${promLabel(k)}="${promValue(v)}"`).join(',')
      out += `${name}${labels === '' ? '' : `{${labels}}`} ${promNumber(p.value)}\n`
    }
  }
  return out
}
