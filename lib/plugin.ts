// The Fastify plugin: a thin shell around the authenticator and the policy compiler.
import { createHash, randomBytes, X509Certificate } from 'node:crypto'
import { Server as TlsServer, type TLSSocket } from 'node:tls'
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { summarise, RejectionLog } from './audit.js'
import { buildMetrics, MtlsCounters, type GuardCounts, type MtlsMetric, type RequestCounts } from './metrics.js'
import { Authenticator, forwardedCacheKey, TrustMaterial, type Outcome } from './authenticator.js'
import { toDerList } from './der/pem.js'
import { getCertificate } from './der/store.js'
import { MtlsReloadInvalidError, rejectionError } from './errors.js'
import { LruCache } from './cache.js'
import { toPem } from './der/pem.js'
import { applyContext, checkContext, contextOptions, usesPfx } from './reload.js'
import { FileWatcher, type WatchStatus } from './watch.js'
import { CrlFetcher, type CrlSourceStatus } from './revocation/crl-fetcher.js'
import { OcspChecker, type OcspCheckerStatus } from './revocation/ocsp.js'
import { crlSignedBy } from './verify/chain.js'
import { sha256Fingerprint } from './crypto.js'
import { tokenBindingError } from './bound-token.js'
import type { CertificateInput, TrustAnchorInput } from './types.js'
import type { DenyEntry } from './options.js'
import { invalid, normaliseOptions, type FastifyMtlsOptions, type MtlsRejection, type NormalisedPluginOptions } from './options.js'
import { compilePolicy, PolicyError, type CompiledPolicy } from './policy.js'
import { leafFingerprint, presentedChain, sameHandshake, tlsConnectionOf, tlsPeer, tlsSocketOf, type HandshakeMark, type PresentedChain } from './sources/tls.js'
import { headerCounts, MAX_HEADER_LINES, normaliseAddress } from './sources/forwarded.js'
import { MalformedHeader, parseForwarded } from './sources/forwarded-formats.js'
import type { ClientIdentity, Policy, RejectionCode } from './types.js'
import { MAX_PRESENTED } from './verify/verify.js'

/** Route config: a policy the route requires, `true` for any verified identity, `false` to exempt the route. */
export type RouteMtlsConfig = Policy<FastifyRequest> | boolean

export interface ReloadInput {
  ca?: TrustAnchorInput
  intermediates?: CertificateInput | readonly CertificateInput[]
  crl?: CertificateInput | readonly CertificateInput[]
  deny?: readonly DenyEntry[]
  /** the server's private key (PEM); give it with `cert` when the key changes */
  key?: string | Buffer
  /** the server's certificate chain (PEM) */
  cert?: string | Buffer
}

export interface ReloadOutcome {
  at: string
  ok: boolean
  /** what was replaced */
  changed: string[]
  error: string | null
}

export interface MtlsStatus {
  epoch: number
  mode: 'required' | 'optional'
  enforce: boolean
  anchors: Array<{ name: string, fingerprint256: string, notAfter: string }>
  /** configured CRLs by issuer */
  crls: Array<{ issuer: string, thisUpdate: string, nextUpdate: string | null, stale: boolean, revoked: number }>
  lastReload: ReloadOutcome | null
  /** the `watch` option's files and last outcome, or null without it */
  watch: WatchStatus | null
  /** CRLs fetched from allow-listed distribution points, or null without `crlFetch` */
  crlDistributionPoints: CrlSourceStatus[] | null
  /** OCSP cache and responder health, or null when OCSP is off. In hard-fail mode an unhealthy responder blocks new verifications. */
  ocsp: (OcspCheckerStatus & { mode: 'soft-fail' | 'hard-fail' | 'off' }) | null
  verifications: number
  /** requests judged by the plugin's onRequest hook, each counted once (rejection codes zero-filled) */
  requests: RequestCounts
  /** refusals by app.mtls.require() and requireBoundToken(), counted when sent (requests the hook had let through) */
  guards: GuardCounts
  /** verdicts reused without verifying: remembered on the request's TLS connection, or cached for a new connection's leaf */
  verdictReuses: { connection: number, cache: number }
  /** verdict cache sizes, and the number of connections (TLS sockets or HTTP/2 sessions) judged since start */
  caches: { positive: number, negative: number, learnedIntermediates: number, connectionsSeen: number }
}

export interface MtlsNamespace {
  /** A hook for onRequest or preHandler: 401 without an identity, 403 when the policy does not match. Throws FST_MTLS_* errors. */
  require: (policy?: Policy<FastifyRequest>) => onRequestAsyncHookHandler
  status: () => MtlsStatus
  /** The counters and gauges of status() as OpenTelemetry-shaped instruments (see toPrometheus()). */
  metrics: () => MtlsMetric[]
  /**
   * Replaces trust material (and the server's key/certificate) at once. Omitted fields
   * keep their value. Everything is checked first; on any problem the promise rejects
   * with FST_MTLS_RELOAD_INVALID and the old material stays in force. Reloads run one at a time.
   */
  reload: (input: ReloadInput) => Promise<ReloadOutcome>
  /**
   * A hook (preHandler, after the token was verified) that accepts only an access token bound to the
   * request's client certificate (RFC 8705 cnf["x5t#S256"]). `claims` reads the verified claims
   * (default: request.user, where @fastify/jwt puts them).
   */
  requireBoundToken: (options?: { claims?: (request: FastifyRequest) => unknown }) => onRequestAsyncHookHandler
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified client identity; null in optional mode without a certificate, on exempt routes, or when enforce: false let a failure through. */
    clientIdentity: ClientIdentity | null
  }
  interface FastifyInstance {
    mtls: MtlsNamespace
  }
  interface FastifyContextConfig {
    mtls?: RouteMtlsConfig
  }
}

/** Longest certificate header text (with its chain header) whose decoding is remembered: 1,024 of them at most. */
const MAX_DECODED_HEADER = 8192

/** A connection whose verdict is not remembered (or no longer holds). */
const UNJUDGED = Symbol('fastify-mtls-auth.unjudged')

