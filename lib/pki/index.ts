/**
 * A development PKI: keys, certificates, certificate signing requests, CRLs and
 * PKCS#12 bundles, for the `fastify-mtls-auth pki` command, the testing helpers
 * (`fastify-mtls-auth/testing`) and your own tests. Import it as
 * `fastify-mtls-auth/pki`.
 *
 * Which library does what: node:crypto makes the keys; @peculiar/x509 builds
 * certificates, CSRs and CRLs of every key type (RSA, ECDSA P-256, Ed25519;
 * node-forge signs certificates whose subject and issuer keys are both RSA);
 * node-forge's ASN.1, PBES2 and PKCS#12 key derivation build the PKCS#12 files.
 * These are optional dependencies of the package: the plugin itself never
 * loads this module (`npm install --omit=optional` leaves them out, and then
 * only this module and the `pki` command are unavailable).
 *
 * Not for production: keys live in memory, unencrypted.
 *
 * @module
 */
import 'reflect-metadata'
import { Buffer } from 'node:buffer'
import { createPrivateKey, createPublicKey, generateKeyPair, randomBytes, webcrypto, X509Certificate, type KeyObject } from 'node:crypto'
import { isIP } from 'node:net'
import { promisify } from 'node:util'
import * as x509 from '@peculiar/x509'
import { SubjectAlternativeName } from '@peculiar/asn1-x509'
import * as engine from './engine.js'
import { buildPkcs12 } from './pkcs12.js'
import { rfc4514 } from './names.js'

/** The key types of this PKI: `rsa` is 2048-bit unless `rsaBits` says otherwise, `ec` is ECDSA P-256. */
export type KeyType = 'rsa' | 'ec' | 'ed25519'

/** A key pair made by node:crypto. */
export interface Key {
  readonly type: KeyType
  readonly privateKey: KeyObject
  readonly publicKey: KeyObject
  /** the private key, PKCS#8 PEM (unencrypted) */
  readonly privateKeyPem: string
}

/** A distinguished name. Written in the order C, ST, L, O, OU, CN (CN last in DER, first in `Certificate.subject`). */
export interface SubjectName {
  cn?: string
  o?: string
  ou?: string | string[]
  /** two letters */
  c?: string
  st?: string
  l?: string
}

/** Subject alternative names. `ip` takes IPv4 or IPv6 addresses. */
export interface AltNames {
  dns?: string[]
  ip?: string[]
  uri?: string[]
  email?: string[]
}

/** An X.509 certificate this module made or loaded. */
export interface Certificate {
  readonly der: Buffer
  readonly pem: string
  /** the subject's key, when we hold it (an issuer must carry its key) */
  readonly key?: Key
  /** the serial number as encoded, uppercase hex */
  readonly serialHex: string
  /** the subject as an RFC 4514 string, most specific first: 'CN=alice,O=Acme' */
  readonly subject: string
  readonly notBefore: Date
  readonly notAfter: Date
  /** SHA-256 fingerprint as node:crypto prints it ('AB:CD:...') */
  readonly fingerprint256: string
}

export interface CertificateOptions {
  subject: SubjectName
  /** the subject key; a fresh 'ec' key when absent */
  key?: Key
  /** the signing CA, which must carry its key; self-signed when absent */
  issuer?: Certificate
  /** a CA certificate (basicConstraints cA, keyCertSign and cRLSign), optionally with a path length */
  ca?: boolean | { pathLength?: number }
  /** validity in days from notBefore; default 3650 for a CA, 397 otherwise. notBefore defaults to now - 5 minutes. */
  days?: number
  /** overrides the default notBefore (e.g. a certificate that is not valid yet) */
  notBefore?: Date
  /** overrides `days` (e.g. an expired certificate) */
  notAfter?: Date
  altNames?: AltNames
  /** default: none for a CA, ['clientAuth'] for a leaf; [] writes no extended key usage */
  extKeyUsage?: Array<'clientAuth' | 'serverAuth'>
  /** URIs written in the CRL distribution points extension */
  crlDistributionPoints?: string[]
}

/** What a CSR says, once its own signature has been checked. */
export interface CsrInfo {
  subject: string
  publicKey: KeyObject
  keyType: KeyType
  altNames: AltNames
}

export type RevocationReason = 'unspecified' | 'keyCompromise' | 'caCompromise' | 'affiliationChanged' | 'superseded' | 'cessationOfOperation'

