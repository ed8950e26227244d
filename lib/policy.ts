// Compiles a `Policy` once into a predicate over a verified `ClientIdentity`.
//
// Everything that can be wrong with a policy is found here, at compile time,
// and thrown as a PolicyError naming the exact place (`policy.anyOf[1].dns[0]`).
// The predicate itself parses nothing: patterns become Sets, RegExps and byte
// arrays once, and the caller's policy object is copied, never kept or changed.
//
// Matching rules (the README documents the same list):
// - All fields are ANDed; `anyOf` alternatives are ORed; `{}` allows any identity.
//   Unknown keys, `undefined` values, empty arrays and empty strings are refused.
// - Strings match exactly. RegExps must match the whole value: the source must
//   start with `^` and end with an unescaped `$`, have no top-level `|`, and the
//   `g`, `y` and `m` flags are refused.
// - `dns`: ASCII case-insensitive; `*` matches exactly one non-empty label and
//   must be a whole label. A RegExp sees the name ASCII-lowercased.
// - `uri`, `spiffeId`: `*` matches exactly one non-empty path segment and must
//   be a whole segment; a trailing `/**` matches ONE or more further segments
//   (so `spiffe://td/a/**` does not match `spiffe://td/a`: list both to allow
//   both). The scheme, authority, query and fragment are literal.
// - `email` and subject/issuer attributes: exact, case-sensitive, no glob.
// - SAN matchers only look at SANs of their own type; `spiffeId` only at
//   `identity.spiffeId`. A matcher matches when any value matches any pattern.
// - A name with more than one CN has no usable CN: a CN matcher never matches it.
// - `ip`: IPv4/IPv6 addresses or CIDRs compared as bytes; the families never
//   cross, and an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is an IPv6 address.
// - `check` is called last at its level, only when everything else there has
//   matched; alternatives with checks are tried one after another. Anything
//   but `true` (including a throw or a rejection) is a mismatch.
import { createHash, type X509Certificate } from 'node:crypto'
import { types } from 'node:util'
import type { ClientIdentity, DistinguishedName, Policy } from './types.js'

export class PolicyError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'PolicyError'
  }
}

export interface CompileOptions {
  /** Labels of the configured trust anchors: an `anchor` naming any other label is refused. */
  anchorNames?: readonly string[]
  /** Receives what a `check` threw or rejected with, or a TypeError when it returned something other than a boolean. */
  onCheckError?: (err: unknown) => void
}

export interface CompiledPolicy<Req> {
  /** A boolean when `isAsync` is false; always a Promise when it is true. */
  (identity: ClientIdentity, request: Req): boolean | Promise<boolean>
  /** True when the policy or a nested one has a `check`. */
  readonly isAsync: boolean
  /** True when some way of satisfying the policy matches names without an `anchor`, `issuerSpkiSha256` or leaf pin binding it. */
  readonly matchesNamesOnly: boolean
}

const POLICY_KEYS = [
  'anchor', 'subject', 'issuer', 'dns', 'uri', 'email', 'ip', 'spiffeId',
  'fingerprint256', 'spkiSha256', 'issuerSpkiSha256', 'check', 'anyOf'
] as const
type PolicyKey = typeof POLICY_KEYS[number]

const CN_OID = '2.5.4.3'

// Short names (matched case-insensitively, as RFC 4514 says of attribute types)
// and the long names OpenSSL and X.520 use for the same attributes.
const ATTRIBUTE_NAMES: ReadonlyArray<readonly [string, string]> = [
  ['CN', CN_OID], ['commonName', CN_OID],
  ['surname', '2.5.4.4'],
  ['serialNumber', '2.5.4.5'],
  ['C', '2.5.4.6'], ['countryName', '2.5.4.6'],
  ['L', '2.5.4.7'], ['localityName', '2.5.4.7'],
  ['ST', '2.5.4.8'], ['stateOrProvinceName', '2.5.4.8'],
  ['street', '2.5.4.9'], ['streetAddress', '2.5.4.9'],
  ['O', '2.5.4.10'], ['organizationName', '2.5.4.10'],
  ['OU', '2.5.4.11'], ['organizationalUnitName', '2.5.4.11'],
  ['title', '2.5.4.12'],
  ['description', '2.5.4.13'],
  ['businessCategory', '2.5.4.15'],
  ['postalCode', '2.5.4.17'],
  ['givenName', '2.5.4.42'], ['GN', '2.5.4.42'],
  ['initials', '2.5.4.43'],
  ['generationQualifier', '2.5.4.44'],
  ['dnQualifier', '2.5.4.46'],
  ['pseudonym', '2.5.4.65'],
  ['organizationIdentifier', '2.5.4.97'],
  ['DC', '0.9.2342.19200300.100.1.25'], ['domainComponent', '0.9.2342.19200300.100.1.25'],
  ['UID', '0.9.2342.19200300.100.1.1'], ['userId', '0.9.2342.19200300.100.1.1'],
  ['emailAddress', '1.2.840.113549.1.9.1'],
  ['jurisdictionL', '1.3.6.1.4.1.311.60.2.1.1'],
  ['jurisdictionST', '1.3.6.1.4.1.311.60.2.1.2'],
  ['jurisdictionC', '1.3.6.1.4.1.311.60.2.1.3']
]
const ATTRIBUTE_OIDS: ReadonlyMap<string, string> = new Map(ATTRIBUTE_NAMES.map(([name, oid]) => [name.toLowerCase(), oid]))
const OID = /^[0-2](?:\.(?:0|[1-9][0-9]*))+$/

