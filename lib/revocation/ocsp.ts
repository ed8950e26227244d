// OCSP client (RFC 6960) for certificates on an already-verified path.
//
// - Requests go only to the configured `responder`, or to a certificate's AIA OCSP
//   URL when that URL is on `allowedResponders`; a URL taken from a certificate
//   alone is never requested. POST, no redirects, bounded in time and size.
// - CertID: SHA-1 of the issuer's subject Name DER and of its subjectPublicKey
//   bits, and the serial (SHA-1 is a lookup key here, not a signature). A random
//   16-byte nonce is sent and checked when the responder echoes one.
// - The BasicOCSPResponse must be signed by the issuer, or by a delegated
//   responder certificate carried in the response that the issuer signed, with
//   id-kp-OCSPSigning, valid now and with an acceptable key. MD5/SHA-1 signatures
//   are refused, as everywhere else in the verifier.
// - One request in flight per CertID; good and revoked answers are cached until
//   nextUpdate (or thisUpdate + maxAgeSec); 'unknown' and 'error' only for
//   `failureCacheSec` (default 5 s, so an outage costs one timeout per
//   certificate every few seconds rather than one per connection).
// - check() never throws: every failure is { status: 'error', reason }.
import { readBounded } from './body.js'
import { createHash, randomBytes } from 'node:crypto'
import { LruCache } from '../cache.js'
import { KU, parseAlgorithmIdentifier, type AlgorithmIdentifier, type ParsedCertificate } from '../der/certificate.js'
import { keyWeakness, signatureScheme, verifySignature } from '../crypto.js'
import { parseGeneralName } from '../der/general-name.js'
import { parseName, type ParsedName } from '../der/name.js'
import { OID } from '../der/oids.js'
import {
  DerError, DerReader, TAG, children, ctx, parseOne, readBigInt, readBitString, readExtensions, readOctetString,
  readOid, readSmallInt, readTime, tlvBytes, type Extension, type Tlv
} from '../der/reader.js'
import { getCertificate } from '../der/store.js'
import * as w from '../der/writer.js'

export interface OcspOptions {
  mode: 'off' | 'soft-fail' | 'hard-fail'
  /** a responder used for every certificate (overrides the certificate's AIA) */
  responder?: string
  /** AIA OCSP URLs that may be used (exact URL match after normalisation); a URL taken from a certificate and not listed here is never requested */
  allowedResponders?: readonly string[]
  /** default 2000 */
  timeoutMs?: number
  /** default 64 KiB */
  maxResponseBytes?: number
  /** accepted age of a response without nextUpdate (default 3600) */
  maxAgeSec?: number
  /** cached answers (default 4096) */
  cacheSize?: number
  /** default 0 */
  clockToleranceSec?: number
  /** smallest RSA key accepted for a delegated responder certificate (default 2048) */
  minRsaBits?: number
  /** how long 'unknown' and 'error' answers from a responder are reused (default 5; 0: never) */
  failureCacheSec?: number
}

export type OcspStatus =
  | { status: 'good', /** ms since the epoch: the answer may be used until then */ nextUpdate: number, responder: string }
  | { status: 'revoked', revocationTime: Date, /** CRLReason code */ reason?: number, responder: string }
  | { status: 'unknown' | 'error', reason: string, responder?: string }

export interface OcspResponderHealth {
  url: string
  lastSuccess: string | null
  lastFailure: string | null
  lastError: string | null
  consecutiveFailures: number
  healthy: boolean
}

export interface OcspCheckerStatus {
  cacheSize: number
  inFlight: number
  responders: OcspResponderHealth[]
}

export interface OcspDeps {
  fetch?: typeof fetch
  now?: () => number
}

export const OCSP_BASIC = '1.3.6.1.5.5.7.48.1.1'
export const OCSP_NONCE = '1.3.6.1.5.5.7.48.1.2'
/** certificates looked at in one response (real responders send 0 to 2) */
export const MAX_RESPONSE_CERTS = 8

const HASH_BY_OID: Readonly<Record<string, string>> = {
  [OID.sha1]: 'sha1',
  [OID.sha256]: 'sha256',
  [OID.sha384]: 'sha384',
  [OID.sha512]: 'sha512'
}

const KNOWN_OPTIONS = new Set([
  'mode', 'responder', 'allowedResponders', 'timeoutMs', 'maxResponseBytes', 'maxAgeSec', 'cacheSize',
  'clockToleranceSec', 'minRsaBits', 'failureCacheSec'
])

