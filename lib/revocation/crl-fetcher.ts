// Opt-in fetching of the CRLs that certificates name in their cRLDistributionPoints
// (issue 4, point 2).
//
// Where this sits: the plugin calls ensure() only AFTER a chain has verified to a trust
// anchor, with the allow-listed URLs of the certificates on that path (allowedUrls()), and
// then hands crlsFor() to the verifier. So no request ever goes out for a certificate that
// does not chain to an anchor, and none to a URL the user did not allow (DESIGN.md,
// "Non-negotiables").
//
// What this module does NOT do: verify CRL signatures. The verifier does that with the
// issuer's key (verify/chain.ts picks a CRL by issuer name, then requires its signature to
// verify with the issuer certificate's key). That is also why a CRL fetched from URL A
// cannot be used "as if it came from elsewhere": crlsFor() hands out bare CRLs with no
// claim attached about where they came from, and a CRL only ever counts for the CA whose
// name it carries and whose key signed it.
//
// One consequence of not checking signatures here: whoever can answer for an allow-listed
// URL (plain http: anyone on the path) could serve a forged CRL that looks newer than the
// real one; held, it would make the real ones look "older" and be ignored, and the
// verifier (which refuses the forgery) would report REVOCATION_UNKNOWN until the forgery's
// nextUpdate. The `accept` dependency closes that: given a check that the CRL is signed by
// a known CA certificate, a refused CRL is never held. The plugin should pass one.
import { readBounded } from './body.js'
import type { ParsedCertificate } from '../der/certificate.js'
import { MAX_CRL_BYTES, type ParsedCrl } from '../der/crl.js'
import { toDerList } from '../der/pem.js'
import { getCrl } from '../der/store.js'

export interface CrlFetchOptions {
  /** URL allow-list: exact URLs, or prefixes ending in '/' (e.g. 'http://crl.acme.example/'); nothing else is ever fetched */
  allow: readonly string[]
  /** the whole download, redirects and body included (default 5000) */
  timeoutMs?: number
  /** default 4 MiB (never above MAX_CRL_BYTES); counted on the decoded body */
  maxBytes?: number
  /** refresh this long before nextUpdate (default 300, or a tenth of the CRL's lifetime if smaller) */
  refreshBeforeSec?: number
  /** wait after a fetch that brought no new CRL before trying again: this many seconds, doubling on each miss up to 600 (default 10) */
  retrySec?: number
  /** most distribution-point URLs held, least recently used dropped first (default 256) */
  maxUrls?: number
}

/** Cancels a timer made by `setTimer`. */
export type CancelTimer = () => void

export interface CrlFetcherLog {
  warn: (obj: object, msg: string) => void
  info?: (obj: object, msg: string) => void
}

export interface CrlFetcherDeps {
  /** default: the global fetch */
  fetch?: typeof fetch
  /** milliseconds since the epoch (default Date.now) */
  now?: () => number
  /** called for each CRL that becomes the one held for a URL (the plugin bumps its trust epoch there) */
  onNewCrl?: (crl: ParsedCrl, url: string) => void
  /** returns why a fetched (parsed) CRL must not be held, or undefined to accept it; e.g. a signature check against known CA certificates */
  accept?: (crl: ParsedCrl, url: string) => string | undefined
  /** default: an unref'ed setTimeout */
  setTimer?: (fn: () => void, ms: number) => CancelTimer
  log?: CrlFetcherLog
}

export interface CrlSourceStatus {
  url: string
  /** of the CRL held (ISO 8601), null when none is held */
  thisUpdate: string | null
  nextUpdate: string | null
  /** decimal, null when none is held or it has no cRLNumber */
  crlNumber: string | null
  /** when the last download attempt ended */
  lastFetch: string | null
  /** why the last attempt brought no CRL, null when it succeeded (or none was made) */
  lastError: string | null
  /** the earliest time the next attempt may be made (refresh or retry) */
  nextRefresh: string | null
  /** true when no CRL is held, or the one held has no nextUpdate or is past it */
  stale: boolean
}

