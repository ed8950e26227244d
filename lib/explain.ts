// `inspect` and `explain`: why a certificate is accepted or refused, told check by check.
//
// explainChain runs the plugin's own verifier (verifyCertificateChainSync, the function behind
// verifyCertificateChain) with its opt-in trace, and the plugin's own policy compiler. The
// verifier's code is authoritative: each line reports what the trace says the verifier did on
// the path whose failure it reported (or the path it accepted), so no line can contradict it.
// The per-code knowledge (HINTS) is data: docs/troubleshooting.md is written from the same
// table, and a test keeps the two and the RejectionCode union in step.
import type { ParsedCertificate } from './der/certificate.js'
import { KU } from './der/certificate.js'
import type { GeneralName } from './der/general-name.js'
import { OID } from './der/oids.js'
import { InputError, toDerList } from './der/pem.js'
import { getCertificate } from './der/store.js'
import { identityFromPath } from './identity.js'
import { compilePolicy, validatePolicy } from './policy.js'
import type {
  CertificateInput, ClientIdentity, DistinguishedName, Policy, RejectionCode, SubjectAltNames, TrustAnchorInfo,
  TrustAnchorInput, VerificationCode, VerifyPurpose
} from './types.js'
import type { PathCheckName, TraceEvent } from './verify/chain.js'
import type { TrustAnchor } from './verify/trust.js'
import { verifyCertificateChainSync } from './verify/verify.js'

// ---------------------------------------------------------------- the hint table

export interface Hint {
  /** HTTP status of the reply, or null for codes that are thrown rather than sent */
  status: number | null
  /** what usually makes this happen */
  cause: string
  /** how to see it for yourself (`explain`, `inspect`, openssl) */
  check: string
  /** what to do about it */
  fix: string
}

/** Codes that are thrown (register time, reload) rather than sent to clients. */
export type ThrownCode = 'FST_MTLS_RELOAD_INVALID' | 'FST_MTLS_INVALID_OPTIONS'

