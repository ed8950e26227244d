// A verified path -> ClientIdentity: every name from the DER, nothing split out of Node's strings.
import type { X509Certificate } from 'node:crypto'
import type { ParsedCertificate } from './der/certificate.js'
import { ipToString } from './der/general-name.js'
import type { ParsedName } from './der/name.js'
import { getCertificate } from './der/store.js'
import type { ClientIdentity, DistinguishedName, SubjectAltNames, TrustAnchorInfo, VerifySuccess } from './types.js'

function publicName (n: ParsedName): DistinguishedName {
  return Object.freeze({ rdns: n.rdns, attributes: n.attributes, rfc4514: n.rfc4514 })
}

function sans (cert: ParsedCertificate): SubjectAltNames {
  const dns: string[] = []
  const uri: string[] = []
  const email: string[] = []
  const ip: string[] = []
  for (const gn of cert.subjectAltNames ?? []) {
    if (gn.kind === 'dns') dns.push(gn.value)
    else if (gn.kind === 'uri') uri.push(gn.value)
    else if (gn.kind === 'email') email.push(gn.value)
    else if (gn.kind === 'ip') ip.push(ipToString(gn.bytes))
  }
  return Object.freeze({ dns: Object.freeze(dns), uri: Object.freeze(uri), email: Object.freeze(email), ip: Object.freeze(ip) })
}

const TRUST_DOMAIN = /^[a-z0-9._-]+$/
const PATH_SEGMENT = /^[A-Za-z0-9._-]+$/

/** A well-formed SPIFFE ID (SPIFFE X.509-SVID and SPIFFE ID specifications), or false. */
export function isSpiffeId (uri: string): boolean {
  if (!uri.startsWith('spiffe://') || uri.length > 2048) return false
  const rest = uri.slice('spiffe://'.length)
  const slash = rest.indexOf('/')
  const trustDomain = slash < 0 ? rest : rest.slice(0, slash)
  if (trustDomain.length === 0 || trustDomain.length > 255 || !TRUST_DOMAIN.test(trustDomain)) return false
  if (slash < 0) return true
  const segments = rest.slice(slash + 1).split('/')
  return segments.every((s) => s !== '.' && s !== '..' && PATH_SEGMENT.test(s))
}

/** The SPIFFE ID of an X.509-SVID: exactly one URI SAN, a SPIFFE ID with a path, on a non-CA certificate. */
export function spiffeIdOf (cert: ParsedCertificate, uris: readonly string[]): string | null {
  if (cert.basicConstraints?.ca === true || uris.length !== 1) return null
  const id = uris[0] as string
  if (!isSpiffeId(id)) return null
  // a leaf SVID's ID must have a path (the bare trust domain identifies no workload)
  return id.indexOf('/', 'spiffe://'.length) > 0 ? id : null
}

export interface IdentityInput {
  path: readonly ParsedCertificate[]
  trustAnchor: TrustAnchorInfo
  source: 'tls' | 'forwarded'
}

/** The identity of a verified path (the plugin's hot path: the path is already parsed). */
export function identityFromPath ({ path, trustAnchor, source }: IdentityInput): ClientIdentity {
  const leaf = path[0]
  if (leaf === undefined) throw new TypeError('identityFromPath needs a non-empty path')
  const san = sans(leaf)
  let chain: readonly X509Certificate[] | undefined
  return Object.freeze({
    source,
    subject: publicName(leaf.subject),
    issuer: publicName(leaf.issuer),
    serialNumber: leaf.serialHex,
    fingerprint256: leaf.fingerprint256,
    thumbprintSha256: leaf.sha256.toString('base64url'),
    spkiSha256: leaf.spkiSha256,
    notBefore: new Date(leaf.notBefore.getTime()),
    notAfter: new Date(leaf.notAfter.getTime()),
    san,
    spiffeId: spiffeIdOf(leaf, san.uri),
    trustAnchor,
    // node:crypto certificates are built on first read (each costs ~0.3 ms)
    get certificate () {
      return leaf.x509
    },
    get chain () {
      chain ??= Object.freeze(path.map((c) => c.x509))
      return chain
    }
  })
}

/** The ClientIdentity of a successful verifyCertificateChain result. */
export function buildIdentity (verified: VerifySuccess, source: 'tls' | 'forwarded' = 'tls'): ClientIdentity {
  if (verified?.ok !== true || !Array.isArray(verified.chain)) throw new TypeError('buildIdentity needs a successful verifyCertificateChain result')
  return identityFromPath({ path: verified.chain.map((c) => getCertificate(c.raw)), trustAnchor: verified.trustAnchor, source })
}