const RESPONSE_STATUS: Readonly<Record<number, string>> = {
  1: 'malformedRequest',
  2: 'internalError',
  3: 'tryLater',
  5: 'sigRequired',
  6: 'unauthorized'
}

/** A failure with a reason worth reporting as is. */
class OcspFailure extends Error {}

/** The URL as compared and requested, or undefined when it is not an http(s) URL without credentials. */
export function normaliseResponderUrl (value: string): string | undefined {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return undefined
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username !== '' || url.password !== '') return undefined
  url.hash = ''
  return url.href
}

/** The OCSP URLs of a certificate's authorityInfoAccess extension, in order. */
export function ocspUrls (cert: ParsedCertificate): string[] {
  const ext = cert.extensions.find((e) => e.oid === OID.authorityInfoAccess)
  if (ext === undefined) return []
  const urls: string[] = []
  for (const ad of children(parseOne(ext.value, 'authorityInfoAccess'))) {
    const r = DerReader.of(ad)
    const method = readOid(r.read(), 'AccessDescription.accessMethod')
    const location = parseGeneralName(r.read(), 'AccessDescription.accessLocation')
    if (method === OID.ocsp && location.kind === 'uri') urls.push(location.value)
  }
  return urls
}

// ---------------------------------------------------------------- CertID

interface IssuerIds {
  nameDer: Buffer
  keyBits: Buffer
  byHash: Map<string, { name: Buffer, key: Buffer }>
}

const issuerIdCache = new WeakMap<ParsedCertificate, IssuerIds>()

function issuerIds (issuer: ParsedCertificate): IssuerIds {
  let ids = issuerIdCache.get(issuer)
  if (ids === undefined) {
    const r = DerReader.of(parseOne(issuer.tbs, 'tbsCertificate'))
    r.optional(ctx(0, true))
    for (let i = 0; i < 4; i++) r.read() // serialNumber, signature, issuer, validity
    const nameDer = tlvBytes(r.expect(TAG.SEQUENCE, 'subject'))
    ids = { nameDer, keyBits: subjectKeyBits(issuer), byHash: new Map() }
    issuerIdCache.set(issuer, ids)
  }
  return ids
}

function subjectKeyBits (cert: ParsedCertificate): Buffer {
  const r = DerReader.of(parseOne(cert.spki, 'subjectPublicKeyInfo'))
  r.read()
  return readBitString(r.read(), 'subjectPublicKey').bytes
}

function hashesFor (ids: IssuerIds, hash: string): { name: Buffer, key: Buffer } {
  let h = ids.byHash.get(hash)
  if (h === undefined) {
    h = { name: createHash(hash).update(ids.nameDer).digest(), key: createHash(hash).update(ids.keyBits).digest() }
    ids.byHash.set(hash, h)
  }
  return h
}

/** DER of an OCSPRequest for one certificate, with a nonce extension. */
export function buildOcspRequest (issuer: ParsedCertificate, serial: bigint, nonce: Buffer): Buffer {
  const { name, key } = hashesFor(issuerIds(issuer), 'sha1')
  const certId = w.sequence(
    w.algorithmIdentifier(OID.sha1, w.nullValue()),
    w.octetString(name),
    w.octetString(key),
    w.integer(serial)
  )
  const requestList = w.sequence(w.sequence(certId))
  const requestExtensions = w.explicit(2, w.sequence(w.extension(OCSP_NONCE, w.octetString(nonce))))
  return w.sequence(w.sequence(requestList, requestExtensions))
}

// ---------------------------------------------------------------- response parsing

type ResponderId = { name: ParsedName } | { keyHash: Buffer }

interface SingleResponse {
  hash: string | undefined
  nameHash: Buffer
  keyHash: Buffer
  serial: bigint
  status: { kind: 'good' } | { kind: 'revoked', time: Date, reason: number | undefined } | { kind: 'unknown' }
  thisUpdate: Date
  nextUpdate: Date | undefined
  extensions: Extension[]
}

interface BasicResponse {
  tbs: Buffer
  signatureAlgorithm: AlgorithmIdentifier
  signature: Buffer
  certs: Buffer[]
  responderId: ResponderId
  responses: SingleResponse[]
  extensions: Extension[]
}

