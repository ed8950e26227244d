// Plugin options: checked once at register time, copied, never mutated.
import type { FastifyRequest } from 'fastify'
import { MtlsInvalidOptionsError } from './errors.js'
import type { CertificateInput, ClientIdentity, Policy, RejectionCode, TrustAnchorInput } from './types.js'
import { checkWatchOptions, type WatchOptions } from './watch.js'
import { compileGate, type CompiledGate, type ForwardedOptions } from './sources/forwarded.js'
import { CrlFetcher, type CrlFetchOptions } from './revocation/crl-fetcher.js'
import { OcspChecker, type OcspOptions } from './revocation/ocsp.js'

export interface DenyBySerial {
  /** the issuer's distinguished name as `identity.issuer.rfc4514` prints it */
  issuer: string
  /** hex, any case, colons allowed */
  serialNumber: string
}

/** A fingerprint (SHA-256 hex, any form), an SPKI hash (base64 or base64url SHA-256), or an issuer and serial. */
export type DenyEntry = string | DenyBySerial

export interface MtlsRejection {
  code: RejectionCode
  statusCode: number
  /** what the client is told */
  message: string
  /** what went wrong, for the operator (never sent to the client) */
  reason: string
  /** the identity, when the certificate verified and a policy refused it */
  identity: ClientIdentity | null
  /** the leaf certificate's summary, when one was presented */
  certificate: CertificateSummary | null
  /** false when `enforce: false` let the request through */
  enforced: boolean
}

export interface CertificateSummary {
  subject: string
  issuer: string
  fingerprint256: string
  serialNumber: string
  notAfter: string
}

export interface FastifyMtlsOptions {
  /** trust anchors: PEM/DER (may hold several), an array of them, or labelled `{ name, cert }` entries */
  ca: TrustAnchorInput
  /** 'required' (default): every request needs a valid certificate; 'optional': no certificate means `clientIdentity === null` */
  mode?: 'required' | 'optional'
  /** checked on every request that has an identity */
  policy?: Policy<FastifyRequest>
  /** extra untrusted certificates for path building */
  intermediates?: CertificateInput | readonly CertificateInput[]
  /** CRLs (PEM or DER) */
  crl?: CertificateInput | readonly CertificateInput[]
  /** 'hard-fail' (default): a stale or missing CRL for an issuer that has one refuses the client; 'soft-fail': accepted with a warning */
  crlMode?: 'hard-fail' | 'soft-fail'
  /** warn this many days before an anchor, the server certificate or a client certificate expires (default 14; 0 turns it off) */
  expiryWarningDays?: number
  /** new session-ticket keys on every reload (forces full handshakes; default false) */
  rotateTicketKeysOnReload?: boolean
  /** file paths to reload from when their contents change (Kubernetes secrets, Vault Agent, cert-manager) */
  watch?: WatchOptions
  /** fetch the CRLs named in certificates, only from these allow-listed URLs, only after the chain verified */
  crlFetch?: CrlFetchOptions
  /** OCSP for the leaf: requests only to `responder` or allow-listed AIA responders, only after the chain verified */
  ocsp?: Omit<OcspOptions, 'clockToleranceSec' | 'minRsaBits'>
  /** client certificates forwarded in a header by trusted proxies (TLS terminated in front of the app) */
  forwarded?: ForwardedOptions
  requireClientAuthEku?: boolean
  clockToleranceSec?: number
  minRsaBits?: number
  maxChainLength?: number
  /** longest time a verdict is reused without verifying again (default 300 s) */
  maxVerdictAgeSec?: number
  /** certificates refused at once (FST_MTLS_CERT_REVOKED), anywhere on the path */
  deny?: readonly DenyEntry[]
  /** false: log what would be rejected and let the request through (report-only rollout) */
  enforce?: boolean
  /** a `WWW-Authenticate` value for 401 replies (none by default: there is no registered challenge for TLS client certificates) */
  wwwAuthenticate?: string
  /** most rejection log lines per minute (default 60); the rest are counted and summarised */
  rejectionLogLimit?: number
  /** bind the client's `tls.client.hash.sha256` and `tls.client.subject` to request.log after authentication (default true) */
  logIdentity?: boolean
  onAuthenticated?: (identity: ClientIdentity, request: FastifyRequest) => void | Promise<void>
  onRejected?: (rejection: MtlsRejection, request: FastifyRequest) => void | Promise<void>
}

const KNOWN = new Set([
  'ca', 'mode', 'policy', 'intermediates', 'crl', 'requireClientAuthEku', 'clockToleranceSec', 'minRsaBits', 'maxChainLength',
  'maxVerdictAgeSec', 'deny', 'enforce', 'wwwAuthenticate', 'rejectionLogLimit', 'logIdentity', 'onAuthenticated', 'onRejected',
  'crlMode', 'expiryWarningDays', 'rotateTicketKeysOnReload', 'watch', 'crlFetch', 'ocsp', 'forwarded'
])

