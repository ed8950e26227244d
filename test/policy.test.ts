import t from 'tap'
import { execFileSync } from 'node:child_process'
import { createHash, X509Certificate } from 'node:crypto'
import { runInNewContext } from 'node:vm'
import { compilePolicy, validatePolicy, PolicyError } from '../lib/policy.js'
import type { CompileOptions } from '../lib/policy.js'
import type { ClientIdentity, DistinguishedName, NameAttribute, Policy } from '../lib/types.js'

// ---------------------------------------------------------------------------
// Fixtures: certificates made now (the key goes to /dev/null), identities as
// plain frozen objects shaped like lib/types.ts.

function selfSigned (subject: string): string {
  return execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
    '-nodes', '-subj', subject, '-days', '1', '-keyout', '/dev/null'
  ], { stdio: ['ignore', 'pipe', 'pipe'] }).toString()
}

// Computed with openssl, not with the code under test.
function spkiSha256Of (pem: string): string {
  const publicKey = execFileSync('openssl', ['x509', '-pubkey', '-noout'], { input: pem })
  const der = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'DER'], { input: publicKey })
  return createHash('sha256').update(der).digest('base64')
}

const leafPem = selfSigned('/CN=leaf')
const intermediatePem = selfSigned('/CN=intermediate')
const rootPem = selfSigned('/CN=root')
const leafCert = new X509Certificate(leafPem)
const intermediateCert = new X509Certificate(intermediatePem)
const rootCert = new X509Certificate(rootPem)
const leafSpki = spkiSha256Of(leafPem)
const intermediateSpki = spkiSha256Of(intermediatePem)
const rootSpki = spkiSha256Of(rootPem)

const TEST_OIDS: Record<string, string> = {
  CN: '2.5.4.3',
  serialNumber: '2.5.4.5',
  C: '2.5.4.6',
  O: '2.5.4.10',
  OU: '2.5.4.11',
  DC: '0.9.2342.19200300.100.1.25',
  emailAddress: '1.2.840.113549.1.9.1'
}

type Attr = readonly [type: string, value: string]

function dn (...rdns: ReadonlyArray<Attr | readonly Attr[]>): DistinguishedName {
  const list = rdns.map(rdn => {
    const attrs = (typeof rdn[0] === 'string' ? [rdn] : rdn) as readonly Attr[]
    return Object.freeze(attrs.map(([type, value]): NameAttribute => Object.freeze({ oid: TEST_OIDS[type] ?? type, type, value })))
  })
  const attributes: Record<string, string[]> = {}
  for (const rdn of list) for (const attr of rdn) (attributes[attr.type] ??= []).push(attr.value)
  for (const values of Object.values(attributes)) Object.freeze(values)
  const rfc4514 = [...list].reverse().map(rdn => rdn.map(attr => `${attr.type}=${attr.value}`).join('+')).join(',')
  return Object.freeze({ rdns: Object.freeze(list), attributes: Object.freeze(attributes), rfc4514 })
}

const LEAF_FINGERPRINT = 'AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89'
const LEAF_SPKI = 'q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k='

interface IdentitySpec {
  subject?: DistinguishedName
  issuer?: DistinguishedName
  dns?: string[]
  uri?: string[]
  email?: string[]
  ip?: string[]
  spiffeId?: string | null
  anchor?: string
  fingerprint256?: string
  spkiSha256?: string
  chain?: X509Certificate[]
}

function makeIdentity (spec: IdentitySpec = {}): ClientIdentity {
  const spiffeId = spec.spiffeId ?? null
  return Object.freeze({
    source: 'tls',
    subject: spec.subject ?? dn(['CN', 'client']),
    issuer: spec.issuer ?? dn(['CN', 'Issuing CA']),
    serialNumber: '01',
    fingerprint256: spec.fingerprint256 ?? LEAF_FINGERPRINT,
    thumbprintSha256: 'q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k',
    spkiSha256: spec.spkiSha256 ?? LEAF_SPKI,
    notBefore: new Date(0),
    notAfter: new Date(8.64e15),
    san: Object.freeze({
      dns: Object.freeze(spec.dns ?? []),
      uri: Object.freeze(spec.uri ?? (spiffeId === null ? [] : [spiffeId])),
      email: Object.freeze(spec.email ?? []),
      ip: Object.freeze(spec.ip ?? [])
    }),
    spiffeId,
    trustAnchor: Object.freeze({ name: spec.anchor ?? 'acme', fingerprint256: '00', spkiSha256: rootSpki }),
    certificate: leafCert,
    chain: Object.freeze(spec.chain ?? [leafCert, intermediateCert, rootCert])
  })
}

const REQUEST = Object.freeze({ url: '/' })

/** Sync verdict of a policy that has no checks. */
function allows (policy: Policy, identity: ClientIdentity, options?: CompileOptions): boolean {
  const compiled = compilePolicy(policy, options)
  const verdict = compiled(identity, REQUEST)
  if (typeof verdict !== 'boolean') throw new Error('expected a synchronous verdict')
  return verdict
}

function refusal (policy: unknown, options?: CompileOptions): string {
  try {
    compilePolicy(policy as Policy, options)
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err
    return err.message
  }
  throw new Error('the policy was accepted')
}

// ---------------------------------------------------------------------------

t.test('{} allows any identity, synchronously', async t => {
  const compiled = compilePolicy({})
  t.equal(compiled(makeIdentity(), REQUEST), true)
  t.equal(compiled(makeIdentity({ subject: dn(), dns: ['x.example'] }), REQUEST), true)
  t.equal(compiled.isAsync, false)
  t.equal(compiled.matchesNamesOnly, false)
  t.ok(Object.isFrozen(compiled))
})

t.test('every given field must match (AND)', async t => {
  const policy: Policy = { dns: 'api.example.com', subject: { O: 'Acme' } }
  t.equal(allows(policy, makeIdentity({ dns: ['api.example.com'], subject: dn(['O', 'Acme']) })), true)
  t.equal(allows(policy, makeIdentity({ dns: ['api.example.com'], subject: dn(['O', 'Globex']) })), false)
  t.equal(allows(policy, makeIdentity({ dns: ['web.example.com'], subject: dn(['O', 'Acme']) })), false)
})

t.test('anyOf gives alternatives (OR), ANDed with the fields beside it', async t => {
  const policy: Policy = {
    anchor: 'acme',
    anyOf: [{ dns: 'a.example' }, { anyOf: [{ email: 'b@example.com' }, { uri: 'urn:x' }] }]
  }
  t.equal(allows(policy, makeIdentity({ dns: ['a.example'] })), true)
  t.equal(allows(policy, makeIdentity({ email: ['b@example.com'] })), true)
  t.equal(allows(policy, makeIdentity({ uri: ['urn:x'] })), true)
  t.equal(allows(policy, makeIdentity({ dns: ['c.example'], email: ['c@example.com'] })), false)
  t.equal(allows(policy, makeIdentity({ dns: ['a.example'], anchor: 'globex' })), false, 'the field beside anyOf still applies')
})