type Identity = ClientIdentity
type Test = (identity: Identity) => boolean

interface Node<Req> {
  /** The synchronous conditions of this node and its alternatives: the whole verdict when `hasAsync` is false. */
  readonly pre: Test
  /** The rest of the verdict once `pre` has passed (the checks). */
  readonly rest: (identity: Identity, request: Req) => boolean | Promise<boolean>
  readonly hasAsync: boolean
  readonly namesOnly: (nameAbove: boolean) => boolean
}

interface Context {
  readonly anchorNames: ReadonlySet<string> | null
  readonly onCheckError: (err: unknown) => void
}

const ignore = (): void => {}

export function compilePolicy<Req = unknown> (policy: Policy<Req>, options: CompileOptions = {}): CompiledPolicy<Req> {
  const { anchorNames, onCheckError } = options
  if (anchorNames !== undefined && (!Array.isArray(anchorNames) || !anchorNames.every(name => typeof name === 'string'))) {
    throw new TypeError('options.anchorNames must be an array of strings')
  }
  if (onCheckError !== undefined && typeof onCheckError !== 'function') {
    throw new TypeError('options.onCheckError must be a function')
  }
  const context: Context = {
    anchorNames: anchorNames === undefined ? null : new Set(anchorNames),
    onCheckError: onCheckError ?? ignore
  }
  const root = compileNode<Req>(policy, 'policy', context, new Set())
  // Without a `check`, the verdict is a function of the identity alone, and the plugin's identities
  // are frozen and shared by every request of a connection (and every connection of a cached
  // certificate): the answer is remembered per frozen identity, a WeakMap read instead of
  // walking names on every request. An identity that is not frozen is evaluated every time.
  const verdicts = new WeakMap<Identity, boolean>()
  const predicate = root.hasAsync
    ? async (identity: Identity, request: Req): Promise<boolean> => root.pre(identity) && await root.rest(identity, request)
    : (identity: Identity): boolean => {
        const known = verdicts.get(identity)
        if (known !== undefined) return known
        const answer = root.pre(identity)
        if (Object.isFrozen(identity)) verdicts.set(identity, answer)
        return answer
      }
  return Object.freeze(Object.assign(predicate, {
    isAsync: root.hasAsync,
    matchesNamesOnly: root.namesOnly(false)
  }))
}

/** Throws a PolicyError when `policy` is not a valid Policy. `path` names it in messages. */
export function validatePolicy (policy: unknown, path: string = 'policy'): void {
  compileNode(policy, path, { anchorNames: null, onCheckError: ignore }, new Set())
}

