// RFC 8705 certificate-bound access tokens: a token's cnf["x5t#S256"] must be the
// base64url SHA-256 thumbprint of the certificate the request was authenticated with.
import { timingSafeEqual } from 'node:crypto'
import type { ClientIdentity } from './types.js'

const B64URL_SHA256 = /^[A-Za-z0-9_-]{43}$/

/** Why the token claims are not bound to this identity, or undefined when they are. */
export function tokenBindingError (claims: unknown, identity: ClientIdentity): string | undefined {
  if (typeof claims !== 'object' || claims === null) return 'no token claims on the request (verify the token before this guard)'
  const cnf = (claims as { cnf?: unknown }).cnf
  if (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf)) return 'the token has no cnf claim: it is not bound to a certificate'
  const thumbprint = (cnf as Record<string, unknown>)['x5t#S256']
  if (thumbprint === undefined) {
    if ('jkt' in cnf) return 'the token is bound to a DPoP key (cnf.jkt), not to a certificate'
    if ('x5t' in cnf) return 'the token carries a SHA-1 thumbprint (cnf.x5t); RFC 8705 binds with cnf["x5t#S256"]'
    return 'the token\'s cnf claim has no x5t#S256 member'
  }
  // exactly the RFC 7515 form: base64url without padding of 32 bytes (43 characters)
  if (typeof thumbprint !== 'string' || !B64URL_SHA256.test(thumbprint)) return 'cnf["x5t#S256"] is not the base64url (unpadded) SHA-256 of a certificate'
  const got = Buffer.from(thumbprint, 'base64url')
  const want = Buffer.from(identity.thumbprintSha256, 'base64url')
  if (got.length !== 32 || want.length !== 32 || got.toString('base64url') !== thumbprint) return 'cnf["x5t#S256"] is not the base64url (unpadded) SHA-256 of a certificate'
  return timingSafeEqual(got, want) ? undefined : 'the token is bound to another certificate'
}