function readGeneralizedTime (t: Tlv, what: string): Date {
  if (t.tag !== TAG.GENERALIZED_TIME) throw new DerError(`${what}: expected GeneralizedTime`)
  return readTime(t, what)
}

/** The contents of a single-element EXPLICIT wrapper. */
function unwrap (t: Tlv, what: string): Tlv {
  const r = DerReader.of(t)
  const inner = r.read()
  r.done(what)
  return inner
}

function hashOfAlgorithm (alg: AlgorithmIdentifier): string | undefined {
  // parameters: absent or NULL
  if (alg.params !== undefined && !(alg.params.length === 2 && alg.params[0] === TAG.NULL && alg.params[1] === 0)) return undefined
  return HASH_BY_OID[alg.oid]
}

function parseSingleResponse (t: Tlv): SingleResponse {
  if (t.tag !== TAG.SEQUENCE) throw new DerError('SingleResponse must be a SEQUENCE')
  const r = DerReader.of(t)
  const idr = DerReader.of(r.expect(TAG.SEQUENCE, 'CertID'))
  const hash = hashOfAlgorithm(parseAlgorithmIdentifier(idr.read(), 'CertID.hashAlgorithm'))
  const nameHash = readOctetString(idr.read(), 'CertID.issuerNameHash')
  const keyHash = readOctetString(idr.read(), 'CertID.issuerKeyHash')
  const serial = readBigInt(idr.read(), 'CertID.serialNumber')
  idr.done('CertID')
  const st = r.read()
  let status: SingleResponse['status']
  if (st.tag === ctx(0, false) && st.end === st.valueStart) {
    status = { kind: 'good' }
  } else if (st.tag === ctx(1, true)) {
    const rr = DerReader.of(st)
    const time = readGeneralizedTime(rr.read(), 'revocationTime')
    const reasonTlv = rr.optional(ctx(0, true))
    rr.done('RevokedInfo')
    const reason = reasonTlv === undefined ? undefined : readSmallInt(unwrap(reasonTlv, 'revocationReason'), 'revocationReason', TAG.ENUMERATED)
    status = { kind: 'revoked', time, reason }
  } else if (st.tag === ctx(2, false) && st.end === st.valueStart) {
    status = { kind: 'unknown' }
  } else {
    throw new DerError(`certStatus: unexpected tag 0x${st.tag.toString(16)}`)
  }
  const thisUpdate = readGeneralizedTime(r.read(), 'thisUpdate')
  const nu = r.optional(ctx(0, true))
  const nextUpdate = nu === undefined ? undefined : readGeneralizedTime(unwrap(nu, 'nextUpdate'), 'nextUpdate')
  const ext = r.optional(ctx(1, true))
  r.done('SingleResponse')
  const extensions = ext === undefined ? [] : readExtensions(unwrap(ext, 'singleExtensions'), 'singleExtensions')
  return { hash, nameHash, keyHash, serial, status, thisUpdate, nextUpdate, extensions }
}

