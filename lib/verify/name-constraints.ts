// Name constraints (RFC 5280 4.2.1.10 and 6.1.3(b)): DNS, email, URI, IP and directory names.
// Constraint forms this code cannot evaluate (otherName, x400, ediParty, registeredID)
// fail closed when the certificate carries a name of that form.
import { isMailbox, isPreferredDnsName, type NameConstraints, type ParsedCertificate } from '../der/certificate.js'
import type { GeneralName } from '../der/general-name.js'
import { nameWithin } from '../der/name.js'
import { OID } from '../der/oids.js'

/** Upper bound on name-versus-constraint comparisons for one path (the nc-dos cases). */
export const MAX_NC_COMPARISONS = 1 << 16

export class Budget {
  used = 0
  constructor (readonly max: number) {}
  spend (n: number): boolean {
    this.used += n
    return this.used <= this.max
  }
}

const lower = (s: string): string => s.toLowerCase()

function dnsWithin (name: string, base: string): boolean {
  if (base === '') return true
  const n = lower(name)
  const b = lower(base)
  return n === b || n.endsWith('.' + b)
}

function hostWithin (host: string, base: string): boolean {
  const h = lower(host)
  const b = lower(base)
  if (b.startsWith('.')) return h.endsWith(b) && h.length > b.length
  return h === b
}

function emailWithin (mailbox: string, base: string): boolean {
  const at = mailbox.lastIndexOf('@')
  const host = mailbox.slice(at + 1)
  if (base.includes('@')) {
    const bat = base.lastIndexOf('@')
    return mailbox.slice(0, at) === base.slice(0, bat) && lower(host) === lower(base.slice(bat + 1))
  }
  return hostWithin(host, base)
}