export interface RevokedEntry {
  /** the certificate's serial number, hex (colons and case ignored) */
  serialHex: string
  /** revocation date; default now */
  date?: Date
  /** default: no reason code (which means unspecified) */
  reason?: RevocationReason
}

/** Every refusal of this module: bad input, a CSR that does not verify, a key that does not match. */
export class PkiError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'PkiError'
  }
}

/** A development PKI in memory: root CA, intermediate client CA, server certificate for localhost, 127.0.0.1 and ::1. */
export interface DevPki {
  /** self-signed root CA: trust it for the server certificate */
  root: Certificate
  /** intermediate CA (path length 0) under the root that issues client certificates: the plugin's `ca` */
  clientCa: Certificate
  /** server certificate (serverAuth) for localhost, 127.0.0.1 and ::1, issued by the root */
  server: Certificate
}

/** A client certificate with its key and `chainPem` (leaf + client CA: what a client sends). */
export type ClientCertificate = Certificate & { readonly key: Key, readonly chainPem: string }

const REASON_CODES: Record<RevocationReason, number> = {
  unspecified: 0,
  keyCompromise: 1,
  caCompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5
}

/** The reasons `createCrl` accepts. */
export const REVOCATION_REASONS = Object.freeze(Object.keys(REASON_CODES)) as readonly RevocationReason[]

const MINUTE = 60e3
const DAY = 86400e3

// ---------------------------------------------------------------- keys

const generateKeyPairAsync = promisify(generateKeyPair)
const pairs = new WeakMap<Key, engine.KeyPair>()

function kindOf (publicKey: KeyObject): { type: KeyType, kind: engine.KeyKind } {
  const details = publicKey.asymmetricKeyDetails ?? {}
  switch (publicKey.asymmetricKeyType) {
    case 'rsa': {
      const bits = details.modulusLength ?? 0
      if (bits < 2048) throw new PkiError(`RSA keys must have at least 2048 bits (this one has ${bits})`)
      return { type: 'rsa', kind: bits === 3072 ? 'rsa3072' : bits === 4096 ? 'rsa4096' : 'rsa2048' }
    }
    case 'ec':
      if (details.namedCurve === 'prime256v1') return { type: 'ec', kind: 'ec256' }
      if (details.namedCurve === 'secp384r1') return { type: 'ec', kind: 'ec384' }
      throw new PkiError(`unsupported EC curve ${String(details.namedCurve)}: use P-256 or P-384`)
    case 'ed25519':
      return { type: 'ed25519', kind: 'ed25519' }
    default:
      throw new PkiError(`unsupported key type ${String(publicKey.asymmetricKeyType)}: use rsa, ec or ed25519`)
  }
}

function pairOfPublicKey (publicKey: KeyObject, kind: engine.KeyKind, privateKey?: KeyObject): engine.KeyPair {
  const spkiDer = publicKey.export({ type: 'spki', format: 'der' })
  return Object.freeze({
    kind,
    // a subject key of a signed CSR has no private half; the engine never asks for it then
    privateKey: privateKey as KeyObject,
    publicKey,
    privateKeyPem: privateKey === undefined ? '' : privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    spkiDer,
    keyId: engine.keyIdOfSpki(spkiDer)
  })
}

function keyPairOf (key: Key): engine.KeyPair {
  let pair = pairs.get(key)
  if (pair === undefined) {
    if (key === null || typeof key !== 'object' || key.privateKey === undefined) throw new PkiError('a key must be a Key (from generateKey or loadKey)')
    const publicKey = createPublicKey(key.privateKey)
    pair = pairOfPublicKey(publicKey, kindOf(publicKey).kind, key.privateKey)
    pairs.set(key, pair)
  }
  return pair
}

function makeKey (privateKey: KeyObject, publicKey: KeyObject): Key {
  const { type, kind } = kindOf(publicKey)
  const pair = pairOfPublicKey(publicKey, kind, privateKey)
  const key: Key = Object.freeze({ type, privateKey, publicKey, privateKeyPem: pair.privateKeyPem })
  pairs.set(key, pair)
  return key
}

