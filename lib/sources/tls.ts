// The client certificate as the TLS layer received it, for HTTP/1.1 and HTTP/2.
// Node 20's getPeerX509Certificate() deletes the leaf from OpenSSL's peer chain on the
// server side, after which getPeerCertificate(true) returns the leaf alone (nodejs/node
// #65579 describes the mechanism). So the chain is read once per connection with
// getPeerCertificate(true), and getPeerX509Certificate() is called only on a resumed
// session, which has no chain to lose: the plugin must not change what the application's
// own code reads from the socket.
import type { TLSSocket } from 'node:tls'
import type { FastifyRequest } from 'fastify'
import { sha256Fingerprint } from '../crypto.js'
import { ctx, DerReader, TAG, tlvBytes } from '../der/reader.js'

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
  const raw = request.raw as unknown as MaybeHttp2Raw
  const session = raw.stream?.session
  if (session?.socket !== undefined) return { connection: session, socket: session.socket }
  const socket = raw.socket
  if (socket?.encrypted !== true) return undefined
  return { connection: socket, socket }
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
 * session), so getPeerX509Certificate() takes nothing from the chain there and is cheap.
 *
 * After a full handshake, getPeerX509Certificate() would cut the chain (top of this file) and
 * getPeerCertificate(false) decodes names, three digests and the public key into an object
 * (0.07-0.15 ms here, several per cent of the handshake). The leaf is read instead from the
 * serialised session, getSession(): OpenSSL's peer certificate *is* the session's `peer`
 * field, so both name the same certificate. That serialisation also holds the session's
 * secret, so the buffer is zeroed before this function returns, whatever happens; only the
 * certificate's bytes are hashed, and nothing of the buffer is kept or turned into a string.
 * Anything unexpected in it (another TLS library, a field we do not know where the peer
 * should be) falls back to getPeerCertificate(false).
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
const SESSION_PEER = ctx(3, true)

/** The fingerprint of the peer certificate in the serialised TLS session, or undefined when it cannot be read there. */
export function sessionLeafFingerprint (socket: Pick<TLSSocket, 'getSession'>): string | undefined {
  let session: Buffer | undefined
  try {
    session = socket.getSession()
    if (session === undefined) return undefined
    const outer = new DerReader(session).read()
    if (outer.tag !== TAG.SEQUENCE || outer.end !== session.length) return undefined
    const fields = DerReader.of(outer)
    // version INTEGER 1 first, as in every OpenSSL (and BoringSSL) session encoding
    const version = fields.read()
    if (version.tag !== TAG.INTEGER || version.end - version.valueStart !== 1 || session[version.valueStart] !== 1) return undefined
    while (!fields.atEnd()) {
      const field = fields.read()
      if (field.tag !== SESSION_PEER) continue
      const inner = DerReader.of(field)
      const certificate = inner.read()
      if (certificate.tag !== TAG.SEQUENCE || !inner.atEnd()) return undefined
      return sha256Fingerprint(tlvBytes(certificate))
    }
    // no peer field: read the usual way (a connection without a client certificate gets {} there)
    return undefined
  } catch {
    return undefined
  } finally {
    session?.fill(0)
  }
}