/** Likely cause, how to check and the fix for every code the plugin can produce. */
export const HINTS: Readonly<Record<RejectionCode | ThrownCode, Hint>> = Object.freeze({
  FST_MTLS_CERT_MISSING: {
    status: 401,
    cause: 'The client sent no certificate: it was not configured with one, the server did not ask (requestCert), the TLS session was resumed without one, or a proxy in front terminated TLS and did not forward it.',
    check: '`openssl s_client -connect host:port -cert client.pem -key client.key` and look for "Acceptable client certificate CA names"; with `curl -v --cert client.pem --key client.key` check the client sends it. Behind a proxy, check its forwarded-certificate header reaches the app.',
    fix: 'Configure the client with its certificate and key; create the server with `requestCert: true`; behind a proxy set the plugin\'s `forwarded` option and make the proxy forward the certificate.'
  },
  FST_MTLS_CERT_UNTRUSTED: {
    status: 401,
    cause: 'No path from the certificate to a configured trust anchor: the issuing CA is not in `ca`, the client did not send its intermediate CA, a signature does not verify, or the certificate is self-signed.',
    check: '`fastify-mtls-auth explain --cert client.pem --ca ca.pem` names the issuer it looked for; `fastify-mtls-auth inspect client.pem` shows the issuer; `openssl verify -CAfile ca.pem -untrusted chain.pem client.pem`.',
    fix: 'Add the issuing root CA to `ca`, have the client send its full chain (leaf then intermediates) or add the intermediates to `intermediates`; a self-signed client certificate is never accepted: issue it from a CA.'
  },
  FST_MTLS_CERT_EXPIRED: {
    status: 401,
    cause: 'A certificate on the path (the leaf, an intermediate or the anchor) is past its notAfter date, or the server clock is ahead.',
    check: '`fastify-mtls-auth inspect chain.pem` shows every notAfter; `explain --at <date>` shows the verdict at another time; `openssl x509 -noout -enddate -in client.pem`.',
    fix: 'Renew the expired certificate (and redeploy the chain with it); check the server clock (NTP); `clockToleranceSec` only absorbs small clock skew.'
  },
  FST_MTLS_CERT_NOT_YET_VALID: {
    status: 401,
    cause: 'A certificate on the path has a notBefore date in the future: it was just issued with a clock ahead of the server\'s, or the server clock is behind.',
    check: '`fastify-mtls-auth inspect chain.pem` shows every notBefore; `openssl x509 -noout -startdate -in client.pem`; compare with `date -u` on the server.',
    fix: 'Fix the clocks (NTP on the CA and the server), wait until notBefore, or backdate notBefore a few minutes when issuing; `clockToleranceSec` absorbs small skew.'
  },
  FST_MTLS_CHAIN_INVALID: {
    status: 401,
    cause: 'A path to an anchor exists but breaks a rule: an issuer is not a CA (basicConstraints), lacks keyCertSign, a path length or name constraint is exceeded, a certificate has an unknown critical extension or misses a required key identifier, or the chain is longer than `maxChainLength`.',
    check: '`fastify-mtls-auth explain ...` names the certificate and the rule; `fastify-mtls-auth inspect chain.pem` shows basicConstraints, key usage and key identifiers; `openssl x509 -noout -text -in ca.pem`.',
    fix: 'Reissue the offending CA or leaf with a correct profile (CA: critical basicConstraints cA=TRUE, keyCertSign, subjectKeyIdentifier; every certificate: authorityKeyIdentifier); raise `maxChainLength` only for a chain that is really that deep.'
  },
  FST_MTLS_CERT_PURPOSE: {
    status: 401,
    cause: 'The certificate is not meant for TLS client authentication: its extended key usage lacks clientAuth (e.g. a server certificate), a CA certificate is used as the client certificate, key usage lacks digitalSignature, or `requireClientAuthEku` is set and the leaf has no EKU.',
    check: '`fastify-mtls-auth inspect client.pem` shows key usage, EKU and whether it is a CA; `openssl x509 -noout -ext extendedKeyUsage,keyUsage,basicConstraints -in client.pem`.',
    fix: 'Issue the client certificate with extendedKeyUsage clientAuth and keyUsage digitalSignature, as an end-entity (cA=FALSE); an intermediate whose EKU excludes clientAuth must be reissued too.'
  },
  FST_MTLS_CERT_WEAK: {
    status: 401,
    cause: 'A key on the path is too weak (RSA below `minRsaBits`, default 2048; an EC curve other than P-256/P-384/P-521; DSA) or a certificate is signed with MD5 or SHA-1.',
    check: '`fastify-mtls-auth inspect chain.pem` shows each key type and size and signature algorithm; `openssl x509 -noout -text -in client.pem | grep -E "Public-Key|Signature Algorithm"`.',
    fix: 'Reissue with RSA-2048 or larger, ECDSA P-256/P-384 or Ed25519, signed with SHA-256 or better.'
  },
  FST_MTLS_CERT_REVOKED: {
    status: 401,
    cause: 'The certificate (or an intermediate) is listed on its issuer\'s CRL, OCSP answered revoked, or it is on the plugin\'s `deny` list.',
    check: '`fastify-mtls-auth explain --cert client.pem --ca ca.pem --crl issuer.crl` names the CRL and the revocation date; `openssl crl -noout -text -in issuer.crl` lists revoked serials; `inspect` shows the serial and fingerprint to compare with `deny`.',
    fix: 'Issue the client a new certificate (a revoked one never comes back); if it was revoked by mistake, publish a CRL without it or remove it from `deny`.'
  },
  FST_MTLS_REVOCATION_UNKNOWN: {
    status: 401,
    cause: 'Revocation status was required but could not be established: the CRL from the issuer is stale (past nextUpdate), not yet valid, does not verify, is out of scope, could not be fetched, or OCSP is unreachable in hard-fail mode.',
    check: '`fastify-mtls-auth explain ... --crl issuer.crl` says why the CRL is unusable; `openssl crl -noout -lastupdate -nextupdate -issuer -in issuer.crl`.',
    fix: 'Publish a fresh CRL before nextUpdate and reload it (`app.mtls.reload({ crl })` or `watch`); check the CRL is signed by the certificate\'s issuer; consider `crlMode: \'soft-fail\'` or `ocsp.mode: \'soft-fail\'` if availability matters more.'
  },
  FST_MTLS_CERT_MALFORMED: {
    status: 400,
    cause: 'A trusted proxy sent a forwarded-certificate header that does not parse (wrong `format`, truncated or double-encoded PEM, several elements with `xfccElement: \'only\'`), or sent the header twice.',
    check: 'Log the raw header at the proxy; `fastify-mtls-auth inspect cert.pem` on the certificate it should carry; compare the header with the configured `forwarded.format`.',
    fix: 'Set `forwarded.format` to what the proxy sends (xfcc, escaped-pem, base64-der, rfc9440) and make the proxy overwrite the header on every request instead of appending to it.'
  },
  FST_MTLS_FORWARDED_UNTRUSTED: {
    status: 401,
    cause: 'A forwarded-certificate header arrived from a peer address that is not in `forwarded.trustedProxies` (a client bypassing the proxy, or the proxy\'s address changed).',
    check: 'The log line carries `client.address`; compare it with `forwarded.trustedProxies`.',
    fix: 'Add the proxy\'s real address or CIDR (keep it narrow) to `trustedProxies`, or make clients go through the proxy; never widen it to cover clients.'
  },
  FST_MTLS_FORBIDDEN: {
    status: 403,
    cause: 'The certificate verified, but the global policy, the route\'s `config.mtls` policy or an `app.mtls.require()` guard does not allow this identity (name, SAN, SPIFFE ID, anchor, pin or check mismatch).',
    check: '`fastify-mtls-auth explain --cert client.pem --ca ca.pem --policy policy.json` shows each rule\'s outcome; `fastify-mtls-auth inspect client.pem` shows the names the policy sees.',
    fix: 'Either issue the client a certificate with the expected names, or change the policy; remember a RegExp must match the whole value and SAN matchers never fall back to the CN.'
  },
  FST_MTLS_TOKEN_NOT_BOUND: {
    status: 401,
    cause: 'A route guarded by `app.mtls.requireBoundToken()` got an access token that is not bound to the client certificate (RFC 8705 `cnf["x5t#S256"]`): a token issued for another certificate, one without a `cnf` claim, or one bound to a DPoP key.',
    check: '`fastify-mtls-auth inspect client.pem --json` prints `thumbprintSha256`; compare it with the token\'s `cnf["x5t#S256"]`.',
    fix: 'Have the client use the token issued for this certificate (renewing the certificate means getting a new token).'
  },
  FST_MTLS_RELOAD_INVALID: {
    status: null,
    cause: '`app.mtls.reload()` was given material that does not parse, a key that does not match its certificate, or a CRL that does not verify; the old material stays in force.',
    check: 'The error message names the field; `fastify-mtls-auth inspect` each certificate file; `openssl crl -noout -text -in new.crl`.',
    fix: 'Fix the named file and reload again.'
  },
  FST_MTLS_INVALID_OPTIONS: {
    status: null,
    cause: 'The options given to `register()` are invalid (a bad `ca`, an invalid policy, a wrong type); the message names the option.',
    check: 'Read the message; `fastify-mtls-auth explain --policy policy.json ...` validates a policy with the same compiler.',
    fix: 'Correct the named option.'
  }
} satisfies Record<RejectionCode | ThrownCode, Hint>)