/** Per-request state: the connection's outcome, for guards and the rejection log. */
const kOutcome = Symbol('fastify-mtls-auth.outcome')
/** The rejection an error stands for; logged when the error is actually sent. */
const kRejection = Symbol('fastify-mtls-auth.rejection')
/** Set on a guard's error: counted as a guard rejection when it is sent. */
const kGuard = Symbol('fastify-mtls-auth.guard')
/** Per-request: the first code enforce: false let through (the request is counted once, under it). */
const kWouldReject = Symbol('fastify-mtls-auth.would-reject')
/** Per-request: request.log carries the identity (the rejection line then leaves those fields to it). */
const kLogBound = Symbol('fastify-mtls-auth.log-bound')

type RequestWithOutcome = FastifyRequest & { [kOutcome]: Outcome | null, [kWouldReject]: RejectionCode | null, [kLogBound]: boolean }
type ErrorWithRejection = Error & { statusCode: number, [kRejection]?: MtlsRejection, [kGuard]?: true }

/** SHA-256 of a CRL's DER, hex uppercase, remembered per parsed CRL (a metrics label). */
const crlHashes = new WeakMap<Buffer, string>()
function crlHash (der: Buffer): string {
  let h = crlHashes.get(der)
  if (h === undefined) {
    h = createHash('sha256').update(der).digest('hex').toUpperCase()
    crlHashes.set(der, h)
  }
  return h
}

/** Log bindings of an identity, made once per identity (identities are cached with their verdict). */
const identityBindings = new WeakMap<ClientIdentity, Record<string, string>>()
function bindingsOf (identity: ClientIdentity): Record<string, string> {
  let b = identityBindings.get(identity)
  if (b === undefined) {
    b = { 'tls.client.hash.sha256': identity.fingerprint256.replace(/:/g, ''), 'tls.client.subject': identity.subject.rfc4514 }
    identityBindings.set(identity, b)
  }
  return b
}

/** A request's outcome, and what to say when it has no certificate. */
interface Judged { outcome: Outcome | undefined, missing: string }
type HeaderCounts = ReturnType<typeof headerCounts>

interface ConnectionState extends HandshakeMark {
  epoch: number
  outcome: Outcome | undefined
  /** TLS 1.2 can renegotiate a new client certificate on the same connection: see sameHandshake() */
  renegotiable: boolean
  tlsVerdictLogged: boolean
}

function fingerprints (ca: unknown): Map<string, string> {
  const out = new Map<string, string>()
  const items = Array.isArray(ca) ? ca : [ca]
  for (const item of items) {
    if (typeof item !== 'string' && !(item instanceof Uint8Array)) continue
    for (const der of toDerList(item, 'CERTIFICATE', 'https.ca')) {
      const c = getCertificate(der)
      out.set(c.fingerprint256, c.subject.rfc4514)
    }
  }
  return out
}

/** Checks the server; returns whether the TLS source can work (an HTTPS server that asks for certificates). */
function checkServer (fastify: FastifyInstance, material: TrustMaterial, forwarded: NormalisedPluginOptions['forwarded']): boolean {
  const server = fastify.server as unknown
  if (!(server instanceof TlsServer)) {
    if (forwarded !== undefined && forwarded.gate.policy === undefined) return false
    throw invalid('the server is not HTTPS, so there is no client certificate to read: create Fastify with https: { key, cert, ca, requestCert: true } (add http2: true for HTTP/2)')
  }
  const tlsServer = server as TlsServer & { requestCert?: boolean, rejectUnauthorized?: boolean, ca?: unknown }
  if (usesPfx(tlsServer)) {
    throw invalid('https.pfx is not supported: the CA certificates inside a .pfx become trusted for client certificates at the TLS layer, and a reload cannot rebuild it; convert it once (openssl pkcs12 -in server.pfx -nodes) and pass key, cert and ca as PEM')
  }
  if (tlsServer.requestCert !== true) {
    // behind a proxy that forwards certificates, the app's own TLS may not ask for any
    if (forwarded !== undefined && forwarded.gate.policy === undefined) return false
    throw invalid('the HTTPS server was created without requestCert: true, so clients are never asked for a certificate: set https: { requestCert: true, ca } when creating Fastify')
  }
  const anchors = new Map(material.trust.anchors.map((a) => [a.cert.fingerprint256, a.cert.subject.rfc4514]))
  if (tlsServer.ca === undefined) {
    fastify.log.warn('fastify-mtls-auth: the server has no https.ca, so clients are not told which CAs are acceptable; pass the plugin\'s ca bundle as https.ca too')
    return true
  }
  let serverCa: Map<string, string>
  try {
    serverCa = fingerprints(tlsServer.ca)
  } catch (err) {
    fastify.log.warn(`fastify-mtls-auth: could not read https.ca to compare it with the plugin's anchors: ${(err as Error).message}`)
    return true
  }
  const missing = [...anchors].filter(([fp]) => !serverCa.has(fp)).map(([, s]) => s)
  const extra = [...serverCa].filter(([fp]) => !anchors.has(fp)).map(([, s]) => s)
  if (missing.length > 0 || extra.length > 0) {
    fastify.log.warn({ 'mtls.anchors_not_in_https_ca': missing, 'mtls.https_ca_not_anchors': extra },
      'fastify-mtls-auth: https.ca and the plugin\'s ca differ; clients choose their certificate from the https.ca names, the plugin trusts only its own ca: pass one bundle to both')
  }
  return true
}

