// OCSP client (lib/revocation/ocsp.ts) and the DER writer (lib/der/writer.ts).
// Real `openssl ocsp` responders on 127.0.0.1 for the protocol cases; crafted
// responses from a fake fetch for everything a real responder will not send.
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, sign as cryptoSign } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ParsedCertificate } from '../lib/der/certificate.js'
import { OID } from '../lib/der/oids.js'
import {
  DerReader, TAG, children, ctx, parseOne, readBigInt, readBitString, readBoolean, readExtensions, readNull,
  readOctetString, readOid, readSmallInt, readString, readTime, tlvBytes, tlvValue
} from '../lib/der/reader.js'
import { getCertificate } from '../lib/der/store.js'
import * as w from '../lib/der/writer.js'
import {
  MAX_RESPONSE_CERTS, OCSP_BASIC, OCSP_NONCE, OcspChecker, normaliseResponderUrl, ocspUrls, parseOcspResponse,
  type OcspOptions, type OcspStatus
} from '../lib/revocation/ocsp.js'
import { issue, newKey, signedByWrongKey, type Issued, type KeyPair } from './helpers/pki.js'

const HOUR = 3600e3
const DAY = 24 * HOUR
const sec = (ms: number): number => Math.floor(ms / 1000) * 1000

// ---------------------------------------------------------------- fixtures

const caKey = await newKey('ec256', { fresh: true })
const ca = await issue({ subject: 'CN=OCSP Test CA,O=Fixture PKI', key: caKey, ca: true })
const otherCaKey = await newKey('ec256', { fresh: true })
const otherCa = await issue({ subject: 'CN=OCSP Other CA,O=Fixture PKI', key: otherCaKey, ca: true })
const leafKey = await newKey('ec256')
const responderKey = await newKey('ec256', { fresh: true })
const delegated = await issue({ subject: 'CN=OCSP Responder,O=Fixture PKI', issuer: ca, key: responderKey, extKeyUsage: ['ocspSigning'] })
const otherDelegated = await issue({ subject: 'CN=OCSP Responder,O=Fixture PKI', issuer: otherCa, key: await newKey('ec256', { fresh: true }), extKeyUsage: ['ocspSigning'] })

const aia = (...urls: string[]): { oid: string, valueDer: Buffer } => ({
  oid: OID.authorityInfoAccess,
  valueDer: w.sequence(
    w.sequence(w.oid(OID.caIssuers), w.implicitPrimitive(6, Buffer.from('http://ca.example/ca.crt'))),
    ...urls.map((u) => w.sequence(w.oid(OID.ocsp), w.implicitPrimitive(6, Buffer.from(u))))
  )
})

const leaf = async (serial: string, extra: Partial<Parameters<typeof issue>[0]> = {}): Promise<Issued> =>
  issue({ subject: `CN=OCSP leaf ${serial},O=Fixture PKI`, issuer: ca, key: leafKey, serial, ...extra })

const good = await leaf('1001')
const revoked = await leaf('1002')
const unknown = await leaf('1003')
const revokedAt = new Date(sec(Date.now() - 2 * DAY))

const parsed = (i: Issued): ParsedCertificate => getCertificate(i.der)
const P = {
  ca: parsed(ca),
  otherCa: parsed(otherCa),
  good: parsed(good),
  revoked: parsed(revoked),
  unknown: parsed(unknown)
}

// ---------------------------------------------------------------- openssl responders

const dir = await mkdtemp(join(tmpdir(), 'ocsp-test-'))
const file = (name: string): string => join(dir, name)
const utc = (d: Date): string => d.toISOString().slice(2, 19).replace(/[-:T]/g, '') + 'Z'
const expiry = utc(new Date(Date.now() + 30 * DAY))
// openssl ca database: status, expiry, revocation[,reason], serial (hex), file name, DN
const index = [
  ['V', expiry, '', '1001', 'unknown', '/O=Fixture PKI/CN=OCSP leaf 1001'],
  ['R', expiry, `${utc(revokedAt)},keyCompromise`, '1002', 'unknown', '/O=Fixture PKI/CN=OCSP leaf 1002'],
  ['V', expiry, '', '1004', 'unknown', '/O=Fixture PKI/CN=OCSP leaf 1004']
].map((l) => l.join('\t') + '\n').join('')
await writeFile(file('index.txt'), index)
await writeFile(file('ca.pem'), ca.pem)
await writeFile(file('ca.key'), caKey.privateKeyPem)
await writeFile(file('ocsp.pem'), delegated.pem)
await writeFile(file('ocsp.key'), responderKey.privateKeyPem)
await writeFile(file('other-ocsp.pem'), otherDelegated.pem)
await writeFile(file('other-ocsp.key'), otherDelegated.key.privateKeyPem)

const processes: ChildProcess[] = []
t.teardown(async () => {
  for (const p of processes) p.kill()
  await rm(dir, { recursive: true, force: true })
})

/** Starts `openssl ocsp` on an ephemeral port; resolves to its URL once it listens. */
async function startResponder (args: string[]): Promise<string> {
  const proc = spawn('openssl', ['ocsp', '-index', file('index.txt'), '-CA', file('ca.pem'), '-port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe']
  })
  processes.push(proc)
  let output = ''
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`openssl ocsp did not start: ${output}`)), 10_000)
    const onData = (chunk: Buffer): void => {
      output += chunk.toString()
      // OpenSSL 3 prints "ACCEPT [::]:PORT PID=..." once it listens
      const m = /ACCEPT \S*:(\d+)/.exec(output)
      if (m !== null) {
        clearTimeout(timer)
        resolve(Number(m[1]))
      }
    }
    proc.stdout?.on('data', onData)
    proc.stderr?.on('data', onData)
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`openssl ocsp exited with ${code}: ${output}`)) })
  })
  // No TCP connect probe: OpenSSL 3.0's responder hangs for good on a connection that
  // closes without a request (measured). The ACCEPT line is printed after listen().
  return `http://127.0.0.1:${port}/`
}

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise((resolve) => server.close(resolve))
  return typeof address === 'object' && address !== null ? address.port : 0
}

const [delegatedUrl, issuerUrl, wrongUrl, noCertsUrl] = await Promise.all([
  // delegated responder, responderID byName, SHA-1 CertIDs, nextUpdate in one day
  startResponder(['-rsigner', file('ocsp.pem'), '-rkey', file('ocsp.key'), '-ndays', '1']),
  // the CA signs itself, responderID byKey, no nextUpdate (not `-rcid sha256`: OpenSSL 3.0 then
  // answers with serial 0 in every CertID; SHA-256 CertIDs are tested with crafted responses)
  startResponder(['-rsigner', file('ca.pem'), '-rkey', file('ca.key'), '-resp_key_id']),
  // a responder certificate from another CA
  startResponder(['-rsigner', file('other-ocsp.pem'), '-rkey', file('other-ocsp.key'), '-ndays', '1']),
  // the delegated responder without its certificate in the response
  startResponder(['-rsigner', file('ocsp.pem'), '-rkey', file('ocsp.key'), '-ndays', '1', '-resp_no_certs'])
]) as [string, string, string, string]
const downUrl = `http://127.0.0.1:${await freePort()}/`