// ---------------------------------------------------------------- describing certificates

const EKU_NAMES: Readonly<Record<string, string>> = {
  [OID.serverAuth]: 'serverAuth',
  [OID.clientAuth]: 'clientAuth',
  '1.3.6.1.5.5.7.3.3': 'codeSigning',
  '1.3.6.1.5.5.7.3.4': 'emailProtection',
  '1.3.6.1.5.5.7.3.8': 'timeStamping',
  [OID.ocspSigning]: 'OCSPSigning',
  [OID.anyExtendedKeyUsage]: 'anyExtendedKeyUsage'
}

const SIGNATURE_NAMES: Readonly<Record<string, string>> = {
  '1.2.840.113549.1.1.4': 'md5WithRSAEncryption',
  '1.2.840.113549.1.1.5': 'sha1WithRSAEncryption',
  '1.2.840.113549.1.1.14': 'sha224WithRSAEncryption',
  '1.2.840.113549.1.1.11': 'sha256WithRSAEncryption',
  '1.2.840.113549.1.1.12': 'sha384WithRSAEncryption',
  '1.2.840.113549.1.1.13': 'sha512WithRSAEncryption',
  [OID.rsassaPss]: 'RSASSA-PSS',
  '1.2.840.10045.4.1': 'ecdsa-with-SHA1',
  '1.2.840.10045.4.3.1': 'ecdsa-with-SHA224',
  '1.2.840.10045.4.3.2': 'ecdsa-with-SHA256',
  '1.2.840.10045.4.3.3': 'ecdsa-with-SHA384',
  '1.2.840.10045.4.3.4': 'ecdsa-with-SHA512',
  '1.2.840.10040.4.3': 'dsa-with-SHA1',
  [OID.ed25519]: 'Ed25519',
  [OID.ed448]: 'Ed448'
}

const KU_NAMES = Object.keys(KU) as Array<keyof typeof KU>

export interface KeyDescription {
  /** node:crypto's asymmetricKeyType ('rsa', 'ec', 'ed25519', ...) or 'unknown' */
  type: string
  /** RSA modulus size */
  bits?: number
  /** EC named curve */
  curve?: string
}

/** What `inspect` shows of one certificate: the identity fields as the plugin builds them, and the profile. */
export interface CertificateReport {
  subject: DistinguishedName
  issuer: DistinguishedName
  serialNumber: string
  fingerprint256: string
  thumbprintSha256: string
  spkiSha256: string
  notBefore: Date
  notAfter: Date
  san: SubjectAltNames
  spiffeId: string | null
  key: KeyDescription
  signatureAlgorithm: string
  /** null: no keyUsage extension */
  keyUsage: string[] | null
  /** null: no extendedKeyUsage extension (valid for any purpose, RFC 5280) */
  extKeyUsage: string[] | null
  /** null: no basicConstraints extension */
  basicConstraints: { ca: boolean, pathLen: number | null } | null
  selfIssued: boolean
  subjectKeyId: string | null
  authorityKeyId: string | null
  crlDistributionPoints: string[]
  /** SAN entries of other types (directory names, otherName, ...), described */
  otherSan: string[]
}

export function keyDescription (cert: ParsedCertificate): KeyDescription {
  try {
    const key = cert.publicKey
    const type = key.asymmetricKeyType ?? 'unknown'
    const d = key.asymmetricKeyDetails
    if ((type === 'rsa' || type === 'rsa-pss') && d?.modulusLength !== undefined) return { type, bits: d.modulusLength }
    if (type === 'ec' && d?.namedCurve !== undefined) return { type, curve: d.namedCurve }
    return { type }
  } catch {
    return { type: `unknown (${cert.keyAlgorithm.oid})` }
  }
}

export function keyText (k: KeyDescription): string {
  const name = k.type === 'rsa' ? 'RSA' : k.type === 'rsa-pss' ? 'RSA-PSS' : k.type === 'ec' ? 'EC' : k.type === 'ed25519' ? 'Ed25519' : k.type === 'ed448' ? 'Ed448' : k.type
  if (k.bits !== undefined) return `${name} ${k.bits} bits`
  if (k.curve !== undefined) return `${name} ${k.curve}`
  return name
}