/** Parses an OCSPResponse; a non-successful responseStatus is an OcspFailure. */
export function parseOcspResponse (body: Buffer): BasicResponse {
  const top = parseOne(body, 'OCSPResponse')
  if (top.tag !== TAG.SEQUENCE) throw new DerError('OCSPResponse must be a SEQUENCE')
  const r = DerReader.of(top)
  const responseStatus = readSmallInt(r.read(), 'responseStatus', TAG.ENUMERATED)
  if (responseStatus !== 0) {
    throw new OcspFailure(`responder answered ${RESPONSE_STATUS[responseStatus] ?? 'an unknown status'} (${responseStatus})`)
  }
  const rbTlv = r.optional(ctx(0, true))
  r.done('OCSPResponse')
  if (rbTlv === undefined) throw new DerError('successful OCSPResponse without responseBytes')
  const rb = DerReader.of(unwrap(rbTlv, 'responseBytes'))
  const responseType = readOid(rb.read(), 'responseType')
  if (responseType !== OCSP_BASIC) throw new OcspFailure(`unsupported responseType ${responseType}`)
  const inner = readOctetString(rb.read(), 'response')
  rb.done('ResponseBytes')

  const basic = parseOne(inner, 'BasicOCSPResponse')
  if (basic.tag !== TAG.SEQUENCE) throw new DerError('BasicOCSPResponse must be a SEQUENCE')
  const br = DerReader.of(basic)
  const tbsTlv = br.expect(TAG.SEQUENCE, 'tbsResponseData')
  const signatureAlgorithm = parseAlgorithmIdentifier(br.read(), 'BasicOCSPResponse.signatureAlgorithm')
  const sig = readBitString(br.read(), 'BasicOCSPResponse.signature')
  if (sig.unusedBits !== 0) throw new DerError('BasicOCSPResponse.signature has unused bits')
  const certsTlv = br.optional(ctx(0, true))
  br.done('BasicOCSPResponse')
  let certs: Buffer[] = []
  if (certsTlv !== undefined) {
    const list = children(unwrap(certsTlv, 'certs'))
    if (list.length > MAX_RESPONSE_CERTS) throw new OcspFailure(`response carries more than ${MAX_RESPONSE_CERTS} certificates`)
    certs = list.map((c) => tlvBytes(c))
  }

  const tr = DerReader.of(tbsTlv)
  const version = tr.optional(ctx(0, true))
  if (version !== undefined && readSmallInt(unwrap(version, 'version'), 'ResponseData.version') !== 0) {
    throw new DerError('ResponseData.version: only v1 is defined')
  }
  const rid = tr.read()
  let responderId: ResponderId
  if (rid.tag === ctx(1, true)) {
    responderId = { name: parseName(unwrap(rid, 'responderID byName'), 'responderID') }
  } else if (rid.tag === ctx(2, true)) {
    responderId = { keyHash: readOctetString(unwrap(rid, 'responderID byKey'), 'responderID byKey') }
  } else {
    throw new DerError(`responderID: unexpected tag 0x${rid.tag.toString(16)}`)
  }
  readGeneralizedTime(tr.read(), 'producedAt')
  const responses = children(tr.expect(TAG.SEQUENCE, 'responses')).map(parseSingleResponse)
  const ext = tr.optional(ctx(1, true))
  tr.done('ResponseData')
  const extensions = ext === undefined ? [] : readExtensions(unwrap(ext, 'responseExtensions'), 'responseExtensions')
  return { tbs: tlvBytes(tbsTlv), signatureAlgorithm, signature: sig.bytes, certs, responderId, responses, extensions }
}

// ---------------------------------------------------------------- checker

interface CacheEntry { result: OcspStatus, until: number }

interface Health {
  url: string
  lastSuccess: number | null
  lastFailure: number | null
  lastError: string | null
  consecutiveFailures: number
}

interface Settings {
  mode: OcspOptions['mode']
  responder: string | undefined
  allowed: Set<string>
  timeoutMs: number
  maxResponseBytes: number
  maxAgeMs: number
  cacheSize: number
  toleranceMs: number
  minRsaBits: number
  failureCacheMs: number
}

function checkNumber (options: OcspOptions, name: keyof OcspOptions, dflt: number, min: number, max: number, integer = true): number {
  const v = options[name]
  if (v === undefined) return dflt
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min || v > max) {
    throw new TypeError(`ocsp.${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got ${String(v)}`)
  }
  return v
}

function checkUrl (value: unknown, what: string): string {
  const url = typeof value === 'string' ? normaliseResponderUrl(value) : undefined
  if (url === undefined) throw new TypeError(`${what} must be an http: or https: URL without credentials, got ${JSON.stringify(value)}`)
  return url
}

function validate (options: OcspOptions): Settings {
  if (options === null || typeof options !== 'object') throw new TypeError('ocsp options must be an object')
  for (const k of Object.keys(options)) if (!KNOWN_OPTIONS.has(k)) throw new TypeError(`ocsp: unknown option ${JSON.stringify(k)}`)
  if (options.mode !== 'off' && options.mode !== 'soft-fail' && options.mode !== 'hard-fail') {
    throw new TypeError(`ocsp.mode must be 'off', 'soft-fail' or 'hard-fail', got ${JSON.stringify(options.mode)}`)
  }
  const responder = options.responder === undefined ? undefined : checkUrl(options.responder, 'ocsp.responder')
  const list = options.allowedResponders ?? []
  if (!Array.isArray(list)) throw new TypeError('ocsp.allowedResponders must be an array of URLs')
  const allowed = new Set(list.map((u, i) => checkUrl(u, `ocsp.allowedResponders[${i}]`)))
  return {
    mode: options.mode,
    responder,
    allowed,
    timeoutMs: checkNumber(options, 'timeoutMs', 2000, 1, 600_000),
    maxResponseBytes: checkNumber(options, 'maxResponseBytes', 64 * 1024, 64, 16 * 1024 * 1024),
    maxAgeMs: checkNumber(options, 'maxAgeSec', 3600, 1, 366 * 86400) * 1000,
    cacheSize: checkNumber(options, 'cacheSize', 4096, 1, 1_000_000),
    toleranceMs: checkNumber(options, 'clockToleranceSec', 0, 0, 86400, false) * 1000,
    minRsaBits: checkNumber(options, 'minRsaBits', 2048, 1024, 16384),
    failureCacheMs: checkNumber(options, 'failureCacheSec', 5, 0, 3600, false) * 1000
  }
}