t.test('malformed policies are refused with the place and the reason', async t => {
  t.equal(refusal({ subjet: { CN: 'x' } }), 'policy: unknown key "subjet" (did you mean "subject"?)')
  t.equal(refusal({ isuer: { CN: 'x' } }), 'policy: unknown key "isuer" (did you mean "issuer"?)')
  t.equal(refusal({ dsn: 'x' }), 'policy: unknown key "dsn" (did you mean "dns"?)')
  t.equal(refusal({ urn: 'x' }), 'policy: unknown key "urn" (did you mean "uri"?)')
  t.equal(refusal({ SPIFFEID: 'x' }), 'policy: unknown key "SPIFFEID" (did you mean "spiffeId"?)')
  t.equal(refusal({ anchors: 'x' }), 'policy: unknown key "anchors" (did you mean "anchor"?)')
  t.equal(refusal(() => true), 'policy: must be a policy object, got a function')
  t.match(refusal({ anyOf: [{}, { frobnicate: 1 }] }), /^policy\.anyOf\[1\]: unknown key "frobnicate"; known keys: anchor, subject, .*anyOf$/)
  t.equal(refusal({ dns: undefined }), 'policy: "dns" is undefined: omit the key or give it a value (an unset value must not widen the policy)')
  t.equal(refusal(null), 'policy: must be a policy object, got null')
  t.equal(refusal([]), 'policy: must be a policy object, got an array')
  t.equal(refusal('dns'), 'policy: must be a policy object, got "dns"')
  t.equal(refusal(/x/), 'policy: must be a plain object (a policy object), got /x/')
  t.equal(refusal(new Map()), 'policy: must be a plain object (a policy object), got a Map')
  t.equal(refusal(Object.create({ dns: 'x' })), 'policy: must be a plain object (a policy object), got an object', 'inherited fields are not read as {}')
  t.equal(refusal({ anyOf: [] }), 'policy.anyOf: empty array: an empty list matches nothing; remove the key or add an entry')
  t.equal(refusal({ anyOf: {} }), 'policy.anyOf: must be an array of policies, got an object')
  t.equal(refusal({ anyOf: [7] }), 'policy.anyOf[0]: must be a policy object, got number 7')
  t.equal(refusal({ check: true }), 'policy.check: must be a function (identity, request) => boolean | Promise<boolean>, got boolean true')

  const nullProto = Object.assign(Object.create(null) as Policy, { dns: 'a.example' })
  t.equal(allows(nullProto, makeIdentity({ dns: ['a.example'] })), true, 'a null-prototype object is a plain object')
})

t.test('empty allow-lists and empty strings are refused', async t => {
  for (const key of ['anchor', 'dns', 'uri', 'email', 'ip', 'spiffeId', 'fingerprint256', 'spkiSha256', 'issuerSpkiSha256']) {
    t.match(refusal({ [key]: [] }), `policy.${key}: empty array: an empty list matches nothing`, key)
    t.equal(refusal({ [key]: '' }), `policy.${key}: empty string`, key)
    t.equal(refusal({ [key]: [''] }), `policy.${key}[0]: empty string`, key)
  }
  t.equal(refusal({ subject: { CN: [] } }), 'policy.subject.CN: empty array: an empty list matches nothing; remove the key or add an entry')
  t.equal(refusal({ subject: {} }), 'policy.subject: empty object: name at least one attribute, or remove the key')
  t.equal(refusal({ dns: [1] }), 'policy.dns[0]: must be a string or a RegExp, got number 1')
  t.equal(refusal({ ip: /^x$/ }), 'policy.ip: must be a string, got /^x$/')
  t.equal(refusal({ anchor: ['acme', null] }), 'policy.anchor[1]: must be a string, got null')
})

t.test('a cycle through anyOf is refused', async t => {
  const policy: { anyOf: Policy[] } = { anyOf: [] }
  policy.anyOf.push({ anyOf: [policy] })
  t.equal(refusal(policy), 'policy.anyOf[0].anyOf[0]: the policy contains itself (a cycle through anyOf)')
  const shared: Policy = { dns: 'a.example' }
  t.equal(allows({ anyOf: [shared, { anyOf: [shared] }] }, makeIdentity({ dns: ['a.example'] })), true, 'sharing is not a cycle')
})

t.test('RegExps must match the whole value', async t => {
  t.equal(allows({ dns: /^api\.example\.com$/ }, makeIdentity({ dns: ['api.example.com'] })), true)
  t.equal(allows({ dns: /^api\.example\.com$/ }, makeIdentity({ dns: ['api.example.com.evil'] })), false)
  t.equal(allows({ uri: /^urn:(?:a|b)$/ }, makeIdentity({ uri: ['urn:b'] })), true, 'alternation inside a group')
  t.equal(allows({ uri: /^urn:(?:a|b)$/ }, makeIdentity({ uri: ['urn:ab'] })), false)
  t.equal(allows({ uri: /^urn:[|]$/ }, makeIdentity({ uri: ['urn:|'] })), true, '| in a class')
  t.equal(allows({ uri: /^urn:a\|b$/ }, makeIdentity({ uri: ['urn:a|b'] })), true, 'escaped |')
  // eslint-disable-next-line prefer-regex-literals -- a v-flag literal needs an ES2024 target; tsconfig targets ES2022
  const nested = new RegExp('^urn:[[a]\\q{b|c}]$', 'v')
  t.equal(allows({ uri: nested }, makeIdentity({ uri: ['urn:c'] })), true, 'nested class and | in a class string (v flag)')
  t.equal(allows({ uri: nested }, makeIdentity({ uri: ['urn:d'] })), false)
  t.equal(allows({ uri: /^urn:[\]|]$/ }, makeIdentity({ uri: ['urn:]'] })), true, 'escaped ] in a class')
  t.equal(allows({ email: /^a\\$/ }, makeIdentity({ email: ['a\\'] })), true, 'an escaped backslash before the final $')
  t.equal(allows({ email: /^A@EXAMPLE\.COM$/i }, makeIdentity({ email: ['a@example.com'] })), true, 'the i flag is allowed')
  const foreign = runInNewContext('/^cross-realm$/') as RegExp
  t.equal(allows({ subject: { CN: foreign } }, makeIdentity({ subject: dn(['CN', 'cross-realm']) })), true, 'a RegExp from another realm')

  t.equal(refusal({ anyOf: [{}, { dns: [/^a$/, /foo/] }] }),
    'policy.anyOf[1].dns[1]: RegExp /foo/ must be anchored with ^ and $ to match the whole value: it does not start with ^')
  t.equal(refusal({ dns: /^foo/ }), 'policy.dns: RegExp /^foo/ must be anchored with ^ and $ to match the whole value: it does not end with $')
  t.equal(refusal({ dns: /^foo\$/ }), 'policy.dns: RegExp /^foo\\$/ must be anchored with ^ and $ to match the whole value: its final \\$ is an escaped, literal dollar sign')
  t.equal(refusal({ dns: /^a|b$/ }),
    'policy.dns: RegExp /^a|b$/ must be anchored with ^ and $ to match the whole value: it has a top-level | (each alternative is anchored at one end only); wrap the alternatives in a group, as in /^(?:a|b)$/')
  t.match(refusal({ dns: /^(a)|(b)$/ }), /top-level \|/)
  t.equal(refusal({ dns: /^a$/g }), 'policy.dns: RegExp /^a$/g: the g flag is not allowed (it makes test() stateful through lastIndex)')
  t.equal(refusal({ dns: /^a$/y }), 'policy.dns: RegExp /^a$/y: the y flag is not allowed (it makes test() stateful through lastIndex)')
  t.equal(refusal({ subject: { CN: /^a$/m } }), 'policy.subject.CN: RegExp /^a$/m: the m flag is not allowed (^ and $ would match at line breaks, not only at the ends of the value)')
})