/** A fresh key pair from node:crypto: `ec` (P-256, the default), `ed25519`, or `rsa` (2048 bits unless `rsaBits`). */
export async function generateKey (type: KeyType = 'ec', options: { rsaBits?: number } = {}): Promise<Key> {
  let pair: { publicKey: KeyObject, privateKey: KeyObject }
  switch (type) {
    case 'ec': pair = await generateKeyPairAsync('ec', { namedCurve: 'P-256' }); break
    case 'ed25519': pair = await generateKeyPairAsync('ed25519'); break
    case 'rsa': {
      const bits = options.rsaBits ?? 2048
      if (!Number.isInteger(bits) || bits < 2048 || bits > 8192 || bits % 8 !== 0) throw new PkiError(`rsaBits must be a multiple of 8 from 2048 to 8192 (got ${String(bits)})`)
      pair = await generateKeyPairAsync('rsa', { modulusLength: bits })
      break
    }
    default: throw new PkiError(`unknown key type ${JSON.stringify(type)}: use rsa, ec or ed25519`)
  }
  return makeKey(pair.privateKey, pair.publicKey)
}

/** A private key from PEM (PKCS#8, or the traditional RSA/EC forms): RSA of 2048 bits or more, EC P-256 or P-384, or Ed25519. */
export function loadKey (pem: string | Buffer, passphrase?: string): Key {
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey(passphrase === undefined ? pem : { key: pem, passphrase })
  } catch (err) {
    throw new PkiError(`not a private key: ${(err as Error).message}`)
  }
  return makeKey(privateKey, createPublicKey(privateKey))
}

// ---------------------------------------------------------------- certificates

const issuedOf = new WeakMap<Certificate, engine.Issued>()

function subjectDerOf (certDer: Buffer): Buffer {
  const tbs = engine.tlvAt(certDer, engine.tlvAt(certDer, 0).contentStart)
  const fields = engine.childrenOf(certDer, tbs)
  const offset = fields[0]?.tag === 0xa0 ? 1 : 0
  const subject = fields[offset + 4]
  if (subject === undefined) throw new PkiError('bad certificate')
  return certDer.subarray(subject.start, subject.end)
}

function publicCertificate (issued: engine.Issued, key: Key | undefined): Certificate {
  const x = new X509Certificate(issued.der)
  const cert: Certificate = Object.freeze({
    der: issued.der,
    pem: issued.pem,
    ...(key === undefined ? {} : { key }),
    serialHex: issued.serialHex,
    subject: rfc4514(issued.subjectDer),
    notBefore: new Date(x.validFrom),
    notAfter: new Date(x.validTo),
    fingerprint256: x.fingerprint256
  })
  issuedOf.set(cert, issued)
  return cert
}

function issuerOf (cert: Certificate): engine.Issued {
  const issued = issuedOf.get(cert)
  if (issued === undefined) throw new PkiError('the issuer must be a Certificate from this module (createCertificate, loadCertificate)')
  if (cert.key === undefined) throw new PkiError(`the issuer ${cert.subject} does not carry its private key`)
  return issued
}

/**
 * A certificate from PEM or DER, with its private key when you have it (it must
 * match the certificate's public key). Needed to use a certificate read from a
 * file as an `issuer`.
 */
export function loadCertificate (pemOrDer: string | Buffer, key?: Key): Certificate {
  let x: X509Certificate
  try {
    x = new X509Certificate(pemOrDer)
  } catch (err) {
    throw new PkiError(`not a certificate: ${(err as Error).message}`)
  }
  const der = x.raw
  let pair: engine.KeyPair
  if (key !== undefined) {
    pair = keyPairOf(key)
    if (!pair.spkiDer.equals(x.publicKey.export({ type: 'spki', format: 'der' }))) throw new PkiError(`the key does not match the certificate ${x.subject.replace(/\n/g, ', ')}`)
  } else {
    pair = pairOfPublicKey(x.publicKey, kindOf(x.publicKey).kind)
  }
  const ski = new x509.X509Certificate(der).getExtension(x509.SubjectKeyIdentifierExtension)
  const spec: engine.ResolvedCertSpec = {
    subject: [],
    key: pair,
    serial: engine.serialOf(der),
    notBefore: new Date(x.validFrom),
    notAfter: new Date(x.validTo),
    ca: x.ca
  }
  const issued = engine.makeIssued(der, spec, subjectDerOf(der), ski === null ? undefined : Buffer.from(ski.keyId, 'hex'), '@peculiar/x509')
  return publicCertificate(issued, key)
}