const sameKeyHash = (cert: ParsedCertificate, keyHash: Buffer): boolean =>
  createHash('sha1').update(subjectKeyBits(cert)).digest().equals(keyHash)

function matchesResponderId (cert: ParsedCertificate, rid: ResponderId): boolean {
  return 'name' in rid ? cert.subject.key === rid.name.key : sameKeyHash(cert, rid.keyHash)
}

const errorMessage = (err: unknown): string => {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : ''
    return err.message + cause
  }
  return String(err)
}

export class OcspChecker {
  readonly mode: OcspOptions['mode']
  private readonly settings: Settings
  private readonly fetch: typeof fetch
  private readonly now: () => number
  private readonly cache: LruCache<string, CacheEntry>
  private readonly inFlight = new Map<string, Promise<OcspStatus>>()
  private readonly health = new Map<string, Health>()

  constructor (options: OcspOptions, deps: OcspDeps = {}) {
    this.settings = validate(options)
    this.mode = this.settings.mode
    this.fetch = deps.fetch ?? globalThis.fetch
    this.now = deps.now ?? Date.now
    if (typeof this.fetch !== 'function' || typeof this.now !== 'function') throw new TypeError('ocsp deps: fetch and now must be functions')
    this.cache = new LruCache(this.settings.cacheSize)
    const configured = this.settings.responder === undefined ? [] : [this.settings.responder]
    for (const url of [...configured, ...this.settings.allowed]) this.healthOf(url)
  }

  /** `cert` and its `issuer`, from an already-verified path. Never throws: failures are 'error'. */
  async check (cert: ParsedCertificate, issuer: ParsedCertificate): Promise<OcspStatus> {
    try {
      if (this.settings.mode === 'off') return { status: 'unknown', reason: 'OCSP checking is off' }
      if (cert.issuer.key !== issuer.subject.key) return { status: 'error', reason: 'the issuer certificate does not name the certificate\'s issuer' }
      const responder = this.pickResponder(cert)
      if (responder === undefined) return { status: 'error', reason: 'no allowed OCSP responder' }
      const ids = issuerIds(issuer)
      const sha1 = hashesFor(ids, 'sha1')
      const key = `${sha1.name.toString('hex')}:${sha1.key.toString('hex')}:${cert.serial.toString(16)}`
      const cached = this.cache.get(key)
      if (cached !== undefined) {
        if (cached.until > this.now()) return cached.result
        this.cache.delete(key)
      }
      let pending = this.inFlight.get(key)
      if (pending === undefined) {
        pending = this.query(key, responder, cert, issuer).finally(() => this.inFlight.delete(key))
        this.inFlight.set(key, pending)
      }
      return await pending
    } catch (err) {
      return { status: 'error', reason: `OCSP check failed: ${errorMessage(err)}` }
    }
  }