t.test('SAN matchers never cross types or fall back to the CN', async t => {
  const identity = makeIdentity({ subject: dn(['CN', 'api.example.com']), email: ['api.example.com'] })
  t.equal(allows({ dns: 'api.example.com' }, identity), false, 'dns vs. a CN and an email of the same text')
  t.equal(allows({ subject: { CN: 'api.example.com' } }, identity), true)
  t.equal(allows({ email: 'a@example.com' }, makeIdentity({ dns: ['a@example.com'] })), false, 'email vs. a dns SAN')
  t.equal(allows({ uri: 'spiffe://td/a' }, makeIdentity({ dns: ['spiffe://td/a'] })), false, 'uri vs. a dns SAN')

  // Two URI SANs: no SPIFFE ID, but both are still URIs.
  const twoUris = makeIdentity({ uri: ['spiffe://td/a', 'spiffe://td/b'], spiffeId: null })
  t.equal(allows({ spiffeId: 'spiffe://td/a' }, twoUris), false, 'spiffeId reads only identity.spiffeId')
  t.equal(allows({ spiffeId: /^spiffe:\/\/td\/a$/ }, twoUris), false)
  t.equal(allows({ uri: 'spiffe://td/a' }, twoUris), true, 'uri reads the URI SANs')
  t.equal(allows({ spiffeId: 'spiffe://td/a' }, makeIdentity({ spiffeId: 'spiffe://td/a' })), true)
})

t.test('dns: exact, ASCII case-insensitive, * is one whole label', async t => {
  t.equal(allows({ dns: 'api.example.com' }, makeIdentity({ dns: ['API.Example.COM'] })), true)
  t.equal(allows({ dns: 'API.EXAMPLE.COM' }, makeIdentity({ dns: ['api.example.com'] })), true)
  t.equal(allows({ dns: 'api.example.com' }, makeIdentity({ dns: ['web.example.com', 'api.example.com'] })), true, 'any SAN may match')
  t.equal(allows({ dns: 'api.example.com' }, makeIdentity({ dns: ['api.example.com.'] })), false)
  t.equal(allows({ dns: 'kube.example' }, makeIdentity({ dns: ['\u212Aube.example'] })), false, 'the Kelvin sign is not a k')
  t.equal(allows({ dns: /^api\.example\.com$/ }, makeIdentity({ dns: ['API.example.com'] })), true, 'a RegExp sees the name lowercased')

  const wildcard: Policy = { dns: '*.example.com' }
  t.equal(allows(wildcard, makeIdentity({ dns: ['a.example.com'] })), true)
  t.equal(allows(wildcard, makeIdentity({ dns: ['A.EXAMPLE.com'] })), true)
  t.equal(allows(wildcard, makeIdentity({ dns: ['a.b.example.com'] })), false, 'one label only')
  t.equal(allows(wildcard, makeIdentity({ dns: ['example.com'] })), false, 'not the parent')
  t.equal(allows(wildcard, makeIdentity({ dns: ['.example.com'] })), false, 'not an empty label')
  t.equal(allows(wildcard, makeIdentity({ dns: ['aexample.com'] })), false)
  t.equal(allows({ dns: 'api.*.example' }, makeIdentity({ dns: ['api.eu.example'] })), true, '* in the middle')
  t.equal(allows({ dns: 'api.*.example' }, makeIdentity({ dns: ['api.eu.west.example'] })), false)

  t.equal(refusal({ dns: 'f*o.example.com' }), 'policy.dns: "f*o.example.com": * must be a whole label, as in *.example.com (it matches exactly one label)')
  t.equal(refusal({ dns: '**.example.com' }), 'policy.dns: "**.example.com": * must be a whole label, as in *.example.com (it matches exactly one label)')
  t.equal(refusal({ dns: 'example.com.' }), 'policy.dns: "example.com." has an empty label (a leading, trailing or double dot)')
  t.equal(refusal({ dns: 'a..example' }), 'policy.dns: "a..example" has an empty label (a leading, trailing or double dot)')
  t.equal(refusal({ dns: 'bücher.example' }), 'policy.dns: "bücher.example" has a space or a non-ASCII character: write internationalised names in their A-label (xn--) form')
  t.equal(refusal({ dns: 'a b.example' }), 'policy.dns: "a b.example" has a space or a non-ASCII character: write internationalised names in their A-label (xn--) form')
  t.equal(refusal({ dns: 'a/b.example' }), 'policy.dns: "a/b.example": label "a/b" may hold only letters, digits, hyphens and underscores')
})

t.test('case-insensitivity is for dns only', async t => {
  t.equal(allows({ email: 'a@example.com' }, makeIdentity({ email: ['A@example.com'] })), false)
  t.equal(allows({ uri: 'https://example.com/a' }, makeIdentity({ uri: ['HTTPS://example.com/a'] })), false)
  t.equal(allows({ subject: { CN: 'client' } }, makeIdentity({ subject: dn(['CN', 'Client']) })), false)
  t.equal(allows({ spiffeId: 'spiffe://td/a' }, makeIdentity({ spiffeId: 'spiffe://td/A' })), false)
})