/** A fetch that counts requests per URL and keeps the last response body. */
function countingFetch (): { fetch: typeof fetch, count: () => number, urls: string[], last: () => Buffer | undefined } {
  const urls: string[] = []
  let last: Buffer | undefined
  const f = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    urls.push(String(input))
    const res = await fetch(input, init)
    const body = Buffer.from(await res.arrayBuffer())
    last = body
    return new Response(new Uint8Array(body), { status: res.status, headers: res.headers })
  }
  return { fetch: f as typeof fetch, count: () => urls.length, urls, last: () => last }
}

const checker = (options: Partial<OcspOptions>, deps: ConstructorParameters<typeof OcspChecker>[1] = {}): OcspChecker =>
  new OcspChecker({ mode: 'hard-fail', ...options }, deps)

t.test('openssl responder: good, revoked, unknown', async (t) => {
  const c = checker({ responder: delegatedUrl })
  const before = Date.now()
  const g = await c.check(P.good, P.ca)
  t.equal(g.status, 'good', JSON.stringify(g))
  if (g.status === 'good') {
    t.equal(g.responder, delegatedUrl)
    t.ok(g.nextUpdate > before + DAY - 60e3 && g.nextUpdate < Date.now() + DAY + 60e3, 'cached until nextUpdate (one day)')
  }
  const r = await c.check(P.revoked, P.ca)
  t.same(r, { status: 'revoked', revocationTime: revokedAt, reason: 1, responder: delegatedUrl }, 'revoked, with its date and reason')
  const u = await c.check(P.unknown, P.ca)
  t.equal(u.status, 'unknown')
  t.match(u, { reason: /does not know the certificate/, responder: delegatedUrl })
  const s = c.status()
  t.equal(s.inFlight, 0)
  t.equal(s.cacheSize, 3, 'good, revoked and (briefly) unknown are cached')
  t.match(s.responders, [{ url: delegatedUrl, consecutiveFailures: 0, healthy: true, lastFailure: null, lastError: null }])
  t.ok(Date.parse(s.responders[0]?.lastSuccess ?? '') >= sec(before))
})

t.test('openssl responder: signed by the issuer itself, byKey, no nextUpdate', async (t) => {
  const c = checker({ responder: issuerUrl, maxAgeSec: 600 })
  const before = Date.now()
  const g = await c.check(P.good, P.ca)
  t.equal(g.status, 'good', JSON.stringify(g))
  if (g.status === 'good') t.ok(g.nextUpdate >= sec(before) + 600e3 && g.nextUpdate <= Date.now() + 600e3, 'thisUpdate + maxAgeSec')
  t.match(await c.check(P.revoked, P.ca), { status: 'revoked', reason: 1 })
})