export function signatureName (cert: ParsedCertificate): string {
  return SIGNATURE_NAMES[cert.signatureAlgorithm.oid] ?? cert.signatureAlgorithm.oid
}

export function ekuNames (eku: readonly string[]): string[] {
  return eku.map((oid) => EKU_NAMES[oid] ?? oid)
}

export function keyUsageNames (ku: number): string[] {
  return KU_NAMES.filter((name) => (ku & KU[name]) !== 0)
}

function otherSan (gn: GeneralName): string | undefined {
  switch (gn.kind) {
    case 'dns': case 'uri': case 'email': case 'ip': return undefined
    case 'dirName': return `dirName:${gn.name.rfc4514}`
    case 'otherName': return `otherName:${gn.typeId}`
    case 'registeredId': return `registeredID:${gn.oid}`
    default: return gn.kind
  }
}

/** The fields of an identity that inspect and explain print (all but the trust anchor and the source). */
export function identityFields (id: ClientIdentity) {
  return {
    subject: id.subject,
    issuer: id.issuer,
    serialNumber: id.serialNumber,
    fingerprint256: id.fingerprint256,
    thumbprintSha256: id.thumbprintSha256,
    spkiSha256: id.spkiSha256,
    notBefore: id.notBefore,
    notAfter: id.notAfter,
    san: id.san,
    spiffeId: id.spiffeId
  }
}

// a trust anchor placeholder: inspect shows certificates that nothing has verified
const UNVERIFIED: TrustAnchorInfo = Object.freeze({ name: '', fingerprint256: '', spkiSha256: '' })

/** The report of one parsed certificate; the identity fields come from identityFromPath, as in the plugin. */
export function certificateReport (cert: ParsedCertificate): CertificateReport {
  const id = identityFromPath({ path: [cert], trustAnchor: UNVERIFIED, source: 'tls' })
  const bc = cert.basicConstraints
  return {
    ...identityFields(id),
    key: keyDescription(cert),
    signatureAlgorithm: signatureName(cert),
    keyUsage: cert.keyUsage === undefined ? null : keyUsageNames(cert.keyUsage),
    extKeyUsage: cert.extKeyUsage === undefined ? null : ekuNames(cert.extKeyUsage),
    basicConstraints: bc === undefined ? null : { ca: bc.ca, pathLen: bc.pathLen ?? null },
    selfIssued: cert.selfIssued,
    subjectKeyId: cert.subjectKeyId?.toString('hex') ?? null,
    authorityKeyId: cert.authorityKeyId?.keyId?.toString('hex') ?? null,
    crlDistributionPoints: [...cert.crlDistributionPoints ?? []],
    otherSan: (cert.subjectAltNames ?? []).map(otherSan).filter((s): s is string => s !== undefined)
  }
}