function compileNode<Req> (policy: unknown, path: string, context: Context, ancestors: Set<object>): Node<Req> {
  const fields = readPlainObject(policy, path, 'a policy object')
  if (ancestors.has(fields.source)) throw new PolicyError(`${path}: the policy contains itself (a cycle through anyOf)`)

  const given = new Map<PolicyKey, unknown>()
  for (const [key, value] of fields.entries) {
    if (!(POLICY_KEYS as readonly string[]).includes(key)) {
      throw new PolicyError(`${path}: unknown key ${JSON.stringify(key)}${suggest(key, POLICY_KEYS)}`)
    }
    given.set(key as PolicyKey, value)
  }

  // Cheapest first: the first failing test ends the evaluation.
  const tests: Test[] = []
  const field = (key: PolicyKey): unknown => given.get(key)
  const at = (key: string): string => `${path}.${key}`

  if (given.has('anchor')) tests.push(compileAnchor(field('anchor'), at('anchor'), context))
  if (given.has('fingerprint256')) {
    const pins = compileStringSet(field('fingerprint256'), at('fingerprint256'), parseFingerprint)
    tests.push(identity => pins.has(identity.fingerprint256.replaceAll(':', '').toUpperCase()))
  }
  if (given.has('spkiSha256')) {
    const pins = compileStringSet(field('spkiSha256'), at('spkiSha256'), parseSpkiSha256)
    tests.push(identity => pins.has(identity.spkiSha256))
  }
  if (given.has('spiffeId')) {
    const matches = compileMatcher(field('spiffeId'), at('spiffeId'), compileSpiffePattern)
    tests.push(identity => identity.spiffeId !== null && matches([identity.spiffeId]))
  }
  if (given.has('dns')) {
    const matches = compileMatcher(field('dns'), at('dns'), compileDnsPattern, asciiLowerCase)
    tests.push(identity => matches(identity.san.dns))
  }
  if (given.has('uri')) {
    const matches = compileMatcher(field('uri'), at('uri'), compileUriPattern)
    tests.push(identity => matches(identity.san.uri))
  }
  if (given.has('email')) {
    const matches = compileMatcher(field('email'), at('email'), compileLiteralPattern)
    tests.push(identity => matches(identity.san.email))
  }
  if (given.has('ip')) {
    const ranges = compileStrings(field('ip'), at('ip'), parseIpRange)
    tests.push(identity => sanIpBytes(identity).some(address => ranges.some(range => inRange(address, range))))
  }
  if (given.has('subject')) {
    const matches = compileName(field('subject'), at('subject'))
    tests.push(identity => matches(identity.subject))
  }
  if (given.has('issuer')) {
    const matches = compileName(field('issuer'), at('issuer'))
    tests.push(identity => matches(identity.issuer))
  }
  // Last: its first call per identity hashes every issuing certificate's key.
  if (given.has('issuerSpkiSha256')) {
    const pins = compileStringSet(field('issuerSpkiSha256'), at('issuerSpkiSha256'), parseSpkiSha256)
    tests.push(identity => {
      for (const hash of issuerSpkiHashes(identity)) if (pins.has(hash)) return true
      return false
    })
  }

  let check: ((identity: Identity, request: Req) => unknown) | null = null
  if (given.has('check')) {
    const value = field('check')
    if (typeof value !== 'function') throw new PolicyError(`${at('check')}: must be a function (identity, request) => boolean | Promise<boolean>, got ${describe(value)}`)
    check = value as (identity: Identity, request: Req) => unknown
  }

  let alternatives: ReadonlyArray<Node<Req>> | null = null
  if (given.has('anyOf')) {
    const list = readArray(field('anyOf'), at('anyOf'), 'an array of policies')
    ancestors.add(fields.source)
    alternatives = list.map((alternative, i) => compileNode<Req>(alternative, `${path}.anyOf[${i}]`, context, ancestors))
    ancestors.delete(fields.source)
  }

  const checkPath = at('check')
  const syncAlternatives = alternatives?.filter(alternative => !alternative.hasAsync) ?? []
  const asyncAlternatives = alternatives?.filter(alternative => alternative.hasAsync) ?? []

  const pre: Test = identity => {
    for (const test of tests) if (!test(identity)) return false
    return alternatives === null || alternatives.some(alternative => alternative.pre(identity))
  }

  const restOfAlternatives = (identity: Identity, request: Req): true | Promise<boolean> => {
    if (alternatives === null || syncAlternatives.some(alternative => alternative.pre(identity))) return true
    return firstTrue(asyncAlternatives.filter(alternative => alternative.pre(identity)), identity, request)
  }

  const rest = (identity: Identity, request: Req): boolean | Promise<boolean> => {
    const others = restOfAlternatives(identity, request)
    if (check === null) return others
    const run = check
    if (others === true) return runCheck(run, identity, request, checkPath, context.onCheckError)
    return others.then(ok => ok && runCheck(run, identity, request, checkPath, context.onCheckError))
  }

  const names = given.has('subject') || given.has('issuer') || given.has('dns') || given.has('uri') ||
    given.has('email') || given.has('ip') || given.has('spiffeId')
  const bound = given.has('anchor') || given.has('issuerSpkiSha256') || given.has('fingerprint256') || given.has('spkiSha256')
  // A binding here binds every alternative below (they are ANDed with it).
  const namesOnly = (nameAbove: boolean): boolean => {
    if (bound) return false
    const named = nameAbove || names
    return alternatives === null ? named : alternatives.some(alternative => alternative.namesOnly(named))
  }

  return {
    pre,
    rest,
    hasAsync: check !== null || asyncAlternatives.length > 0,
    namesOnly
  }
}