t.test('spiffeId: * is one path segment, a trailing /** one or more', async t => {
  const one: Policy = { spiffeId: 'spiffe://td/a/*' }
  t.equal(allows(one, makeIdentity({ spiffeId: 'spiffe://td/a/b' })), true)
  t.equal(allows(one, makeIdentity({ spiffeId: 'spiffe://td/a/b/c' })), false, 'not two segments')
  t.equal(allows(one, makeIdentity({ spiffeId: 'spiffe://td/a' })), false, 'not zero segments')
  t.equal(allows(one, makeIdentity({ spiffeId: 'spiffe://td/ab' })), false)
  t.equal(allows(one, makeIdentity({ spiffeId: 'spiffe://other/a/b' })), false, 'another trust domain')
  t.equal(allows({ spiffeId: 'spiffe://td/*/api' }, makeIdentity({ spiffeId: 'spiffe://td/ns/api' })), true)
  t.equal(allows({ spiffeId: 'spiffe://td/*/api' }, makeIdentity({ spiffeId: 'spiffe://td/ns/web' })), false)

  const any: Policy = { spiffeId: 'spiffe://td/a/**' }
  t.equal(allows(any, makeIdentity({ spiffeId: 'spiffe://td/a/b' })), true)
  t.equal(allows(any, makeIdentity({ spiffeId: 'spiffe://td/a/b/c/d' })), true)
  t.equal(allows(any, makeIdentity({ spiffeId: 'spiffe://td/a' })), false, 'not the prefix itself')
  t.equal(allows(any, makeIdentity({ spiffeId: 'spiffe://td/ab' })), false, 'segment boundary')
  t.equal(allows(any, makeIdentity({ spiffeId: 'spiffe://td/ab/c' })), false, 'segment boundary')
  t.equal(allows({ spiffeId: 'spiffe://td/**' }, makeIdentity({ spiffeId: 'spiffe://td/x' })), true)
  t.equal(allows({ spiffeId: 'spiffe://td/**' }, makeIdentity({ spiffeId: 'spiffe://td' })), false)
  t.equal(allows({ spiffeId: 'spiffe://td/**' }, makeIdentity({ spiffeId: 'spiffe://td.evil/x' })), false)
  t.equal(allows({ spiffeId: 'spiffe://td' }, makeIdentity({ spiffeId: 'spiffe://td' })), true, 'a trust domain ID')
  t.equal(allows({ spiffeId: 'spiffe://td/a' }, makeIdentity({ spiffeId: null, uri: [] })), false, 'no SPIFFE ID')

  t.equal(refusal({ spiffeId: 'spiffe://*/a' }), 'policy.spiffeId: "spiffe://*/a": * is only allowed as a whole path segment; the trust domain is literal')
  t.equal(refusal({ spiffeId: 'spiffe://td/a*' }), 'policy.spiffeId: "spiffe://td/a*": * must be a whole path segment, as in /a/*/b (it matches exactly one segment)')
  t.equal(refusal({ spiffeId: 'spiffe://td/**/a' }), 'policy.spiffeId: "spiffe://td/**/a": ** is only allowed as a trailing /** at the end of the pattern')
  t.equal(refusal({ spiffeId: 'spiffe://TD/a' }), 'policy.spiffeId: "spiffe://TD/a": the trust domain must be non-empty lowercase letters, digits, dots, hyphens and underscores')
  t.equal(refusal({ spiffeId: 'spiffe:///a' }), 'policy.spiffeId: "spiffe:///a": the trust domain must be non-empty lowercase letters, digits, dots, hyphens and underscores')
  t.equal(refusal({ spiffeId: 'spiffe://td/a//b' }), 'policy.spiffeId: "spiffe://td/a//b" has an empty path segment (a double or trailing slash)')
  t.equal(refusal({ spiffeId: 'spiffe://td/a/' }), 'policy.spiffeId: "spiffe://td/a/" has an empty path segment (a double or trailing slash)')
  t.equal(refusal({ spiffeId: 'spiffe://td/a/..' }), 'policy.spiffeId: "spiffe://td/a/..": a SPIFFE ID has no "." or ".." segments')
  t.equal(refusal({ spiffeId: 'spiffe://td/./a' }), 'policy.spiffeId: "spiffe://td/./a": a SPIFFE ID has no "." or ".." segments')
  t.equal(refusal({ spiffeId: 'spiffe://td/a?x=1' }), 'policy.spiffeId: "spiffe://td/a?x=1": path segment "a?x=1" may hold only letters, digits, dots, hyphens and underscores (no query or fragment)')
  t.equal(refusal({ spiffeId: 'https://td/a' }), 'policy.spiffeId: "https://td/a" is not a SPIFFE ID: it must look like spiffe://trust-domain/path')
})

t.test('uri: exact, or * and a trailing /** in the path only', async t => {
  t.equal(allows({ uri: 'urn:uuid:1234' }, makeIdentity({ uri: ['urn:uuid:1234'] })), true)
  t.equal(allows({ uri: 'urn:uuid:1234' }, makeIdentity({ uri: ['urn:uuid:12345'] })), false)
  t.equal(allows({ uri: 'spiffe://td/a/*' }, makeIdentity({ spiffeId: 'spiffe://td/a/b' })), true, 'a uri glob reads URI SANs, SPIFFE or not')

  const one: Policy = { uri: 'https://example.com/users/*' }
  t.equal(allows(one, makeIdentity({ uri: ['https://example.com/users/alice'] })), true)
  t.equal(allows(one, makeIdentity({ uri: ['https://example.com/users/alice/x'] })), false)
  t.equal(allows(one, makeIdentity({ uri: ['https://example.com/users/'] })), false, 'an empty segment is not a segment')
  t.equal(allows(one, makeIdentity({ uri: ['https://example.com/users/alice?admin=1'] })), false, 'a query is not part of a segment')
  t.equal(allows(one, makeIdentity({ uri: ['https://example.com/users/alice#x'] })), false, 'nor a fragment')

  const any: Policy = { uri: 'https://example.com/a/**' }
  t.equal(allows(any, makeIdentity({ uri: ['https://example.com/a/b/c'] })), true)
  t.equal(allows(any, makeIdentity({ uri: ['https://example.com/a'] })), false)
  t.equal(allows(any, makeIdentity({ uri: ['https://example.com/ab'] })), false)
  t.equal(allows(any, makeIdentity({ uri: ['https://example.com/a/b?c'] })), false)

  const withQuery: Policy = { uri: 'https://example.com/*/x?v=1' }
  t.equal(allows(withQuery, makeIdentity({ uri: ['https://example.com/p/x?v=1'] })), true, 'a literal query after a glob')
  t.equal(allows(withQuery, makeIdentity({ uri: ['https://example.com/p/x?v=2'] })), false)
  t.equal(allows({ uri: 'https://example.com/a.b/*' }, makeIdentity({ uri: ['https://example.com/aXb/c'] })), false, 'the literal part is escaped')

  t.equal(refusal({ uri: 'example.com/a' }), 'policy.uri: "example.com/a" is not an absolute URI: it must start with a scheme, as in https: or spiffe:')
  t.equal(refusal({ uri: 'https://*.example.com/a' }), 'policy.uri: "https://*.example.com/a": * is only allowed as a whole path segment; the scheme and authority are literal')
  t.equal(refusal({ uri: 'https://example.com/a?q=*' }), 'policy.uri: "https://example.com/a?q=*": * is only allowed as a whole path segment; the query and fragment are literal')
  t.equal(refusal({ uri: 'https://example.com/a/x*' }), 'policy.uri: "https://example.com/a/x*": * must be a whole path segment, as in /a/*/b (it matches exactly one segment)')
  t.equal(refusal({ uri: 'https://example.com/a/**?x' }), 'policy.uri: "https://example.com/a/**?x": ** is only allowed as a trailing /** at the end of the pattern')
  t.equal(refusal({ uri: 'urn:x:*' }), 'policy.uri: "urn:x:*": * is only allowed in the path of a URI with an authority (scheme://authority/path); use a RegExp for anything else')
})