const DEFAULT_TIMEOUT_MS = 5000
const DEFAULT_MAX_BYTES = 4 * 1024 * 1024
const DEFAULT_REFRESH_BEFORE_SEC = 300
const DEFAULT_RETRY_SEC = 10
const MAX_RETRY_MS = 600e3
const DEFAULT_MAX_URLS = 256
/** a CRL without nextUpdate is unusable (the verifier says so); look for a better one this often */
const NO_NEXT_UPDATE_REFRESH_MS = 3600e3
/** distinct allow-listed URLs taken from one certificate */
export const MAX_URLS_PER_CERT = 4
const MAX_REDIRECTS = 3
const MAX_URL_LENGTH = 2048
/** setTimeout's largest delay; a longer wait is taken in steps */
const MAX_TIMER_MS = 2 ** 31 - 1
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308])

/**
 * The normal form of a CRL URL, or undefined when it is not one this module would ever
 * fetch: anything but http: or https:, credentials in the URL, characters outside
 * printable ASCII, an encoded '/' or '\' in the path (a server may decode it and climb
 * out of an allow-listed prefix). The fragment is dropped (it is never sent).
 */
export function normaliseCrlUrl (raw: string, base?: string): string | undefined {
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > MAX_URL_LENGTH || /[^\x21-\x7e]/.test(raw)) return undefined
  let u: URL
  try {
    u = new URL(raw, base)
  } catch {
    return undefined
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined
  if (u.username !== '' || u.password !== '') return undefined
  if (/%2f|%5c/i.test(u.pathname)) return undefined
  u.hash = ''
  return u.href
}

interface AllowList { exact: Set<string>, prefixes: string[] }

function compileAllowList (allow: unknown): AllowList {
  if (!Array.isArray(allow)) throw new TypeError('CRL fetching: allow must be an array of URLs')
  const exact = new Set<string>()
  const prefixes: string[] = []
  for (const entry of allow as unknown[]) {
    const url = typeof entry === 'string' ? normaliseCrlUrl(entry) : undefined
    if (url === undefined) {
      throw new TypeError(`CRL fetching: allow entry ${JSON.stringify(entry)} is not an http: or https: URL without credentials`)
    }
    if ((entry as string).endsWith('/')) {
      if (url.includes('?')) throw new TypeError(`CRL fetching: allow prefix ${JSON.stringify(entry)} has a query`)
      prefixes.push(url)
    } else {
      exact.add(url)
    }
  }
  return { exact, prefixes }
}

function positive (value: number | undefined, fallback: number, what: string, allowZero = false): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (value === 0 && !allowZero)) {
    throw new TypeError(`CRL fetching: ${what} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${String(value)}`)
  }
  return value
}

class FetchFailure extends Error {}

const defaultSetTimer = (fn: () => void, ms: number): CancelTimer => {
  const timer = setTimeout(fn, ms)
  timer.unref()
  return () => clearTimeout(timer)
}

/** for error messages and logs: a URL from a server, cut short */
const quote = (text: string): string => JSON.stringify(text.length > 200 ? text.slice(0, 200) + '…' : text)

interface Entry {
  readonly url: string
  crl: ParsedCrl | undefined
  /** when the held CRL is due for refresh */
  refreshAt: number
  /** no attempt before this (after a miss) */
  retryAt: number
  /** attempts in a row that brought no new CRL */
  misses: number
  lastFetch: number | undefined
  lastError: string | undefined
  inFlight: Promise<void> | undefined
  cancelTimer: CancelTimer | undefined
}

type Order = 'same' | 'newer' | 'not newer'

/** How `candidate` compares with the CRL `held` for the same URL. */
function compareCrls (held: ParsedCrl, candidate: ParsedCrl): Order {
  if (held.sha256.equals(candidate.sha256)) return 'same'
  if (candidate.thisUpdate < held.thisUpdate) return 'not newer'
  if (held.issuer.key === candidate.issuer.key && held.crlNumber !== undefined && candidate.crlNumber !== undefined &&
    candidate.crlNumber !== held.crlNumber) {
    return candidate.crlNumber > held.crlNumber ? 'newer' : 'not newer'
  }
  return candidate.thisUpdate > held.thisUpdate ? 'newer' : 'not newer'
}