async function plugin (fastify: FastifyInstance, rawOptions: FastifyMtlsOptions): Promise<void> {
  const o: NormalisedPluginOptions = normaliseOptions(rawOptions)
  let material: TrustMaterial
  try {
    material = new TrustMaterial({ ca: o.ca, intermediates: o.intermediates, crl: o.crl, deny: o.deny })
  } catch (err) {
    throw invalid((err as Error).message)
  }
  const tlsSource = checkServer(fastify, material, o.forwarded)
  const fwd = o.forwarded
  if (fwd !== undefined && fwd.gate.wide.length > 0) {
    fastify.log.warn({ 'mtls.trusted_proxies': fwd.gate.wide }, 'fastify-mtls-auth: forwarded.trustedProxies has ranges wider than /24 (IPv4) or /64 (IPv6): every host in them can send any partner\'s certificate')
  }
  for (const w of material.warnings) fastify.log.warn(`fastify-mtls-auth: ${w}`)

  const labels = material.anchorLabels
  const onCheckError = (err: unknown): void => { fastify.log.error({ err }, 'fastify-mtls-auth: a policy check threw; counted as no match') }
  // labels that policies name: a reload must not drop one (every request to that route would become 403)
  const usedLabels = new Map<string, string>()
  const collectLabels = (policy: unknown, where: string, depth = 0): void => {
    if (typeof policy !== 'object' || policy === null || depth > 32) return
    const p = policy as { anchor?: unknown, anyOf?: unknown }
    for (const name of typeof p.anchor === 'string' ? [p.anchor] : Array.isArray(p.anchor) ? p.anchor : []) {
      if (typeof name === 'string' && !usedLabels.has(name)) usedLabels.set(name, where)
    }
    if (Array.isArray(p.anyOf)) for (const alt of p.anyOf) collectLabels(alt, where, depth + 1)
  }
  const compile = (policy: Policy<FastifyRequest>, where: string): CompiledPolicy<FastifyRequest> => {
    collectLabels(policy, where)
    try {
      // `anchor` may name only labelled anchors (with none labelled, no name is valid)
      const compiled = compilePolicy(policy, { anchorNames: labels, onCheckError })
      if (compiled.matchesNamesOnly && material.trust.anchors.length > 1) {
        fastify.log.warn(`fastify-mtls-auth: ${where} matches certificate names without \`anchor\` or \`issuerSpkiSha256\`, and ${material.trust.anchors.length} CAs are trusted: any of them can issue a certificate with those names`)
      }
      return compiled
    } catch (err) {
      if (err instanceof PolicyError) throw invalid(where === 'policy' ? err.message : `${where}: ${err.message}`)
      throw err
    }
  }
  const globalPolicy = o.policy === undefined ? undefined : compile(o.policy, 'policy')
  const proxyPolicy = fwd?.gate.policy === undefined ? undefined : compile(fwd.gate.policy, 'forwarded.trustedProxies.policy')
  const forwardedNames = fwd === undefined ? [] : [fwd.header, fwd.chainHeader, fwd.verifyHeader?.name].filter((n): n is string => n !== undefined)

  const crlFetcher: CrlFetcher | undefined = o.crlFetch === undefined
    ? undefined
    : new CrlFetcher(o.crlFetch, {
      // every new CRL can change verdicts: judge every connection again
      onNewCrl: (crl, url) => {
        auth.bumpEpoch()
        fastify.log.info({ 'mtls.crl_url': url, 'mtls.crl_issuer': crl.issuer.rfc4514 }, 'fastify-mtls-auth: new CRL from a distribution point')
      },
      // only CRLs that verify with a CA we know are held: a forged "newer" CRL must not displace the real one
      accept: (crl): string | undefined => {
        const m: TrustMaterial = auth.trust
        const known = [...m.trust.anchors.map((a) => a.cert), ...m.configured.all, ...auth.learned.bySubjectKey(crl.issuer.key)]
        return known.some((c) => c.subject.key === crl.issuer.key && crlSignedBy(crl, c)) ? undefined : 'the CRL does not verify with any known CA certificate'
      },
      log: fastify.log
    })
  const ocsp = o.ocsp === undefined || o.ocsp.mode === 'off'
    ? undefined
    : { checker: new OcspChecker({ ...o.ocsp, clockToleranceSec: o.clockToleranceSec, minRsaBits: o.minRsaBits }), softFail: o.ocsp.mode === 'soft-fail' }
  if (crlFetcher !== undefined) fastify.addHook('onClose', async () => { crlFetcher.close() })

  const auth: Authenticator = new Authenticator(material, {
    revocationSoftFail: o.crlSoftFail,
    purpose: 'clientAuth',
    requireClientAuthEku: o.requireClientAuthEku,
    maxChainLength: o.maxChainLength,
    minRsaBits: o.minRsaBits,
    toleranceMs: o.clockToleranceSec * 1000,
    maxVerdictAgeMs: o.maxVerdictAgeMs
  }, { ...(crlFetcher === undefined ? {} : { crlFetcher }), ...(ocsp === undefined ? {} : { ocsp }) })
  const connections = new WeakMap<object, ConnectionState>()
  let connectionCount = 0
  const rejectionLog = new RejectionLog(o.rejectionLogLimit)
  const counters = new MtlsCounters()
  const routePolicies = new WeakMap<object, CompiledPolicy<FastifyRequest>>()
  const anyIdentity = compile({}, 'route config')

  /** `route` names the route in messages (read only when one is needed) */
  const routePolicy = (config: unknown, route: { method: unknown, url: unknown }): CompiledPolicy<FastifyRequest> | false | undefined => {
    if (config === undefined) return undefined
    if (config === false) return false
    if (config === true) return anyIdentity
    if (typeof config !== 'object' || config === null) throw invalid(`route ${route.method} ${route.url}: config.mtls must be a policy object, true or false`)
    let compiled = routePolicies.get(config)
    if (compiled === undefined) {
      compiled = compile(config as Policy<FastifyRequest>, `route ${route.method} ${route.url}`)
      routePolicies.set(config, compiled)
    }
    return compiled
  }

  fastify.addHook('onRoute', (route) => {
    routePolicy((route.config as { mtls?: unknown } | undefined)?.mtls, route)
  })

  async function safely (what: string, request: FastifyRequest, fn: () => void | Promise<void>): Promise<void> {
    try {
      await fn()
    } catch (err) {
      request.log.error({ err }, `fastify-mtls-auth: ${what} threw; the outcome is unchanged`)
    }
  }

  async function report (request: FastifyRequest, rejection: MtlsRejection): Promise<void> {
    rejectionLog.write(request.log, { code: rejection.code, reason: rejection.reason, certificate: rejection.certificate, address: request.raw.socket?.remoteAddress, enforced: rejection.enforced, logBound: (request as RequestWithOutcome)[kLogBound] })
    const onRejected = o.onRejected
    if (onRejected !== undefined) await safely('onRejected', request, () => onRejected(rejection, request))
  }

  /**
   * Throws the rejection's error, or, with enforce: false, reports it and returns.
   * An enforced rejection is reported when its error is sent (onError): a guard that
   * @fastify/auth overrules with another strategy leaves no trace in the reply or the log.
   */
  async function reject (request: FastifyRequest, code: RejectionCode, reason: string, identity: ClientIdentity | null, guard = false): Promise<void> {
    const error = rejectionError(code) as ErrorWithRejection
    const leaf = (request as RequestWithOutcome)[kOutcome]?.leaf
    const rejection: MtlsRejection = {
      code,
      statusCode: error.statusCode,
      message: error.message,
      reason,
      identity,
      certificate: leaf === undefined ? null : summarise(leaf),
      enforced: o.enforce
    }
    if (!o.enforce) {
      if (guard) counters.guardWouldReject[code]++
      else if ((request as RequestWithOutcome)[kWouldReject] === null) {
        // one request, one count: a forwarded header refused from an untrusted peer may be followed by a missing certificate
        (request as RequestWithOutcome)[kWouldReject] = code
        counters.wouldReject[code]++
      }
      await report(request, rejection)
      return
    }
    error[kRejection] = rejection
    // the hook's refusal is final; a guard's is counted when sent (@fastify/auth may try another strategy)
    if (guard) error[kGuard] = true
    else counters.rejected[code]++
    throw error
  }

  fastify.addHook('onError', async (request, reply, error) => {
    const rejection = (error as ErrorWithRejection)[kRejection]
    if (rejection === undefined) return
    if ((error as ErrorWithRejection)[kGuard] === true) counters.guardRejected[rejection.code]++
    await report(request, rejection)
    // RFC 6750: a refused bearer token is answered with its own challenge
    if (rejection.code === 'FST_MTLS_TOKEN_NOT_BOUND') reply.header('www-authenticate', 'Bearer error="invalid_token", error_description="the token is not bound to this client certificate"')
    else if (o.wwwAuthenticate !== undefined && rejection.statusCode === 401) reply.header('www-authenticate', o.wwwAuthenticate)
  })

  /**
   * The verdict remembered on the connection while it holds (undefined: no certificate), or
   * UNJUDGED when the connection must be judged (first request, new trust epoch, verdict
   * expired, another leaf after a TLS 1.2 renegotiation).
   */
  function remembered (socket: TLSSocket, state: ConnectionState | undefined): Outcome | undefined | typeof UNJUDGED {
    if (state === undefined || state.epoch !== auth.epoch) return UNJUDGED
    if (state.renegotiable && !sameHandshake(socket, state)) return UNJUDGED
    const out = state.outcome
    return out === undefined || out.kind === 'fail' || out.validUntil > Date.now() ? out : UNJUDGED
  }

  async function connectionOutcome (request: FastifyRequest): Promise<Outcome | undefined> {
    const peer = tlsPeer(request)
    if (peer === undefined) return undefined
    let state = connections.get(peer.connection)
    const known = remembered(peer.socket, state)
    if (known !== UNJUDGED) return known
    // the leaf first, the chain only when no cached verdict answers for it: on a new connection
    // (Node 20, OpenSSL 3.0, P-256; npm run bench:peer-read) the leaf costs about 0.07 ms (0.05 ms
    // resumed) and getPeerCertificate(true) about 0.6 ms after a full handshake
    const renegotiable = state?.renegotiable ?? peer.socket.getProtocol() !== 'TLSv1.3'
    // before the leaf: a renegotiation finishing while an online check is awaited below then
    // shows as a newer handshake on the next request
    const finished = renegotiable ? peer.socket.getFinished() : undefined
    const fingerprint = leafFingerprint(peer.socket)
    // the epoch the verdict is made under: if trust changes during an online check, the
    // connection is judged again on its next request
    const epoch = auth.epoch
    let outcome: Outcome | undefined
    if (fingerprint !== undefined) {
      outcome = auth.cached(fingerprint)
      if (outcome !== undefined) counters.cacheHits++
      else {
        // there was a leaf a moment ago: the chain starts with it
        const chain = presentedChain(peer.socket, MAX_PRESENTED + 1) as PresentedChain
        outcome = await auth.authenticate(chain.fingerprint256, chain.ders)
      }
    }
    if (outcome?.kind === 'ok') noteVerdict(request, outcome)
    if (state === undefined) {
      connectionCount++
      state = { epoch, fingerprint, finished, outcome, renegotiable, tlsVerdictLogged: false }
      connections.set(peer.connection, state)
    } else {
      state.epoch = epoch
      state.fingerprint = fingerprint
      state.finished = finished
      state.outcome = outcome
    }
    if (!state.tlsVerdictLogged) {
      state.tlsVerdictLogged = true
      const tlsOk = peer.socket.authorized
      // no certificate while the TLS layer says authorized: a TLS 1.3 session resumed without one
      if (outcome === undefined ? tlsOk : tlsOk !== (outcome.kind === 'ok')) {
        request.log.info({ 'tls.client.hash.sha256': fingerprint?.replace(/:/g, ''), 'client.address': request.raw.socket?.remoteAddress, 'mtls.tls_authorized': tlsOk, 'mtls.tls_error': String(peer.socket.authorizationError ?? ''), 'mtls.verdict': outcome === undefined ? 'no certificate' : outcome.kind === 'ok' ? 'accepted' : outcome.code },
          'fastify-mtls-auth: the TLS layer and the verifier disagree about this client certificate (the verifier decides)')
      }
    }
    return outcome
  }

  function noted (request: FastifyRequest, outcome: Outcome): Outcome {
    if (outcome.kind === 'ok') noteVerdict(request, outcome)
    return outcome
  }

  // warnings are written once per verdict and expiry warnings once per certificate (bounded)
  const warnedVerdicts = new WeakSet<object>()
  const warnedExpiry = new LruCache<string, true>(1024)
  function noteVerdict (request: FastifyRequest, outcome: Extract<Outcome, { kind: 'ok' }>): void {
    if (outcome.warnings.length > 0 && !warnedVerdicts.has(outcome)) {
      warnedVerdicts.add(outcome)
      for (const w of outcome.warnings) request.log.warn({ 'mtls.reason': w, 'tls.client.subject': outcome.leaf.subject.rfc4514, 'tls.client.hash.sha256': outcome.leaf.fingerprint256.replace(/:/g, '') }, 'fastify-mtls-auth: revocation status unknown, accepted (soft-fail)')
    }
    const leaf = outcome.leaf
    if (o.expiryWarningMs > 0 && leaf.notAfter.getTime() < Date.now() + o.expiryWarningMs && warnedExpiry.get(leaf.fingerprint256) === undefined) {
      warnedExpiry.set(leaf.fingerprint256, true)
      request.log.warn({ 'tls.client.subject': leaf.subject.rfc4514, 'tls.client.hash.sha256': leaf.fingerprint256.replace(/:/g, ''), 'tls.client.not_after': leaf.notAfter.toISOString() }, 'fastify-mtls-auth: a client certificate expires soon')
    }
  }

  /**
   * Where this request's certificate comes from: a header from a trusted proxy, or the TLS
   * connection. A trusted proxy's connection never yields a TLS identity; the headers from
   * anyone else are refused, never read.
   */
  function requestOutcome (request: FastifyRequest): Judged | Promise<Judged> {
    if (fwd === undefined) return fromTls(request)
    const counts = headerCounts(request, forwardedNames)
    // a socket reports no address when it is a Unix socket, and also once a TCP client has gone:
    // only a server listening on a path has Unix peers
    const address = normaliseAddress(request.raw.socket?.remoteAddress)
    if ((address !== undefined || typeof fastify.server.address() === 'string') && fwd.gate.byAddress?.(address) === true) return fromTrustedProxy(request, counts)
    if (proxyPolicy !== undefined) return trustedByCertificate(request, counts, proxyPolicy)
    return fromUntrusted(request, counts)
  }

  /** A proxy trusted by its client certificate (forwarded.trustedProxies.policy). */
  async function trustedByCertificate (request: FastifyRequest, counts: HeaderCounts, policy: CompiledPolicy<FastifyRequest>): Promise<Judged> {
    const proxy = await connectionOutcome(request)
    if (proxy?.kind === 'ok' && await policy(proxy.identity, request)) return await fromTrustedProxy(request, counts)
    return await fromUntrusted(request, counts)
  }

  function fromTrustedProxy (request: FastifyRequest, counts: HeaderCounts): Judged | Promise<Judged> {
    const f = fwd as NonNullable<typeof fwd>
    // past Node's header-line limit the rest is dropped silently: a repeat could be among them
    const lines = request.raw.rawHeaders.length / 2
    if (lines >= MAX_HEADER_LINES) {
      return reject(request, 'FST_MTLS_CERT_MALFORMED', `${lines} header lines: too many to be sure the certificate header appears once`, null)
        .then(() => ({ outcome: undefined, missing: 'too many header lines' }))
    }
    // RFC 9440 lets Client-Cert-Chain span several lines (a list); every other header must appear once
    const repeated = forwardedNames.find((n) => n !== f.chainHeader && (counts.get(n)?.count ?? 0) > 1)
    if (repeated !== undefined) {
      // reached only with enforce: false: a repeated header never yields an identity
      return reject(request, 'FST_MTLS_CERT_MALFORMED', `header ${repeated} appears ${counts.get(repeated)?.count} times`, null)
        .then(() => ({ outcome: undefined, missing: `header ${repeated} appears more than once` }))
    }
    const missing = 'the trusted proxy forwarded no client certificate'
    const outcome = forwardedOutcome(request, counts)
    return outcome instanceof Promise ? outcome.then((o) => ({ outcome: o, missing })) : { outcome, missing }
  }

  /** Headers from anyone but a trusted proxy are refused, never read; the TLS source still applies. */
  function fromUntrusted (request: FastifyRequest, counts: HeaderCounts): Judged | Promise<Judged> {
    const sent = forwardedNames.filter((n) => counts.has(n))
    if (sent.length === 0) return fromTls(request)
    return reject(request, 'FST_MTLS_FORWARDED_UNTRUSTED', `${sent.join(', ')} sent by ${String(request.raw.socket?.remoteAddress)}, which is not a trusted proxy`, null)
      .then(() => fromTls(request))
  }

  function fromTls (request: FastifyRequest): Judged | Promise<Judged> {
    if (!tlsSource) return { outcome: undefined, missing: 'no forwarded client certificate (and the server does not ask for one itself)' }
    return connectionOutcome(request).then((outcome) => ({ outcome, missing: 'no client certificate was presented' }))
  }

  // Decoded certificate headers (the verdict is still taken per request): a proxy sends the same
  // text for every request of a client, and decoding it costs more than the rest of the request
  // (about 15 µs for an escaped PEM leaf, 20 µs with the fingerprint). Keyed by a number mixed
  // from the text's length and last 64 characters: hashing the whole text would cost about 2 µs,
  // and even a 64-character slice is a new string V8 hashes again on every request. A hit must
  // equal the whole text, so texts that collide (anyone can make some) only take turns: a cost
  // in decoding, never another client's identity.
  const decodedHeaders = new LruCache<number, { text: string, fingerprint: string, cacheKey: string, chain: readonly Buffer[] }>(1024)
  const headerKey = (text: string): number => {
    let h = text.length
    for (let i = Math.max(0, text.length - 64); i < text.length; i++) h = (Math.imul(h, 31) + text.charCodeAt(i)) | 0
    return h
  }

  /** The verdict on the forwarded certificate: without a promise when its header was decoded before and its verdict is cached. */
  function forwardedOutcome (request: FastifyRequest, counts: HeaderCounts): Outcome | undefined | Promise<Outcome | undefined> {
    const f = fwd as NonNullable<typeof fwd>
    const value = counts.get(f.header)?.values[0]
    if (value === undefined) return undefined
    const verified = f.verifyHeader === undefined ? undefined : counts.get(f.verifyHeader.name)?.values[0]
    if (f.verifyHeader !== undefined && verified !== f.verifyHeader.value) {
      request.log.info({ 'mtls.verify_header': verified ?? null }, 'fastify-mtls-auth: the proxy did not report a verified client certificate; the forwarded one is ignored')
      return undefined
    }
    const chainValue = f.chainHeader === undefined ? undefined : counts.get(f.chainHeader)?.values.join(', ')
    // a header value cannot hold a line break, so '\n' keeps the two apart
    const text = chainValue === undefined ? value : value + '\n' + chainValue
    const memoKey = headerKey(text)
    let decoded = decodedHeaders.get(memoKey)
    if (decoded === undefined || decoded.text !== text) {
      let cert
      try {
        cert = parseForwarded(f.format, value, { xfccElement: f.xfccElement, ...(chainValue === undefined ? {} : { chainValue }) })
      } catch (err) {
        if (!(err instanceof MalformedHeader)) throw err
        return reject(request, 'FST_MTLS_CERT_MALFORMED', `${f.header}: ${err.message}`, null).then(() => undefined)
      }
      if (cert === undefined) return undefined
      const fingerprint = sha256Fingerprint(cert.leaf)
      decoded = { text, fingerprint, cacheKey: forwardedCacheKey(fingerprint), chain: [cert.leaf, ...cert.chain] }
      if (text.length <= MAX_DECODED_HEADER) decodedHeaders.set(memoKey, decoded)
    }
    const outcome = auth.cached(decoded.cacheKey) ?? auth.authenticate(decoded.fingerprint, decoded.chain, 'forwarded')
    if (outcome instanceof Promise) return outcome.then((o) => noted(request, o))
    return noted(request, outcome)
  }

  fastify.decorateRequest('clientIdentity', null)
  fastify.decorateRequest(kOutcome, null)
  fastify.decorateRequest(kWouldReject, null)
  fastify.decorateRequest(kLogBound, false)

  // ---- rotation

  let current = { ca: o.ca, intermediates: o.intermediates, crl: o.crl, deny: o.deny }
  let lastReload: ReloadOutcome | null = null
  let reloads: Promise<void> = Promise.resolve()
  const RELOAD_KEYS = new Set(['ca', 'intermediates', 'crl', 'deny', 'key', 'cert'])

  async function reloadNow (input: ReloadInput): Promise<ReloadOutcome> {
    const at = new Date().toISOString()
    const changed = input !== null && typeof input === 'object' ? Object.keys(input).filter((k) => (input as Record<string, unknown>)[k] !== undefined) : []
    const fail = (message: string): never => {
      lastReload = { at, ok: false, changed, error: message }
      fastify.log.error({ 'mtls.reload': changed }, `fastify-mtls-auth: reload refused, the old trust material stays in force: ${message}`)
      throw new MtlsReloadInvalidError(message)
    }
    if (input === null || typeof input !== 'object') return fail('reload() takes an object such as { ca, crl }')
    const unknown = Object.keys(input).filter((k) => !RELOAD_KEYS.has(k))
    if (unknown.length > 0) return fail(`unknown field ${JSON.stringify(unknown[0])} (reload takes ${[...RELOAD_KEYS].join(', ')})`)
    if (changed.length === 0) return fail('nothing to reload: give at least one of ca, intermediates, crl, deny, key, cert')
    const empty = changed.find((k) => (input as Record<string, unknown>)[k] === null)
    if (empty !== undefined) return fail(`${empty} is null: give the new value, or leave the field out to keep the current one`)
    if (input.deny !== undefined && !Array.isArray(input.deny)) return fail('deny must be an array')
    const list = <T>(x: T | readonly T[] | undefined, keep: readonly T[]): readonly T[] => x === undefined ? keep : Array.isArray(x) ? [...x as readonly T[]] : [x as T]
    const next = {
      ca: input.ca ?? current.ca,
      intermediates: list(input.intermediates, current.intermediates),
      crl: list(input.crl, current.crl),
      deny: input.deny === undefined ? current.deny : [...input.deny]
    }
    let material: TrustMaterial
    try {
      material = new TrustMaterial(next)
    } catch (err) {
      return fail((err as Error).message)
    }
    const newLabels = new Set(material.anchorLabels)
    for (const [label, where] of usedLabels) {
      if (!newLabels.has(label)) return fail(`the new ca has no anchor labelled "${label}", which ${where} names; keep the label (or change the policy first)`)
    }
    const server = fastify.server as unknown as TlsServer
    const tlsChange = {
      ...(input.key === undefined ? {} : { key: input.key }),
      ...(input.cert === undefined ? {} : { cert: input.cert }),
      ...(input.ca === undefined ? {} : { ca: material.trust.anchors.map((a) => toPem(a.cert.der)).join('') })
    }
    let contextChange: ReturnType<typeof contextOptions> | undefined
    if (Object.keys(tlsChange).length > 0) {
      contextChange = contextOptions(server, tlsChange)
      try {
        checkContext(contextChange, tlsChange)
      } catch (err) {
        return fail((err as Error).message)
      }
    }
    // all checked: swap the trust, then the TLS context (a handshake in between is judged by the new trust)
    auth.replace(material)
    current = next
    for (const w of material.warnings) fastify.log.warn(`fastify-mtls-auth: ${w}`)
    if (contextChange !== undefined) applyContext(server, contextChange, o.rotateTicketKeysOnReload)
    else if (o.rotateTicketKeysOnReload) server.setTicketKeys(randomBytes(48))
    lastReload = { at, ok: true, changed, error: null }
    fastify.log.info({ 'mtls.reload': changed, 'mtls.epoch': auth.epoch }, 'fastify-mtls-auth: trust material reloaded')
    warnExpiring()
    return lastReload
  }

  function warnExpiring (): void {
    if (o.expiryWarningMs === 0) return
    const soon = Date.now() + o.expiryWarningMs
    for (const a of auth.trust.trust.anchors) {
      if (a.cert.notAfter.getTime() < soon) fastify.log.warn({ 'mtls.anchor': a.info.name, 'mtls.anchor_not_after': a.cert.notAfter.toISOString() }, 'fastify-mtls-auth: a trust anchor expires soon')
    }
    const cert = (fastify.server as unknown as { cert?: unknown }).cert
    if (typeof cert === 'string' || cert instanceof Uint8Array) {
      try {
        const leaf = new X509Certificate(cert as string | Buffer)
        if (Date.parse(leaf.validTo) < soon) fastify.log.warn({ 'tls.server.subject': leaf.subject, 'tls.server.not_after': new Date(leaf.validTo).toISOString() }, 'fastify-mtls-auth: the server certificate expires soon')
      } catch {
        // the server's own certificate is OpenSSL's business; nothing to warn about here
      }
    }
  }
  warnExpiring()

  const watcher = o.watch === undefined ? undefined : new FileWatcher(o.watch, { reload: async (input) => await namespace.reload(input as ReloadInput), log: fastify.log })
  if (watcher !== undefined) {
    fastify.addHook('onReady', async () => { await watcher.start() })
    fastify.addHook('onClose', async () => { watcher.close() })
  }

  /**
   * The route's policy on every request. `request.routeOptions` is a getter that builds and
   * freezes a new object each time; the route's config is read instead from the route context
   * Fastify keeps on the request (its `fastify.context` symbol), once that context's config has
   * been seen to be the very object routeOptions reports (checked once per route). Without that
   * symbol, or for a config compiled here for the first time, routeOptions is read.
   */
  function routePolicyAtRequest (request: FastifyRequest): CompiledPolicy<FastifyRequest> | false | undefined {
    const mtls = (routeConfigOf(request) as { mtls?: unknown } | undefined)?.mtls
    if (mtls === undefined) return undefined
    if (mtls === false) return false
    if (mtls === true) return anyIdentity
    return (typeof mtls === 'object' && mtls !== null ? routePolicies.get(mtls) : undefined) ?? routePolicyFirstTime(request)
  }

  let contextSymbol: symbol | null | undefined
  const checkedContexts = new WeakSet<object>()
  function routeConfigOf (request: FastifyRequest): unknown {
    if (contextSymbol === undefined) contextSymbol = Object.getOwnPropertySymbols(request).find((sym) => sym.description === 'fastify.context') ?? null
    if (contextSymbol !== null) {
      const context = (request as unknown as Record<symbol, { config?: unknown } | undefined>)[contextSymbol]
      if (typeof context === 'object' && context !== null) {
        if (checkedContexts.has(context)) return context.config
        if (context.config === request.routeOptions.config) {
          checkedContexts.add(context)
          return context.config
        }
      }
      // not what it was taken for: routeOptions from now on
      contextSymbol = null
    }
    return request.routeOptions.config
  }

  /** Route config of a route registered before the plugin is compiled on its first request. */
  function routePolicyFirstTime (request: FastifyRequest): CompiledPolicy<FastifyRequest> | false | undefined {
    try {
      // routeOptions is a getter that builds a new object: read once
      const options = request.routeOptions
      return routePolicy((options.config as { mtls?: unknown } | undefined)?.mtls, options)
    } catch (err) {
      // the detail may quote the policy: it goes to the log, never to the client
      request.log.error({ err }, 'fastify-mtls-auth: invalid config.mtls on this route')
      throw invalid('this route\'s config.mtls is invalid (the server log says why)')
    }
  }

  // Binding the identity to request.log. Fastify gives each request a Pino child of the server's
  // logger, and a child of that child makes every request's logger a prototype: V8 then pays for
  // it on every call (measured 6-7 µs a request, 10-13 µs with one line logged), so the fields are
  // added to the request's own logger in place (setBindings(), about 1 µs) -- but only when that
  // logger was made for this request. Fastify binds the request's id to it last, so Pino's
  // serialised bindings (its `pino.chindings` string) end with `,"reqId":"<id>"`: checking that
  // costs 0.25 µs, where reading bindings() back (a JSON.parse) costs 3 µs. A logger that does not
  // end so may be shared with other requests (a childLoggerFactory returning one logger, or a
  // pool; not Pino; an id that needs escaping), and setBindings() there would put this client on
  // other requests' lines: it gets a child instead. The server logger is never bound.
  const requestIdLabel = (fastify.initialConfig as { requestIdLogLabel?: string }).requestIdLogLabel ?? 'reqId'
  const idSuffix = `,${JSON.stringify(requestIdLabel)}:"`
  const chindings = Object.getOwnPropertySymbols(fastify.log).find((sym) => sym.description === 'pino.chindings')
  type BindableLogger = FastifyBaseLogger & { setBindings?: (bindings: Record<string, unknown>) => void } & Record<symbol, unknown>
  function ownLogger (log: BindableLogger, id: unknown): boolean {
    if (chindings === undefined || log === fastify.log || typeof log.setBindings !== 'function' || typeof id !== 'string') return false
    const serialised = log[chindings]
    return typeof serialised === 'string' && serialised.endsWith(idSuffix + id + '"')
  }
  function bindLog (request: FastifyRequest, reply: FastifyReply, identity: ClientIdentity): void {
    const log = request.log as BindableLogger
    ;(request as RequestWithOutcome)[kLogBound] = true
    if (ownLogger(log, request.id)) {
      log.setBindings?.(bindingsOf(identity))
      return
    }
    const child = log.child(bindingsOf(identity))
    request.log = child
    reply.log = child
  }

  /** The verdict remembered on the request's TLS connection (only source without `forwarded`), without waiting or allocating. */
  function rememberedForRequest (request: FastifyRequest): Outcome | undefined | typeof UNJUDGED {
    const socket = fwd === undefined ? tlsSocketOf(request) : undefined
    return socket === undefined ? UNJUDGED : remembered(socket, connections.get(tlsConnectionOf(request, socket)))
  }

  // Every request passes here. The hook takes Fastify's `done` callback rather than returning a
  // promise: the common case (a kept-alive connection whose verdict holds, policies without
  // async `check` functions, no onAuthenticated) finishes synchronously, without a promise or a
  // microtask; anything that has to wait continues as a promise handed to `done`.
  fastify.addHook('onRequest', function mtlsOnRequest (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void {
    let pending: Promise<void> | undefined
    try {
      const route = routePolicyAtRequest(request)
      if (route === false) {
        counters.exempt++
      } else {
        const known = rememberedForRequest(request)
        if (known === UNJUDGED) {
          // a forwarded certificate seen before is judged without a promise too
          const judged = requestOutcome(request)
          pending = judged instanceof Promise
            ? judged.then(({ outcome, missing }) => authorise(request, reply, route, outcome, missing))
            : authorise(request, reply, route, judged.outcome, judged.missing)
        } else {
          counters.connectionReuses++
          pending = authorise(request, reply, route, known, 'no client certificate was presented')
        }
      }
    } catch (err) {
      failed(done, err)
      return
    }
    if (pending === undefined) done()
    else pending.then(() => { done() }, (err: unknown) => { failed(done, err) })
  })

  /** Fastify's `done` lets a request through on a falsy error: whatever was thrown, the request stops here. */
  function failed (done: (err?: Error) => void, err: unknown): void {
    done(err instanceof Error ? err : new Error(`fastify-mtls-auth: the request was refused after a failure that carried no error (${String(err)})`))
  }

  /** The outcome against the policies: undefined when finished, or a promise of the rest. */
  function authorise (request: FastifyRequest, reply: FastifyReply, route: CompiledPolicy<FastifyRequest> | undefined, outcome: Outcome | undefined, missing: string): Promise<void> | undefined {
    ;(request as RequestWithOutcome)[kOutcome] = outcome ?? null
    if (outcome === undefined) {
      if (o.mode === 'required' || route !== undefined) return reject(request, 'FST_MTLS_CERT_MISSING', missing, null)
      if ((request as RequestWithOutcome)[kWouldReject] === null) counters.withoutCertificate++
      return undefined
    }
    if (outcome.kind === 'fail') return reject(request, outcome.code, outcome.reason, null)
    const identity = outcome.identity
    request.clientIdentity = identity
    // a policy answers with a boolean, or a promise when it has an async `check`
    const globalAnswer = globalPolicy?.(identity, request) ?? true
    if (globalAnswer === true) return routeStep(request, reply, route, identity)
    if (globalAnswer === false) return reject(request, 'FST_MTLS_FORBIDDEN', 'the global policy does not match', identity)
    return globalAnswer.then((ok) => ok ? routeStep(request, reply, route, identity) : reject(request, 'FST_MTLS_FORBIDDEN', 'the global policy does not match', identity))
  }

  function routeStep (request: FastifyRequest, reply: FastifyReply, route: CompiledPolicy<FastifyRequest> | undefined, identity: ClientIdentity): Promise<void> | undefined {
    const routeAnswer = route?.(identity, request) ?? true
    if (routeAnswer === true) return accepted(request, reply, identity)
    const refuse = (): Promise<void> => reject(request, 'FST_MTLS_FORBIDDEN', `the policy of route ${request.routeOptions.method} ${request.routeOptions.url} does not match`, identity)
    if (routeAnswer === false) return refuse()
    return routeAnswer.then((ok) => ok ? accepted(request, reply, identity) : refuse())
  }

  function accepted (request: FastifyRequest, reply: FastifyReply, identity: ClientIdentity): Promise<void> | undefined {
    if ((request as RequestWithOutcome)[kWouldReject] === null) counters.accepted++
    // every later line of this request, the handler's and Fastify's own included, names the client
    if (o.logIdentity) bindLog(request, reply, identity)
    const onAuthenticated = o.onAuthenticated
    return onAuthenticated === undefined ? undefined : safely('onAuthenticated', request, () => onAuthenticated(identity, request))
  }

  const namespace: MtlsNamespace = {
    require (policy?: Policy<FastifyRequest>) {
      const compiled = policy === undefined ? anyIdentity : compile(policy, 'mtls.require()')
      return async function mtlsGuard (this: FastifyInstance, request: FastifyRequest): Promise<void> {
        // undefined, not null, where the plugin's hook never ran (a guard used outside the plugin's scope)
        const identity = request.clientIdentity
        if (identity === null || identity === undefined) {
          await reject(request, 'FST_MTLS_CERT_MISSING', 'a guarded route was called without a verified client certificate', null, true)
          return
        }
        const answer = compiled(identity, request)
        if (typeof answer === 'boolean' ? !answer : !await answer) {
          await reject(request, 'FST_MTLS_FORBIDDEN', `the guard of route ${request.routeOptions.method} ${request.routeOptions.url} does not match`, identity, true)
        }
      }
    },
    requireBoundToken (options?: { claims?: (request: FastifyRequest) => unknown }) {
      if (options !== undefined && (typeof options !== 'object' || options === null)) throw invalid('requireBoundToken(options): options must be an object such as { claims: (request) => request.user }')
      const claimsOf = options?.claims ?? ((request: FastifyRequest) => (request as FastifyRequest & { user?: unknown }).user)
      if (typeof claimsOf !== 'function') throw invalid('requireBoundToken: claims must be a function returning the verified token claims')
      return async function mtlsBoundToken (this: FastifyInstance, request: FastifyRequest): Promise<void> {
        const identity = request.clientIdentity
        if (identity === null || identity === undefined) {
          await reject(request, 'FST_MTLS_CERT_MISSING', 'a certificate-bound token needs a verified client certificate', null, true)
          return
        }
        let claims: unknown
        try {
          claims = claimsOf(request)
        } catch (err) {
          claims = undefined
          request.log.error({ err }, 'fastify-mtls-auth: the claims getter threw; treated as no claims')
        }
        const why = tokenBindingError(claims, identity)
        if (why !== undefined) await reject(request, 'FST_MTLS_TOKEN_NOT_BOUND', why, identity, true)
      }
    },
    status () {
      const m = auth.trust
      const now = Date.now()
      const anchors = m.trust.anchors.map((a) => ({ name: a.info.name, fingerprint256: a.info.fingerprint256, notAfter: a.cert.notAfter.toISOString() }))
      const crls = m.crls.map((c) => ({
        issuer: c.issuer.rfc4514,
        thisUpdate: c.thisUpdate.toISOString(),
        nextUpdate: c.nextUpdate?.toISOString() ?? null,
        stale: c.nextUpdate === undefined || c.nextUpdate.getTime() + o.clockToleranceSec * 1000 < now,
        revoked: c.revoked.size
      }))
      return {
        epoch: auth.epoch,
        mode: o.mode,
        enforce: o.enforce,
        anchors,
        crls,
        lastReload,
        watch: watcher === undefined ? null : { ...watcher.state, files: [...watcher.state.files] },
        crlDistributionPoints: crlFetcher?.status() ?? null,
        ocsp: ocsp === undefined ? null : { mode: o.ocsp?.mode ?? 'off', ...ocsp.checker.status() },
        verifications: auth.verifications,
        requests: {
          accepted: counters.accepted,
          withoutCertificate: counters.withoutCertificate,
          exempt: counters.exempt,
          rejected: { ...counters.rejected },
          wouldReject: { ...counters.wouldReject }
        },
        guards: { rejected: { ...counters.guardRejected }, wouldReject: { ...counters.guardWouldReject } },
        verdictReuses: { connection: counters.connectionReuses, cache: counters.cacheHits },
        caches: { ...auth.cacheSizes, connectionsSeen: connectionCount }
      }
    },
    metrics () {
      const m = auth.trust
      return buildMetrics({
        counters,
        verifications: auth.verifications,
        connectionsSeen: connectionCount,
        caches: auth.cacheSizes,
        epoch: auth.epoch,
        anchors: m.trust.anchors.map((a) => ({ name: a.info.name, fingerprint: a.info.fingerprint256.replace(/:/g, ''), notAfter: a.cert.notAfter.toISOString() })),
        crls: m.crls.map((c) => ({ issuer: c.issuer.rfc4514, fingerprint: crlHash(c.der), nextUpdate: c.nextUpdate?.toISOString() ?? null })),
        now: Date.now()
      })
    },
    reload (input: ReloadInput) {
      const run = reloads.then(() => reloadNow(input))
      reloads = run.then(() => undefined, () => undefined)
      return run
    }
  }
  fastify.decorate('mtls', namespace)
}

export const fastifyMtls = fp(plugin, { fastify: '5.x', name: 'fastify-mtls-auth' })