/** The host of a URI with an authority, or undefined (URNs, IP literals, malformed). */
export function uriHost (uri: string): string | undefined {
  // only RFC 3986 characters: anything else (a backslash, a space) is read differently by different parsers
  if (!/^[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=%]*$/.test(uri)) return undefined
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/(?:[^@/?#]*@)?([^:/?#]*)(?::\d*)?(?:[/?#]|$)/.exec(uri)
  if (m === null) return undefined
  const host = m[1] as string
  return isPreferredDnsName(host) && !host.startsWith('*') ? host : undefined
}

function ipWithin (ip: Buffer, constraint: Buffer): boolean {
  if (constraint.length !== ip.length * 2) return false
  for (let i = 0; i < ip.length; i++) {
    const mask = constraint[ip.length + i] as number
    if (((ip[i] as number) & mask) !== ((constraint[i] as number) & mask)) return false
  }
  return true
}

/** Why a constraint is malformed, or undefined. */
export function constraintError (c: GeneralName): string | undefined {
  switch (c.kind) {
    case 'dns':
      if (c.value === '') return undefined
      return isPreferredDnsName(c.value) && !c.value.startsWith('*') ? undefined : `malformed dNSName constraint ${JSON.stringify(c.value)}`
    case 'email': {
      if (c.value.includes('@')) return isMailbox(c.value) ? undefined : `malformed rfc822Name constraint ${JSON.stringify(c.value)}`
      const host = c.value.startsWith('.') ? c.value.slice(1) : c.value
      return isPreferredDnsName(host) && !host.startsWith('*') ? undefined : `malformed rfc822Name constraint ${JSON.stringify(c.value)}`
    }
    case 'uri': {
      const host = c.value.startsWith('.') ? c.value.slice(1) : c.value
      return isPreferredDnsName(host) && !host.startsWith('*') ? undefined : `malformed URI constraint ${JSON.stringify(c.value)}`
    }
    case 'ip': {
      if (c.bytes.length !== 8 && c.bytes.length !== 32) return 'iPAddress constraint must be 8 or 32 bytes (address and mask)'
      const mask = c.bytes.subarray(c.bytes.length / 2)
      let seenZero = false
      for (const byte of mask) {
        for (let bit = 7; bit >= 0; bit--) {
          const one = ((byte >> bit) & 1) === 1
          if (one && seenZero) return 'iPAddress constraint mask is not a CIDR prefix'
          if (!one) seenZero = true
        }
      }
      return undefined
    }
    default:
      return undefined
  }
}

function matches (name: GeneralName, c: GeneralName): boolean {
  switch (c.kind) {
    case 'dns': return name.kind === 'dns' && dnsWithin(name.value, c.value)
    case 'email': return name.kind === 'email' && emailWithin(name.value, c.value)
    case 'uri': {
      if (name.kind !== 'uri') return false
      const host = uriHost(name.value)
      return host !== undefined && hostWithin(host, c.value)
    }
    case 'ip': return name.kind === 'ip' && ipWithin(name.bytes, c.bytes)
    case 'dirName': return name.kind === 'dirName' && nameWithin(name.name, c.name)
    default: return false
  }
}

/** A wildcard DNS SAN could stand for a name inside an excluded subtree. */
function wildcardMayHit (name: GeneralName, c: GeneralName): boolean {
  if (name.kind !== 'dns' || c.kind !== 'dns' || !name.value.startsWith('*.')) return false
  return dnsWithin(c.value, name.value.slice(2))
}

/** The names of `cert` that constraints apply to. */
export function constrainedNames (cert: ParsedCertificate, includeSubject: boolean): GeneralName[] {
  const names: GeneralName[] = []
  if (includeSubject && !cert.subject.empty) {
    names.push({ kind: 'dirName', name: cert.subject })
    for (const rdn of cert.subject.rdns) {
      for (const a of rdn) if (a.oid === OID_EMAIL) names.push({ kind: 'email', value: a.value })
    }
  }
  if (cert.subjectAltNames !== undefined) names.push(...cert.subjectAltNames)
  return names
}

const OID_EMAIL = '1.2.840.113549.1.9.1'
const EVALUATED = new Set(['dns', 'email', 'uri', 'ip', 'dirName'])

/**
 * Checks `names` against one CA's constraints. Returns a reason on violation,
 * malformed constraints or exhausted budget; undefined when allowed.
 */
export function checkNameConstraints (nc: NameConstraints, names: readonly GeneralName[], budget: Budget): string | undefined {
  const permitted = nc.permitted ?? []
  const excluded = nc.excluded ?? []
  if (!budget.spend((permitted.length + excluded.length) * Math.max(names.length, 1))) {
    return 'name constraints need too many comparisons'
  }
  for (const c of permitted) {
    const err = constraintError(c)
    if (err !== undefined) return err
  }
  for (const c of excluded) {
    const err = constraintError(c)
    if (err !== undefined) return err
  }
  for (const name of names) {
    if (name.kind === 'email' && !isMailbox(name.value)) {
      if (permitted.some((c) => c.kind === 'email') || excluded.some((c) => c.kind === 'email')) return `rfc822Name ${JSON.stringify(name.value)} is not a mailbox`
    }
    const sameKind = (c: GeneralName): boolean => c.kind === name.kind
    if (!EVALUATED.has(name.kind)) {
      if (permitted.some(sameKind) || excluded.some(sameKind)) return `a ${name.kind} name cannot be checked against ${name.kind} constraints`
      continue
    }
    if (name.kind === 'uri' && (permitted.some(sameKind) || excluded.some(sameKind)) && uriHost(name.value) === undefined) {
      return `URI ${JSON.stringify(name.value)} has no host name to check against URI constraints`
    }
    for (const c of excluded) {
      if (c.kind === name.kind && (matches(name, c) || wildcardMayHit(name, c))) return `${describe(name)} is in an excluded subtree`
    }
    const ofKind = permitted.filter(sameKind)
    if (ofKind.length > 0 && !ofKind.some((c) => matches(name, c))) return `${describe(name)} is outside the permitted subtrees`
  }
  return undefined
}

function describe (name: GeneralName): string {
  switch (name.kind) {
    case 'dns': return `dNSName ${JSON.stringify(name.value)}`
    case 'email': return `rfc822Name ${JSON.stringify(name.value)}`
    case 'uri': return `URI ${JSON.stringify(name.value)}`
    case 'ip': return `iPAddress ${name.bytes.toString('hex')}`
    case 'dirName': return `directoryName "${name.name.rfc4514}"`
    default: return `${name.kind} name`
  }
}

export { OID }