function subjectRdns (subject: SubjectName): engine.RdnAttr[][] {
  if (subject === null || typeof subject !== 'object') throw new PkiError('subject must be an object such as { cn: "alice" }')
  const rdns: engine.RdnAttr[][] = []
  const add = (type: string, value: string | undefined): void => {
    if (value === undefined) return
    if (typeof value !== 'string' || value.trim() === '') throw new PkiError(`subject ${type} must be a non-empty string`)
    if (value.length > 64) throw new PkiError(`subject ${type} is longer than 64 characters`)
    rdns.push([{ type, value }])
  }
  if (subject.c !== undefined && !/^[A-Za-z]{2}$/.test(subject.c)) throw new PkiError(`subject c must be a two-letter country code (got ${JSON.stringify(subject.c)})`)
  add('C', subject.c?.toUpperCase())
  add('ST', subject.st)
  add('L', subject.l)
  add('O', subject.o)
  for (const ou of subject.ou === undefined ? [] : Array.isArray(subject.ou) ? subject.ou : [subject.ou]) add('OU', ou)
  add('CN', subject.cn)
  if (rdns.length === 0) throw new PkiError('the subject needs at least one attribute (cn, o, ou, c, st or l)')
  return rdns
}

function sanSpec (altNames: AltNames | undefined): engine.GeneralNamesSpec | undefined {
  if (altNames === undefined) return undefined
  const list = (name: keyof AltNames): string[] => {
    const values = altNames[name] ?? []
    if (!Array.isArray(values) || values.some((v) => typeof v !== 'string' || v === '')) throw new PkiError(`altNames.${name} must be an array of non-empty strings`)
    return values
  }
  const ip = list('ip')
  for (const address of ip) if (isIP(address) === 0) throw new PkiError(`not an IP address: ${JSON.stringify(address)}`)
  const spec = { dns: list('dns'), ip, uri: list('uri'), email: list('email') }
  for (const name of ['dns', 'uri', 'email'] as const) {
    // IA5String: printable ASCII only (an IDN goes in as its xn-- form, a URI percent-encoded)
    for (const value of spec[name]) if (!/^[\x21-\x7e]+$/.test(value)) throw new PkiError(`altNames.${name} ${JSON.stringify(value)} has non-ASCII, space or control characters`)
  }
  return spec.dns.length + spec.ip.length + spec.uri.length + spec.email.length === 0 ? undefined : spec
}

interface Validity { notBefore: Date, notAfter: Date }

function validity (options: { days?: number, notBefore?: Date, notAfter?: Date }, defaultDays: number): Validity {
  const now = Date.now()
  const days = options.days ?? defaultDays
  if (!Number.isInteger(days) || days < 1) throw new PkiError(`days must be a positive integer (got ${String(days)})`)
  for (const name of ['notBefore', 'notAfter'] as const) {
    const date = options[name]
    if (date !== undefined && (!(date instanceof Date) || Number.isNaN(date.getTime()))) throw new PkiError(`${name} must be a valid Date`)
  }
  const notBefore = options.notBefore ?? new Date(now - 5 * MINUTE)
  const notAfter = options.notAfter ?? new Date((options.notBefore?.getTime() ?? now) + days * DAY)
  if (notAfter.getTime() <= notBefore.getTime()) throw new PkiError('notAfter must be after notBefore')
  return { notBefore, notAfter }
}

async function build (options: Omit<CertificateOptions, 'key'>, subjectKey: engine.KeyPair, key: Key | undefined): Promise<Certificate> {
  if (options === null || typeof options !== 'object') throw new PkiError('options must be an object')
  const issuer = options.issuer === undefined ? undefined : issuerOf(options.issuer)
  const ca = options.ca !== undefined && options.ca !== false
  const pathLength = typeof options.ca === 'object' ? options.ca.pathLength : undefined
  if (pathLength !== undefined && (!Number.isInteger(pathLength) || pathLength < 0)) throw new PkiError('ca.pathLength must be a non-negative integer')
  const eku = options.extKeyUsage ?? (ca ? [] : ['clientAuth'])
  for (const usage of eku) if (usage !== 'clientAuth' && usage !== 'serverAuth') throw new PkiError(`extKeyUsage takes clientAuth and serverAuth (got ${JSON.stringify(usage)})`)
  const issued = await engine.issueWithKey({
    subject: subjectRdns(options.subject),
    key: subjectKey,
    issuer,
    ca,
    pathLen: pathLength,
    ...validity(options, ca ? 3650 : 397),
    san: sanSpec(options.altNames),
    extKeyUsage: eku.length === 0 ? false : eku,
    crlDistributionPoints: options.crlDistributionPoints
  })
  return publicCertificate(issued, key)
}