t.test('openssl responder: wrong signer', async (t) => {
  const c = checker({ responder: wrongUrl })
  t.match(await c.check(P.good, P.ca), { status: 'error', reason: /is not issued by the certificate's issuer \(wrong signer\)/, responder: wrongUrl })
  t.match(c.status().responders, [{ url: wrongUrl, healthy: false, consecutiveFailures: 1, lastError: /wrong signer/ }])
  const n = checker({ responder: noCertsUrl })
  t.match(await n.check(P.good, P.ca), { status: 'error', reason: /signed by neither the issuer nor a responder certificate/ }, 'delegated signer not in the response')
})

t.test('openssl responder: stale responses', async (t) => {
  const later = checker({ responder: delegatedUrl }, { now: () => Date.now() + 2 * DAY })
  t.match(await later.check(P.good, P.ca), { status: 'error', reason: /stale response: nextUpdate .* has passed/ })
  const tolerant = checker({ responder: delegatedUrl, clockToleranceSec: 3600 }, { now: () => Date.now() + DAY + 600e3 })
  t.match(await tolerant.check(P.good, P.ca), { status: 'good' }, 'within the clock tolerance')
  const noNext = checker({ responder: issuerUrl, maxAgeSec: 3600 }, { now: () => Date.now() + 2 * HOUR })
  t.match(await noNext.check(P.good, P.ca), { status: 'error', reason: /older than 3600 s and there is no nextUpdate/ })
  const early = checker({ responder: delegatedUrl }, { now: () => Date.now() - HOUR })
  t.match(await early.check(P.good, P.ca), { status: 'error', reason: /thisUpdate .* is in the future/ })
})

t.test('responder down', async (t) => {
  const c = checker({ responder: downUrl, failureCacheSec: 0 })
  const r = await c.check(P.good, P.ca)
  t.match(r, { status: 'error', reason: new RegExp(`^OCSP responder ${downUrl}: `), responder: downUrl })
  await c.check(P.good, P.ca)
  const [h] = c.status().responders
  t.match(h, { url: downUrl, healthy: false, consecutiveFailures: 2, lastSuccess: null, lastError: /fetch failed|ECONNREFUSED/ })
  t.ok(Date.parse(h?.lastFailure ?? '') > 0)
  t.equal(c.status().cacheSize, 0, 'failureCacheSec 0: errors are not cached')
})

t.test('AIA responders: only allow-listed URLs are requested', async (t) => {
  const viaAia = await leaf('1004', { extraExtensions: [aia('http://not-allowed.example/', delegatedUrl.replace('http://', 'HTTP://').replace(/\/$/, ''))] })
  const elsewhere = await leaf('1005', { extraExtensions: [aia(wrongUrl)] })
  const f = countingFetch()
  const c = checker({ allowedResponders: [delegatedUrl] }, { fetch: f.fetch })
  t.match(await c.check(parsed(viaAia), P.ca), { status: 'good', responder: delegatedUrl })
  t.same(f.urls, [delegatedUrl], 'the allow-listed AIA URL, and only it')
  t.same(await c.check(parsed(elsewhere), P.ca), { status: 'error', reason: 'no allowed OCSP responder' })
  t.same(await c.check(P.good, P.ca), { status: 'error', reason: 'no allowed OCSP responder' }, 'no AIA at all')
  t.equal(f.count(), 1, 'no request to a URL taken from a certificate alone')
  t.same(c.status().responders.map((r) => r.url), [delegatedUrl], 'only configured responders are tracked')

  const forced = checker({ responder: delegatedUrl, allowedResponders: [wrongUrl] }, { fetch: f.fetch })
  t.match(await forced.check(parsed(elsewhere), P.ca), { status: 'unknown', responder: delegatedUrl }, '`responder` overrides the AIA')
  t.equal(f.urls.at(-1), delegatedUrl)
})

t.test('single flight and cache', async (t) => {
  const f = countingFetch()
  const c = checker({ responder: delegatedUrl }, { fetch: f.fetch })
  const all = await Promise.all(Array.from({ length: 10 }, async () => c.check(P.good, P.ca)))
  t.equal(f.count(), 1, '10 concurrent checks, one request')
  t.ok(all.every((r) => r === all[0] && r.status === 'good'), 'all share the answer')
  t.equal(c.status().inFlight, 0)
  t.equal(await c.check(P.good, P.ca), all[0], 'cached')
  t.equal(f.count(), 1, 'no request for a cached answer')
  await c.check(P.revoked, P.ca)
  await c.check(P.revoked, P.ca)
  t.equal(f.count(), 2, 'revoked answers are cached too')
  c.clear()
  t.equal(c.status().cacheSize, 0)
  await c.check(P.good, P.ca)
  t.equal(f.count(), 3, 'clear() forgets')
})

t.test('nonce: a replayed response is refused', async (t) => {
  const f = countingFetch()
  await checker({ responder: delegatedUrl }, { fetch: f.fetch }).check(P.good, P.ca)
  const old = f.last()
  t.ok(old !== undefined)
  const nonceOf = (body: Buffer): Buffer | undefined => parseOcspResponse(body).extensions.find((e) => e.oid === OCSP_NONCE)?.value
  t.ok(nonceOf(old as Buffer) !== undefined, 'openssl echoes the nonce')
  const replay = (async () => new Response(new Uint8Array(old as Buffer), { status: 200 })) as typeof fetch
  const c = checker({ responder: delegatedUrl }, { fetch: replay })
  t.match(await c.check(P.good, P.ca), { status: 'error', reason: /nonce mismatch/ })
  t.match(c.status().responders, [{ healthy: false, lastError: /nonce mismatch/ }])
})

// ---------------------------------------------------------------- crafted responses

interface RequestParts { hashOid: string, nameHash: Buffer, keyHash: Buffer, serial: bigint, nonce: Buffer | undefined }

/** Reads an OCSPRequest the way a responder would, checking its shape. */
function parseRequest (body: Buffer): RequestParts {
  const top = DerReader.of(parseOne(body, 'OCSPRequest'))
  const tbs = DerReader.of(top.expect(TAG.SEQUENCE, 'tbsRequest'))
  top.done('OCSPRequest')
  const list = children(tbs.expect(TAG.SEQUENCE, 'requestList'))
  if (list.length !== 1) throw new Error('one Request expected')
  const req = DerReader.of(list[0] as ReturnType<DerReader['read']>)
  const cid = DerReader.of(req.expect(TAG.SEQUENCE, 'CertID'))
  req.done('Request')
  const alg = DerReader.of(cid.expect(TAG.SEQUENCE, 'hashAlgorithm'))
  const hashOid = readOid(alg.read(), 'hash')
  readNull(alg.read(), 'hash parameters')
  alg.done('hashAlgorithm')
  const nameHash = readOctetString(cid.read(), 'issuerNameHash')
  const keyHash = readOctetString(cid.read(), 'issuerKeyHash')
  const serial = readBigInt(cid.read(), 'serialNumber')
  cid.done('CertID')
  const extTlv = tbs.optional(ctx(2, true))
  tbs.done('TBSRequest')
  let nonce: Buffer | undefined
  if (extTlv !== undefined) {
    const er = DerReader.of(extTlv)
    const ext = readExtensions(er.read(), 'requestExtensions').find((e) => e.oid === OCSP_NONCE)
    if (ext !== undefined) nonce = readOctetString(parseOne(ext.value, 'nonce'), 'nonce')
  }
  return { hashOid, nameHash, keyHash, serial, nonce }
}

const keyBits = (spkiDer: Buffer): Buffer => {
  const r = DerReader.of(parseOne(spkiDer, 'spki'))
  r.read()
  return readBitString(r.read(), 'key').bytes
}
const digest = (alg: string, data: Buffer): Buffer => createHash(alg).update(data).digest()

const GOOD = w.implicitPrimitive(0, Buffer.alloc(0))
const UNKNOWN = w.implicitPrimitive(2, Buffer.alloc(0))
const REVOKED = (time: Date, reason?: number): Buffer =>
  w.implicitConstructed(1, w.generalizedTime(time), ...(reason === undefined ? [] : [w.explicit(0, w.enumerated(reason))]))
const byName = (i: Issued): Buffer => w.explicit(1, i.subjectDer)
const byKey = (k: KeyPair): Buffer => w.explicit(2, w.octetString(k.keyId))

interface CertIdSpec { hash?: 'sha1' | 'sha256', params?: Buffer | null, serial?: bigint, issuer?: Issued, hashOid?: string }
function certId (req: RequestParts, spec: CertIdSpec = {}): Buffer {
  const hash = spec.hash ?? 'sha1'
  const issuer = spec.issuer ?? ca
  const hashOid = spec.hashOid ?? (hash === 'sha1' ? OID.sha1 : OID.sha256)
  return w.sequence(
    spec.params === null ? w.algorithmIdentifier(hashOid) : w.algorithmIdentifier(hashOid, spec.params ?? w.nullValue()),
    w.octetString(digest(hash, issuer.subjectDer)),
    w.octetString(digest(hash, keyBits(issuer.key.spkiDer))),
    w.integer(spec.serial ?? req.serial)
  )
}

interface SingleSpec { id?: Buffer, status?: Buffer, thisUpdate?: Buffer, nextUpdate?: Date | null, extensions?: Buffer[] }
const T0 = sec(Date.now())
function single (req: RequestParts, s: SingleSpec = {}): Buffer {
  const next = s.nextUpdate === undefined ? new Date(T0 + HOUR) : s.nextUpdate
  return w.sequence(
    s.id ?? certId(req),
    s.status ?? GOOD,
    s.thisUpdate ?? w.generalizedTime(new Date(T0 - 60e3)),
    ...(next === null ? [] : [w.explicit(0, w.generalizedTime(next))]),
    ...(s.extensions === undefined ? [] : [w.explicit(1, w.sequence(...s.extensions))])
  )
}

interface Craft {
  signer?: KeyPair
  rid?: Buffer
  certs?: Buffer[]
  singles?: Buffer[]
  nonce?: 'echo' | 'raw' | 'none' | Buffer
  extensions?: Buffer[]
  sigAlg?: Buffer
  tamper?: boolean
  unusedBits?: number
  version?: Buffer
  responseStatus?: number
  responseType?: string
  noResponseBytes?: boolean
  producedAt?: Buffer
}

function respond (req: RequestParts, c: Craft = {}): Buffer {
  if (c.responseStatus !== undefined && c.responseStatus !== 0) return w.sequence(w.enumerated(c.responseStatus))
  if (c.noResponseBytes === true) return w.sequence(w.enumerated(0))
  const nonce = c.nonce ?? 'echo'
  const exts = [
    ...(nonce === 'none' || req.nonce === undefined
      ? []
      : [w.extension(OCSP_NONCE, Buffer.isBuffer(nonce) ? w.octetString(nonce) : nonce === 'raw' ? req.nonce : w.octetString(req.nonce))]),
    ...(c.extensions ?? [])
  ]
  const tbs = w.sequence(
    ...(c.version === undefined ? [] : [c.version]),
    c.rid ?? byName(ca),
    c.producedAt ?? w.generalizedTime(new Date(T0)),
    w.sequence(...(c.singles ?? [single(req)])),
    ...(exts.length === 0 ? [] : [w.explicit(1, w.sequence(...exts))])
  )
  const signer = c.signer ?? caKey
  const rsa = signer.kind.startsWith('rsa')
  const signature = cryptoSign('sha256', tbs, signer.privateKey)
  if (c.tamper === true) signature[signature.length - 1] = (signature[signature.length - 1] as number) ^ 1
  const alg = c.sigAlg ?? (rsa ? w.algorithmIdentifier('1.2.840.113549.1.1.11', w.nullValue()) : w.algorithmIdentifier('1.2.840.10045.4.3.2'))
  const basic = w.sequence(tbs, alg, c.unusedBits === undefined ? w.bitString(signature) : w.bitString(Buffer.concat([signature, Buffer.from([0])]), c.unusedBits),
    ...(c.certs === undefined ? [] : [w.explicit(0, w.sequence(...c.certs))]))
  return w.sequence(w.enumerated(0), w.explicit(0, w.sequence(w.oid(c.responseType ?? OCSP_BASIC), w.octetString(basic))))
}

const RESPONDER = 'http://ocsp.test/'

/** A fetch answering every request with a crafted response. */
function crafted (make: Craft | ((req: RequestParts) => Craft)): { fetch: typeof fetch, count: () => number, requests: Array<{ url: string, init: RequestInit, req: RequestParts }> } {
  const requests: Array<{ url: string, init: RequestInit, req: RequestParts }> = []
  const f = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const req = parseRequest(Buffer.from(init?.body as Uint8Array))
    requests.push({ url: String(input), init: init ?? {}, req })
    const c = typeof make === 'function' ? make(req) : make
    return new Response(new Uint8Array(respond(req, c)), { status: 200, headers: { 'content-type': 'application/ocsp-response' } })
  }
  return { fetch: f as typeof fetch, count: () => requests.length, requests }
}

async function checkWith (make: Craft | ((req: RequestParts) => Craft), options: Partial<OcspOptions> = {}, cert = P.good): Promise<OcspStatus> {
  return checker({ responder: RESPONDER, ...options }, { fetch: crafted(make).fetch }).check(cert, P.ca)
}

t.test('the request', async (t) => {
  const f = crafted({})
  t.match(await checker({ responder: RESPONDER }, { fetch: f.fetch }).check(P.good, P.ca), { status: 'good', responder: RESPONDER })
  const [r] = f.requests
  t.equal(r?.url, RESPONDER)
  t.match(r?.init, { method: 'POST', redirect: 'error', headers: { 'content-type': 'application/ocsp-request', accept: 'application/ocsp-response' } })
  t.ok(r?.init.signal instanceof AbortSignal)
  t.equal(r?.req.hashOid, OID.sha1)
  t.same(r?.req.nameHash, digest('sha1', ca.subjectDer), 'SHA-1 of the issuer name DER')
  t.same(r?.req.keyHash, caKey.keyId, 'SHA-1 of the issuer key bits')
  t.equal(r?.req.serial, 0x1001n)
  t.equal(r?.req.nonce?.length, 16, '16-byte nonce')
  await checker({ responder: RESPONDER }, { fetch: f.fetch }).check(P.good, P.ca)
  t.notSame(f.requests[1]?.req.nonce, r?.req.nonce, 'a new nonce per request')
})

t.test('signers', async (t) => {
  const rk = responderKey
  t.match(await checkWith({}), { status: 'good' }, 'issuer, byName')
  t.match(await checkWith({ rid: byKey(caKey) }), { status: 'good' }, 'issuer, byKey')
  t.match(await checkWith({ rid: byKey(caKey), tamper: true }), { status: 'error', reason: /bad response signature \(responder is the issuer\)/ })
  t.match(await checkWith({ signer: rk, rid: byName(delegated), certs: [delegated.der] }), { status: 'good' }, 'delegated, byName')
  t.match(await checkWith({ signer: rk, rid: byKey(rk), certs: [w.sequence(w.integer(1)), ca.der, delegated.der] }), { status: 'good' },
    'delegated, byKey, after an unparseable and a non-matching certificate')
  t.match(await checkWith({ signer: rk, rid: byName(delegated), certs: [delegated.der], tamper: true }),
    { status: 'error', reason: /bad response signature \(responder "O=Fixture PKI,CN=OCSP Responder"\)/ })
  t.match(await checkWith({ signer: rk, rid: byName(delegated) }), { status: 'error', reason: /signed by neither the issuer nor a responder certificate in the response \(wrong signer\)/ },
    'delegated certificate missing')
  t.match(await checkWith({ signer: rk, rid: byName(ca), certs: [delegated.der] }), { status: 'error', reason: /bad response signature \(responder is the issuer\)/ },
    'responderID names the issuer, delegated key signed')

  const mk = async (spec: Partial<Parameters<typeof issue>[0]>, key: KeyPair = rk): Promise<Issued> =>
    issue({ subject: 'CN=OCSP Responder,O=Fixture PKI', issuer: ca, key, extKeyUsage: ['ocspSigning'], ...spec })
  const cases: Array<[string, Issued, RegExp, KeyPair?]> = [
    ['without the OCSPSigning EKU', await mk({ extKeyUsage: ['clientAuth'] }), /lacks the id-kp-OCSPSigning extended key usage/],
    ['without any EKU', await mk({ extKeyUsage: false }), /lacks the id-kp-OCSPSigning/],
    ['expired', await mk({ notBefore: new Date(T0 - 10 * DAY), notAfter: new Date(T0 - 600e3) }), /is not valid now/],
    ['not yet valid', await mk({ notBefore: new Date(T0 + DAY) }), /is not valid now/],
    ['issued by another CA', otherDelegated, /is not issued by the certificate's issuer/, otherDelegated.key],
    ['issuer name right, signature by another key', await signedByWrongKey(delegated), /is not signed by the certificate's issuer/],
    ['key usage without digitalSignature', await mk({ keyUsage: ['nonRepudiation'] }), /key usage without digitalSignature/],
    ['SHA-1 signed', await mk({ signatureHash: 'sha1' }), /weak or unsupported signature algorithm/],
    ['unknown critical extension', await mk({ extraExtensions: [{ oid: '1.2.3.4.5', critical: true, valueDer: w.nullValue() }] }), /breaks the certificate profile/]
  ]
  const rsa1024 = await newKey('rsa1024')
  cases.push(['RSA-1024 key', await mk({}, rsa1024), /has a weak key: RSA key of 1024 bits/, rsa1024])
  for (const [name, cert, reason, key] of cases) {
    const signer = key ?? rk
    t.match(await checkWith({ signer, rid: byKey(signer), certs: [cert.der] }), { status: 'error', reason }, name)
  }
  t.match(await checkWith({ signer: rsa1024, rid: byKey(rsa1024), certs: [cases.at(-1)?.[1].der as Buffer] }, { minRsaBits: 1024 }), { status: 'good' },
    'minRsaBits lowered')
  const tolerant = { clockToleranceSec: 3600 }
  t.match(await checkWith({ signer: rk, rid: byKey(rk), certs: [cases[2]?.[1].der as Buffer] }, tolerant), { status: 'good' }, 'expired within the tolerance')

  t.match(await checkWith({ sigAlg: w.algorithmIdentifier('1.2.840.113549.1.1.5', w.nullValue()) }), { status: 'error', reason: /weak algorithm 1\.2\.840\.113549\.1\.1\.5/ })
  t.match(await checkWith({ sigAlg: w.algorithmIdentifier('1.2.3.4') }), { status: 'error', reason: /response signature: unsupported signature algorithm 1\.2\.3\.4/ })
})

t.test('matching the SingleResponse', async (t) => {
  const id = (spec: CertIdSpec) => (req: RequestParts): Craft => ({ singles: [single(req, { id: certId(req, spec) })] })
  t.match(await checkWith(id({ hash: 'sha256' })), { status: 'good' }, 'SHA-256 CertID')
  t.match(await checkWith(id({ hash: 'sha256', params: null })), { status: 'good' }, 'SHA-256 CertID without NULL parameters')
  t.match(await checkWith(id({ hashOid: '1.2.840.113549.2.5' })), { status: 'error', reason: /no SingleResponse for the certificate/ }, 'MD5 CertID')
  t.match(await checkWith(id({ params: w.oid('1.2.3') })), { status: 'error', reason: /no SingleResponse/ }, 'odd hash parameters')
  t.match(await checkWith(id({ serial: 0x1002n })), { status: 'error', reason: /no SingleResponse/ }, 'another serial')
  t.match(await checkWith(id({ issuer: otherCa })), { status: 'error', reason: /no SingleResponse/ }, 'another issuer')
  t.match(await checkWith((req) => ({ singles: [single(req, { id: certId(req, { issuer: otherCa }) }), single(req)] })), { status: 'good' }, 'found among others')
  t.match(await checkWith((req) => ({ singles: [single(req), single(req, { id: certId(req, { hash: 'sha256' }), status: UNKNOWN })] })),
    { status: 'error', reason: /several SingleResponses for the certificate/ })
  t.match(await checkWith((req) => ({ singles: [single(req, { status: REVOKED(new Date(T0 - DAY), 4) })] })),
    { status: 'revoked', revocationTime: new Date(T0 - DAY), reason: 4, responder: RESPONDER })
  const r = await checkWith((req) => ({ singles: [single(req, { status: REVOKED(new Date(T0 - DAY)) })] }))
  t.equal(r.status, 'revoked')
  t.notOk('reason' in r, 'no reason when none is given')
  t.match(await checkWith((req) => ({ singles: [single(req, { status: UNKNOWN })] })), { status: 'unknown', reason: /does not know/ })
  t.match(await checkWith((req) => ({ singles: [single(req, { extensions: [w.extension('1.2.3.4', w.nullValue())] })] })), { status: 'good' }, 'non-critical single extension')
  t.match(await checkWith((req) => ({ singles: [single(req, { extensions: [w.extension('1.2.3.4', w.nullValue(), true)] })] })),
    { status: 'error', reason: /unsupported critical singleExtension 1\.2\.3\.4/ })
})

t.test('times', async (t) => {
  const at = (thisUpdate: number, nextUpdate: number | null) => (req: RequestParts): Craft =>
    ({ singles: [single(req, { thisUpdate: w.generalizedTime(new Date(thisUpdate)), nextUpdate: nextUpdate === null ? null : new Date(nextUpdate) })] })
  t.match(await checkWith(at(T0 + HOUR, T0 + 2 * HOUR)), { status: 'error', reason: /thisUpdate .* is in the future/ })
  t.match(await checkWith(at(T0 + 60e3, T0 + 2 * HOUR), { clockToleranceSec: 120 }), { status: 'good' }, 'future thisUpdate within the tolerance')
  t.match(await checkWith(at(T0 - HOUR, T0 - 2 * HOUR)), { status: 'error', reason: /nextUpdate is before thisUpdate/ })
  t.match(await checkWith(at(T0 - 2 * HOUR, T0 - 60e3)), { status: 'error', reason: /stale response: nextUpdate/ })
  t.match(await checkWith(at(T0 - 2 * HOUR, null)), { status: 'error', reason: /older than 3600 s/ })
  t.match(await checkWith(at(T0 - 2 * HOUR, null), { maxAgeSec: 3 * 3600 }), { status: 'good', nextUpdate: T0 + HOUR })

  // cached until nextUpdate; a good answer already past nextUpdate (inside the tolerance) is not cached
  let now = T0
  const f = crafted(at(T0 - 60e3, T0 + 600e3))
  const c = checker({ responder: RESPONDER, clockToleranceSec: 3600 }, { fetch: f.fetch, now: () => now })
  t.match(await c.check(P.good, P.ca), { status: 'good', nextUpdate: T0 + 600e3 })
  now = T0 + 599e3
  await c.check(P.good, P.ca)
  t.equal(f.count(), 1, 'cached before nextUpdate')
  now = T0 + 601e3
  t.match(await c.check(P.good, P.ca), { status: 'good' }, 'within the tolerance')
  t.equal(f.count(), 2, 'asked again after nextUpdate')
  t.equal(c.status().cacheSize, 0, 'an answer past its nextUpdate is not cached')
  t.match(await checkWith((req) => ({ ...at(T0 - 60e3, T0 + HOUR)(req), producedAt: w.utcTime(new Date(T0)) })), { status: 'error', reason: /producedAt: expected GeneralizedTime/ })
})

t.test('nonce and response extensions', async (t) => {
  t.match(await checkWith({ nonce: 'raw' }), { status: 'good' }, 'bare nonce value')
  t.match(await checkWith({ nonce: 'none' }), { status: 'good' }, 'no nonce')
  t.match(await checkWith({ nonce: Buffer.alloc(16) }), { status: 'error', reason: /nonce mismatch/ })
  t.match(await checkWith({ extensions: [w.extension('1.2.3.4', w.nullValue())] }), { status: 'good' }, 'non-critical extension')
  t.match(await checkWith({ extensions: [w.extension('1.2.3.4', w.nullValue(), true)] }), { status: 'error', reason: /unsupported critical response extension 1\.2\.3\.4/ })
})

t.test('malformed and unsuccessful responses', async (t) => {
  t.match(await checkWith({ responseStatus: 3 }), { status: 'error', reason: /responder answered tryLater \(3\)/ })
  t.match(await checkWith({ responseStatus: 6 }), { status: 'error', reason: /unauthorized \(6\)/ })
  t.match(await checkWith({ responseStatus: 4 }), { status: 'error', reason: /an unknown status \(4\)/ })
  t.match(await checkWith({ noResponseBytes: true }), { status: 'error', reason: /malformed OCSP response: successful OCSPResponse without responseBytes/ })
  t.match(await checkWith({ responseType: '1.2.3.4' }), { status: 'error', reason: /unsupported responseType 1\.2\.3\.4/ })
  t.match(await checkWith({ version: w.explicit(0, w.integer(0)) }), { status: 'good' }, 'explicit v1')
  t.match(await checkWith({ version: w.explicit(0, w.integer(1)) }), { status: 'error', reason: /only v1 is defined/ })
  t.match(await checkWith({ rid: w.explicit(3, w.nullValue()) }), { status: 'error', reason: /responderID: unexpected tag 0xa3/ })
  t.match(await checkWith({ unusedBits: 1 }), { status: 'error', reason: /signature has unused bits/ })
  t.match(await checkWith({ certs: Array.from({ length: MAX_RESPONSE_CERTS + 1 }, () => ca.der) }), { status: 'error', reason: /more than 8 certificates/ })
  for (const [name, status] of [['good with content', w.implicitPrimitive(0, Buffer.from([0]))], ['unknown with content', w.implicitPrimitive(2, Buffer.from([0]))],
    ['another tag', w.implicitPrimitive(3, Buffer.alloc(0))]] as const) {
    t.match(await checkWith((req) => ({ singles: [single(req, { status })] })), { status: 'error', reason: /certStatus: unexpected tag/ }, name)
  }
  t.match(await checkWith((req) => ({ singles: [single(req, { thisUpdate: w.utcTime(new Date(T0)) })] })), { status: 'error', reason: /thisUpdate: expected GeneralizedTime/ })
  t.match(await checkWith((req) => ({ singles: [w.setOf(single(req))] })), { status: 'error', reason: /SingleResponse must be a SEQUENCE/ })
  t.throws(() => parseOcspResponse(w.setOf()), /OCSPResponse must be a SEQUENCE/)
  t.throws(() => parseOcspResponse(w.sequence(w.enumerated(0), w.explicit(0, w.sequence(w.oid(OCSP_BASIC), w.octetString(w.setOf()))))), /BasicOCSPResponse must be a SEQUENCE/)
})

/** A fetch that returns what `answer` gives, counting calls. */
function fakeFetch (answer: (init: RequestInit) => Promise<Response> | Response): { fetch: typeof fetch, count: () => number } {
  let n = 0
  const f = async (_input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    n++
    return answer(init ?? {})
  }
  return { fetch: f as typeof fetch, count: () => n }
}

t.test('transport failures never throw', async (t) => {
  const run = async (answer: (init: RequestInit) => Promise<Response> | Response, options: Partial<OcspOptions> = {}): Promise<OcspStatus> =>
    checker({ responder: RESPONDER, ...options }, { fetch: fakeFetch(answer).fetch }).check(P.good, P.ca)
  t.match(await run(() => new Response('hello', { status: 200 })), { status: 'error', reason: /malformed OCSP response/ }, 'garbage')
  t.match(await run(() => new Response('oops', { status: 500 })), { status: 'error', reason: /HTTP status 500/ })
  t.match(await run(() => new Response(null, { status: 302, headers: { location: 'http://elsewhere/' } })), { status: 'error', reason: /HTTP status 302/ })
  t.match(await run(() => new Response('', { status: 200 })), { status: 'error', reason: /empty response/ })
  t.match(await run(() => new Response(null, { status: 200 })), { status: 'error', reason: /empty response/ })
  t.match(await run(() => new Response(new Uint8Array(100), { status: 200, headers: { 'content-length': '70000' } })),
    { status: 'error', reason: /response of 70000 bytes is larger than 65536/ }, 'declared too large')
  t.match(await run(() => new Response(new Uint8Array(2000), { status: 200 }), { maxResponseBytes: 1024 }),
    { status: 'error', reason: /response larger than 1024 bytes/ }, 'too large, undeclared')
  let cancelled = false
  let pulled = 0
  const endless = new ReadableStream<Uint8Array>({
    pull (controller) { pulled++; controller.enqueue(new Uint8Array(1024)) },
    cancel () { cancelled = true }
  })
  t.match(await run(() => new Response(endless, { status: 200 })), { status: 'error', reason: /response larger than 65536 bytes/ }, 'endless body')
  t.ok(cancelled, 'the body is cancelled')
  t.ok(pulled <= 66, 'reading stops past the limit')

  const start = Date.now()
  t.match(await run(async () => new Promise<Response>(() => {}), { timeoutMs: 50 }), { status: 'error', reason: /no answer within 50 ms/ }, 'fetch that never answers (and ignores the signal)')
  t.match(await run(async (init) => new Promise<Response>((_resolve, reject) => {
    init.signal?.addEventListener('abort', () => reject(init.signal?.reason))
  }), { timeoutMs: 50 }), { status: 'error', reason: /no answer within 50 ms/ }, 'fetch aborted by the signal')
  t.match(await run(() => new Response(new ReadableStream({ pull () {} }), { status: 200 }), { timeoutMs: 50 }),
    { status: 'error', reason: /no answer within 50 ms/ }, 'body that never ends')
  t.ok(Date.now() - start < 2000, 'bounded by timeoutMs')
  // eslint-disable-next-line prefer-promise-reject-errors
  t.match(await run(async () => Promise.reject('boom')), { status: 'error', reason: /: boom$/ }, 'a non-Error rejection')
  t.match(await run(async () => { throw new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED 127.0.0.1:1') }) }),
    { status: 'error', reason: /fetch failed: connect ECONNREFUSED/ })
})

t.test('failure caching and health', async (t) => {
  let now = T0
  let fail = true
  const f = crafted((req) => (fail ? { responseStatus: 2 } : { singles: [single(req)] }))
  const c = checker({ responder: RESPONDER }, { fetch: f.fetch, now: () => now })
  t.match(await c.check(P.good, P.ca), { status: 'error', reason: /internalError/ })
  t.match(await c.check(P.good, P.ca), { status: 'error' })
  t.equal(f.count(), 1, 'an error is reused for failureCacheSec (5 s)')
  t.match(c.status().responders, [{ url: RESPONDER, consecutiveFailures: 1, healthy: false, lastError: 'responder answered internalError (2)', lastSuccess: null }])
  t.equal(c.status().responders[0]?.lastFailure, new Date(T0).toISOString())
  now += 5001
  fail = false
  t.match(await c.check(P.good, P.ca), { status: 'good' }, 'asked again afterwards')
  t.match(c.status().responders, [{ consecutiveFailures: 0, healthy: true, lastSuccess: new Date(now).toISOString(), lastError: 'responder answered internalError (2)' }])

  const u = crafted((req) => ({ singles: [single(req, { status: UNKNOWN })] }))
  const cu = checker({ responder: RESPONDER, failureCacheSec: 1 }, { fetch: u.fetch, now: () => now })
  await cu.check(P.good, P.ca)
  await cu.check(P.good, P.ca)
  t.equal(u.count(), 1, "'unknown' reused for failureCacheSec")
  now += 1001
  await cu.check(P.good, P.ca)
  t.equal(u.count(), 2)
  const never = checker({ responder: RESPONDER, failureCacheSec: 0 }, { fetch: u.fetch, now: () => now })
  await never.check(P.good, P.ca)
  await never.check(P.good, P.ca)
  t.equal(u.count(), 4, 'failureCacheSec 0: never reused')
  t.equal(never.status().cacheSize, 0)

  const lru = crafted({})
  const small = checker({ responder: RESPONDER, cacheSize: 1 }, { fetch: lru.fetch })
  await small.check(P.good, P.ca)
  await small.check(P.revoked, P.ca)
  await small.check(P.good, P.ca)
  t.equal(lru.count(), 3, 'bounded cache: the older answer was evicted')
  t.equal(small.status().cacheSize, 1)
})

t.test('no request when none may be made', async (t) => {
  const f = crafted({})
  const off = new OcspChecker({ mode: 'off', responder: RESPONDER }, { fetch: f.fetch })
  t.same(await off.check(P.good, P.ca), { status: 'unknown', reason: 'OCSP checking is off' })
  t.equal(off.mode, 'off')
  const c = checker({ responder: RESPONDER }, { fetch: f.fetch })
  t.match(await c.check(P.good, P.otherCa), { status: 'error', reason: /does not name the certificate's issuer/ })
  const broken = { ...P.good, extensions: [{ oid: OID.authorityInfoAccess, critical: false, value: Buffer.from([0x30, 0x05]) }] } as unknown as ParsedCertificate
  const aiaChecker = checker({ allowedResponders: [RESPONDER] }, { fetch: f.fetch })
  t.match(await aiaChecker.check(broken, P.ca), { status: 'error', reason: /^OCSP check failed: / }, 'an internal failure is an error, not a throw')
  t.equal(f.count(), 0)
})

t.test('AIA parsing and URL normalisation', async (t) => {
  const cert = await leaf('2001', {
    extraExtensions: [{
      oid: OID.authorityInfoAccess,
      valueDer: w.sequence(
        w.sequence(w.oid(OID.caIssuers), w.implicitPrimitive(6, Buffer.from('http://ca.example/ca.crt'))),
        w.sequence(w.oid(OID.ocsp), w.explicit(4, ca.subjectDer)),
        w.sequence(w.oid(OID.ocsp), w.implicitPrimitive(6, Buffer.from('ldap://ocsp.example/'))),
        w.sequence(w.oid(OID.ocsp), w.implicitPrimitive(6, Buffer.from('http://OCSP.example:80/a#frag')))
      )
    }]
  })
  t.same(ocspUrls(parsed(cert)), ['ldap://ocsp.example/', 'http://OCSP.example:80/a#frag'], 'OCSP URIs only, in order')
  t.same(ocspUrls(P.good), [])
  const f = crafted({})
  t.match(await checker({ allowedResponders: ['http://ocsp.example/a'] }, { fetch: f.fetch }).check(parsed(cert), P.ca), { status: 'good', responder: 'http://ocsp.example/a' })
  t.same(f.requests.map((r) => r.url), ['http://ocsp.example/a'])
  t.equal(normaliseResponderUrl('HTTPS://Ocsp.Example:443'), 'https://ocsp.example/')
  t.equal(normaliseResponderUrl('http://ocsp.example:8080/x?y=1#z'), 'http://ocsp.example:8080/x?y=1')
  for (const bad of ['ldap://x/', 'http://user:pw@x/', 'http://user@x/', 'not a url', '']) t.equal(normaliseResponderUrl(bad), undefined, bad)
})

t.test('options', async (t) => {
  const bad: Array<[unknown, RegExp]> = [
    [null, /ocsp options must be an object/],
    ['hard-fail', /ocsp options must be an object/],
    [{ mode: 'hard-fail', responders: [] }, /ocsp: unknown option "responders"/],
    [{}, /ocsp.mode must be 'off', 'soft-fail' or 'hard-fail', got undefined/],
    [{ mode: 'on' }, /ocsp.mode must be/],
    [{ mode: 'soft-fail', responder: 'ftp://x/' }, /ocsp.responder must be an http: or https: URL without credentials, got "ftp:\/\/x\/"/],
    [{ mode: 'soft-fail', responder: 42 }, /ocsp.responder must be/],
    [{ mode: 'soft-fail', allowedResponders: 'http://x/' }, /ocsp.allowedResponders must be an array of URLs/],
    [{ mode: 'soft-fail', allowedResponders: ['http://x/', 'http://a:b@y/'] }, /ocsp.allowedResponders\[1\] must be/],
    [{ mode: 'soft-fail', timeoutMs: 0 }, /ocsp.timeoutMs must be an integer from 1 to 600000, got 0/],
    [{ mode: 'soft-fail', timeoutMs: 1.5 }, /ocsp.timeoutMs must be an integer/],
    [{ mode: 'soft-fail', timeoutMs: '100' }, /ocsp.timeoutMs must be an integer/],
    [{ mode: 'soft-fail', timeoutMs: Number.NaN }, /ocsp.timeoutMs/],
    [{ mode: 'soft-fail', maxResponseBytes: 10 }, /ocsp.maxResponseBytes must be an integer from 64/],
    [{ mode: 'soft-fail', maxAgeSec: 0 }, /ocsp.maxAgeSec/],
    [{ mode: 'soft-fail', cacheSize: 0 }, /ocsp.cacheSize/],
    [{ mode: 'soft-fail', clockToleranceSec: -1 }, /ocsp.clockToleranceSec must be a number from 0 to 86400/],
    [{ mode: 'soft-fail', clockToleranceSec: Infinity }, /ocsp.clockToleranceSec/],
    [{ mode: 'soft-fail', minRsaBits: 512 }, /ocsp.minRsaBits/],
    [{ mode: 'soft-fail', failureCacheSec: -1 }, /ocsp.failureCacheSec/]
  ]
  for (const [options, message] of bad) t.throws(() => new OcspChecker(options as OcspOptions), { name: 'TypeError', message }, JSON.stringify(options))
  t.throws(() => new OcspChecker({ mode: 'off' }, { fetch: 'x' as unknown as typeof fetch }), { name: 'TypeError', message: /deps/ })
  t.throws(() => new OcspChecker({ mode: 'off' }, { now: 1 as unknown as () => number }), { name: 'TypeError', message: /deps/ })
  const c = new OcspChecker({
    mode: 'soft-fail',
    responder: 'HTTP://Ocsp.Example',
    allowedResponders: ['http://a.example/ocsp', 'http://ocsp.example/'],
    clockToleranceSec: 0.5,
    failureCacheSec: 0.25
  })
  t.same(c.status(), {
    cacheSize: 0,
    inFlight: 0,
    responders: [
      { url: 'http://ocsp.example/', lastSuccess: null, lastFailure: null, lastError: null, consecutiveFailures: 0, healthy: true },
      { url: 'http://a.example/ocsp', lastSuccess: null, lastFailure: null, lastError: null, consecutiveFailures: 0, healthy: true }
    ]
  }, 'configured responders listed from the start, normalised, once each')
})

// ---------------------------------------------------------------- DER writer

t.test('DER writer round-trips through the reader', async (t) => {
  const ints = [0n, 1n, 127n, 128n, 255n, 256n, 32767n, 32768n, -1n, -127n, -128n, -129n, -256n, -32768n, -32769n, 2n ** 64n - 1n, 2n ** 159n, -(2n ** 159n)]
  for (const n of ints) t.equal(readBigInt(parseOne(w.integer(n), 'int'), 'int'), n, `INTEGER ${n}`)
  t.same(w.integer(128), Buffer.from('02020080', 'hex'))
  t.same(w.integer(-128), Buffer.from('020180', 'hex'))
  t.same(w.integer(0), Buffer.from('020100', 'hex'))
  t.same(w.integerBytes(0xffn), Buffer.from('00ff', 'hex'))
  t.equal(readSmallInt(parseOne(w.enumerated(6), 'e'), 'e', TAG.ENUMERATED), 6)

  for (const size of [0, 1, 127, 128, 255, 256, 65535, 65536, 70000]) {
    const bytes = Buffer.alloc(size, 7)
    const der = w.octetString(bytes)
    t.same(readOctetString(parseOne(der, 'os'), 'os'), bytes, `OCTET STRING of ${size} bytes`)
  }
  t.same(w.octetString(Buffer.alloc(128)).subarray(0, 3), Buffer.from('048180', 'hex'), 'long form length')
  t.same(w.octetString(Buffer.alloc(256)).subarray(0, 4), Buffer.from('04820100', 'hex'))

  for (const o of ['1.3.6.1.5.5.7.48.1.2', '2.5.29.37.0', '0.9.2342.19200300.100.1.1', '2.999.3', '1.2.840.113549.1.1.11', '2.25.329800735698586629295641978511506172918', '0.0', '1.39']) {
    t.equal(readOid(parseOne(w.oid(o), 'oid'), 'oid'), o, `OID ${o}`)
  }
  t.same(w.oid('1.2.840.113549'), Buffer.from('06062a864886f70d', 'hex'))
  for (const o of ['1', '3.1', '1.40', '0.40', 'a.b', '1..2', '1.2.', '']) t.throws(() => w.oid(o), RangeError, `bad OID ${JSON.stringify(o)}`)

  t.equal(readBoolean(parseOne(w.boolean(true), 'b'), 'b'), true)
  t.equal(readBoolean(parseOne(w.boolean(false), 'b'), 'b'), false)
  t.doesNotThrow(() => readNull(parseOne(w.nullValue(), 'n'), 'n'))
  t.same(readBitString(parseOne(w.bitString(Buffer.from([0xa0]), 5), 'bs'), 'bs'), { bytes: Buffer.from([0xa0]), unusedBits: 5 })
  t.same(readBitString(parseOne(w.bitString(Buffer.alloc(0)), 'bs'), 'bs'), { bytes: Buffer.alloc(0), unusedBits: 0 })
  t.throws(() => w.bitString(Buffer.from([1]), 8), RangeError)
  t.throws(() => w.bitString(Buffer.alloc(0), 1), RangeError)

  for (const d of [new Date(Date.UTC(2026, 0, 2, 3, 4, 5)), new Date(Date.UTC(1950, 0, 1)), new Date(Date.UTC(2049, 11, 31, 23, 59, 59))]) {
    t.same(readTime(parseOne(w.generalizedTime(d), 'gt'), 'gt'), d, `GeneralizedTime ${d.toISOString()}`)
    t.same(readTime(parseOne(w.utcTime(d), 'ut'), 'ut'), d, `UTCTime ${d.toISOString()}`)
  }
  t.same(readTime(parseOne(w.generalizedTime(new Date(Date.UTC(2100, 5, 6, 7, 8, 9, 999))), 'gt'), 'gt'), new Date(Date.UTC(2100, 5, 6, 7, 8, 9)), 'fractions dropped')
  t.equal(tlvValue(parseOne(w.generalizedTime(new Date(Date.UTC(2026, 0, 2, 3, 4, 5))), 'gt')).toString(), '20260102030405Z')
  t.throws(() => w.utcTime(new Date(Date.UTC(2050, 0, 1))), RangeError)
  t.throws(() => w.utcTime(new Date(Date.UTC(1949, 11, 31))), RangeError)
  t.throws(() => w.generalizedTime(new Date(Number.NaN)), RangeError)
  t.throws(() => w.generalizedTime(new Date(Date.UTC(10000, 0, 1))), RangeError)

  t.equal(readString(parseOne(w.ia5String('http://x/'), 's'), 's'), 'http://x/')
  t.equal(readString(parseOne(w.utf8String('größe'), 's'), 's'), 'größe')
  t.throws(() => w.ia5String('größe'), RangeError)

  const seq = parseOne(w.sequence(w.integer(1), w.sequence(), w.octetString(Buffer.from('x'))), 'seq')
  t.same(children(seq).map((c) => c.tag), [TAG.INTEGER, TAG.SEQUENCE, TAG.OCTET_STRING])
  const set = parseOne(w.setOf(w.integer(3), w.integer(1), w.integer(2)), 'set')
  t.same(children(set).map((c) => readBigInt(c, 'i')), [1n, 2n, 3n], 'SET OF sorted')
  const ex = parseOne(w.explicit(3, w.integer(5)), 'ex')
  t.equal(ex.tag, ctx(3, true))
  t.equal(readBigInt(DerReader.of(ex).read(), 'i'), 5n)
  t.same(w.implicitPrimitive(6, Buffer.from('ab')), Buffer.from('86026162', 'hex'))
  t.equal(parseOne(w.implicitConstructed(1, w.integer(1), w.integer(2)), 'ic').tag, 0xa1)
  t.throws(() => w.explicit(31, w.nullValue()), RangeError)
  t.throws(() => w.implicitPrimitive(-1, Buffer.alloc(0)), RangeError)
  t.throws(() => w.tlv(0x1f), RangeError)
  t.throws(() => w.tlv(256), RangeError)
  t.throws(() => w.tlv(1.5), RangeError)

  const exts = readExtensions(parseOne(w.sequence(w.extension('1.2.3', Buffer.from([5, 0])), w.extension('1.2.4', Buffer.from([5, 0]), true)), 'exts'), 'exts')
  t.same(exts, [{ oid: '1.2.3', critical: false, value: Buffer.from([5, 0]) }, { oid: '1.2.4', critical: true, value: Buffer.from([5, 0]) }])
  const alg = DerReader.of(parseOne(w.algorithmIdentifier(OID.sha256), 'alg'))
  t.equal(readOid(alg.read(), 'alg'), OID.sha256)
  t.ok(alg.atEnd(), 'no parameters')
  t.same(tlvBytes(parseOne(w.algorithmIdentifier(OID.sha1, w.nullValue()), 'alg')), Buffer.from('300906052b0e03021a0500', 'hex'))
})