t.test('email and name attributes: exact, * is literal', async t => {
  t.equal(allows({ email: 'a@example.com' }, makeIdentity({ email: ['b@example.com', 'a@example.com'] })), true)
  t.equal(allows({ email: 'a@example.com' }, makeIdentity({ email: ['a@example.co'] })), false)
  t.equal(allows({ email: '*@example.com' }, makeIdentity({ email: ['a@example.com'] })), false)
  t.equal(allows({ email: '*@example.com' }, makeIdentity({ email: ['*@example.com'] })), true)
  t.equal(allows({ subject: { CN: 'svc-*' } }, makeIdentity({ subject: dn(['CN', 'svc-a']) })), false)
  t.equal(allows({ subject: { CN: 'svc-*' } }, makeIdentity({ subject: dn(['CN', 'svc-*']) })), true)
})

t.test('subject and issuer attributes', async t => {
  const identity = makeIdentity({
    subject: dn(['DC', 'com'], ['DC', 'example'], ['O', 'Acme'], ['OU', 'eng'], ['OU', 'ops'], ['CN', 'client'], ['2.5.4.97', 'VATDE-123']),
    issuer: dn(['O', 'Acme CA'], ['CN', 'Issuing CA'])
  })
  t.equal(allows({ subject: { CN: 'client' } }, identity), true)
  t.equal(allows({ subject: { CN: 'other' } }, identity), false)
  t.equal(allows({ subject: { '2.5.4.3': 'client' } }, identity), true, 'CN by its OID')
  t.equal(allows({ subject: { '2.5.4.3': 'other' } }, identity), false)
  t.equal(allows({ subject: { cn: 'client' } }, identity), true, 'short names are case-insensitive')
  t.equal(allows({ subject: { commonName: 'client', organizationName: 'Acme' } }, identity), true, 'long names')
  t.equal(allows({ subject: { organizationIdentifier: 'VATDE-123' } }, identity), true)
  t.equal(allows({ subject: { '2.5.4.97': 'VATDE-123' } }, identity), true)
  t.equal(allows({ subject: { '2.5.4.97': 'VATDE-999' } }, identity), false)
  t.equal(allows({ subject: { OU: 'ops' } }, identity), true, 'any value of a repeated attribute')
  t.equal(allows({ subject: { OU: ['qa', 'eng'] } }, identity), true)
  t.equal(allows({ subject: { OU: 'qa' } }, identity), false)
  t.equal(allows({ subject: { DC: 'example' } }, identity), true)
  t.equal(allows({ subject: { O: 'Acme', CN: 'client' } }, identity), true, 'every attribute must match')
  t.equal(allows({ subject: { O: 'Acme', CN: 'other' } }, identity), false)
  t.equal(allows({ subject: { C: 'DE' } }, identity), false, 'an absent attribute never matches')
  t.equal(allows({ subject: { CN: /^cli.*$/ } }, identity), true)
  t.equal(allows({ subject: { O: 'Acme CA' } }, identity), false, 'subject is not issuer')
  t.equal(allows({ issuer: { O: 'Acme CA', CN: 'Issuing CA' } }, identity), true)
  t.equal(allows({ issuer: { CN: 'client' } }, identity), false, 'issuer is not subject')

  const multiValued = makeIdentity({ subject: dn([['O', 'Acme'], ['CN', 'mv']]) })
  t.equal(allows({ subject: { CN: 'mv', O: 'Acme' } }, multiValued), true, 'attributes inside a multi-valued RDN')
  t.equal(allows({ subject: { CN: 'Acme' } }, multiValued), false)

  t.equal(refusal({ subject: { CN: 'a', '2.5.4.3': 'b' } }), 'policy.subject: "CN" and "2.5.4.3" name the same attribute (2.5.4.3)')
  t.equal(refusal({ issuer: { O: 'a', o: 'b' } }), 'policy.issuer: "O" and "o" name the same attribute (2.5.4.10)')
  t.equal(refusal({ subject: { SN: 'x' } }), 'policy.subject.SN: "SN" is ambiguous: write surname (2.5.4.4) or serialNumber (2.5.4.5)')
  t.match(refusal({ subject: { Cn1: 'x' } }), /^policy\.subject\.Cn1: unknown attribute "Cn1": use a known short name \(CN, C, L, ST, O, OU, GN, DC, .*\) or a dotted OID such as 2\.5\.4\.97$/)
  t.match(refusal({ subject: { '2.5.x': 'x' } }), /^policy\.subject\["2\.5\.x"\]: unknown attribute "2\.5\.x"/)
  t.match(refusal({ subject: { '3.1.2': 'x' } }), /unknown attribute "3\.1\.2"/, 'not an OID: the first arc is 0, 1 or 2')
  t.equal(refusal({ subject: 'CN=x' }), 'policy.subject: must be an object of attribute matchers, as in { CN: \'client\', O: \'Acme\' }, got "CN=x"')
  t.equal(refusal({ issuer: { CN: 5 } }), 'policy.issuer.CN: must be a string or a RegExp, got number 5')
})

t.test('a name with more than one CN has no usable CN', async t => {
  const twoCns = makeIdentity({ subject: dn(['O', 'Acme'], ['CN', 'admin'], ['CN', 'guest']), issuer: dn(['CN', 'a'], ['CN', 'b']) })
  t.equal(allows({ subject: { CN: 'admin' } }, twoCns), false)
  t.equal(allows({ subject: { CN: ['admin', 'guest'] } }, twoCns), false)
  t.equal(allows({ subject: { CN: /^.*$/ } }, twoCns), false)
  t.equal(allows({ subject: { '2.5.4.3': 'guest' } }, twoCns), false, 'by OID too')
  t.equal(allows({ issuer: { CN: 'a' } }, twoCns), false, 'in the issuer too')
  t.equal(allows({ subject: { O: 'Acme' } }, twoCns), true, 'other attributes are still usable')
  const twoCnsInOneRdn = makeIdentity({ subject: dn([['CN', 'admin'], ['CN', 'guest']]) })
  t.equal(allows({ subject: { CN: 'admin' } }, twoCnsInOneRdn), false, 'two CNs in one multi-valued RDN')
  t.equal(allows({ subject: { CN: 'admin' } }, makeIdentity({ subject: dn(['CN', 'admin']) })), true)
})