/** A certificate signed by `issuer` (or self-signed), for `key` (or a fresh EC key). */
export async function createCertificate (options: CertificateOptions): Promise<Certificate> {
  const key = options?.key ?? await generateKey('ec')
  return build(options, keyPairOf(key), key)
}

// ---------------------------------------------------------------- CSRs

const WEB_HASH = 'SHA-256'

async function csrKeys (pair: engine.KeyPair): Promise<{ keys: webcrypto.CryptoKeyPair, signingAlgorithm: { name: string, hash?: string } }> {
  const pkcs8 = pair.privateKey.export({ type: 'pkcs8', format: 'der' })
  let algorithm: webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams | webcrypto.Algorithm
  let signingAlgorithm: { name: string, hash?: string }
  if (pair.kind === 'ed25519') {
    algorithm = { name: 'Ed25519' }
    signingAlgorithm = algorithm
  } else if (engine.isRsa(pair)) {
    algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: WEB_HASH }
    signingAlgorithm = { name: 'RSASSA-PKCS1-v1_5', hash: WEB_HASH }
  } else {
    algorithm = { name: 'ECDSA', namedCurve: pair.kind === 'ec384' ? 'P-384' : 'P-256' }
    signingAlgorithm = { name: 'ECDSA', hash: pair.kind === 'ec384' ? 'SHA-384' : WEB_HASH }
  }
  const privateKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, algorithm, false, ['sign'])
  const publicKey = await webcrypto.subtle.importKey('spki', pair.spkiDer, algorithm, true, ['verify'])
  return { keys: { privateKey, publicKey }, signingAlgorithm }
}

type X509CryptoKeyPair = Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[0]['keys']

/** A PKCS#10 certificate signing request (PEM) for `key`, signed by it. */
export async function createCsr (options: { subject: SubjectName, key: Key, altNames?: AltNames }): Promise<string> {
  if (options === null || typeof options !== 'object') throw new PkiError('options must be an object')
  const pair = keyPairOf(options.key)
  const { keys, signingAlgorithm } = await csrKeys(pair)
  const san = sanSpec(options.altNames)
  const extensions = san === undefined
    ? []
    : [new x509.Extension(engine.OID.subjectAltName, false, engine.ser(new SubjectAlternativeName(engine.generalNames(san))))]
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: new x509.Name(engine.nameDer(subjectRdns(options.subject))),
    keys: keys as X509CryptoKeyPair,
    signingAlgorithm,
    extensions
  })
  return csr.toString('pem') + '\n'
}

function parseCsr (pem: string | Buffer): x509.Pkcs10CertificateRequest {
  const text = Buffer.isBuffer(pem) ? pem.toString('latin1') : pem
  if (typeof text !== 'string' || !/-----BEGIN (NEW )?CERTIFICATE REQUEST-----/.test(text)) throw new PkiError('not a certificate signing request (no BEGIN CERTIFICATE REQUEST block)')
  try {
    return new x509.Pkcs10CertificateRequest(text.replace(/NEW CERTIFICATE REQUEST/g, 'CERTIFICATE REQUEST'))
  } catch (err) {
    throw new PkiError(`the certificate signing request does not parse: ${(err as Error).message}`)
  }
}

