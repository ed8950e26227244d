// Public types of the pure core. Nothing here imports Fastify.
import type { X509Certificate } from 'node:crypto'

/** PEM text (one or several certificates) or DER bytes. */
export type CertificateInput = string | Buffer | Uint8Array

/** A trust anchor, optionally labelled so that policies can name it (`anchor`). */
export interface LabelledCertificate {
  name: string
  cert: CertificateInput
}

export type TrustAnchorInput = CertificateInput | LabelledCertificate | ReadonlyArray<CertificateInput | LabelledCertificate>

export type VerifyPurpose = 'clientAuth' | 'serverAuth' | 'any'

export type RejectionCode =
  | 'FST_MTLS_CERT_MISSING'
  | 'FST_MTLS_CERT_UNTRUSTED'
  | 'FST_MTLS_CERT_EXPIRED'
  | 'FST_MTLS_CERT_NOT_YET_VALID'
  | 'FST_MTLS_CHAIN_INVALID'
  | 'FST_MTLS_CERT_PURPOSE'
  | 'FST_MTLS_CERT_WEAK'
  | 'FST_MTLS_CERT_REVOKED'
  | 'FST_MTLS_REVOCATION_UNKNOWN'
  | 'FST_MTLS_CERT_MALFORMED'
  | 'FST_MTLS_FORWARDED_UNTRUSTED'
  | 'FST_MTLS_FORBIDDEN'
  | 'FST_MTLS_TOKEN_NOT_BOUND'

export type VerificationCode =
  | 'FST_MTLS_CERT_UNTRUSTED'
  | 'FST_MTLS_CERT_EXPIRED'
  | 'FST_MTLS_CERT_NOT_YET_VALID'
  | 'FST_MTLS_CHAIN_INVALID'
  | 'FST_MTLS_CERT_PURPOSE'
  | 'FST_MTLS_CERT_WEAK'
  | 'FST_MTLS_CERT_REVOKED'
  | 'FST_MTLS_REVOCATION_UNKNOWN'
  | 'FST_MTLS_CERT_MALFORMED'

export interface VerifyOptions {
  /** The end-entity certificate (PEM or DER). A PEM bundle's first certificate is the leaf, the rest are presented intermediates. */
  leaf: CertificateInput
  /** Untrusted certificates that may be used to build the path (presented by the client or configured). */
  intermediates?: CertificateInput | ReadonlyArray<CertificateInput>
  /** The trust anchors. */
  trustAnchors: TrustAnchorInput
  /** Validation time (default: now). */
  at?: Date
  /** CRLs (PEM or DER). */
  crls?: CertificateInput | ReadonlyArray<CertificateInput>
  /** Purpose the leaf must be valid for (default 'clientAuth'). */
  purpose?: VerifyPurpose
  /** Require the clientAuth EKU to be present (default false: a leaf without EKU is valid for any purpose). */
  requireClientAuthEku?: boolean
  /** Maximum path length in certificates, leaf and anchor counted, self-issued intermediates (CA key rollover) not counted (default 8). */
  maxChainLength?: number
  /** Minimum RSA modulus size in bits (default 2048). */
  minRsaBits?: number
  /** Tolerance applied to notBefore/notAfter and CRL times, in seconds (default 0). */
  clockToleranceSec?: number
}

export interface TrustAnchorInfo {
  /** The label given to the anchor, or its subject in RFC 4514 form when unlabelled. */
  name: string
  fingerprint256: string
  spkiSha256: string
}

export interface VerifySuccess {
  ok: true
  /** The validated path as node:crypto certificates, leaf first, anchor last. */
  chain: X509Certificate[]
  trustAnchor: TrustAnchorInfo
  /** Earliest notAfter on the path, or the nextUpdate of a CRL used, whichever comes first. */
  validUntil: Date
}

export interface VerifyFailure {
  ok: false
  code: VerificationCode
  /** What failed, for the operator's log (may name certificates; never shown to clients by the plugin). */
  message: string
}

export type VerifyResult = VerifySuccess | VerifyFailure

/** One attribute of a relative distinguished name. */
export interface NameAttribute {
  /** Dotted OID of the attribute type. */
  readonly oid: string
  /** Short name (CN, O, OU, ...) when known, else the dotted OID. */
  readonly type: string
  /** The value as text; values that are not strings are `#` followed by the hex of their DER (RFC 4514). */
  readonly value: string
}

export interface DistinguishedName {
  /** Every RDN in certificate order; a multi-valued RDN has more than one attribute. */
  readonly rdns: ReadonlyArray<ReadonlyArray<NameAttribute>>
  /** Values by short name (and by dotted OID for unknown types), in certificate order. */
  readonly attributes: Readonly<Record<string, readonly string[]>>
  /** RFC 4514 string form (last RDN first, special characters escaped). */
  readonly rfc4514: string
}

export interface SubjectAltNames {
  readonly dns: readonly string[]
  readonly uri: readonly string[]
  readonly email: readonly string[]
  /** iPAddress SANs written from their bytes (dotted IPv4, RFC 5952 IPv6). */
  readonly ip: readonly string[]
}

export interface ClientIdentity {
  readonly source: 'tls' | 'forwarded'
  readonly subject: DistinguishedName
  readonly issuer: DistinguishedName
  /** Uppercase hex, no separators, as in the DER (leading zero byte dropped). */
  readonly serialNumber: string
  /** SHA-256 of the DER as Node prints it (uppercase, colon-separated). */
  readonly fingerprint256: string
  /** base64url SHA-256 of the DER: RFC 8705 `x5t#S256`. */
  readonly thumbprintSha256: string
  /** base64 SHA-256 of the SubjectPublicKeyInfo, as Envoy pins it. */
  readonly spkiSha256: string
  readonly notBefore: Date
  readonly notAfter: Date
  readonly san: SubjectAltNames
  readonly spiffeId: string | null
  readonly trustAnchor: TrustAnchorInfo
  readonly certificate: X509Certificate
  /** leaf first, anchor last */
  readonly chain: readonly X509Certificate[]
}

export type Matcher = string | RegExp | ReadonlyArray<string | RegExp>

export interface Policy<Req = unknown> {
  anchor?: string | readonly string[]
  subject?: Readonly<Record<string, Matcher>>
  issuer?: Readonly<Record<string, Matcher>>
  dns?: Matcher
  uri?: Matcher
  email?: Matcher
  ip?: string | readonly string[]
  spiffeId?: Matcher
  fingerprint256?: string | readonly string[]
  spkiSha256?: string | readonly string[]
  issuerSpkiSha256?: string | readonly string[]
  check?: (identity: ClientIdentity, request: Req) => boolean | Promise<boolean>
  anyOf?: ReadonlyArray<Policy<Req>>
}