/** no CRL, or one without nextUpdate or past it */
const isStale = (crl: ParsedCrl | undefined, now: number): boolean => crl?.nextUpdate === undefined || crl.nextUpdate.getTime() <= now

const describeCrl = (crl: ParsedCrl): string =>
  `cRLNumber ${crl.crlNumber === undefined ? 'none' : crl.crlNumber.toString()}, thisUpdate ${crl.thisUpdate.toISOString()}`

/**
 * Fetches and keeps the CRLs named by certificates' distribution points, for allow-listed
 * URLs only, and refreshes them in the background before they go stale.
 *
 * The plugin calls ensure() only after the certificate's chain verified to a trust anchor;
 * the fetcher itself does not verify CRL signatures (the verifier does, see the file header).
 */
export class CrlFetcher {
  private readonly allow: AllowList
  private readonly timeoutMs: number
  private readonly maxBytes: number
  private readonly refreshBeforeMs: number
  private readonly retryMs: number
  private readonly maxUrls: number
  private readonly fetchFn: typeof fetch
  private readonly now: () => number
  private readonly onNewCrl: ((crl: ParsedCrl, url: string) => void) | undefined
  private readonly accept: ((crl: ParsedCrl, url: string) => string | undefined) | undefined
  private readonly setTimer: (fn: () => void, ms: number) => CancelTimer
  private readonly log: CrlFetcherLog | undefined
  /** least recently used first */
  private readonly entries = new Map<string, Entry>()
  private readonly closing = new AbortController()
  private closed = false

  constructor (options: CrlFetchOptions, deps: CrlFetcherDeps = {}) {
    if (typeof options !== 'object' || options === null) throw new TypeError('CRL fetching: options must be an object')
    this.allow = compileAllowList(options.allow)
    this.timeoutMs = positive(options.timeoutMs, DEFAULT_TIMEOUT_MS, 'timeoutMs')
    this.maxBytes = Math.min(Math.floor(positive(options.maxBytes, DEFAULT_MAX_BYTES, 'maxBytes')), MAX_CRL_BYTES)
    this.refreshBeforeMs = positive(options.refreshBeforeSec, DEFAULT_REFRESH_BEFORE_SEC, 'refreshBeforeSec', true) * 1000
    this.retryMs = positive(options.retrySec, DEFAULT_RETRY_SEC, 'retrySec') * 1000
    const maxUrls = positive(options.maxUrls, DEFAULT_MAX_URLS, 'maxUrls')
    if (!Number.isInteger(maxUrls)) throw new TypeError(`CRL fetching: maxUrls must be an integer, got ${maxUrls}`)
    this.maxUrls = maxUrls
    this.fetchFn = deps.fetch ?? globalThis.fetch
    this.now = deps.now ?? Date.now
    this.onNewCrl = deps.onNewCrl
    this.accept = deps.accept
    this.setTimer = deps.setTimer ?? defaultSetTimer
    this.log = deps.log
  }

  /** Whether `url` (already normalised) is on the allow-list. */
  private allowed (url: string): boolean {
    return this.allow.exact.has(url) || this.allow.prefixes.some((prefix) => url.startsWith(prefix))
  }

  /** The normal form of `raw` when it is allow-listed, else undefined. */
  allowedUrl (raw: string): string | undefined {
    const url = normaliseCrlUrl(raw)
    return url !== undefined && this.allowed(url) ? url : undefined
  }

  /** The allow-listed distribution-point URLs of this certificate (normalised, distinct, at most MAX_URLS_PER_CERT). */
  allowedUrls (cert: ParsedCertificate): string[] {
    const out: string[] = []
    for (const raw of cert.crlDistributionPoints ?? []) {
      const url = this.allowedUrl(raw)
      if (url !== undefined && !out.includes(url)) out.push(url)
      if (out.length === MAX_URLS_PER_CERT) break
    }
    return out
  }