export interface NormalisedPluginOptions {
  ca: TrustAnchorInput
  mode: 'required' | 'optional'
  policy: Policy<FastifyRequest> | undefined
  intermediates: readonly CertificateInput[]
  crl: readonly CertificateInput[]
  crlSoftFail: boolean
  expiryWarningMs: number
  rotateTicketKeysOnReload: boolean
  watch: WatchOptions | undefined
  crlFetch: CrlFetchOptions | undefined
  ocsp: Omit<OcspOptions, 'clockToleranceSec' | 'minRsaBits'> | undefined
  forwarded: NormalisedForwarded | undefined
  requireClientAuthEku: boolean
  clockToleranceSec: number
  minRsaBits: number
  maxChainLength: number
  maxVerdictAgeMs: number
  deny: readonly DenyEntry[]
  enforce: boolean
  wwwAuthenticate: string | undefined
  rejectionLogLimit: number
  logIdentity: boolean
  onAuthenticated: FastifyMtlsOptions['onAuthenticated']
  onRejected: FastifyMtlsOptions['onRejected']
}

export const invalid = (message: string): Error => new MtlsInvalidOptionsError(message)

/** Runs a constructor's own option checks, turning its TypeError into FST_MTLS_INVALID_OPTIONS. */
function checked<T> (make: () => T, name: string): T {
  if (typeof make !== 'function') throw invalid(name)
  try {
    return make()
  } catch (err) {
    const message = (err as Error).message
    throw invalid(message.startsWith(name) ? message : `${name}: ${message}`)
  }
}

