// The client certificate as the TLS layer received it, for HTTP/1.1 and HTTP/2.
// Node 20's getPeerX509Certificate() deletes the leaf from OpenSSL's peer chain on the
// server side, after which getPeerCertificate(true) returns the leaf alone (nodejs/node
// #65579 describes the mechanism). So the chain is read once per connection with
// getPeerCertificate(true), and getPeerX509Certificate() is called only on a resumed
// session, which has no chain to lose: the plugin must not change what the application's
// own code reads from the socket.
import type { TLSSocket } from 'node:tls'
import type { FastifyRequest } from 'fastify'

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
 * The leaf's fingerprint only (no chain). On a resumed session the server holds the leaf
 * alone (OpenSSL keeps no peer chain in a session), so getPeerX509Certificate() can take
 * nothing from the chain there and costs about 0.015 ms, against 0.1 ms for
 * getPeerCertificate(false), which decodes names, digests and the public key into an object.
 * After a full handshake only getPeerCertificate(false) is safe (see the top of this file).
 */
export function leafFingerprint (socket: TLSSocket): string | undefined {
  if (socket.isSessionReused()) return socket.getPeerX509Certificate()?.fingerprint256
  const cert = socket.getPeerCertificate(false) as unknown as PeerCert | undefined
  return cert?.fingerprint256
}