/** The subject, key and names of a CSR, after checking the CSR's own signature (PkiError when it fails). */
export async function readCsr (pem: string | Buffer): Promise<CsrInfo> {
  const csr = parseCsr(pem)
  let valid = false
  try {
    valid = await csr.verify()
  } catch {
    valid = false
  }
  if (!valid) throw new PkiError('the certificate signing request\'s signature does not verify (altered or corrupted)')
  let publicKey: KeyObject
  try {
    publicKey = createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: 'der', type: 'spki' })
  } catch (err) {
    throw new PkiError(`the certificate signing request's public key does not load: ${(err as Error).message}`)
  }
  const { type } = kindOf(publicKey)
  const altNames: Required<AltNames> = { dns: [], ip: [], uri: [], email: [] }
  const sanExt = csr.getExtension(engine.OID.subjectAltName)
  if (sanExt !== null) {
    for (const name of new x509.SubjectAlternativeNameExtension(sanExt.rawData).names.items) {
      if (name.type === 'dns') altNames.dns.push(name.value)
      else if (name.type === 'ip') altNames.ip.push(name.value)
      else if (name.type === 'url') altNames.uri.push(name.value)
      else if (name.type === 'email') altNames.email.push(name.value)
    }
  }
  return { subject: rfc4514(Buffer.from(csr.subjectName.toArrayBuffer())), publicKey, keyType: type, altNames }
}

/**
 * A certificate for the CSR's public key; subject, names and extensions come
 * from options (the signer), never copied from the CSR. The CSR's signature
 * must verify (PkiError otherwise).
 */
export async function signCsr (csrPem: string | Buffer, options: Omit<CertificateOptions, 'key'> & { issuer: Certificate }): Promise<Certificate> {
  if (options?.issuer === undefined) throw new PkiError('signCsr needs an issuer')
  const info = await readCsr(csrPem)
  return build(options, pairOfPublicKey(info.publicKey, kindOf(info.publicKey).kind), undefined)
}

// ---------------------------------------------------------------- CRLs

function normaliseSerial (serialHex: string): string {
  const hex = typeof serialHex === 'string' ? serialHex.replace(/[:\s]/g, '').replace(/^0x/i, '') : ''
  if (!/^[0-9a-fA-F]+$/.test(hex)) throw new PkiError(`bad serial number ${JSON.stringify(serialHex)}: hex expected`)
  return (hex.length % 2 === 1 ? `0${hex}` : hex).toUpperCase()
}

/** A CRL signed by `issuer` (which must carry its key). thisUpdate defaults to now - 5 minutes, nextUpdate to thisUpdate + 7 days. */
export async function createCrl (options: { issuer: Certificate, revoked?: RevokedEntry[], thisUpdate?: Date, nextUpdate?: Date, crlNumber?: number | bigint }): Promise<{ der: Buffer, pem: string }> {
  if (options === null || typeof options !== 'object') throw new PkiError('options must be an object')
  const issuer = issuerOf(options.issuer)
  const validDate = (date: unknown, what: string): Date => {
    if (!(date instanceof Date) || Number.isNaN(date.getTime())) throw new PkiError(`${what} must be a valid Date`)
    return date
  }
  const thisUpdate = validDate(options.thisUpdate ?? new Date(Date.now() - 5 * MINUTE), 'thisUpdate')
  const nextUpdate = validDate(options.nextUpdate ?? new Date(thisUpdate.getTime() + 7 * DAY), 'nextUpdate')
  if (nextUpdate.getTime() <= thisUpdate.getTime()) throw new PkiError('nextUpdate must be after thisUpdate')
  const crlNumber = options.crlNumber ?? 1
  if ((typeof crlNumber !== 'number' && typeof crlNumber !== 'bigint') || crlNumber < 0 || (typeof crlNumber === 'number' && !Number.isSafeInteger(crlNumber)) || crlNumber > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new PkiError('crlNumber must be a non-negative integer below 2^53')
  }
  const revoked = (options.revoked ?? []).map((entry) => {
    if (entry.reason !== undefined && !Object.hasOwn(REASON_CODES, entry.reason)) throw new PkiError(`unknown revocation reason ${JSON.stringify(entry.reason)}: use ${REVOCATION_REASONS.join(', ')}`)
    return {
      serial: normaliseSerial(entry.serialHex),
      date: validDate(entry.date ?? new Date(), `the revocation date of ${JSON.stringify(entry.serialHex)}`),
      reason: entry.reason === undefined ? undefined : REASON_CODES[entry.reason]
    }
  })
  return engine.makeCrl({ issuer, revoked, thisUpdate, nextUpdate, crlNumber: Number(crlNumber) })
}

// ---------------------------------------------------------------- PKCS#12

/**
 * A PKCS#12 (.p12/.pfx) bundle of `key`, `certificate` and `chain`, as OpenSSL 3
 * writes by default: key shrouded with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC),
 * MAC HMAC-SHA256. Loads in browsers, curl, Java keytool, OpenSSL 3 (no -legacy)
 * and node:tls (`pfx` + `passphrase`).
 */
