// Every rejection code, made with @fastify/error. The message is what a client may
// see: it says what to fix and never echoes the policy or server internals; the
// detail goes to the log (the plugin's job). Rejections carry no stack trace: they
// are expected outcomes, and capturing one per refused request would cost time and
// fill Fastify's own 4xx log line.
import createError from '@fastify/error'
import type { RejectionCode } from './types.js'

export const MtlsCertMissingError = createError('FST_MTLS_CERT_MISSING', 'A client certificate is required: connect with a certificate issued by a CA this server trusts', 401, Error, false)
export const MtlsCertUntrustedError = createError('FST_MTLS_CERT_UNTRUSTED', 'The client certificate is not issued by a CA this server trusts: present the full chain up to a trusted CA', 401, Error, false)
export const MtlsCertExpiredError = createError('FST_MTLS_CERT_EXPIRED', 'A certificate in the client chain has expired: renew it', 401, Error, false)
export const MtlsCertNotYetValidError = createError('FST_MTLS_CERT_NOT_YET_VALID', 'A certificate in the client chain is not valid yet: check its notBefore date and the clocks', 401, Error, false)
export const MtlsChainInvalidError = createError('FST_MTLS_CHAIN_INVALID', 'The client certificate chain breaks a certificate rule (CA flags, path length, name constraints or extensions): have it reissued', 401, Error, false)
export const MtlsCertPurposeError = createError('FST_MTLS_CERT_PURPOSE', 'The client certificate is not valid for client authentication: it needs the clientAuth extended key usage and must not be a CA', 401, Error, false)
export const MtlsCertWeakError = createError('FST_MTLS_CERT_WEAK', 'The client certificate chain uses a key or signature algorithm that is too weak: use RSA-2048 or larger, ECDSA P-256 or Ed25519, with SHA-256 or better', 401, Error, false)
export const MtlsCertRevokedError = createError('FST_MTLS_CERT_REVOKED', 'The client certificate has been revoked', 401, Error, false)
export const MtlsRevocationUnknownError = createError('FST_MTLS_REVOCATION_UNKNOWN', 'The revocation status of the client certificate could not be established: try again later', 401, Error, false)
export const MtlsCertMalformedError = createError('FST_MTLS_CERT_MALFORMED', 'The forwarded client certificate could not be parsed', 400, Error, false)
export const MtlsForwardedUntrustedError = createError('FST_MTLS_FORWARDED_UNTRUSTED', 'A forwarded client certificate was sent by a peer that is not a trusted proxy', 401, Error, false)
export const MtlsForbiddenError = createError('FST_MTLS_FORBIDDEN', 'The client certificate is not allowed to access this resource', 403, Error, false)
export const MtlsTokenNotBoundError = createError('FST_MTLS_TOKEN_NOT_BOUND', 'The access token is not bound to this client certificate (RFC 8705 cnf["x5t#S256"]): use the token issued for this certificate', 401, Error, false)
export const MtlsReloadInvalidError = createError('FST_MTLS_RELOAD_INVALID', 'Trust material refused: %s')
export const MtlsInvalidOptionsError = createError('FST_MTLS_INVALID_OPTIONS', 'Invalid fastify-mtls-auth options: %s')

export const rejectionErrors = {
  FST_MTLS_CERT_MISSING: MtlsCertMissingError,
  FST_MTLS_CERT_UNTRUSTED: MtlsCertUntrustedError,
  FST_MTLS_CERT_EXPIRED: MtlsCertExpiredError,
  FST_MTLS_CERT_NOT_YET_VALID: MtlsCertNotYetValidError,
  FST_MTLS_CHAIN_INVALID: MtlsChainInvalidError,
  FST_MTLS_CERT_PURPOSE: MtlsCertPurposeError,
  FST_MTLS_CERT_WEAK: MtlsCertWeakError,
  FST_MTLS_CERT_REVOKED: MtlsCertRevokedError,
  FST_MTLS_REVOCATION_UNKNOWN: MtlsRevocationUnknownError,
  FST_MTLS_CERT_MALFORMED: MtlsCertMalformedError,
  FST_MTLS_FORWARDED_UNTRUSTED: MtlsForwardedUntrustedError,
  FST_MTLS_FORBIDDEN: MtlsForbiddenError,
  FST_MTLS_TOKEN_NOT_BOUND: MtlsTokenNotBoundError
} as const satisfies Record<RejectionCode, unknown>

/** The error a rejection code turns into. */
export function rejectionError (code: RejectionCode): Error & { code: RejectionCode, statusCode: number } {
  const Ctor = rejectionErrors[code]
  return new Ctor() as Error & { code: RejectionCode, statusCode: number }
}