async function firstTrue<Req> (candidates: ReadonlyArray<Node<Req>>, identity: Identity, request: Req): Promise<boolean> {
  for (const candidate of candidates) {
    if (await candidate.rest(identity, request)) return true
  }
  return false
}

function runCheck<Req> (
  check: (identity: Identity, request: Req) => unknown,
  identity: Identity,
  request: Req,
  path: string,
  onCheckError: (err: unknown) => void
): boolean | Promise<boolean> {
  const report = (err: unknown): false => {
    try {
      onCheckError(err)
    } catch {
      // A failing error handler must not turn a refusal into something else.
    }
    return false
  }
  const verdict = (value: unknown): boolean => {
    if (value === true) return true
    if (value !== false) report(new TypeError(`${path} returned ${describe(value)}, not a boolean: counted as a mismatch`))
    return false
  }
  try {
    const result = check(identity, request)
    if (isThenable(result)) return Promise.resolve(result).then(verdict, report)
    return verdict(result)
  } catch (err) {
    return report(err)
  }
}

function isThenable (value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
}

// ---------------------------------------------------------------------------
// Reading the caller's objects: once, own keys only, plain objects only (a
// RegExp or a class instance passed as a policy would otherwise read as `{}`).

interface PlainFields {
  readonly source: object
  readonly entries: ReadonlyArray<readonly [string, unknown]>
}

function readPlainObject (value: unknown, path: string, what: string): PlainFields {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new PolicyError(`${path}: must be ${what}, got ${describe(value)}`)
  }
  const proto: unknown = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null) {
    throw new PolicyError(`${path}: must be a plain object (${what}), got ${describe(value)}`)
  }
  const entries: Array<readonly [string, unknown]> = []
  for (const key of Object.keys(value)) {
    const item: unknown = (value as Record<string, unknown>)[key]
    if (item === undefined) {
      throw new PolicyError(`${path}: ${JSON.stringify(key)} is undefined: omit the key or give it a value (an unset value must not widen the policy)`)
    }
    entries.push([key, item])
  }
  return { source: value, entries }
}

function readArray (value: unknown, path: string, what: string): readonly unknown[] {
  if (!Array.isArray(value)) throw new PolicyError(`${path}: must be ${what}, got ${describe(value)}`)
  if (value.length === 0) throw new PolicyError(`${path}: empty array: an empty list matches nothing; remove the key or add an entry`)
  return Array.from(value as unknown[])
}

/** A single string or a non-empty array of them, each parsed once. */
function compileStrings<T> (value: unknown, path: string, parse: (text: string, path: string) => T): readonly T[] {
  const list = Array.isArray(value) ? readArray(value, path, 'a string or an array of strings') : [value]
  return Object.freeze(list.map((item, i) => {
    const itemPath = Array.isArray(value) ? `${path}[${i}]` : path
    if (typeof item !== 'string') throw new PolicyError(`${itemPath}: must be a string, got ${describe(item)}`)
    if (item === '') throw new PolicyError(`${itemPath}: empty string`)
    return parse(item, itemPath)
  }))
}

function compileStringSet (value: unknown, path: string, parse: (text: string, path: string) => string): ReadonlySet<string> {
  return new Set(compileStrings(value, path, parse))
}

// ---------------------------------------------------------------------------
// String and RegExp matchers

/** A string pattern becomes either an exact value or a RegExp. */
type Pattern = { exact: string } | { regExp: RegExp }

function compileMatcher (
  value: unknown,
  path: string,
  compileString: (text: string, path: string) => Pattern,
  normalise: (text: string) => string = text => text
): (values: readonly string[]) => boolean {
  const list = Array.isArray(value) ? readArray(value, path, 'a string, a RegExp or an array of them') : [value]
  const exact = new Set<string>()
  const regExps: RegExp[] = []
  list.forEach((item, i) => {
    const itemPath = Array.isArray(value) ? `${path}[${i}]` : path
    if (types.isRegExp(item)) {
      regExps.push(copyRegExp(item, itemPath))
      return
    }
    if (typeof item !== 'string') throw new PolicyError(`${itemPath}: must be a string or a RegExp, got ${describe(item)}`)
    if (item === '') throw new PolicyError(`${itemPath}: empty string`)
    const pattern = compileString(item, itemPath)
    if ('exact' in pattern) exact.add(pattern.exact)
    else regExps.push(pattern.regExp)
  })
  return values => {
    for (const raw of values) {
      const text = normalise(raw)
      if (exact.has(text)) return true
      for (const regExp of regExps) if (regExp.test(text)) return true
    }
    return false
  }
}

