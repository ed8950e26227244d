// The client certificate as the TLS layer received it, for HTTP/1.1 and HTTP/2.
// Node 20's getPeerX509Certificate() deletes the leaf from OpenSSL's peer chain on the
// server side, after which getPeerCertificate(true) returns the leaf alone (nodejs/node
// #65579 describes the mechanism). So the plugin calls it only on a resumed session, which has
// no chain to lose; the chain is read with getPeerCertificate(true), once per connection and only
// when no cached verdict answers for the leaf, and after a full handshake the leaf alone comes
// from the serialised session (leafFingerprint below): the plugin must not change what the
// application's own code reads from the socket.
import type { TLSSocket } from 'node:tls'
import type { FastifyRequest } from 'fastify'
import { sha256Fingerprint } from '../crypto.js'
import { LruCache } from '../cache.js'

export interface TlsPeer {
  /** what a verdict is remembered on: the HTTP/2 session or the TLS socket (never request.socket, which HTTP/2 re-creates per request) */
  connection: object
  socket: TLSSocket
}

interface MaybeHttp2Raw {
  stream?: { session?: { socket?: TLSSocket } }
  socket?: TLSSocket & { encrypted?: boolean }
}

export function tlsPeer (request: FastifyRequest): TlsPeer | undefined {
  const socket = tlsSocketOf(request)
  return socket === undefined ? undefined : { connection: tlsConnectionOf(request, socket), socket }
}

/** The request's TLS socket (the HTTP/2 session's), without allocating: the path of every kept-alive request. */
export function tlsSocketOf (request: FastifyRequest): TLSSocket | undefined {
  const raw = request.raw as unknown as MaybeHttp2Raw
  const sessionSocket = raw.stream?.session?.socket
  if (sessionSocket !== undefined) return sessionSocket
  const socket = raw.socket
  return socket?.encrypted === true ? socket : undefined
}

/** What a verdict is remembered on for a request whose TLS socket is `socket`: its HTTP/2 session, or the socket. */
export function tlsConnectionOf (request: FastifyRequest, socket: TLSSocket): object {
  return (request.raw as unknown as MaybeHttp2Raw).stream?.session ?? socket
}

interface PeerCert { raw?: Buffer, fingerprint256?: string, issuerCertificate?: PeerCert }

export interface PresentedChain {
  /** SHA-256 fingerprint of the leaf as Node prints it */
  fingerprint256: string
  /** DER, leaf first */
  ders: Buffer[]
}

/**
 * The chain the client presented, leaf first (at most `max` certificates), or
 * undefined without a client certificate. Node links each certificate to its issuer
 * and a self-signed one to itself.
 */
export function presentedChain (socket: TLSSocket, max: number): PresentedChain | undefined {
  let cert = socket.getPeerCertificate(true) as unknown as PeerCert | undefined
  if (cert?.raw === undefined || cert.fingerprint256 === undefined) return undefined
  const fingerprint256 = cert.fingerprint256
  const ders: Buffer[] = []
  const seen = new Set<PeerCert>()
  while (cert?.raw !== undefined && !seen.has(cert) && ders.length < max) {
    seen.add(cert)
    ders.push(cert.raw)
    cert = cert.issuerCertificate
  }
  return { fingerprint256, ders }
}

/**
 * The leaf's fingerprint only (no chain): what finds a cached verdict on a new connection.
 *
 * On a resumed session the server holds the leaf alone (OpenSSL keeps no peer chain in a
 * session), so getPeerX509Certificate() has no chain to copy or cut there, and it is the
 * cheapest read (38 µs on a fresh resumed connection here, against 56 µs from the session and
 * 190 µs for getPeerCertificate(false)).
 *
 * After a full handshake the leaf is read from the serialised session, getSession(): OpenSSL's
 * peer certificate *is* the session's `peer` field, so both name the same certificate, and the
 * read costs about half of getPeerCertificate(false), which decodes names, three digests and the
 * public key into an object; getPeerX509Certificate() would copy the chain and cut it (top of
 * this file). The serialisation also holds the session's secret, so the buffer is zeroed before
 * the read returns, whatever happens; only the certificate's bytes are copied out. Anything
 * unexpected in it (another TLS library, a field we do not know where the peer should be)
 * falls back to getPeerCertificate(false).
 */
export function leafFingerprint (socket: TLSSocket): string | undefined {
  if (socket.isSessionReused()) return socket.getPeerX509Certificate()?.fingerprint256
  return sessionLeafFingerprint(socket) ?? (socket.getPeerCertificate(false) as unknown as PeerCert | undefined)?.fingerprint256
}