export interface NormalisedForwarded {
  header: string
  format: ForwardedOptions['format']
  chainHeader: string | undefined
  verifyHeader: { name: string, value: string } | undefined
  xfccElement: 'last' | 'only'
  gate: CompiledGate
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const FORMAT_NAMES = new Set(['xfcc', 'escaped-pem', 'base64-der', 'rfc9440'])

function forwardedOptions (f: unknown): NormalisedForwarded {
  if (!isPlainObject(f)) throw invalid('forwarded must be an object such as { header: \'x-forwarded-client-cert\', format: \'xfcc\', trustedProxies: [\'10.0.0.7\'] }')
  for (const k of Object.keys(f)) {
    if (!['header', 'format', 'trustedProxies', 'chainHeader', 'verifyHeader', 'xfccElement'].includes(k)) throw invalid(`forwarded: unknown field "${k}"`)
  }
  const name = (v: unknown, what: string): string => {
    if (typeof v !== 'string' || !TOKEN.test(v)) throw invalid(`${what} must be a header name such as 'x-forwarded-client-cert'`)
    return v.toLowerCase()
  }
  const header = name(f.header, 'forwarded.header')
  if (typeof f.format !== 'string' || !FORMAT_NAMES.has(f.format)) throw invalid(`forwarded.format must be one of ${[...FORMAT_NAMES].join(', ')}, got ${JSON.stringify(f.format)}`)
  const format = f.format as ForwardedOptions['format']
  const chainHeader = f.chainHeader === undefined ? undefined : name(f.chainHeader, 'forwarded.chainHeader')
  if (chainHeader !== undefined && format !== 'rfc9440') throw invalid('forwarded.chainHeader is for the rfc9440 format (Client-Cert-Chain); the other formats carry the chain in the certificate header')
  let verifyHeader: { name: string, value: string } | undefined
  if (f.verifyHeader !== undefined) {
    const v = f.verifyHeader as { name?: unknown, value?: unknown }
    if (!isPlainObject(v) || typeof v.value !== 'string' || v.value.length === 0) throw invalid('forwarded.verifyHeader must be { name, value }, e.g. { name: \'x-ssl-client-verify\', value: \'SUCCESS\' }')
    verifyHeader = { name: name(v.name, 'forwarded.verifyHeader.name'), value: v.value }
  }
  const names = [header, chainHeader, verifyHeader?.name].filter((n) => n !== undefined)
  if (new Set(names).size !== names.length) throw invalid('forwarded: the certificate, chain and verify headers must be different headers')
  const xfccElement = f.xfccElement ?? 'last'
  if (xfccElement !== 'last' && xfccElement !== 'only') throw invalid(`forwarded.xfccElement must be 'last' or 'only', got ${JSON.stringify(xfccElement)}`)
  let gate: CompiledGate
  try {
    gate = compileGate(f.trustedProxies)
  } catch (err) {
    throw invalid((err as Error).message)
  }
  return { header, format, chainHeader, verifyHeader, xfccElement, gate }
}

function watchOptions (w: unknown): WatchOptions {
  try {
    return checkWatchOptions(w)
  } catch (err) {
    throw invalid((err as Error).message)
  }
}

const isPlainObject = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && (Object.getPrototypeOf(x) === Object.prototype || Object.getPrototypeOf(x) === null)

function list<T> (x: T | readonly T[] | undefined): readonly T[] {
  if (x === undefined) return []
  return Array.isArray(x) ? [...x as readonly T[]] : [x as T]
}

function int (v: unknown, name: string, min: number, max: number, fallback: number): number {
  if (v === undefined) return fallback
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw invalid(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`)
  return v
}

function bool (v: unknown, name: string, fallback: boolean): boolean {
  if (v === undefined) return fallback
  if (typeof v !== 'boolean') throw invalid(`${name} must be true or false, got ${JSON.stringify(v)}`)
  return v
}

function fn<F> (v: unknown, name: string): F | undefined {
  if (v === undefined) return undefined
  if (typeof v !== 'function') throw invalid(`${name} must be a function`)
  return v as F
}

export function normaliseOptions (raw: unknown): NormalisedPluginOptions {
  if (!isPlainObject(raw)) throw invalid('options must be an object such as { ca: fs.readFileSync("ca.pem") }')
  for (const key of Object.keys(raw)) {
    if (!KNOWN.has(key)) throw invalid(`unknown option "${key}" (known options: ${[...KNOWN].join(', ')})`)
  }
  if (raw.ca === undefined || raw.ca === null) throw invalid('ca is required: the CA certificates (PEM) that issue your clients\' certificates')
  const mode = raw.mode ?? 'required'
  if (mode !== 'required' && mode !== 'optional') throw invalid(`mode must be 'required' or 'optional', got ${JSON.stringify(mode)}`)
  if (raw.policy !== undefined && !isPlainObject(raw.policy)) throw invalid('policy must be an object such as { subject: { O: \'Acme\' } }')
  if (raw.wwwAuthenticate !== undefined && (typeof raw.wwwAuthenticate !== 'string' || raw.wwwAuthenticate.length === 0 || /[\r\n]/.test(raw.wwwAuthenticate))) {
    throw invalid('wwwAuthenticate must be a non-empty header value without line breaks')
  }
  if (raw.deny !== undefined && !Array.isArray(raw.deny)) throw invalid('deny must be an array of fingerprints, SPKI hashes or { issuer, serialNumber } entries')
  const crlMode = raw.crlMode ?? 'hard-fail'
  if (crlMode !== 'hard-fail' && crlMode !== 'soft-fail') throw invalid(`crlMode must be 'hard-fail' or 'soft-fail', got ${JSON.stringify(crlMode)}`)
  const tolerance = raw.clockToleranceSec ?? 0
  if (typeof tolerance !== 'number' || !Number.isFinite(tolerance) || tolerance < 0 || tolerance > 86400) throw invalid('clockToleranceSec must be a number of seconds from 0 to 86400')
  return Object.freeze({
    ca: raw.ca as TrustAnchorInput,
    mode,
    policy: raw.policy as Policy<FastifyRequest> | undefined,
    intermediates: list(raw.intermediates as CertificateInput | CertificateInput[] | undefined),
    crl: list(raw.crl as CertificateInput | CertificateInput[] | undefined),
    crlSoftFail: crlMode === 'soft-fail',
    expiryWarningMs: int(raw.expiryWarningDays, 'expiryWarningDays', 0, 365, 14) * 86_400_000,
    rotateTicketKeysOnReload: bool(raw.rotateTicketKeysOnReload, 'rotateTicketKeysOnReload', false),
    watch: raw.watch === undefined ? undefined : watchOptions(raw.watch),
    crlFetch: raw.crlFetch === undefined ? undefined : checked(() => { new CrlFetcher(raw.crlFetch as CrlFetchOptions).close(); return raw.crlFetch as CrlFetchOptions }, 'crlFetch'),
    forwarded: raw.forwarded === undefined ? undefined : forwardedOptions(raw.forwarded),
    ocsp: raw.ocsp === undefined ? undefined : checked(() => { new OcspChecker(raw.ocsp as OcspOptions).status(); return raw.ocsp as OcspOptions }, 'ocsp'),
    requireClientAuthEku: bool(raw.requireClientAuthEku, 'requireClientAuthEku', false),
    clockToleranceSec: tolerance,
    minRsaBits: int(raw.minRsaBits, 'minRsaBits', 1024, 8192, 2048),
    maxChainLength: int(raw.maxChainLength, 'maxChainLength', 2, 24, 8),
    maxVerdictAgeMs: int(raw.maxVerdictAgeSec, 'maxVerdictAgeSec', 1, 86400, 300) * 1000,
    deny: [...(raw.deny as DenyEntry[] | undefined) ?? []],
    enforce: bool(raw.enforce, 'enforce', true),
    wwwAuthenticate: raw.wwwAuthenticate as string | undefined,
    rejectionLogLimit: int(raw.rejectionLogLimit, 'rejectionLogLimit', 0, 100000, 60),
    logIdentity: bool(raw.logIdentity, 'logIdentity', true),
    onAuthenticated: fn<NonNullable<FastifyMtlsOptions['onAuthenticated']>>(raw.onAuthenticated, 'onAuthenticated'),
    onRejected: fn<NonNullable<FastifyMtlsOptions['onRejected']>>(raw.onRejected, 'onRejected')
  })
}