  /**
   * CRLs currently held for these URLs: the last good ones, even while a refresh fails,
   * stale ones included (the verifier judges staleness, with its clock tolerance, and says
   * why it refuses one). A CRL served at several of the URLs is returned once.
   */
  crlsFor (urls: readonly string[]): ParsedCrl[] {
    const out: ParsedCrl[] = []
    for (const raw of urls) {
      const url = normaliseCrlUrl(raw)
      const entry = url === undefined ? undefined : this.touch(url)
      if (entry?.crl !== undefined && !out.includes(entry.crl)) out.push(entry.crl)
    }
    return out
  }

  /**
   * Makes sure each allow-listed URL has a CRL that is not stale: downloads when none is
   * held or the one held is due for refresh, unless a recent attempt brought nothing (then
   * it waits retrySec, doubling). It waits only for the URLs whose CRL is missing or stale;
   * a refresh of a CRL that is still fresh runs in the background. Concurrent calls share
   * one download per URL. URLs not on the allow-list are ignored. Never throws: failures
   * are recorded (status(), the log).
   * Call only once the certificate naming these URLs has chained to a trust anchor.
   */
  async ensure (urls: readonly string[]): Promise<void> {
    if (this.closed) return
    const pending: Array<Promise<void>> = []
    const seen = new Set<string>()
    const now = this.now()
    for (const raw of urls) {
      const url = this.allowedUrl(raw)
      if (url === undefined || seen.has(url)) continue
      seen.add(url)
      const entry = this.touch(url) ?? this.add(url)
      let download = entry.inFlight
      if (download === undefined && now >= this.nextAttemptAt(entry)) download = this.refresh(entry)
      if (download !== undefined && isStale(entry.crl, now)) pending.push(download)
    }
    await Promise.all(pending)
  }

  /** Resolves once no download is in progress (for tests, and for a clean shutdown after close()). */
  async idle (): Promise<void> {
    for (;;) {
      const pending = [...this.entries.values()].flatMap((e) => e.inFlight ?? [])
      if (pending.length === 0) return
      await Promise.all(pending)
    }
  }

  status (): CrlSourceStatus[] {
    const now = this.now()
    const iso = (ms: number | undefined): string | null => ms === undefined ? null : new Date(ms).toISOString()
    return [...this.entries.values()].map((e): CrlSourceStatus => ({
      url: e.url,
      thisUpdate: e.crl === undefined ? null : e.crl.thisUpdate.toISOString(),
      nextUpdate: e.crl?.nextUpdate === undefined ? null : e.crl.nextUpdate.toISOString(),
      crlNumber: e.crl?.crlNumber === undefined ? null : e.crl.crlNumber.toString(),
      lastFetch: iso(e.lastFetch),
      lastError: e.lastError ?? null,
      nextRefresh: this.closed || (e.crl === undefined && e.lastFetch === undefined) ? null : iso(this.nextAttemptAt(e)),
      stale: isStale(e.crl, now)
    })).sort((a, b) => a.url < b.url ? -1 : 1) // URLs are distinct
  }

  /** Stops the refresh timers and aborts downloads in progress; ensure() then does nothing. */
  close (): void {
    this.closed = true
    for (const entry of this.entries.values()) this.cancelTimer(entry)
    this.closing.abort()
  }

  // ---------------------------------------------------------------- internals

  private touch (url: string): Entry | undefined {
    const entry = this.entries.get(url)
    if (entry !== undefined) {
      this.entries.delete(url)
      this.entries.set(url, entry)
    }
    return entry
  }

  private add (url: string): Entry {
    const entry: Entry = {
      url, crl: undefined, refreshAt: 0, retryAt: 0, misses: 0, lastFetch: undefined, lastError: undefined, inFlight: undefined, cancelTimer: undefined
    }
    this.entries.set(url, entry)
    if (this.entries.size > this.maxUrls) {
      const oldest = this.entries.values().next().value as Entry
      this.entries.delete(oldest.url)
      this.cancelTimer(oldest)
    }
    return entry
  }

  private nextAttemptAt (entry: Entry): number {
    return entry.crl === undefined ? entry.retryAt : Math.max(entry.retryAt, entry.refreshAt)
  }