/** What a verdict on a TLS 1.2 connection was made on: the leaf, and the handshake it came with. */
export interface HandshakeMark {
  fingerprint: string | undefined
  /** the server's last Finished message (getFinished()) when the leaf was read */
  finished: Buffer | undefined
}

/**
 * Whether a TLS 1.2 connection still carries the leaf `mark` names. TLS 1.2 can renegotiate,
 * and a renegotiation can bring another client certificate; every handshake ends with new
 * Finished messages, so while the server's last Finished is the one seen with the leaf (a
 * 12-byte read, about 1 µs) nothing has changed. Otherwise the leaf is read again (tens of µs):
 * the same leaf moves the mark to the new handshake, another one answers false.
 */
export function sameHandshake (socket: TLSSocket, mark: HandshakeMark): boolean {
  const finished = socket.getFinished()
  if (finished !== undefined && mark.finished !== undefined && finished.equals(mark.finished)) return true
  if (leafFingerprint(socket) !== mark.fingerprint) return false
  mark.finished = finished
  return true
}

/** SSL_SESSION_ASN1's `peer [3] EXPLICIT X509 OPTIONAL` */
const SESSION_PEER = 0xa3
const SEQUENCE = 0x30
const INTEGER = 0x02

// The TLV header last read by readHeader(): where its content starts and ends.
// A hand-written walk rather than lib/der/reader.ts: this runs on every new connection, right
// after the handshake has pushed everything else out of the CPU's caches, where touching less
// code and allocating nothing measured 10-15 µs less. It only finds boundaries; the certificate
// it finds is hashed, and parsed (strictly) only if its verdict is not cached.
let contentStart = 0
let contentEnd = 0

/** Reads the header at `at` (a one-byte tag, a definite length of up to 3 bytes, content within `end`): its tag, or -1 when there is none. */
function readHeader (b: Buffer, at: number, end: number): number {
  if (at + 2 > end) return -1
  const tag = b[at] as number
  let length = b[at + 1] as number
  let p = at + 2
  if ((tag & 0x1f) === 0x1f) return -1
  if (length >= 0x80) {
    const n = length & 0x7f
    if (n === 0 || n > 3 || p + n > end) return -1
    length = 0
    for (let i = 0; i < n; i++) length = length * 256 + (b[p++] as number)
  }
  if (p + length > end) return -1
  contentStart = p
  contentEnd = p + length
  return tag
}

/**
 * Fingerprints of leaves seen lately, by their DER bytes (as a latin1 string: an exact match):
 * the same client reconnecting costs a Map read instead of a SHA-256 and its formatting
 * (about 25 µs on a fresh connection here).
 */
const fingerprints = new LruCache<string, string>(1024)
const MAX_REMEMBERED_LEAF = 8 * 1024

/** The fingerprint of the peer certificate in the serialised TLS session, or undefined when it cannot be read there. */
export function sessionLeafFingerprint (socket: Pick<TLSSocket, 'getSession'>): string | undefined {
  let session: Buffer | undefined
  try {
    session = socket.getSession()
    if (session === undefined) return undefined
    const size = session.length
    if (readHeader(session, 0, size) !== SEQUENCE || contentEnd !== size) return undefined
    // version INTEGER 1 first, as in every OpenSSL (and BoringSSL) session encoding
    if (readHeader(session, contentStart, size) !== INTEGER || contentEnd - contentStart !== 1 || session[contentStart] !== 1) return undefined
    let at = contentEnd
    while (at < size) {
      const tag = readHeader(session, at, size)
      if (tag === -1) return undefined
      at = contentEnd
      if (tag !== SESSION_PEER) continue
      const fieldEnd = contentEnd
      // exactly one certificate in the field
      const start = contentStart
      if (readHeader(session, start, fieldEnd) !== SEQUENCE || contentEnd !== fieldEnd) return undefined
      if (fieldEnd - start > MAX_REMEMBERED_LEAF) return sha256Fingerprint(session.subarray(start, fieldEnd))
      const key = session.toString('latin1', start, fieldEnd)
      let fingerprint = fingerprints.get(key)
      if (fingerprint === undefined) {
        fingerprint = sha256Fingerprint(session.subarray(start, fieldEnd))
        fingerprints.set(key, fingerprint)
      }
      return fingerprint
    }
    // no peer field: read the usual way (a connection without a client certificate gets {} there)
    return undefined
  } catch {
    return undefined
  } finally {
    session?.fill(0)
  }
}