/** Parses every certificate of a PEM bundle or DER file. Throws an InputError naming `what` when one is not a certificate. */
export function readCertificates (input: CertificateInput, what = 'input'): ParsedCertificate[] {
  return toDerList(input, 'CERTIFICATE', what).map((der, i, all) => {
    try {
      return getCertificate(der)
    } catch (err) {
      throw new InputError(`${what}: ${all.length > 1 ? `certificate #${i + 1}` : 'the certificate'} does not parse: ${(err as Error).message}`)
    }
  })
}

/** `inspect`: each certificate of the input, in order. */
export function inspectCertificates (input: CertificateInput, what = 'input'): CertificateReport[] {
  return readCertificates(input, what).map(certificateReport)
}

// ---------------------------------------------------------------- explain

export type StepName = 'parse' | 'chain' | 'signatures' | 'keys' | 'validity' | 'profile' | 'constraints' | 'purpose' | 'revocation' | 'policy'
/** pass ✓, fail ✗, skip – (not reached or not checked) */
export type StepStatus = 'pass' | 'fail' | 'skip'

export interface ExplainStep {
  step: StepName
  title: string
  status: StepStatus
  summary: string
  details: string[]
}

export const STEP_TITLES: Readonly<Record<StepName, string>> = Object.freeze({
  parse: 'parse',
  chain: 'chain to a trust anchor',
  signatures: 'signatures',
  keys: 'key strength and algorithms',
  validity: 'validity',
  profile: 'CA profile and path length',
  constraints: 'name constraints',
  purpose: 'key usage and purpose',
  revocation: 'revocation',
  policy: 'policy'
})

// the verifier's checks of a complete path, in its order, and the line that reports each
const PATH_STEPS: ReadonlyArray<readonly [PathCheckName, StepName]> = [
  ['weak', 'keys'], ['validity', 'validity'], ['structure', 'profile'], ['constraints', 'constraints'],
  ['purpose', 'purpose'], ['revocation', 'revocation']
]

export interface PolicyLine {
  /** nesting depth (alternatives of anyOf are one deeper) */
  depth: number
  /** where the rule is, as PolicyError messages name it: policy.subject.CN, policy.anyOf[1].dns */
  rule: string
  status: StepStatus
  text: string
}

export interface ExplainOptions {
  /** the certificate (PEM or DER); a PEM bundle's extra certificates are the presented chain */
  leaf: CertificateInput
  trustAnchors: TrustAnchorInput
  intermediates?: CertificateInput | readonly CertificateInput[]
  crls?: CertificateInput | readonly CertificateInput[]
  at?: Date
  purpose?: VerifyPurpose
  requireClientAuthEku?: boolean
  maxChainLength?: number
  minRsaBits?: number
  clockToleranceSec?: number
  /** checked after a successful verification, as the plugin's `policy` option */
  policy?: Policy
  /** what a policy's `check` functions receive as the request (default { method: 'GET', url: '/', headers: {} }) */
  request?: unknown
}

export interface Explanation {
  accepted: boolean
  /** the code the plugin would send (undefined when accepted) */
  code?: RejectionCode
  /** the verifier's message, or which policy rule failed */
  message?: string
  /** what to do about `code` */
  hint?: Hint
  /** the line that failed first */
  failedStep?: StepName
  at: Date
  purpose: VerifyPurpose
  steps: ExplainStep[]
  /** the path the verdict is about (leaf first, anchor last), when one reached an anchor */
  path: CertificateReport[]
  trustAnchor?: TrustAnchorInfo
  /** the identity the plugin would give the request (when the chain verified) */
  identity?: ClientIdentity
  /** the verifier's validUntil (earliest notAfter on the path or CRL nextUpdate) */
  validUntil?: Date
  /** each rule of the policy, when one was given and the chain verified */
  policy: PolicyLine[]
}

function asList<T> (x: T | readonly T[] | undefined): readonly T[] {
  if (x === undefined) return []
  return Array.isArray(x) ? x as readonly T[] : [x as T]
}

function name (c: ParsedCertificate): string {
  return `"${c.subject.rfc4514 || '(empty subject)'}"`
}

function roleOf (i: number, length: number): string {
  return i === 0 ? 'leaf' : i === length - 1 ? 'anchor' : `intermediate ${i}`
}

function iso (d: Date): string {
  return d.toISOString().replace('.000Z', 'Z')
}

function anchorLabels (anchors: TrustAnchorInput): string[] {
  const labels: string[] = []
  for (const item of (Array.isArray(anchors) ? anchors : [anchors]) as unknown[]) {
    if (typeof item === 'object' && item !== null && !(item instanceof Uint8Array) && 'cert' in item && 'name' in item && typeof item.name === 'string') labels.push(item.name)
  }
  return labels
}

interface Failed { code: VerificationCode, message: string }

interface PathEvent { path: readonly ParsedCertificate[], anchor: TrustAnchor, failed?: PathCheckName, code?: string, message?: string, revocation: Array<Extract<TraceEvent, { kind: 'revocation' }>> }

/**
 * Explains the verdict on a certificate. Throws an InputError (a TypeError) for unusable input
 * (anchors, intermediates or CRLs that do not parse, bad options) and a PolicyError for an
 * invalid policy, as the plugin would at register time.
 */
export async function explainChain (options: ExplainOptions): Promise<Explanation> {
  const labels = anchorLabels(options.trustAnchors)
  // an invalid policy is refused before anything else, as register() would
  if (options.policy !== undefined) {
    validatePolicy(options.policy)
    compilePolicy(options.policy, { anchorNames: labels })
  }
  const at = options.at ?? new Date()
  const purpose = options.purpose ?? 'clientAuth'
  const crls = asList(options.crls)
  const paths: PathEvent[] = []
  const signatures: Array<Extract<TraceEvent, { kind: 'signature' }>> = []
  let pending: PathEvent['revocation'] = []
  const trace = (e: TraceEvent): void => {
    if (e.kind === 'signature') signatures.push(e)
    else if (e.kind === 'revocation') pending.push(e)
    else {
      paths.push({ path: e.path, anchor: e.anchor, failed: e.failed, code: e.code, message: e.message, revocation: pending })
      pending = []
    }
  }
  const { result, leaf } = verifyCertificateChainSync({
    leaf: options.leaf,
    trustAnchors: options.trustAnchors,
    ...(options.intermediates === undefined ? {} : { intermediates: options.intermediates as CertificateInput[] }),
    crls: crls as CertificateInput[],
    at,
    purpose,
    ...(options.requireClientAuthEku === undefined ? {} : { requireClientAuthEku: options.requireClientAuthEku }),
    ...(options.maxChainLength === undefined ? {} : { maxChainLength: options.maxChainLength }),
    ...(options.minRsaBits === undefined ? {} : { minRsaBits: options.minRsaBits }),
    ...(options.clockToleranceSec === undefined ? {} : { clockToleranceSec: options.clockToleranceSec })
  }, trace)

  const steps: ExplainStep[] = []
  const add = (step: StepName, status: StepStatus, summary: string, details: string[] = []): void => {
    steps.push({ step, title: STEP_TITLES[step], status, summary, details })
  }
  const skipRest = (from: StepName[], why: string): void => { for (const s of from) add(s, 'skip', why) }
  const out: Explanation = { accepted: false, at, purpose, steps, path: [], policy: [] }
  const fail = (code: RejectionCode, message: string, step: StepName): Explanation => {
    out.code = code
    out.message = message
    out.hint = HINTS[code]
    out.failedStep = step
    return out
  }

  // parse
  if (leaf === undefined) {
    // no leaf: the verifier refused the input before building anything (FST_MTLS_CERT_MALFORMED)
    const { code, message } = result as Failed
    add('parse', 'fail', message)
    skipRest(['chain', 'signatures', 'keys', 'validity', 'profile', 'constraints', 'purpose', 'revocation', 'policy'], 'not reached')
    return fail(code, message, 'parse')
  }
  const presentedDers = toDerList(options.leaf, 'CERTIFICATE', 'leaf').slice(1)
  const presentedHashes = new Set<string>()
  let unparsed = 0
  for (const der of presentedDers) {
    try {
      presentedHashes.add(getCertificate(der).sha256.toString('hex'))
    } catch {
      unparsed++
    }
  }
  add('parse', 'pass', `leaf ${name(leaf)} (serial ${leaf.serialHex})${presentedDers.length === 0 ? ', no other certificate presented' : `, ${presentedDers.length} more certificate${presentedDers.length === 1 ? '' : 's'} presented`}`,
    unparsed === 0 ? [] : [`${unparsed} presented certificate${unparsed === 1 ? '' : 's'} did not parse and ${unparsed === 1 ? 'was' : 'were'} ignored`])

  // the path the verdict is about: the accepted one, or the one whose failure the verifier reported
  const chosen = result.ok
    ? paths.find((p) => p.failed === undefined && p.path.length === result.path.length && p.path.every((c, i) => c === result.path[i]))
    : paths.find((p) => p.code === result.code && p.message === result.message)

  if (chosen === undefined) {
    // no complete path was validated (an accepted path always is): the verifier stopped while building one
    const { code, message } = result as Failed
    const details = new Set<string>()
    const notFound = (c: ParsedCertificate): string => `no certificate with the subject "${c.issuer.rfc4514}" (the issuer of ${name(c)}) among the presented certificates, the intermediates or the trust anchors`
    // a certificate reached while building whose issuer was never even a candidate
    const reached = [leaf, ...signatures.filter((s) => s.ok && !s.anchor).map((s) => s.issuer)]
    if (code === 'FST_MTLS_CERT_UNTRUSTED' && !message.includes('itself a trust anchor')) {
      for (const c of reached) if (!signatures.some((s) => s.child === c) && !c.selfIssued) details.add(notFound(c))
    }
    const bad = signatures.filter((s) => !s.ok)
    for (const s of bad) details.add(`${name(s.child)} names ${name(s.issuer)}${s.anchor ? ' (a trust anchor)' : ''} as its issuer, but its signature does not verify with that key`)
    add('chain', 'fail', message, [...details])
    add('signatures', bad.length > 0 ? 'fail' : 'skip', bad.length > 0 ? `${bad.length} signature${bad.length === 1 ? '' : 's'} did not verify` : 'not reached')
    skipRest(['keys', 'validity', 'profile', 'constraints', 'purpose', 'revocation', 'policy'], 'not reached: no path to a trust anchor to check')
    return fail(code, message, 'chain')
  }

  const path = chosen.path
  out.path = path.map(certificateReport)
  out.trustAnchor = chosen.anchor.info
  const chainDetails = path.map((c, i) => {
    const from = i === path.length - 1
      ? `trust anchor${chosen.anchor.labelled ? ` "${chosen.anchor.info.name}"` : ''}`
      : i === 0 ? 'presented' : presentedHashes.has(c.sha256.toString('hex')) ? 'presented by the client' : 'from the configured intermediates'
    return `${roleOf(i, path.length)}: ${name(c)} (${from})`
  })
  add('chain', 'pass', `${path.length} certificates, ending at trust anchor "${chosen.anchor.info.name}"`, chainDetails)
  add('signatures', 'pass', `each of the ${path.length - 1} signature${path.length === 2 ? '' : 's'} on the path verifies with its issuer's key`)

  const failedIndex = chosen.failed === undefined ? PATH_STEPS.length : PATH_STEPS.findIndex(([check]) => check === chosen.failed)
  PATH_STEPS.forEach(([check, step], i) => {
    if (i > failedIndex) {
      add(step, 'skip', 'not reached: the verifier stops at the first failed check')
      return
    }
    const failed = i === failedIndex
    const facts = describeCheck(check, path, at, purpose, options.requireClientAuthEku === true, chosen, crls.length, (options.clockToleranceSec ?? 0) * 1000)
    if (failed) add(step, 'fail', chosen.message as string, facts.details)
    else add(step, facts.status ?? 'pass', facts.summary, facts.details)
  })
  if (!result.ok) {
    add('policy', 'skip', 'not reached')
    return fail(result.code, result.message, PATH_STEPS[failedIndex]?.[1] as StepName)
  }

  // identity and policy, as the plugin (authenticator.accept, then the compiled policy)
  out.validUntil = result.validUntil
  const identity = identityFromPath({ path: result.path, trustAnchor: result.anchor.info, source: 'tls' })
  out.identity = identity
  if (options.policy === undefined) {
    add('policy', 'skip', 'no policy given: any verified certificate is accepted')
    out.accepted = true
    return out
  }
  const report = await explainPolicy(options.policy, identity, options.request ?? { method: 'GET', url: '/', headers: {} }, labels)
  out.policy = report.lines
  if (!report.matched) {
    add('policy', 'fail', report.reason)
    return fail('FST_MTLS_FORBIDDEN', report.reason, 'policy')
  }
  add('policy', 'pass', 'the policy allows this identity')
  out.accepted = true
  return out
}

interface Facts { status?: StepStatus, summary: string, details: string[] }

/** The annotation of a validity line, compared exactly as the verifier does (whole seconds, then the tolerance). */
function validityNote (c: { notBefore: Date, notAfter: Date }, at: Date, toleranceMs: number): string {
  const t = Math.floor(at.getTime() / 1000) * 1000
  if (t > c.notAfter.getTime() + toleranceMs) return ' (expired)'
  if (t < c.notBefore.getTime() - toleranceMs) return ' (not yet valid)'
  if (t > c.notAfter.getTime()) return ' (past notAfter, within the clock tolerance)'
  if (t < c.notBefore.getTime()) return ' (before notBefore, within the clock tolerance)'
  return ''
}

function describeCheck (check: PathCheckName, path: readonly ParsedCertificate[], at: Date, purpose: VerifyPurpose, requireEku: boolean, chosen: PathEvent, crlCount: number, toleranceMs: number): Facts {
  const n = path.length
  switch (check) {
    case 'weak':
      return {
        summary: 'keys and signature algorithms are strong enough',
        details: path.map((c, i) => `${roleOf(i, n)}: ${keyText(keyDescription(c))}, ${i === n - 1 ? `self-signature ${signatureName(c)} (not relied upon)` : `signed with ${signatureName(c)}`}`)
      }
    case 'validity':
      return {
        summary: `every certificate is valid at ${iso(at)}`,
        details: path.map((c, i) => `${roleOf(i, n)}: ${iso(c.notBefore)} to ${iso(c.notAfter)}${validityNote(c, at, toleranceMs)}`)
      }
    case 'structure':
      return {
        summary: 'every issuer is a CA allowed to sign certificates; path length constraints hold',
        details: path.slice(1).map((c, j) => {
          const bc = c.basicConstraints
          return `${roleOf(j + 1, n)}: ${bc?.ca === true ? 'CA' : 'not a CA'}${bc?.pathLen === undefined ? '' : `, pathLen ${bc.pathLen}`}${c.keyUsage === undefined ? ', no key usage' : `, key usage ${keyUsageNames(c.keyUsage).join(', ')}`}`
        })
      }
    case 'constraints': {
      const constrained = path.slice(1).filter((c) => c.nameConstraints !== undefined)
      return {
        summary: constrained.length === 0 ? 'no name constraints on this path' : `names are within the constraints of ${constrained.map(name).join(', ')}`,
        details: []
      }
    }
    case 'purpose': {
      const leaf = path[0] as ParsedCertificate
      const eku = leaf.extKeyUsage
      return {
        summary: `valid for ${purpose}${requireEku ? ' (clientAuth EKU required)' : ''}`,
        details: [
          `leaf: ${leaf.basicConstraints?.ca === true ? 'a CA certificate' : 'not a CA'}; key usage ${leaf.keyUsage === undefined ? '(none: any)' : keyUsageNames(leaf.keyUsage).join(', ')}; extended key usage ${eku === undefined ? '(none: any purpose)' : ekuNames(eku).join(', ')}`,
          ...path.slice(1, -1).filter((c) => c.extKeyUsage !== undefined).map((c) => `${name(c)}: extended key usage ${ekuNames(c.extKeyUsage as string[]).join(', ')}`)
        ]
      }
    }
    default: {
      if (crlCount === 0) return { status: 'skip', summary: 'not checked: no CRL given', details: [] }
      const details = chosen.revocation.map((r) => {
        const i = path.indexOf(r.cert)
        const who = `${roleOf(i, n)} ${name(r.cert)}`
        const crl = r.crl === undefined ? '' : ` (CRL of "${r.crl.issuer.rfc4514}", thisUpdate ${iso(r.crl.thisUpdate)}${r.crl.nextUpdate === undefined ? '' : `, nextUpdate ${iso(r.crl.nextUpdate)}`})`
        switch (r.status) {
          case 'no-crl': return `${who}: not checked: no CRL from its issuer given`
          case 'good': return `${who}: not revoked${crl}`
          case 'revoked': return `${who}: revoked${crl}`
          // 'unknown' ('soft-fail' is never asked for here: explain checks revocation as hard-fail)
          default: return `${who}: status unknown: ${r.reason as string}`
        }
      })
      const checked = chosen.revocation.filter((r) => r.status === 'good').length
      if (checked === 0) return { status: 'skip', summary: 'not checked: none of the given CRLs is from an issuer on this path', details }
      return { summary: `${checked} certificate${checked === 1 ? '' : 's'} checked against CRLs, none revoked`, details }
    }
  }
}

// ---------------------------------------------------------------- the policy, rule by rule

function show (value: unknown): string {
  if (value instanceof RegExp) return String(value)
  if (Array.isArray(value)) return `[${value.map(show).join(', ')}]`
  return JSON.stringify(value)
}

function errorText (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function seen (identity: ClientIdentity, key: string): string {
  const list = (xs: readonly string[]): string => xs.length === 0 ? 'none' : xs.map((x) => JSON.stringify(x)).join(', ')
  switch (key) {
    case 'anchor': return `anchor ${JSON.stringify(identity.trustAnchor.name)}`
    case 'fingerprint256': return `fingerprint ${identity.fingerprint256}`
    case 'spkiSha256': return `SPKI hash ${identity.spkiSha256}`
    case 'issuerSpkiSha256': return `issuing CA key hashes: ${identity.chain.slice(1).length} certificate(s)`
    case 'spiffeId': return `SPIFFE ID ${identity.spiffeId === null ? 'none' : JSON.stringify(identity.spiffeId)}`
    case 'dns': return `DNS SANs ${list(identity.san.dns)}`
    case 'uri': return `URI SANs ${list(identity.san.uri)}`
    case 'email': return `email SANs ${list(identity.san.email)}`
    case 'ip': return `IP SANs ${list(identity.san.ip)}`
    case 'subject': return `subject "${identity.subject.rfc4514}"`
    default: return `issuer "${identity.issuer.rfc4514}"`
  }
}

interface PolicyReport { matched: boolean, reason: string, lines: PolicyLine[] }

async function explainPolicy (policy: Policy, identity: ClientIdentity, request: unknown, anchorNames: string[]): Promise<PolicyReport> {
  // every `check` is wrapped to record what it did; the verdict is the compiled policy's
  const calls = new Map<string, { ok: boolean, text: string }>()
  const instrument = (p: Policy, at: string): Policy => {
    const copy: Record<string, unknown> = { ...p }
    const original = p.check
    if (typeof original === 'function') {
      copy.check = (id: ClientIdentity, req: unknown): unknown => {
        let value: unknown
        try {
          value = original(id, req)
        } catch (err) {
          calls.set(at, { ok: false, text: `threw: ${errorText(err)}` })
          throw err
        }
        const record = (v: unknown): unknown => {
          calls.set(at, { ok: v === true, text: v === true ? 'returned true' : `returned ${show(v)}` })
          return v
        }
        if (value !== null && typeof (value as { then?: unknown })?.then === 'function') {
          return Promise.resolve(value).then(record, (err: unknown) => {
            calls.set(at, { ok: false, text: `rejected: ${errorText(err)}` })
            throw err
          })
        }
        return record(value)
      }
    }
    if (Array.isArray(p.anyOf)) copy.anyOf = p.anyOf.map((alt, i) => instrument(alt, `${at}.anyOf[${i}]`))
    return copy as Policy
  }
  const compiled = compilePolicy(instrument(policy, 'policy'), { anchorNames })
  const matched = await compiled(identity, request)

  const lines: PolicyLine[] = []
  let firstFailure: string | undefined
  const walk = (p: Policy, at: string, depth: number): boolean => {
    let all = true
    const fieldFailed = (rule: string, text: string): void => {
      all = false
      lines.push({ depth, rule, status: 'fail', text })
      firstFailure ??= `${rule} does not match (${text})`
    }
    for (const [key, value] of Object.entries(p)) {
      if (key === 'check' || key === 'anyOf') continue
      if (key === 'subject' || key === 'issuer') {
        for (const [attr, matcher] of Object.entries(value as Record<string, unknown>)) {
          const rule = `${at}.${key}.${attr}`
          const ok = compilePolicy({ [key]: { [attr]: matcher } } as Policy, { anchorNames })(identity, request) as boolean
          const text = `${show(matcher)} against ${seen(identity, key)}`
          if (ok) lines.push({ depth, rule, status: 'pass', text })
          else fieldFailed(rule, text)
        }
        continue
      }
      const ok = compilePolicy({ [key]: value } as Policy, { anchorNames })(identity, request) as boolean
      const text = `${show(value)} against ${seen(identity, key)}`
      if (ok) lines.push({ depth, rule: `${at}.${key}`, status: 'pass', text })
      else fieldFailed(`${at}.${key}`, text)
    }
    if (Array.isArray(p.anyOf)) {
      const rule = `${at}.anyOf`
      const index = lines.length
      lines.push({ depth, rule, status: 'skip', text: '' })
      const before = firstFailure
      const results = p.anyOf.map((alt, i) => walk(alt, `${rule}[${i}]`, depth + 1))
      const some = results.some(Boolean)
      // inside anyOf a failing alternative is not the reason unless none matched
      firstFailure = before
      lines[index] = { depth, rule, status: some ? 'pass' : 'fail', text: some ? `alternative ${results.indexOf(true)} matches` : `none of the ${results.length} alternatives matches` }
      if (!some) {
        all = false
        firstFailure ??= `${rule}: none of the ${results.length} alternatives matches`
      }
    }
    if (p.check !== undefined) {
      const call = calls.get(at)
      const rule = `${at}.check`
      if (call === undefined) {
        lines.push({ depth, rule, status: 'skip', text: 'not called (another rule at this level did not match, or another alternative matched first)' })
        all = false
      } else if (call.ok) {
        lines.push({ depth, rule, status: 'pass', text: call.text })
      } else {
        fieldFailed(rule, call.text)
      }
    }
    return all
  }
  walk(policy, 'policy', 0)
  // the compiled policy is the verdict; the breakdown only says why
  const reason = matched
    ? 'the policy allows this identity'
    : firstFailure ?? 'the policy does not match'
  return { matched, reason, lines }
}