  private refreshAtOf (crl: ParsedCrl, now: number): number {
    if (crl.nextUpdate === undefined) return now + NO_NEXT_UPDATE_REFRESH_MS
    const next = crl.nextUpdate.getTime()
    const lifetime = Math.max(0, next - crl.thisUpdate.getTime())
    return next - Math.min(this.refreshBeforeMs, lifetime / 10)
  }

  private refresh (entry: Entry): Promise<void> {
    const done = this.attempt(entry).finally(() => {
      entry.inFlight = undefined
      this.schedule(entry)
    })
    entry.inFlight = done
    return done
  }

  /** One download of entry.url; records the outcome and never rejects. */
  private async attempt (entry: Entry): Promise<void> {
    const url = entry.url
    let crl: ParsedCrl
    let error: string | undefined
    try {
      crl = await this.download(url)
      const refused = this.refusal(crl, url)
      if (refused !== undefined) throw new FetchFailure(`CRL refused: ${refused}`)
    } catch (err) {
      error = err instanceof FetchFailure ? err.message : this.describeError(err)
      this.miss(entry, error)
      this.log?.warn({ 'mtls.crl_url': url, 'mtls.reason': error }, 'fastify-mtls-auth: CRL download failed; the CRL held (if any) is kept until it is stale')
      return
    }
    const now = this.now()
    entry.lastFetch = now
    const order = entry.crl === undefined ? 'newer' : compareCrls(entry.crl, crl)
    if (order === 'newer') {
      entry.crl = crl
      entry.refreshAt = this.refreshAtOf(crl, now)
      entry.misses = 0
      entry.lastError = undefined
      // already due when it arrived: do not ask again at once
      entry.retryAt = entry.refreshAt <= now ? now + this.retryMs : 0
      // a URL dropped from the cache while its download ran: nothing to announce
      if (this.entries.get(url) !== entry || this.closed) return
      this.log?.info?.({ 'mtls.crl_url': url, 'mtls.crl_number': crl.crlNumber?.toString(), 'mtls.crl_next_update': crl.nextUpdate?.toISOString() },
        'fastify-mtls-auth: new CRL')
      try {
        this.onNewCrl?.(crl, url)
      } catch (err) {
        this.log?.warn({ 'mtls.crl_url': url, err }, 'fastify-mtls-auth: onNewCrl threw')
      }
    } else if (order === 'same') {
      // nothing new: the server has not published yet; ask again later, not at once
      this.miss(entry, undefined)
    } else {
      const held = entry.crl as ParsedCrl
      const why = `the server sent a CRL no newer than the one held (${describeCrl(crl)}; held: ${describeCrl(held)}); kept the one held`
      this.miss(entry, why)
      this.log?.warn({ 'mtls.crl_url': url, 'mtls.reason': why }, 'fastify-mtls-auth: CRL not replaced')
    }
  }

  private refusal (crl: ParsedCrl, url: string): string | undefined {
    if (this.accept === undefined) return undefined
    try {
      return this.accept(crl, url)
    } catch (err) {
      return `the accept check threw: ${this.describeError(err)}`
    }
  }

  private miss (entry: Entry, error: string | undefined): void {
    const now = this.now()
    entry.lastFetch = now
    entry.lastError = error
    entry.misses++
    entry.retryAt = now + Math.min(MAX_RETRY_MS, this.retryMs * 2 ** Math.min(entry.misses - 1, 30))
  }

  private describeError (err: unknown): string {
    if (this.closing.signal.aborted) return 'the CRL fetcher was closed'
    if (err instanceof Error) {
      const cause = (err as { cause?: unknown }).cause
      // fetch() says only "fetch failed"; the cause says why (ECONNREFUSED, ...)
      if (err.message === 'fetch failed' && cause instanceof Error) return `fetch failed: ${cause.message}`
      return err.message
    }
    return String(err)
  }

