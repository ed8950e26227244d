// Replacing the server's TLS identity and client-CA list without a restart.
// setSecureContext() resets every option it is not given (minVersion and
// secureOptions included), so the new context is built from every option the
// server already has, read back from the tls.Server, plus the changed ones.
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto'
import { createSecureContext, type SecureContextOptions, type Server as TlsServer } from 'node:tls'

/** The secure-context options a tls.Server keeps as properties after creation (Node 20). */
const CONTEXT_KEYS = [
  'key', 'cert', 'ca', 'passphrase', 'minVersion', 'maxVersion', 'secureProtocol', 'crl', 'sigalgs', 'ciphers', 'ecdhCurve',
  'dhparam', 'honorCipherOrder', 'secureOptions', 'sessionIdContext', 'privateKeyIdentifier', 'privateKeyEngine', 'clientCertEngine'
] as const

export interface ServerIdentityChange {
  key?: string | Buffer
  cert?: string | Buffer
  /** PEM of the CA names sent to clients */
  ca?: string
}

type ServerWithOptions = TlsServer & Partial<Record<(typeof CONTEXT_KEYS)[number] | 'pfx', unknown>>

export function usesPfx (server: TlsServer): boolean {
  return (server as ServerWithOptions).pfx !== undefined
}

/** The server's current context options with `change` applied. */
export function contextOptions (server: TlsServer, change: ServerIdentityChange): SecureContextOptions {
  const current = server as ServerWithOptions
  const options: Record<string, unknown> = {}
  for (const k of CONTEXT_KEYS) {
    const v = current[k]
    if (v !== undefined) options[k] = v
  }
  if (change.key !== undefined) options.key = change.key
  if (change.cert !== undefined) options.cert = change.cert
  if (change.ca !== undefined) options.ca = change.ca
  return options as SecureContextOptions
}

/**
 * Checks a key/certificate pair and that OpenSSL accepts the whole context,
 * without touching the server. Throws an Error saying what is wrong.
 */
export function checkContext (options: SecureContextOptions, change: ServerIdentityChange): void {
  if (change.key !== undefined || change.cert !== undefined) {
    let cert: X509Certificate
    try {
      cert = new X509Certificate(options.cert as string | Buffer)
    } catch (err) {
      throw new Error(`cert does not parse: ${(err as Error).message}`)
    }
    let matches: boolean
    try {
      matches = cert.checkPrivateKey(createPrivateKey({ key: options.key as string | Buffer, passphrase: options.passphrase }))
    } catch (err) {
      throw new Error(`key does not load: ${(err as Error).message}`)
    }
    if (!matches) throw new Error('key does not match cert: give both, as a pair')
    if (Date.parse(cert.validTo) < Date.now()) throw new Error(`cert expired on ${cert.validTo}`)
  }
  try {
    createSecureContext(options)
  } catch (err) {
    throw new Error(`the new TLS context is refused by OpenSSL: ${(err as Error).message}`)
  }
}

/** Applies the context; keeps the session-ticket keys unless asked to rotate them (rotation forces full handshakes). */
export function applyContext (server: TlsServer, options: SecureContextOptions, rotateTicketKeys: boolean): void {
  const ticketKeys = server.getTicketKeys()
  server.setSecureContext(options)
  // setSecureContext puts back https.ticketKeys when the server was given some: set them explicitly either way
  server.setTicketKeys(rotateTicketKeys ? randomBytes(48) : ticketKeys)
  // keep the properties in step, so that the next reload starts from these options
  const current = server as unknown as Record<string, unknown>
  for (const k of ['key', 'cert', 'ca'] as const) current[k] = (options as Record<string, unknown>)[k]
}