  status (): OcspCheckerStatus {
    const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString())
    return {
      cacheSize: this.cache.size,
      inFlight: this.inFlight.size,
      responders: [...this.health.values()].map((h) => ({
        url: h.url,
        lastSuccess: iso(h.lastSuccess),
        lastFailure: iso(h.lastFailure),
        lastError: h.lastError,
        consecutiveFailures: h.consecutiveFailures,
        healthy: h.consecutiveFailures === 0
      }))
    }
  }

  /** Forget every cached answer (for a trust reload). */
  clear (): void {
    this.cache.clear()
  }

  private pickResponder (cert: ParsedCertificate): string | undefined {
    if (this.settings.responder !== undefined) return this.settings.responder
    for (const raw of ocspUrls(cert)) {
      const url = normaliseResponderUrl(raw)
      if (url !== undefined && this.settings.allowed.has(url)) return url
    }
    return undefined
  }

  private healthOf (url: string): Health {
    let h = this.health.get(url)
    if (h === undefined) {
      h = { url, lastSuccess: null, lastFailure: null, lastError: null, consecutiveFailures: 0 }
      this.health.set(url, h)
    }
    return h
  }

  private async query (key: string, responder: string, cert: ParsedCertificate, issuer: ParsedCertificate): Promise<OcspStatus> {
    const nonce = randomBytes(16)
    const health = this.healthOf(responder)
    let outcome: { result: OcspStatus, until: number }
    try {
      const body = await this.post(responder, buildOcspRequest(issuer, cert.serial, nonce))
      outcome = this.evaluate(body, nonce, cert, issuer, responder)
      health.lastSuccess = this.now()
      health.consecutiveFailures = 0
    } catch (err) {
      const reason = err instanceof OcspFailure ? err.message : err instanceof DerError ? `malformed OCSP response: ${err.message}` : errorMessage(err)
      const now = this.now()
      health.lastFailure = now
      health.lastError = reason
      health.consecutiveFailures++
      outcome = { result: { status: 'error', reason: `OCSP responder ${responder}: ${reason}`, responder }, until: now + this.settings.failureCacheMs }
    }
    if (outcome.until > this.now()) this.cache.set(key, { result: outcome.result, until: outcome.until })
    return outcome.result
  }

  private async post (url: string, request: Buffer): Promise<Buffer> {
    const { timeoutMs } = this.settings
    const controller = new AbortController()
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        const err = new OcspFailure(`no answer within ${timeoutMs} ms`)
        controller.abort(err)
        reject(err)
      }, timeoutMs)
    })
    try {
      // the race bounds the time even when a fetch implementation ignores the signal
      return await Promise.race([this.exchange(url, request, controller.signal), timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  private async exchange (url: string, request: Buffer, signal: AbortSignal): Promise<Buffer> {
    const { maxResponseBytes } = this.settings
    const fetchFn = this.fetch // called unbound, as a plain function
    const res = await fetchFn(url, {
      method: 'POST',
      headers: { 'content-type': 'application/ocsp-request', accept: 'application/ocsp-response' },
      body: new Uint8Array(request),
      redirect: 'error',
      signal
    })
    const discard = (): void => { res.body?.cancel().catch(() => {}) }
    if (res.status !== 200) {
      discard()
      throw new OcspFailure(`HTTP status ${res.status}`)
    }
    const declared = res.headers.get('content-length')
    if (declared !== null && Number(declared) > maxResponseBytes) {
      discard()
      throw new OcspFailure(`response of ${declared} bytes is larger than ${maxResponseBytes}`)
    }
    if (res.body === null) throw new OcspFailure('empty response')
    const body = await readBounded(res.body, maxResponseBytes)
    if (body === undefined) throw new OcspFailure(`response larger than ${maxResponseBytes} bytes`)
    if (body.length === 0) throw new OcspFailure('empty response')
    return body
  }

  private evaluate (body: Buffer, nonce: Buffer, cert: ParsedCertificate, issuer: ParsedCertificate, responder: string): { result: OcspStatus, until: number } {
    const res = parseOcspResponse(body)
    const now = this.now()
    const { toleranceMs, maxAgeMs, failureCacheMs } = this.settings

    // nonce: checked when echoed (RFC 8954: an OCTET STRING; the bare value is also taken)
    for (const ext of res.extensions) {
      if (ext.oid === OCSP_NONCE) {
        if (!ext.value.equals(w.octetString(nonce)) && !ext.value.equals(nonce)) throw new OcspFailure('nonce mismatch (a replayed or misdirected response)')
      } else if (ext.critical) {
        throw new OcspFailure(`unsupported critical response extension ${ext.oid}`)
      }
    }

    this.checkSigner(res, issuer, now)

    const ids = issuerIds(issuer)
    const matches = res.responses.filter((s) => {
      if (s.hash === undefined || s.serial !== cert.serial) return false
      const h = hashesFor(ids, s.hash)
      return s.nameHash.equals(h.name) && s.keyHash.equals(h.key)
    })
    if (matches.length === 0) throw new OcspFailure('no SingleResponse for the certificate')
    if (matches.length > 1) throw new OcspFailure('several SingleResponses for the certificate')
    const single = matches[0] as SingleResponse
    const critical = single.extensions.find((e) => e.critical)
    if (critical !== undefined) throw new OcspFailure(`unsupported critical singleExtension ${critical.oid}`)

    const thisUpdate = single.thisUpdate.getTime()
    if (thisUpdate > now + toleranceMs) throw new OcspFailure(`thisUpdate ${single.thisUpdate.toISOString()} is in the future`)
    let until: number
    if (single.nextUpdate !== undefined) {
      until = single.nextUpdate.getTime()
      if (until < thisUpdate) throw new OcspFailure('nextUpdate is before thisUpdate')
      if (until < now - toleranceMs) throw new OcspFailure(`stale response: nextUpdate ${single.nextUpdate.toISOString()} has passed`)
    } else {
      until = thisUpdate + maxAgeMs
      if (until < now - toleranceMs) throw new OcspFailure(`stale response: thisUpdate ${single.thisUpdate.toISOString()} is older than ${maxAgeMs / 1000} s and there is no nextUpdate`)
    }

    switch (single.status.kind) {
      case 'good':
        return { result: Object.freeze({ status: 'good', nextUpdate: until, responder }), until }
      case 'revoked': {
        const { time, reason } = single.status
        const result: OcspStatus = reason === undefined
          ? { status: 'revoked', revocationTime: time, responder }
          : { status: 'revoked', revocationTime: time, reason, responder }
        return { result: Object.freeze(result), until }
      }
      default:
        return {
          result: Object.freeze({ status: 'unknown', reason: `OCSP responder ${responder} does not know the certificate`, responder }),
          until: Math.min(until, now + failureCacheMs)
        }
    }
  }

  /** Throws unless the response is signed by the issuer or by a responder the issuer delegated to. */
  private checkSigner (res: BasicResponse, issuer: ParsedCertificate, now: number): void {
    const scheme = signatureScheme(res.signatureAlgorithm)
    if (typeof scheme === 'string') throw new OcspFailure(`response signature: ${scheme}`)
    if (scheme.weak) throw new OcspFailure(`response signed with a weak algorithm ${res.signatureAlgorithm.oid} (MD5 and SHA-1 are refused)`)
    const verifies = (key: ParsedCertificate): boolean => verifySignature(res.signatureAlgorithm, res.tbs, res.signature, key.publicKey)

    if (matchesResponderId(issuer, res.responderId)) {
      if (verifies(issuer)) return
      throw new OcspFailure('bad response signature (responder is the issuer)')
    }
    let problem = 'response signed by neither the issuer nor a responder certificate in the response (wrong signer)'
    for (const der of res.certs) {
      let d: ParsedCertificate
      try {
        d = getCertificate(der)
      } catch {
        continue
      }
      if (!matchesResponderId(d, res.responderId)) continue
      const why = this.delegationProblem(d, issuer, now)
      if (why !== undefined) {
        problem = `responder certificate "${d.subject.rfc4514}" ${why} (wrong signer)`
        continue
      }
      if (verifies(d)) return
      problem = `bad response signature (responder "${d.subject.rfc4514}")`
    }
    throw new OcspFailure(problem)
  }

  private delegationProblem (d: ParsedCertificate, issuer: ParsedCertificate, now: number): string | undefined {
    const { toleranceMs, minRsaBits } = this.settings
    if (d.issuer.key !== issuer.subject.key) return 'is not issued by the certificate\'s issuer'
    const scheme = signatureScheme(d.signatureAlgorithm)
    if (typeof scheme === 'string' || scheme.weak) return 'has a weak or unsupported signature algorithm'
    if (!verifySignature(d.signatureAlgorithm, d.tbs, d.signature, issuer.publicKey)) return 'is not signed by the certificate\'s issuer'
    if (d.extKeyUsage?.includes(OID.ocspSigning) !== true) return 'lacks the id-kp-OCSPSigning extended key usage'
    if (d.keyUsage !== undefined && (d.keyUsage & KU.digitalSignature) === 0) return 'has a key usage without digitalSignature'
    if (d.notBefore.getTime() > now + toleranceMs || d.notAfter.getTime() < now - toleranceMs) return 'is not valid now'
    if (d.unknownCritical.length > 0 || d.profileErrors.length > 0) return 'breaks the certificate profile'
    const weak = keyWeakness(d.keyAlgorithm, d.publicKey, minRsaBits)
    if (weak !== undefined) return `has a weak key: ${weak}`
    return undefined
  }
}