export function createPkcs12 (options: { key: Key, certificate: Certificate, chain?: Certificate[], password: string, friendlyName?: string }): Buffer {
  if (options === null || typeof options !== 'object') throw new PkiError('options must be an object')
  if (typeof options.password !== 'string' || options.password === '') throw new PkiError('a PKCS#12 bundle needs a non-empty password')
  const pair = keyPairOf(options.key)
  const leaf = new X509Certificate(options.certificate.der)
  if (!pair.spkiDer.equals(leaf.publicKey.export({ type: 'spki', format: 'der' }))) throw new PkiError('the key does not match the certificate')
  return buildPkcs12({
    pkcs8Der: pair.privateKey.export({ type: 'pkcs8', format: 'der' }),
    certDer: options.certificate.der,
    chainDers: (options.chain ?? []).map((c) => c.der),
    password: options.password,
    friendlyName: options.friendlyName
  })
}

// ---------------------------------------------------------------- development PKI

/** A development PKI: root CA, client CA under it, server certificate for localhost. Names carry a random tag so that two dev PKIs never share CA names. */
export async function createDevPki (options: { keyType?: KeyType, onProgress?: (step: string) => void } = {}): Promise<DevPki> {
  const keyType = options.keyType ?? 'ec'
  const progress = options.onProgress ?? (() => {})
  const tag = randomBytes(3).toString('hex')
  const o = 'fastify-mtls-auth development'
  progress(`generating the root CA key (${keyType})`)
  const rootKey = await generateKey(keyType)
  const root = await createCertificate({ subject: { cn: `Dev Root CA ${tag}`, o }, key: rootKey, ca: true })
  progress(`generating the client CA key (${keyType})`)
  const clientCaKey = await generateKey(keyType)
  // extendedKeyUsage clientAuth: OpenSSL and browsers then refuse a server certificate under it
  const clientCa = await createCertificate({ subject: { cn: `Dev Client CA ${tag}`, o }, key: clientCaKey, issuer: root, ca: { pathLength: 0 }, extKeyUsage: ['clientAuth'] })
  progress(`generating the server key (${keyType})`)
  const serverKey = await generateKey(keyType)
  const server = await createCertificate({
    subject: { cn: 'localhost', o },
    key: serverKey,
    issuer: root,
    altNames: { dns: ['localhost'], ip: ['127.0.0.1', '::1'] },
    extKeyUsage: ['serverAuth']
  })
  return { root, clientCa, server }
}

/** A client certificate (clientAuth) from the dev PKI's client CA, with a fresh key of `keyType` (default: the client CA's key type). */
export async function issueClient (pki: DevPki, options: { cn: string, o?: string, ou?: string | string[], altNames?: AltNames, spiffe?: string, days?: number, notBefore?: Date, notAfter?: Date, keyType?: KeyType }): Promise<ClientCertificate> {
  if (pki?.clientCa === undefined) throw new PkiError('issueClient needs a DevPki (from createDevPki)')
  if (options === null || typeof options !== 'object' || typeof options.cn !== 'string' || options.cn === '') throw new PkiError('issueClient needs a cn')
  const altNames: AltNames = { ...options.altNames }
  if (options.spiffe !== undefined) {
    if (typeof options.spiffe !== 'string' || !options.spiffe.startsWith('spiffe://')) throw new PkiError(`a SPIFFE ID starts with spiffe:// (got ${JSON.stringify(options.spiffe)})`)
    altNames.uri = [...(altNames.uri ?? []), options.spiffe]
  }
  const caKey = pki.clientCa.key
  if (caKey === undefined) throw new PkiError(`the client CA ${pki.clientCa.subject} does not carry its private key`)
  const key = await generateKey(options.keyType ?? caKey.type)
  const cert = await createCertificate({
    subject: { cn: options.cn, o: options.o, ou: options.ou },
    key,
    issuer: pki.clientCa,
    altNames,
    extKeyUsage: ['clientAuth'],
    days: options.days,
    notBefore: options.notBefore,
    notAfter: options.notAfter
  })
  const client: ClientCertificate = Object.freeze({ ...cert, key, chainPem: cert.pem + pki.clientCa.pem })
  issuedOf.set(client, issuedOf.get(cert) as engine.Issued)
  return client
}