t.test('ip: addresses and CIDRs compared as bytes', async t => {
  const v4 = makeIdentity({ ip: ['192.0.2.10'] })
  t.equal(allows({ ip: '192.0.2.10' }, v4), true)
  t.equal(allows({ ip: '192.0.2.11' }, v4), false)
  t.equal(allows({ ip: '192.0.2.0/24' }, v4), true)
  t.equal(allows({ ip: '192.0.3.0/24' }, v4), false)
  t.equal(allows({ ip: '192.0.2.8/30' }, v4), true)
  t.equal(allows({ ip: '192.0.2.12/30' }, v4), false)
  t.equal(allows({ ip: '192.0.2.10/32' }, v4), true)
  t.equal(allows({ ip: '0.0.0.0/0' }, v4), true)
  t.equal(allows({ ip: ['10.0.0.0/8', '192.0.2.10'] }, v4), true)
  t.equal(allows({ ip: '192.0.2.10' }, makeIdentity({ ip: [] })), false)

  const v6 = makeIdentity({ ip: ['2001:db8::1'] })
  t.equal(allows({ ip: '2001:db8::1' }, v6), true)
  t.equal(allows({ ip: '2001:DB8:0:0:0:0:0:1' }, v6), true, 'another text form of the same bytes')
  t.equal(allows({ ip: '2001:db8:0000::0001' }, v6), true)
  t.equal(allows({ ip: '2001:db8::2' }, v6), false)
  t.equal(allows({ ip: '2001:db8::/32' }, v6), true)
  t.equal(allows({ ip: '2001:db9::/32' }, v6), false)
  t.equal(allows({ ip: '2001:db8::/127' }, v6), true)
  t.equal(allows({ ip: '2001:db8::2/127' }, v6), false)
  t.equal(allows({ ip: '::/0' }, v6), true)
  t.equal(allows({ ip: '::1' }, makeIdentity({ ip: ['::1'] })), true)
  t.equal(allows({ ip: '::' }, makeIdentity({ ip: ['::'] })), true)
  t.equal(allows({ ip: 'fe80::' }, makeIdentity({ ip: ['fe80::'] })), true)
  t.equal(allows({ ip: '1:2:3:4:5:6:7:8' }, makeIdentity({ ip: ['1:2:3:4:5:6:7:8'] })), true)
  t.equal(allows({ ip: '::102:304' }, makeIdentity({ ip: ['::1.2.3.4'] })), true, 'embedded IPv4 text')

  // The families never cross, and a mapped address is IPv6.
  t.equal(allows({ ip: '0.0.0.0/0' }, v6), false)
  t.equal(allows({ ip: '::/0' }, v4), false)
  const mapped = makeIdentity({ ip: ['::ffff:192.0.2.10'] })
  t.equal(allows({ ip: '192.0.2.10' }, mapped), false)
  t.equal(allows({ ip: '::ffff:192.0.2.10' }, v4), false)
  t.equal(allows({ ip: '::ffff:192.0.2.10' }, mapped), true)
  t.equal(allows({ ip: '::ffff:c000:20a' }, mapped), true)
  t.equal(allows({ ip: '::ffff:0:0/96' }, mapped), true)
  t.equal(allows({ ip: '192.0.2.10' }, makeIdentity({ ip: ['not an address', '192.0.2.10'] })), true, 'an unreadable SAN is skipped')

  const invalid = (text: string): string => `policy.ip: ${JSON.stringify(text)} is not an IP address or CIDR (IPv4 as in 192.0.2.1 or 192.0.2.0/24, IPv6 as in 2001:db8::/32; no zone)`
  for (const text of [
    '192.0.2', '192.0.2.1.5', '192.0.2.256', '192.0.2.010', '192.0.2.-1', 'example.com', '192.0.2.1/24/1',
    '2001:db8::1::1', '2001:db8:::1', ':1::', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '1::2:3:4:5:6:7:8',
    '2001:db8::12345', 'fe80::1%eth0', '::ffff:1.2.3', '1.2.3.4::', '::g'
  ]) {
    t.equal(refusal({ ip: text }), invalid(text), text)
  }
  t.equal(refusal({ ip: '192.0.2.0/33' }), 'policy.ip: "192.0.2.0/33": the prefix length must be a whole number from 0 to 32 for IPv4')
  t.equal(refusal({ ip: '2001:db8::/129' }), 'policy.ip: "2001:db8::/129": the prefix length must be a whole number from 0 to 128 for IPv6')
  t.equal(refusal({ ip: ['10.0.0.0/8', '192.0.2.0/024'] }), 'policy.ip[1]: "192.0.2.0/024": the prefix length must be a whole number from 0 to 32 for IPv4')
  t.equal(refusal({ ip: '192.0.2.0/' }), 'policy.ip: "192.0.2.0/": the prefix length must be a whole number from 0 to 32 for IPv4')
  t.equal(refusal({ ip: '192.0.2.1/24' }), 'policy.ip: "192.0.2.1/24" has bits set after the /24 prefix: did you mean 192.0.2.0/24?')
  t.equal(refusal({ ip: '2001:db8::1/64' }), 'policy.ip: "2001:db8::1/64" has bits set after the /64 prefix: did you mean 2001:db8:0:0:0:0:0:0/64?')
})

t.test('fingerprint256: leaf pins in any hex form', async t => {
  const identity = makeIdentity()
  const bare = LEAF_FINGERPRINT.replaceAll(':', '')
  t.equal(allows({ fingerprint256: LEAF_FINGERPRINT }, identity), true)
  t.equal(allows({ fingerprint256: bare }, identity), true)
  t.equal(allows({ fingerprint256: bare.toLowerCase() }, identity), true)
  t.equal(allows({ fingerprint256: LEAF_FINGERPRINT.toLowerCase() }, identity), true)
  t.equal(allows({ fingerprint256: ['00'.repeat(32), bare] }, identity), true)
  t.equal(allows({ fingerprint256: '00'.repeat(32) }, identity), false)
  t.equal(allows({ fingerprint256: bare }, makeIdentity({ fingerprint256: bare.toLowerCase() })), true, 'the identity side is normalised too')

  const message = (text: string): string => `policy.fingerprint256: ${JSON.stringify(text)} is not a SHA-256 fingerprint: 32 bytes of hex, with or without a colon between bytes`
  for (const text of [bare.slice(2), `${bare}00`, `${bare.slice(1)}g`, LEAF_FINGERPRINT.slice(1) + 'B', 'A:BCD' + bare.slice(4)]) {
    t.equal(refusal({ fingerprint256: text }), message(text), text)
  }
})

t.test('spkiSha256: key pins in base64 or base64url', async t => {
  const hex = Buffer.from(LEAF_SPKI, 'base64').toString('hex')
  const url = Buffer.from(LEAF_SPKI, 'base64').toString('base64url')
  const identity = makeIdentity()
  t.equal(allows({ spkiSha256: LEAF_SPKI }, identity), true)
  t.equal(allows({ spkiSha256: LEAF_SPKI.slice(0, -1) }, identity), true, 'without padding')
  t.equal(allows({ spkiSha256: url }, identity), true, 'base64url')
  t.equal(allows({ spkiSha256: `${url}=` }, identity), true)
  t.equal(allows({ spkiSha256: rootSpki }, identity), false)

  const message = (text: string): string => `policy.spkiSha256: ${JSON.stringify(text)} is not a SHA-256 key hash: base64 or base64url of 32 bytes (44 characters, or 43 without padding)`
  t.equal(refusal({ spkiSha256: hex }), `${message(hex)} (it looks like hex; SPKI pins are base64, as Envoy writes them)`)
  t.equal(refusal({ spkiSha256: LEAF_SPKI.slice(4) }), message(LEAF_SPKI.slice(4)))
  const mixed = `-+${LEAF_SPKI.slice(2)}`
  t.equal(refusal({ spkiSha256: mixed }), message(mixed), 'mixed alphabets')
  t.equal(refusal({ issuerSpkiSha256: 'abc' }), 'policy.issuerSpkiSha256: "abc" is not a SHA-256 key hash: base64 or base64url of 32 bytes (44 characters, or 43 without padding)')
})