/** A private copy (RegExp.prototype.compile could change the caller's in place), after checking it matches whole values only. */
function copyRegExp (regExp: RegExp, path: string): RegExp {
  const { source, flags } = regExp
  const shown = `RegExp /${source}/${flags}`
  for (const flag of ['g', 'y']) {
    if (flags.includes(flag)) throw new PolicyError(`${path}: ${shown}: the ${flag} flag is not allowed (it makes test() stateful through lastIndex)`)
  }
  if (flags.includes('m')) throw new PolicyError(`${path}: ${shown}: the m flag is not allowed (^ and $ would match at line breaks, not only at the ends of the value)`)
  const problem = anchoringProblem(source, flags.includes('v'))
  if (problem !== null) throw new PolicyError(`${path}: ${shown} must be anchored with ^ and $ to match the whole value: ${problem}`)
  return new RegExp(source, flags)
}

function anchoringProblem (source: string, nestedClasses: boolean): string | null {
  if (!source.startsWith('^')) return 'it does not start with ^'
  if (!source.endsWith('$')) return 'it does not end with $'
  let backslashes = 0
  for (let i = source.length - 2; source[i] === '\\'; i--) backslashes++
  if (backslashes % 2 === 1) return 'its final \\$ is an escaped, literal dollar sign'
  let groupDepth = 0
  let classDepth = 0
  for (let i = 0; i < source.length; i++) {
    const char = source[i]
    if (char === '\\') {
      i++
    } else if (classDepth > 0) {
      if (char === ']') classDepth--
      else if (char === '[' && nestedClasses) classDepth++
    } else if (char === '[') {
      classDepth = 1
    } else if (char === '(') {
      groupDepth++
    } else if (char === ')') {
      groupDepth--
    } else if (char === '|' && groupDepth === 0) {
      return 'it has a top-level | (each alternative is anchored at one end only); wrap the alternatives in a group, as in /^(?:a|b)$/'
    }
  }
  return null
}

const escapeRegExp = (text: string): string => text.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&')

function compileLiteralPattern (text: string): Pattern {
  return { exact: text }
}

// Only ASCII letters fold: String.prototype.toLowerCase would turn the Kelvin
// sign (U+212A) into "k" and let a look-alike name match.
function asciiLowerCase (text: string): string {
  return text.replace(/[A-Z]+/g, letters => letters.toLowerCase())
}

function compileDnsPattern (text: string, path: string): Pattern {
  const shown = JSON.stringify(text)
  if (/[^\x21-\x7e]/.test(text)) {
    throw new PolicyError(`${path}: ${shown} has a space or a non-ASCII character: write internationalised names in their A-label (xn--) form`)
  }
  const name = asciiLowerCase(text)
  const labels = name.split('.')
  for (const label of labels) {
    if (label === '') throw new PolicyError(`${path}: ${shown} has an empty label (a leading, trailing or double dot)`)
    if (label === '*') continue
    if (label.includes('*')) throw new PolicyError(`${path}: ${shown}: * must be a whole label, as in *.example.com (it matches exactly one label)`)
    if (!/^[a-z0-9_-]+$/.test(label)) throw new PolicyError(`${path}: ${shown}: label ${JSON.stringify(label)} may hold only letters, digits, hyphens and underscores`)
  }
  if (!labels.includes('*')) return { exact: name }
  return { regExp: new RegExp(`^${labels.map(label => label === '*' ? '[^.]+' : escapeRegExp(label)).join('\\.')}$`) }
}

const SEGMENT = '[^/?#]+'

function globRegExp (prefix: string, segments: readonly string[], suffix: string): RegExp {
  const path = segments.map(segment => {
    if (segment === '**') return `(?:/${SEGMENT})+`
    return `/${segment === '*' ? SEGMENT : escapeRegExp(segment)}`
  }).join('')
  return new RegExp(`^${escapeRegExp(prefix)}${path}${escapeRegExp(suffix)}$`)
}

