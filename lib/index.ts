// fastify-mtls-auth: the Fastify plugin and the pure core it wraps.
import { fastifyMtls } from './plugin.js'

export default fastifyMtls
export { fastifyMtls }
export type { FastifyMtlsOptions, MtlsRejection, CertificateSummary, DenyEntry, DenyBySerial } from './options.js'
export type { MtlsNamespace, MtlsStatus, RouteMtlsConfig } from './plugin.js'
export { verifyCertificateChain } from './verify/verify.js'
export { toPrometheus } from './metrics.js'
export type { CountsByCode, GuardCounts, MtlsMetric, MtlsMetricPoint, RequestCounts } from './metrics.js'
export { compilePolicy, validatePolicy, PolicyError } from './policy.js'
export { buildIdentity } from './identity.js'
export type {
  CertificateInput, ClientIdentity, DistinguishedName, LabelledCertificate, Matcher, NameAttribute, Policy,
  RejectionCode, SubjectAltNames, TrustAnchorInfo, TrustAnchorInput, VerificationCode, VerifyFailure,
  VerifyOptions, VerifyPurpose, VerifyResult, VerifySuccess
} from './types.js'
export {
  MtlsCertMissingError, MtlsCertUntrustedError, MtlsCertExpiredError, MtlsCertNotYetValidError, MtlsChainInvalidError,
  MtlsCertPurposeError, MtlsCertWeakError, MtlsCertRevokedError, MtlsRevocationUnknownError, MtlsCertMalformedError,
  MtlsForwardedUntrustedError, MtlsForbiddenError, MtlsTokenNotBoundError, MtlsReloadInvalidError, MtlsInvalidOptionsError, rejectionError
} from './errors.js'
