/**
 * Test-fixture PKI: keys, certificates and CRLs made while the tests run,
 * dated relative to now. No private key is ever written to the repository.
 *
 *   newKey(kind = 'rsa2048', { fresh }?)   -> Promise<KeyPair>
 *       Pooled: each kind has up to POOL_SIZE keys handed out round-robin, so
 *       consecutive calls give distinct keys. Pass { fresh: true } when a test
 *       cares about key identity (deny lists, SPKI pins, caches).
 *   newKeys(kind, n)                        -> Promise<KeyPair[]>   n distinct keys
 *   issue(spec: CertSpec)                   -> Promise<Issued>
 *   makeChain(opts?)                        -> Promise<Chain>       root -> intermediates -> leaf
 *   makeCrl(spec: CrlSpec)                  -> Promise<Crl>
 *   tamperSignature(issued)                 -> { der, pem }        one bit of the signature flipped
 *   signedByWrongKey(issued, key?)          -> Promise<Issued>     same TBS content, other signing key
 *   toPem(der, label?)                      -> string
 *   nameDer(name)                           -> Buffer              DER of a NameSpec
 *
 * The signing engine lives in lib/pki/engine.ts, shared with the public
 * development PKI (lib/pki); this file adds the key pools, chains, wrong-key
 * re-issues and the test-only defaults.
 *
 * Which library builds what (our guide's rule): a certificate whose subject key
 * and signing key are both RSA is built and signed with node-forge; any other
 * certificate, and every CRL, with @peculiar/x509. Keys come from node:crypto
 * (forge imports the PEM; WebCrypto imports the PKCS#8). Both libraries get
 * names and extension values as finished DER, so the bytes are the same
 * whichever library signs:
 *   - names are built with forge.asn1 from structured RDNs, byte for byte (any
 *     value, NUL and newline included, any string tag, multi-valued RDNs);
 *   - extension values are built with @peculiar/asn1-x509 classes.
 *
 * Names: a NameSpec is either RDNs in DER order (RdnAttr[][]; an inner array
 * with more than one entry is a multi-valued RDN) or a string such as
 * 'CN=leaf,O=Acme' read left to right in DER order (as openssl -text and
 * node:crypto print it), with '+' joining a multi-valued RDN and '\,' '\+'
 * '\=' '\\' '\XX' (one UTF-8 byte) escapes. Use RdnAttr arrays for odd values.
 *
 * Limits (the signing library decides):
 *   - version: 1, MD5 signatures and serials that are not positive and
 *     minimally encoded only work on the node-forge path (RSA subject key and
 *     RSA signing key). @peculiar/x509 always writes v3 and normalises the
 *     serial (positive, minimal; an all-zero serial becomes random).
 *   - Ed25519 signatures ignore signatureHash.
 *   - CRL entries are written with a positive, minimal serial, and reason 0
 *     (unspecified) is written as no reason code.
 */
import { randomBytes } from 'node:crypto'
import {
  generateKeyPairOfKind as generateKey,
  issueWithKey,
  type CertSpec,
  type Issued,
  type KeyKind,
  type KeyPair
} from '../../lib/pki/engine.js'

export {
  makeCrl,
  nameDer,
  OID,
  tamperSignature,
  toPem
} from '../../lib/pki/engine.js'
export type {
  CertSpec,
  Crl,
  CrlSpec,
  EkuName,
  GeneralNamesSpec,
  Issued,
  KeyKind,
  KeyPair,
  KeyUsageName,
  NameSpec,
  RawExtension,
  RdnAttr,
  ReasonFlagName,
  ResolvedCertSpec,
  RevokedEntry,
  SignatureHash,
  StringTag
} from '../../lib/pki/engine.js'

// ---------------------------------------------------------------- keys

/** Keys kept per kind; consecutive pooled newKey() calls of one kind are distinct up to this many. */
export const POOL_SIZE = 8

const pools = new Map<KeyKind, { keys: Array<Promise<KeyPair>>, next: number }>()

function poolSlot (kind: KeyKind): Promise<KeyPair> {
  let pool = pools.get(kind)
  if (pool === undefined) {
    pool = { keys: [], next: 0 }
    pools.set(kind, pool)
  }
  const index = pool.next
  pool.next = (index + 1) % POOL_SIZE
  let slot = pool.keys[index]
  if (slot === undefined) {
    slot = generateKey(kind)
    pool.keys[index] = slot
  }
  return slot
}