t.test('issuerSpkiSha256: any key above the leaf on the path', async t => {
  const identity = makeIdentity()
  t.equal(allows({ issuerSpkiSha256: intermediateSpki }, identity), true)
  t.equal(allows({ issuerSpkiSha256: rootSpki }, identity), true)
  t.equal(allows({ issuerSpkiSha256: Buffer.from(rootSpki, 'base64').toString('base64url') }, identity), true)
  t.equal(allows({ issuerSpkiSha256: leafSpki }, identity), false, 'not the leaf key')
  t.equal(allows({ issuerSpkiSha256: rootSpki }, makeIdentity({ chain: [rootCert] })), false, 'a path of one has no issuer')
  t.equal(allows({ issuerSpkiSha256: rootSpki }, makeIdentity({ chain: [leafCert, intermediateCert] })), false)

  // The hashes are computed once per identity.
  let exports = 0
  const counting = {
    get publicKey () {
      exports++
      return rootCert.publicKey
    }
  } as unknown as X509Certificate
  const cached = makeIdentity({ chain: [leafCert, counting] })
  const compiled = compilePolicy({ issuerSpkiSha256: [leafSpki, rootSpki] })
  t.equal(compiled(cached, REQUEST), true)
  t.equal(compiled(cached, REQUEST), true)
  t.equal(compilePolicy({ issuerSpkiSha256: intermediateSpki })(cached, REQUEST), false)
  t.equal(exports, 1)

  const unreadable = { get publicKey (): never { throw new Error('unsupported key') } } as unknown as X509Certificate
  t.equal(allows({ issuerSpkiSha256: rootSpki }, makeIdentity({ chain: [leafCert, unreadable, rootCert] })), true, 'an unreadable key is skipped')
  t.equal(allows({ issuerSpkiSha256: rootSpki }, makeIdentity({ chain: [leafCert, unreadable] })), false)
})

t.test('anchor: the label the path ended at', async t => {
  t.equal(allows({ anchor: 'acme' }, makeIdentity({ anchor: 'acme' })), true)
  t.equal(allows({ anchor: ['globex', 'acme'] }, makeIdentity({ anchor: 'acme' })), true)
  t.equal(allows({ anchor: 'globex' }, makeIdentity({ anchor: 'acme' })), false)
  t.equal(allows({ anchor: 'Acme' }, makeIdentity({ anchor: 'acme' })), false)
  const options = { anchorNames: ['acme', 'globex'] }
  t.equal(allows({ anchor: 'globex' }, makeIdentity({ anchor: 'globex' }), options), true)
  t.equal(refusal({ anchor: 'initech' }, options), 'policy.anchor: unknown anchor "initech"; the labelled anchors are: "acme", "globex"')
  t.equal(refusal({ anyOf: [{ anchor: ['acme', 'initech'] }] }, options), 'policy.anyOf[0].anchor[1]: unknown anchor "initech"; the labelled anchors are: "acme", "globex"')
  t.equal(refusal({ anchor: 'acme' }, { anchorNames: [] }), 'policy.anchor: unknown anchor "acme"; the labelled anchors are: (none: label them, e.g. ca: [{ name: \'acme\', cert }])')
})

t.test('compile options are checked', async t => {
  t.throws(() => compilePolicy({}, { anchorNames: 'acme' as unknown as string[] }), new TypeError('options.anchorNames must be an array of strings'))
  t.throws(() => compilePolicy({}, { anchorNames: [1] as unknown as string[] }), new TypeError('options.anchorNames must be an array of strings'))
  t.throws(() => compilePolicy({}, { onCheckError: 'log' as unknown as () => void }), new TypeError('options.onCheckError must be a function'))
})

t.test('check: sync or async, anything but true is a mismatch', async t => {
  const identity = makeIdentity({ dns: ['a.example'] })
  const run = async (check: Policy['check'], extra: Policy = {}): Promise<{ verdict: boolean, errors: unknown[] }> => {
    const errors: unknown[] = []
    const compiled = compilePolicy({ ...extra, check }, { onCheckError: err => errors.push(err) })
    t.equal(compiled.isAsync, true)
    const result = compiled(identity, REQUEST)
    t.ok(result instanceof Promise, 'an async policy always returns a Promise')
    return { verdict: await result, errors }
  }

  t.same(await run(() => true), { verdict: true, errors: [] })
  t.same(await run(() => false), { verdict: false, errors: [] })
  t.same(await run(async () => true), { verdict: true, errors: [] })
  t.same(await run(async () => false), { verdict: false, errors: [] })

  const boom = new Error('boom')
  t.same(await run(() => { throw boom }), { verdict: false, errors: [boom] }, 'a throw is a mismatch')
  t.same(await run(async () => { throw boom }), { verdict: false, errors: [boom] }, 'a rejection is a mismatch')
  const badThen = { then () { throw boom } } as unknown as Promise<boolean>
  t.same(await run(() => badThen), { verdict: false, errors: [boom] }, 'a thenable that throws')

  const truthy = await run(() => 1 as unknown as boolean)
  t.equal(truthy.verdict, false, 'truthy is not true')
  t.match(truthy.errors, [{ name: 'TypeError', message: 'policy.check returned number 1, not a boolean: counted as a mismatch' }])
  const forgotten = await run(async () => undefined as unknown as boolean)
  t.equal(forgotten.verdict, false)
  t.match(forgotten.errors, [{ message: 'policy.check returned undefined undefined, not a boolean: counted as a mismatch' }])

  let seen: unknown[] = []
  await compilePolicy<{ url: string }>({ check: (id, request) => { seen = [id, request]; return true } })(identity, REQUEST)
  t.equal(seen[0], identity, 'check gets the identity')
  t.equal(seen[1], REQUEST, 'and the request')

  const quiet = compilePolicy({ check: () => { throw boom } })
  t.equal(await quiet(identity, REQUEST), false, 'no onCheckError: still a mismatch')
  const throwingHandler = compilePolicy({ check: () => { throw boom } }, { onCheckError: () => { throw new Error('handler') } })
  t.equal(await throwingHandler(identity, REQUEST), false, 'a throwing onCheckError does not escape')
})