  /**
   * Downloads url within timeoutMs. A plain timer, held until the download ends: on Node 20 an
   * AbortSignal.timeout() combined with AbortSignal.any() can be garbage-collected before it
   * fires, and then a server that never answers holds the download (and its callers) forever.
   */
  private async download (url: string): Promise<ParsedCrl> {
    const controller = new AbortController()
    const onClose = (): void => { controller.abort(this.closing.signal.reason) }
    this.closing.signal.addEventListener('abort', onClose, { once: true })
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        const failure = new FetchFailure(`timed out after ${this.timeoutMs} ms`)
        controller.abort(failure)
        reject(failure)
      }, this.timeoutMs)
    })
    try {
      return await Promise.race([this.downloadWith(url, controller.signal), timedOut])
    } finally {
      clearTimeout(timer)
      this.closing.signal.removeEventListener('abort', onClose)
    }
  }

  /** Downloads url (following redirects only to allow-listed URLs) and parses the body as one CRL. */
  private async downloadWith (url: string, signal: AbortSignal): Promise<ParsedCrl> {
    let current = url
    for (let redirects = 0; ; redirects++) {
      const res = await this.fetchFn(current, {
        signal,
        redirect: 'manual',
        headers: { accept: 'application/pkix-crl, application/x-pem-file;q=0.9, */*;q=0.1' }
      })
      if (REDIRECT_STATUSES.has(res.status)) {
        await res.body?.cancel().catch(() => {})
        const location = res.headers.get('location')
        if (location === null) throw new FetchFailure(`HTTP ${res.status} without a Location header`)
        if (redirects === MAX_REDIRECTS) throw new FetchFailure(`more than ${MAX_REDIRECTS} redirects`)
        const next = normaliseCrlUrl(location, current)
        if (next === undefined || !this.allowed(next)) throw new FetchFailure(`redirected to ${quote(next ?? location)}, which is not allow-listed`)
        current = next
        continue
      }
      if (res.status !== 200) {
        await res.body?.cancel().catch(() => {})
        throw new FetchFailure(`HTTP ${res.status}`)
      }
      const body = await this.readBody(res)
      let ders: Buffer[]
      try {
        ders = toDerList(body, 'X509 CRL', 'response')
      } catch (err) {
        throw new FetchFailure(`not a CRL: ${(err as Error).message}`)
      }
      if (ders.length !== 1) throw new FetchFailure(`${ders.length} CRLs in one response; a distribution point serves one`)
      try {
        return getCrl(ders[0] as Buffer)
      } catch (err) {
        throw new FetchFailure(`not a CRL: ${(err as Error).message}`)
      }
    }
  }

  /** The body, refused (and the download aborted) once it passes maxBytes. */
  private async readBody (res: Response): Promise<Buffer> {
    const tooLarge = (): FetchFailure => new FetchFailure(`response larger than ${this.maxBytes} bytes`)
    const declared = res.headers.get('content-length')
    if (declared !== null && /^\d+$/.test(declared) && Number(declared) > this.maxBytes && res.headers.get('content-encoding') === null) {
      await res.body?.cancel().catch(() => {})
      throw tooLarge()
    }
    if (res.body === null) return Buffer.alloc(0)
    const body = await readBounded(res.body, this.maxBytes)
    if (body === undefined) throw tooLarge()
    return body
  }

  private cancelTimer (entry: Entry): void {
    entry.cancelTimer?.()
    entry.cancelTimer = undefined
  }

  /** Arms the background refresh of a held CRL (none for a URL without one: it is fetched on demand). */
  private schedule (entry: Entry): void {
    this.cancelTimer(entry)
    if (this.closed || entry.crl === undefined || this.entries.get(entry.url) !== entry) return
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, this.nextAttemptAt(entry) - this.now()))
    entry.cancelTimer = this.setTimer(() => {
      entry.cancelTimer = undefined
      if (this.closed || entry.inFlight !== undefined || this.entries.get(entry.url) !== entry) return
      // a long wait is taken in steps, and a fake clock may not have moved
      if (this.now() < this.nextAttemptAt(entry)) {
        this.schedule(entry)
        return
      }
      this.refresh(entry).catch(() => {})
    }, delay)
  }
}