function checkGlobSegments (segments: readonly string[], path: string, shown: string, followed: boolean): void {
  segments.forEach((segment, i) => {
    if (segment === '*' || !segment.includes('*')) return
    if (segment !== '**') throw new PolicyError(`${path}: ${shown}: * must be a whole path segment, as in /a/*/b (it matches exactly one segment)`)
    if (i !== segments.length - 1 || followed) throw new PolicyError(`${path}: ${shown}: ** is only allowed as a trailing /** at the end of the pattern`)
  })
}

function compileUriPattern (text: string, path: string): Pattern {
  const shown = JSON.stringify(text)
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:/.test(text)) {
    throw new PolicyError(`${path}: ${shown} is not an absolute URI: it must start with a scheme, as in https: or spiffe:`)
  }
  if (!text.includes('*')) return { exact: text }
  const parts = /^([A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*)((?:\/[^?#]*)?)(.*)$/s.exec(text)
  if (parts === null) throw new PolicyError(`${path}: ${shown}: * is only allowed in the path of a URI with an authority (scheme://authority/path); use a RegExp for anything else`)
  const [, prefix = '', pathPart = '', suffix = ''] = parts
  if (prefix.includes('*')) throw new PolicyError(`${path}: ${shown}: * is only allowed as a whole path segment; the scheme and authority are literal`)
  if (suffix.includes('*')) throw new PolicyError(`${path}: ${shown}: * is only allowed as a whole path segment; the query and fragment are literal`)
  const segments = pathPart.split('/').slice(1)
  checkGlobSegments(segments, path, shown, suffix !== '')
  return { regExp: globRegExp(prefix, segments, suffix) }
}

function compileSpiffePattern (text: string, path: string): Pattern {
  const shown = JSON.stringify(text)
  const parts = /^spiffe:\/\/([^/]*)(.*)$/s.exec(text)
  if (parts === null) throw new PolicyError(`${path}: ${shown} is not a SPIFFE ID: it must look like spiffe://trust-domain/path`)
  const [, trustDomain = '', pathPart = ''] = parts
  if (trustDomain.includes('*')) throw new PolicyError(`${path}: ${shown}: * is only allowed as a whole path segment; the trust domain is literal`)
  if (!/^[a-z0-9._-]+$/.test(trustDomain)) {
    throw new PolicyError(`${path}: ${shown}: the trust domain must be non-empty lowercase letters, digits, dots, hyphens and underscores`)
  }
  const segments = pathPart === '' ? [] : pathPart.split('/').slice(1)
  checkGlobSegments(segments, path, shown, false)
  for (const segment of segments) {
    if (segment === '*' || segment === '**') continue
    if (segment === '') throw new PolicyError(`${path}: ${shown} has an empty path segment (a double or trailing slash)`)
    if (segment === '.' || segment === '..') throw new PolicyError(`${path}: ${shown}: a SPIFFE ID has no "." or ".." segments`)
    if (!/^[A-Za-z0-9._-]+$/.test(segment)) {
      throw new PolicyError(`${path}: ${shown}: path segment ${JSON.stringify(segment)} may hold only letters, digits, dots, hyphens and underscores (no query or fragment)`)
    }
  }
  if (!text.includes('*')) return { exact: text }
  return { regExp: globRegExp(`spiffe://${trustDomain}`, segments, '') }
}

// ---------------------------------------------------------------------------
// Subject and issuer names

function compileName (value: unknown, path: string): (name: DistinguishedName) => boolean {
  const { entries } = readPlainObject(value, path, 'an object of attribute matchers, as in { CN: \'client\', O: \'Acme\' }')
  if (entries.length === 0) throw new PolicyError(`${path}: empty object: name at least one attribute, or remove the key`)
  const seen = new Map<string, string>()
  const matchers = entries.map(([key, matcher]) => {
    const keyPath = /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`
    const oid = attributeOid(key, keyPath)
    const earlier = seen.get(oid)
    if (earlier !== undefined) throw new PolicyError(`${path}: ${JSON.stringify(earlier)} and ${JSON.stringify(key)} name the same attribute (${oid})`)
    seen.set(oid, key)
    const matches = compileMatcher(matcher, keyPath, compileLiteralPattern)
    return (name: DistinguishedName): boolean => {
      const values: string[] = []
      for (const rdn of name.rdns) {
        for (const attribute of rdn) if (attribute.oid === oid) values.push(attribute.value)
      }
      // Two CNs: which one is the client? Neither.
      if (oid === CN_OID && values.length > 1) return false
      return matches(values)
    }
  })
  return name => matchers.every(matches => matches(name))
}

function attributeOid (key: string, path: string): string {
  if (OID.test(key)) return key
  const oid = ATTRIBUTE_OIDS.get(key.toLowerCase())
  if (oid !== undefined) return oid
  if (key.toLowerCase() === 'sn') throw new PolicyError(`${path}: "SN" is ambiguous: write surname (2.5.4.4) or serialNumber (2.5.4.5)`)
  throw new PolicyError(`${path}: unknown attribute ${JSON.stringify(key)}: use a known short name (${ATTRIBUTE_NAMES.map(([name]) => name).filter(name => name.length <= 2).join(', ')}, serialNumber, emailAddress, ...) or a dotted OID such as 2.5.4.97`)
}

// ---------------------------------------------------------------------------
// anchor and pins

function compileAnchor (value: unknown, path: string, context: Context): Test {
  const names = compileStringSet(value, path, (name, itemPath) => {
    if (context.anchorNames !== null && !context.anchorNames.has(name)) {
      const known = [...context.anchorNames].map(known => JSON.stringify(known)).join(', ')
      throw new PolicyError(`${itemPath}: unknown anchor ${JSON.stringify(name)}; the labelled anchors are: ${known === '' ? '(none: label them, e.g. ca: [{ name: \'acme\', cert }])' : known}`)
    }
    return name
  })
  return identity => names.has(identity.trustAnchor.name)
}

function parseFingerprint (text: string, path: string): string {
  if (/^[0-9A-Fa-f]{64}$/.test(text) || /^[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31}$/.test(text)) {
    return text.replaceAll(':', '').toUpperCase()
  }
  throw new PolicyError(`${path}: ${JSON.stringify(text)} is not a SHA-256 fingerprint: 32 bytes of hex, with or without a colon between bytes`)
}

function parseSpkiSha256 (text: string, path: string): string {
  if (/^[A-Za-z0-9+/]{43}=?$/.test(text) || /^[A-Za-z0-9_-]{43}=?$/.test(text)) {
    return Buffer.from(text, 'base64').toString('base64')
  }
  const hint = /^[0-9A-Fa-f:]{64,}$/.test(text) ? ' (it looks like hex; SPKI pins are base64, as Envoy writes them)' : ''
  throw new PolicyError(`${path}: ${JSON.stringify(text)} is not a SHA-256 key hash: base64 or base64url of 32 bytes (44 characters, or 43 without padding)${hint}`)
}

const issuerSpkiCache = new WeakMap<Identity, readonly string[]>()

/** The base64 SHA-256 of every key above the leaf on the validated path, computed once per identity. */
function issuerSpkiHashes (identity: Identity): readonly string[] {
  let hashes = issuerSpkiCache.get(identity)
  if (hashes === undefined) {
    let chain: readonly X509Certificate[]
    try {
      chain = identity.chain
    } catch {
      // a chain node:crypto cannot load matches no pin (fail closed)
      chain = []
    }
    hashes = chain.slice(1).flatMap(cert => {
      try {
        return [createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('base64')]
      } catch {
        // A key node:crypto cannot export cannot be pinned: it matches no pin.
        return []
      }
    })
    issuerSpkiCache.set(identity, hashes)
  }
  return hashes
}

// ---------------------------------------------------------------------------
// IP addresses

interface IpRange {
  readonly bytes: Uint8Array
  readonly prefixLength: number
}

function parseIpRange (text: string, path: string): IpRange {
  const shown = JSON.stringify(text)
  const [address = '', prefix, extra] = text.split('/')
  const bytes = parseIp(address)
  if (bytes === null || extra !== undefined) {
    throw new PolicyError(`${path}: ${shown} is not an IP address or CIDR (IPv4 as in 192.0.2.1 or 192.0.2.0/24, IPv6 as in 2001:db8::/32; no zone)`)
  }
  const bits = bytes.length * 8
  if (prefix === undefined) return { bytes, prefixLength: bits }
  const prefixLength = /^(?:0|[1-9][0-9]{0,2})$/.test(prefix) ? Number(prefix) : NaN
  if (!(prefixLength <= bits)) {
    throw new PolicyError(`${path}: ${shown}: the prefix length must be a whole number from 0 to ${bits} for ${bits === 32 ? 'IPv4' : 'IPv6'}`)
  }
  const network = Uint8Array.from(bytes, (byte, i) => byte & maskByte(prefixLength, i))
  if (!network.every((byte, i) => byte === bytes[i])) {
    throw new PolicyError(`${path}: ${shown} has bits set after the /${prefixLength} prefix: did you mean ${formatIp(network)}/${prefixLength}?`)
  }
  return { bytes: network, prefixLength }
}

function maskByte (prefixLength: number, index: number): number {
  const bits = Math.min(8, Math.max(0, prefixLength - index * 8))
  return (0xff << (8 - bits)) & 0xff
}

function inRange (address: Uint8Array, range: IpRange): boolean {
  if (address.length !== range.bytes.length) return false
  for (const [i, byte] of address.entries()) {
    const mask = maskByte(range.prefixLength, i)
    if (mask === 0) return true
    if ((byte & mask) !== range.bytes[i]) return false
  }
  return true
}

const sanIpCache = new WeakMap<Identity, readonly Uint8Array[]>()

function sanIpBytes (identity: Identity): readonly Uint8Array[] {
  let addresses = sanIpCache.get(identity)
  if (addresses === undefined) {
    addresses = identity.san.ip.map(parseIp).filter((bytes): bytes is Uint8Array => bytes !== null)
    sanIpCache.set(identity, addresses)
  }
  return addresses
}

function parseIp (text: string): Uint8Array | null {
  return text.includes(':') ? parseIPv6(text) : parseIPv4(text)
}

function parseIPv4 (text: string): Buffer | null {
  const parts = text.split('.')
  if (parts.length !== 4) return null
  const bytes = Buffer.alloc(4)
  for (const [i, part] of parts.entries()) {
    // No leading zeros: 010 is octal to some parsers and decimal to others.
    if (!/^(?:0|[1-9][0-9]{0,2})$/.test(part) || Number(part) > 255) return null
    bytes[i] = Number(part)
  }
  return bytes
}

function parseIPv6 (text: string): Uint8Array | null {
  let hex = text
  if (text.includes('.')) {
    const lastColon = text.lastIndexOf(':')
    const ipv4 = parseIPv4(text.slice(lastColon + 1))
    if (ipv4 === null) return null
    hex = `${text.slice(0, lastColon + 1)}${ipv4.readUInt16BE(0).toString(16)}:${ipv4.readUInt16BE(2).toString(16)}`
  }
  const gap = hex.indexOf('::')
  let groups: string[]
  if (gap === -1) {
    groups = hex.split(':')
    if (groups.length !== 8) return null
  } else {
    if (hex.indexOf('::', gap + 1) !== -1) return null
    const left = gap === 0 ? [] : hex.slice(0, gap).split(':')
    const right = gap + 2 === hex.length ? [] : hex.slice(gap + 2).split(':')
    if (left.length + right.length > 7) return null
    groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
  }
  const bytes = Buffer.alloc(16)
  for (const [i, group] of groups.entries()) {
    if (!/^[0-9A-Fa-f]{1,4}$/.test(group)) return null
    bytes.writeUInt16BE(parseInt(group, 16), i * 2)
  }
  return bytes
}

function formatIp (bytes: Uint8Array): string {
  if (bytes.length === 4) return bytes.join('.')
  const buffer = Buffer.from(bytes)
  const groups: string[] = []
  for (let i = 0; i < 16; i += 2) groups.push(buffer.readUInt16BE(i).toString(16))
  // Plain uncompressed text is enough for a hint in an error message.
  return groups.join(':')
}

// ---------------------------------------------------------------------------
// Messages

function describe (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (types.isRegExp(value)) return String(value)
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'object') {
    const name = (Object.getPrototypeOf(value) as { constructor?: { name?: unknown } } | null)?.constructor?.name
    return typeof name === 'string' && name !== 'Object' ? `a ${name}` : 'an object'
  }
  return `${typeof value} ${String(value)}`
}

function suggest (key: string, known: readonly string[]): string {
  const close = known.find(candidate => oneEditApart(key.toLowerCase(), candidate.toLowerCase()))
  return close === undefined ? `; known keys: ${known.join(', ')}` : ` (did you mean ${JSON.stringify(close)}?)`
}

/** Equal, or one substitution, insertion, deletion or swap of neighbours apart: the usual typos. */
function oneEditApart (a: string, b: string): boolean {
  if (Math.abs(a.length - b.length) > 1) return false
  let i = 0
  while (i < a.length && a.charAt(i) === b.charAt(i)) i++
  return a.slice(i + 1) === b.slice(i + 1) ||
    a.slice(i) === b.slice(i + 1) ||
    a.slice(i + 1) === b.slice(i) ||
    (a.charAt(i) === b.charAt(i + 1) && a.charAt(i + 1) === b.charAt(i) && a.slice(i + 2) === b.slice(i + 2))
}