t.test('check runs only after the synchronous parts matched', async t => {
  const calls: string[] = []
  const check = (name: string, verdict: boolean) => async () => { calls.push(name); return verdict }
  const compiled = compilePolicy({ dns: 'a.example', check: check('top', true) })
  t.equal(await compiled(makeIdentity({ dns: ['b.example'] }), REQUEST), false)
  t.same(calls, [], 'not called when dns did not match')
  t.equal(await compiled(makeIdentity({ dns: ['a.example'] }), REQUEST), true)
  t.same(calls, ['top'])

  calls.length = 0
  const alternatives = compilePolicy({
    anyOf: [
      { dns: 'x.example', check: check('x', true) },
      { email: 'a@example.com', check: check('email', false) },
      { email: 'a@example.com', check: check('email2', true) }
    ],
    check: check('outer', true)
  })
  t.equal(await alternatives(makeIdentity({ email: ['a@example.com'] }), REQUEST), true)
  t.same(calls, ['email', 'email2', 'outer'], 'alternatives whose fields failed are skipped, the rest tried in order, own check last')
  calls.length = 0
  t.equal(await alternatives(makeIdentity({ dns: ['z.example'] }), REQUEST), false)
  t.same(calls, [], 'no alternative matched: no check called')

  calls.length = 0
  const rejectedAlternatives = compilePolicy({ anyOf: [{ email: 'a@example.com', check: check('email', false) }], check: check('outer', true) })
  t.equal(await rejectedAlternatives(makeIdentity({ email: ['a@example.com'] }), REQUEST), false)
  t.same(calls, ['email'], 'the own check is not called when the alternatives failed')

  calls.length = 0
  const syncFirst = compilePolicy({ anyOf: [{ dns: 'a.example', check: check('slow', true) }, { dns: 'a.example' }], check: check('outer', false) })
  t.equal(await syncFirst(makeIdentity({ dns: ['a.example'] }), REQUEST), false)
  t.same(calls, ['outer'], 'an alternative without checks settles the anyOf first')

  calls.length = 0
  const nested = compilePolicy({ anyOf: [{ anyOf: [{ check: check('inner', true) }] }] })
  t.equal(nested.isAsync, true, 'a nested check makes the policy async')
  t.equal(await nested(makeIdentity(), REQUEST), true)
  t.same(calls, ['inner'])
})

t.test('matchesNamesOnly: names without an anchor or key binding', async t => {
  const namesOnly = (policy: Policy): boolean => compilePolicy(policy).matchesNamesOnly
  t.equal(namesOnly({ subject: { CN: 'x' } }), true)
  t.equal(namesOnly({ dns: 'x.example' }), true)
  t.equal(namesOnly({ spiffeId: 'spiffe://td/x' }), true)
  t.equal(namesOnly({ ip: '192.0.2.1' }), true)
  t.equal(namesOnly({ issuer: { CN: 'Acme CA' } }), true, 'an issuer name is a name too')
  t.equal(namesOnly({ subject: { CN: 'x' }, anchor: 'acme' }), false)
  t.equal(namesOnly({ subject: { CN: 'x' }, issuerSpkiSha256: rootSpki }), false)
  t.equal(namesOnly({ subject: { CN: 'x' }, fingerprint256: LEAF_FINGERPRINT }), false, 'a leaf pin binds too')
  t.equal(namesOnly({ subject: { CN: 'x' }, spkiSha256: LEAF_SPKI }), false)
  t.equal(namesOnly({}), false)
  t.equal(namesOnly({ check: () => true }), false)
  t.equal(namesOnly({ anyOf: [{ anchor: 'acme', dns: 'a.example' }, { dns: 'b.example' }] }), true, 'one unbound alternative is enough')
  t.equal(namesOnly({ anyOf: [{ anchor: 'acme', dns: 'a.example' }, { anchor: 'globex', dns: 'b.example' }] }), false)
  t.equal(namesOnly({ dns: 'a.example', anyOf: [{ anchor: 'acme' }, { anchor: 'globex' }] }), false, 'every alternative binds the names above it')
  t.equal(namesOnly({ dns: 'a.example', anyOf: [{ anchor: 'acme' }, { email: 'a@example.com' }] }), true)
  t.equal(namesOnly({ anchor: 'acme', anyOf: [{ dns: 'a.example' }] }), false, 'a binding above binds the alternatives')
})

t.test('compiling copies the policy and never changes it', async t => {
  const regExp = /^eng$/
  const dnsList = ['a.example']
  const subject: Record<string, string | RegExp> = { OU: regExp }
  const alternatives: Policy[] = [{ dns: dnsList, subject }]
  const policy = { anyOf: alternatives, ip: ['192.0.2.0/24'] }
  const snapshot = JSON.stringify(policy)
  const compiled = compilePolicy(policy)
  t.equal(JSON.stringify(policy), snapshot, 'the policy is unchanged')
  t.equal(regExp.lastIndex, 0)

  const identity = makeIdentity({ dns: ['a.example'], subject: dn(['OU', 'eng']), ip: ['192.0.2.7'] })
  t.equal(compiled(identity, REQUEST), true)
  dnsList[0] = 'other.example'
  dnsList.push('b.example')
  subject.OU = 'ops'
  subject.CN = 'nobody'
  // RegExp.prototype.compile changes a RegExp in place.
  ;(regExp as unknown as { compile: (source: string) => void }).compile('^ops$')
  policy.ip[0] = '10.0.0.0/8'
  alternatives.push({})
  t.equal(compiled(identity, REQUEST), true, 'still the old behaviour')
  t.equal(compiled(makeIdentity({ dns: ['b.example'], subject: dn(['OU', 'eng']), ip: ['192.0.2.7'] }), REQUEST), false, 'the new list is not read')
  t.equal(compiled(makeIdentity({ ip: ['10.1.1.1'] }), REQUEST), false, 'the added {} alternative is not read')

  const frozen = deepFreeze({ anyOf: [{ dns: ['a.example', /^b\.example$/], subject: { CN: 'x' } }], check: () => true })
  t.doesNotThrow(() => compilePolicy(frozen), 'a deeply frozen policy compiles')

  let reads = 0
  const getter = { get dns () { reads++; return reads === 1 ? 'a.example' : 'b.example' } }
  const once = compilePolicy(getter)
  t.equal(reads, 1, 'each field is read once')
  t.equal(once(makeIdentity({ dns: ['a.example'] }), REQUEST), true)
  t.equal(reads, 1)
})

t.test('validatePolicy', async t => {
  t.doesNotThrow(() => validatePolicy({ dns: '*.example.com', anyOf: [{ anchor: 'anything' }] }))
  t.throws(() => validatePolicy({ dns: 'f*o' }, 'routes["/a"].config.mtls'), {
    name: 'PolicyError',
    message: 'routes["/a"].config.mtls.dns: "f*o": * must be a whole label, as in *.example.com (it matches exactly one label)'
  })
  t.throws(() => validatePolicy(undefined), { name: 'PolicyError', message: 'policy: must be a policy object, got undefined undefined' })
  try {
    validatePolicy({ ip: 'x' })
    t.fail('accepted')
  } catch (err) {
    t.ok(err instanceof PolicyError)
    t.ok(err instanceof Error)
  }
})

function deepFreeze<T> (value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const item of Object.values(value)) deepFreeze(item)
  }
  return value
}