/** A key of `kind` (default rsa2048): from the pool unless `fresh`. */
export async function newKey (kind: KeyKind = 'rsa2048', opts: { fresh?: boolean } = {}): Promise<KeyPair> {
  return opts.fresh === true ? generateKey(kind) : poolSlot(kind)
}

/** `n` distinct keys of `kind` (pooled while n <= POOL_SIZE, then fresh). */
export async function newKeys (kind: KeyKind, n: number): Promise<KeyPair[]> {
  const slots: Array<Promise<KeyPair>> = []
  for (let i = 0; i < n; i++) slots.push(i < POOL_SIZE ? poolSlot(kind) : generateKey(kind))
  return Promise.all(slots)
}

/** A pooled key of `kind` that is none of `avoid` (a subject key must not be its issuer's key by accident). */
async function pooledKeyAvoiding (kind: KeyKind, avoid: Array<KeyPair | undefined>): Promise<KeyPair> {
  for (let i = 0; i < POOL_SIZE; i++) {
    const key = await poolSlot(kind)
    if (!avoid.includes(key)) return key
  }
  return generateKey(kind)
}

// ---------------------------------------------------------------- certificates

/** Issue one certificate. See CertSpec for every default; the subject key defaults to a pooled rsa2048 key that is not the signing key. */
export async function issue (spec: CertSpec): Promise<Issued> {
  const key = spec.key ?? await pooledKeyAvoiding('rsa2048', [spec.issuer?.key, spec.signWith])
  return issueWithKey({ ...spec, key })
}

/**
 * Re-issue `issued` (same subject, serial, dates, extensions and issuer name)
 * signed by `key`, default a fresh key of the signer's kind: the issuer name
 * matches but the issuer's key does not verify the signature.
 */
export async function signedByWrongKey (issued: Issued, key?: KeyPair): Promise<Issued> {
  const signerKind = (issued.spec.signWith ?? issued.spec.issuer?.key ?? issued.key).kind
  return issue({ ...issued.spec, signWith: key ?? await newKey(signerKind, { fresh: true }) })
}

// ---------------------------------------------------------------- chains

export interface ChainOptions {
  /** key kind of every level (default rsa2048) */
  kind?: KeyKind
  /** key kind of the leaf, if different */
  leafKind?: KeyKind
  /** number of intermediate CAs (default 1) */
  intermediates?: number
  /** names are '<label> Root CA', '<label> Intermediate CA <n>', '<label> leaf'; default a unique label */
  label?: string
  root?: Partial<CertSpec>
  /** applied to every intermediate */
  intermediate?: Partial<CertSpec>
  leaf?: Partial<CertSpec>
}

export interface Chain {
  root: Issued
  /** top-down: intermediates[0] is signed by the root */
  intermediates: Issued[]
  leaf: Issued
  /** leaf then intermediates bottom-up: what a client presents */
  chainPem: string
}

let chainCounter = 0

/** root -> intermediates -> leaf, each level with its own key. */
export async function makeChain (opts: ChainOptions = {}): Promise<Chain> {
  const kind = opts.kind ?? 'rsa2048'
  const leafKind = opts.leafKind ?? kind
  const count = opts.intermediates ?? 1
  const label = opts.label ?? `Test ${++chainCounter}-${randomBytes(3).toString('hex')}`
  const caKeys = await newKeys(kind, count + 1)
  const leafKey = await pooledKeyAvoiding(leafKind, caKeys)
  const root = await issue({
    subject: [[{ type: 'CN', value: `${label} Root CA` }], [{ type: 'O', value: 'Fixture PKI' }]],
    key: caKeys[0],
    ca: true,
    ...opts.root
  })
  const intermediates: Issued[] = []
  let parent = root
  for (let i = 1; i <= count; i++) {
    parent = await issue({
      subject: [[{ type: 'CN', value: `${label} Intermediate CA ${i}` }], [{ type: 'O', value: 'Fixture PKI' }]],
      issuer: parent,
      key: caKeys[i],
      ca: true,
      ...opts.intermediate
    })
    intermediates.push(parent)
  }
  const leaf = await issue({
    subject: [[{ type: 'CN', value: `${label} leaf` }], [{ type: 'O', value: 'Fixture PKI' }]],
    issuer: parent,
    key: leafKey,
    ...opts.leaf
  })
  const chainPem = [leaf, ...intermediates.slice().reverse()].map((c) => c.pem).join('')
  return { root, intermediates, leaf, chainPem }
}
