// An insurer's claims API, called by healthcare-provider partners over mutual TLS.
//
// Each partner runs its own CA; the insurer trusts each partner CA under a label
// ('mercy-hospital', 'oakridge-clinic'). Which partner is calling is decided by the
// label of the CA the certificate chains to (request.clientIdentity.trustAnchor.name),
// never by a name inside the certificate: any trusted CA can write any O= it likes.
//
// Partners can also get short-lived OAuth access tokens bound to their certificate
// (RFC 8705): POST /oauth/token authenticates the partner by its certificate
// (tls_client_auth) and GET /v1/settlements accepts a token only over a connection
// made with the certificate it was issued to.
//
//   node examples/b2b-api/server.js          (PORT=0 picks a free port, PKI_DIR moves the dev PKI)
//   node examples/b2b-api/client.js [url]    (calls a running server: every case, as a table)
import { chmodSync, existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs'
import { generateKeyPair, generateKeyPairSync, randomBytes, randomUUID, X509Certificate } from 'node:crypto'
import { dirname, isAbsolute, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import Fastify from 'fastify'
import fastifyJwt from '@fastify/jwt'
import forge from 'node-forge'
import fastifyMtls from 'fastify-mtls-auth'

const here = dirname(fileURLToPath(import.meta.url))
const DAY = 24 * 60 * 60 * 1000

// ------------------------------------------------------------------ development PKI

/** The partners: the anchor label is the partner id used everywhere in the API. */
export const PARTNERS = [
  { id: 'mercy-hospital', file: 'mercy', org: 'Mercy Hospital' },
  { id: 'oakridge-clinic', file: 'oakridge', org: 'Oakridge Clinic' }
]

/** Client certificates issued by every partner CA: one for the claims bot, one for billing. */
const CLIENTS = [
  { file: 'claims', cn: 'claims-bot', ou: 'claims' },
  { file: 'billing', cn: 'billing-sync', ou: 'billing' }
]

/** The file names of the development PKI inside `dir`. */
export function pkiPaths (dir) {
  const pair = (name) => ({ cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) })
  const partners = {}
  for (const p of PARTNERS) {
    const clients = {}
    for (const c of CLIENTS) clients[c.ou] = pair(`${p.file}-${c.file}`)
    partners[p.id] = { ca: pair(`${p.file}-ca`), clients }
  }
  // for the client's rejection cases: an expired and a revoked Mercy claims certificate,
  // and the CRL of Mercy's CA that lists the revoked one (the server loads it)
  const samples = { expired: pair('mercy-expired'), revoked: pair('mercy-revoked'), crl: join(dir, 'mercy-ca.crl') }
  return { dir, serverCa: pair('server-ca'), server: pair('server'), partners, samples }
}

/** The certificates that must stay valid (the expired sample is expired on purpose). */
function allFiles (paths) {
  const files = [paths.serverCa, paths.server, paths.samples.revoked]
  for (const p of Object.values(paths.partners)) files.push(p.ca, ...Object.values(p.clients))
  return files
}

const generateKeyPairAsync = promisify(generateKeyPair)

async function newKey () {
  const { privateKey, publicKey } = await generateKeyPairAsync('rsa', { modulusLength: 2048 })
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' })
  return {
    pem,
    forgePrivate: forge.pki.privateKeyFromPem(pem),
    forgePublic: forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }))
  }
}

function name (attrs) {
  // DER order: O, OU, CN (printed by RFC 4514 in reverse). UTF8String values.
  return attrs.map(([shortName, value]) => ({ shortName, value, valueTagClass: forge.asn1.Type.UTF8 }))
}

/**
 * One certificate. `issuer` is { cert, key } of the signing CA, or undefined for a
 * self-signed root. The verifier is strict (RFC 5280 profile): positive serials of
 * at most 20 octets, SKI on CAs, AKI keyIdentifier below the root.
 */
function issue ({ subject, key, issuer, days, ca, extensions = {}, notBefore }, now) {
  const cert = forge.pki.createCertificate()
  const serial = randomBytes(16)
  serial[0] = (serial[0] & 0x7f) | 0x40 // positive and minimally encoded
  cert.serialNumber = serial.toString('hex')
  cert.publicKey = key.forgePublic
  cert.validity.notBefore = new Date(notBefore ?? now - 5 * 60 * 1000)
  cert.validity.notAfter = new Date(now + days * DAY)
  cert.setSubject(name(subject))
  cert.setIssuer(issuer === undefined ? name(subject) : issuer.cert.subject.attributes)
  const exts = ca
    ? [
        { name: 'basicConstraints', critical: true, cA: true },
        { name: 'keyUsage', critical: true, keyCertSign: true, cRLSign: true }
      ]
    : [
        { name: 'basicConstraints', critical: true, cA: false },
        { name: 'keyUsage', critical: true, digitalSignature: true, ...(extensions.keyEncipherment ? { keyEncipherment: true } : {}) }
      ]
  exts.push({ name: 'subjectKeyIdentifier' })
  if (issuer !== undefined) {
    exts.push({ name: 'authorityKeyIdentifier', keyIdentifier: issuer.cert.generateSubjectKeyIdentifier().getBytes() })
  }
  if (extensions.eku) exts.push({ name: 'extKeyUsage', [extensions.eku]: true })
  if (extensions.altNames) exts.push({ name: 'subjectAltName', altNames: extensions.altNames })
  cert.setExtensions(exts)
  cert.sign((issuer ?? { key }).key.forgePrivate, forge.md.sha256.create())
  return { cert, key, pem: forge.pki.certificateToPem(cert) }
}

function write (pair, issued) {
  writeFileSync(pair.cert, issued.pem)
  writeFileSync(pair.key, issued.key.pem, { mode: 0o600 })
  chmodSync(pair.key, 0o600) // the mode above only applies to a new file
}

/**
 * A CRL (RFC 5280 v2: cRLNumber and authorityKeyIdentifier) signed by `ca`, listing
 * `revoked` (issued certificates). node-forge reads CRLs but does not make them: the
 * DER is built with forge.asn1.
 */
function crl (ca, revoked, now, days) {
  const { asn1 } = forge
  const U = asn1.Class.UNIVERSAL
  const seq = (items) => asn1.create(U, asn1.Type.SEQUENCE, true, items)
  const oid = (o) => asn1.create(U, asn1.Type.OID, false, asn1.oidToDer(o).getBytes())
  const time = (d) => asn1.create(U, asn1.Type.UTCTIME, false, asn1.dateToUtcTime(d))
  const int = (hex) => asn1.create(U, asn1.Type.INTEGER, false, forge.util.hexToBytes(hex))
  const octets = (node) => asn1.create(U, asn1.Type.OCTETSTRING, false, asn1.toDer(node).getBytes())
  const algorithm = () => seq([oid(forge.pki.oids.sha256WithRSAEncryption), asn1.create(U, asn1.Type.NULL, false, '')])
  const keyId = ca.cert.generateSubjectKeyIdentifier().getBytes()
  const tbs = seq([
    int('01'), // v2
    algorithm(),
    forge.pki.distinguishedNameToAsn1(ca.cert.subject),
    time(new Date(now - 5 * 60 * 1000)),
    time(new Date(now + days * DAY)),
    seq(revoked.map((r) => seq([int(r.cert.serialNumber), time(new Date(now - 60 * 60 * 1000))]))),
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [seq([
      seq([oid('2.5.29.35'), octets(seq([asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, false, keyId)]))]), // authorityKeyIdentifier
      seq([oid('2.5.29.20'), octets(int('01'))]) // cRLNumber
    ])])
  ])
  const md = forge.md.sha256.create()
  md.update(asn1.toDer(tbs).getBytes())
  const signature = asn1.create(U, asn1.Type.BITSTRING, false, '\x00' + ca.key.forgePrivate.sign(md))
  const der = asn1.toDer(seq([tbs, algorithm(), signature])).getBytes()
  return `-----BEGIN X509 CRL-----\n${forge.util.encode64(der, 64)}\n-----END X509 CRL-----\n`
}

/** nextUpdate (ms) of a CRL written by crl(); throws when the file is not one */
function crlNextUpdate (pem) {
  const tbs = forge.asn1.fromDer(forge.util.decode64(pem.replace(/-----[^-]+-----|\s/g, ''))).value[0]
  return forge.asn1.utcTimeToDate(tbs.value[4].value).getTime()
}

/** True when every file exists and no certificate or CRL expires within a day. */
function usable (paths, now) {
  try {
    for (const f of [...allFiles(paths), paths.samples.expired]) {
      if (!existsSync(f.cert) || !existsSync(f.key)) return false
    }
    for (const f of allFiles(paths)) {
      if (new Date(new X509Certificate(readFileSync(f.cert)).validTo).getTime() - now < DAY) return false
    }
    return crlNextUpdate(readFileSync(paths.samples.crl, 'utf8')) - now >= DAY
  } catch {
    return false
  }
}

/**
 * Makes the development PKI in `dir` unless a usable one is already there:
 * a server CA and a server certificate for localhost, 127.0.0.1 and ::1; one CA per
 * partner, each issuing a claims and a billing client certificate; and the samples:
 * an expired and a revoked Mercy claims certificate and Mercy's CRL.
 * Resolves to the paths and whether anything was generated.
 */
export async function ensurePki (dir, { now = Date.now() } = {}) {
  const paths = pkiPaths(dir)
  if (usable(paths, now)) return { paths, generated: false }
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  // RSA key generation is the slow part: make every key at once, on the thread pool
  const keys = await Promise.all(Array.from({ length: 4 + PARTNERS.length * (1 + CLIENTS.length) }, newKey))

  const serverCa = issue({ subject: [['O', 'Northwind Insurance'], ['CN', 'Northwind Insurance Dev Server CA']], key: keys.pop(), days: 365, ca: true }, now)
  const server = issue({
    subject: [['O', 'Northwind Insurance'], ['CN', 'localhost']],
    key: keys.pop(),
    issuer: serverCa,
    days: 90,
    extensions: { eku: 'serverAuth', keyEncipherment: true, altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }, { type: 7, ip: '::1' }] }
  }, now)
  write(paths.serverCa, serverCa)
  write(paths.server, server)

  for (const p of PARTNERS) {
    const ca = issue({ subject: [['O', p.org], ['CN', `${p.org} Partner CA`]], key: keys.pop(), days: 365, ca: true }, now)
    write(paths.partners[p.id].ca, ca)
    for (const c of CLIENTS) {
      const leaf = issue({
        subject: [['O', p.org], ['OU', c.ou], ['CN', c.cn]],
        key: keys.pop(),
        issuer: ca,
        days: 90,
        extensions: { eku: 'clientAuth' }
      }, now)
      write(paths.partners[p.id].clients[c.ou], leaf)
    }
    if (p.id === 'mercy-hospital') {
      const subject = [['O', p.org], ['OU', 'claims'], ['CN', 'claims-bot']]
      // expired yesterday (issued for nine days, ten days ago)
      const expired = issue({ subject, key: keys.pop(), issuer: ca, days: -1, notBefore: now - 10 * DAY, extensions: { eku: 'clientAuth' } }, now)
      const revoked = issue({ subject, key: keys.pop(), issuer: ca, days: 90, extensions: { eku: 'clientAuth' } }, now)
      write(paths.samples.expired, expired)
      write(paths.samples.revoked, revoked)
      writeFileSync(paths.samples.crl, crl(ca, [revoked], now, 90))
    }
  }
  return { paths, generated: true }
}

// ------------------------------------------------------------------ sample data

function sampleData () {
  return {
    nextClaim: 1003,
    claims: [
      { id: 'C-1001', partner: 'mercy-hospital', patientRef: 'MH-P-20931', amount: 1840.5, status: 'approved', submittedBy: 'claims-bot' },
      { id: 'C-1002', partner: 'mercy-hospital', patientRef: 'MH-P-31877', amount: 312, status: 'in-review', submittedBy: 'claims-bot' },
      { id: 'C-2001', partner: 'oakridge-clinic', patientRef: 'OC-7781', amount: 95.25, status: 'submitted', submittedBy: 'claims-bot' }
    ],
    invoices: [
      { id: 'INV-501', partner: 'mercy-hospital', claims: ['C-1001'], total: 1840.5, status: 'paid' },
      { id: 'INV-601', partner: 'oakridge-clinic', claims: [], total: 0, status: 'open' }
    ],
    settlements: [
      { id: 'S-9001', partner: 'mercy-hospital', invoice: 'INV-501', amount: 1840.5, paidOn: '2025-03-14' },
      { id: 'S-9101', partner: 'oakridge-clinic', invoice: 'INV-588', amount: 412.8, paidOn: '2025-02-27' }
    ]
  }
}

// ------------------------------------------------------------------ the API

/** Any partner, but only through its own CA: binds name-based policies to the labelled anchors. */
const anyPartner = PARTNERS.map((p) => p.id)

/** Lifetime of an access token, in seconds. */
export const TOKEN_TTL = 300
const TOKEN_ISSUER = 'https://northwind-insurance.example/oauth'
const TOKEN_AUDIENCE = 'northwind-claims-api'

/** An RFC 6749 (section 5.2) error reply of the token endpoint. */
function oauthError (reply, status, error, description) {
  return reply.code(status).header('cache-control', 'no-store').send({ error, error_description: description })
}

/** application/x-www-form-urlencoded, as OAuth clients send it; a repeated parameter becomes an array (refused). */
function parseForm (request, body, done) {
  const params = Object.create(null)
  for (const [name, value] of new URLSearchParams(body)) {
    params[name] = name in params ? [].concat(params[name], value) : value
  }
  done(null, params)
}

/**
 * Builds and starts the API. Returns { app, url, pki } (pki: the file paths of the
 * development PKI). Port 0 picks a free port; `url` carries the real one.
 */
export async function start ({ port = 8443, host = '127.0.0.1', pkiDir = join(here, 'pki'), logger = false } = {}) {
  const { paths } = await ensurePki(pkiDir)
  const read = (f) => readFileSync(f, 'utf8')
  const anchors = PARTNERS.map((p) => ({ name: p.id, cert: read(paths.partners[p.id].ca.cert) }))

  const app = Fastify({
    logger,
    https: {
      key: read(paths.server.key),
      cert: read(paths.server.cert),
      ca: anchors.map((a) => a.cert), // the same partner CAs as the plugin's anchors
      requestCert: true,
      rejectUnauthorized: false // the plugin answers with a readable 401 instead of a failed handshake
    }
  })

  // Mercy's CRL lists the revoked sample certificate; with it loaded, every Mercy certificate is checked
  await app.register(fastifyMtls, { ca: anchors, mode: 'required', crl: read(paths.samples.crl) })

  // access tokens: ES256, signed with a key made at start (tokens die with the process)
  const tokenKey = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  await app.register(fastifyJwt, {
    secret: {
      private: tokenKey.privateKey.export({ type: 'pkcs8', format: 'pem' }),
      public: tokenKey.publicKey.export({ type: 'spki', format: 'pem' })
    },
    sign: { algorithm: 'ES256', expiresIn: TOKEN_TTL, iss: TOKEN_ISSUER, aud: TOKEN_AUDIENCE },
    verify: { algorithms: ['ES256'], allowedIss: TOKEN_ISSUER, allowedAud: TOKEN_AUDIENCE }
  })
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, parseForm)

  const data = sampleData()
  const partnerOf = (request) => request.clientIdentity.trustAnchor.name
  const notFound = (reply, id) => reply.code(404).send({ statusCode: 404, code: 'CLAIM_NOT_FOUND', error: 'Not Found', message: `Claim ${id} not found` })

  // load balancers and probes have no certificate
  app.get('/healthz', { config: { mtls: false } }, async () => ({ status: 'ok' }))

  // who am I, as the API sees it
  app.get('/v1/whoami', async (request) => {
    const id = request.clientIdentity
    return {
      partner: id.trustAnchor.name,
      subject: id.subject.rfc4514,
      issuer: id.issuer.rfc4514,
      fingerprint256: id.fingerprint256,
      serialNumber: id.serialNumber,
      notAfter: id.notAfter.toISOString()
    }
  })

  // each partner sees only its own claims
  app.get('/v1/claims', async (request) => {
    const partner = partnerOf(request)
    return { partner, claims: data.claims.filter((c) => c.partner === partner) }
  })

  // another partner's claim is "not found", exactly like a claim that does not exist
  app.get('/v1/claims/:id', async (request, reply) => {
    const claim = data.claims.find((c) => c.id === request.params.id && c.partner === partnerOf(request))
    return claim ?? notFound(reply, request.params.id)
  })

  // only claims bots may submit; the guard runs in onRequest, before the body is read
  app.post('/v1/claims', {
    onRequest: app.mtls.require({ anchor: anyPartner, subject: { OU: 'claims' } }),
    schema: {
      body: {
        type: 'object',
        required: ['patientRef', 'amount'],
        additionalProperties: false,
        properties: {
          patientRef: { type: 'string', minLength: 1, maxLength: 64 },
          amount: { type: 'number', exclusiveMinimum: 0 }
        }
      }
    }
  }, async (request, reply) => {
    const id = request.clientIdentity
    const claim = {
      id: `C-${data.nextClaim++}`,
      partner: id.trustAnchor.name,
      patientRef: request.body.patientRef,
      amount: request.body.amount,
      status: 'submitted',
      submittedBy: id.subject.attributes.CN?.[0] ?? id.subject.rfc4514
    }
    data.claims.push(claim)
    return reply.code(201).header('location', `/v1/claims/${claim.id}`).send(claim)
  })

  // billing only, with the route-config shorthand
  app.get('/v1/invoices', { config: { mtls: { anchor: anyPartner, subject: { OU: 'billing' } } } }, async (request) => {
    const partner = partnerOf(request)
    return { partner, invoices: data.invoices.filter((i) => i.partner === partner) }
  })

  // RFC 8705 tls_client_auth: the partner authenticates with its certificate, no secret;
  // the token is bound to that certificate (cnf["x5t#S256"]) and useless without its key
  app.post('/oauth/token', { bodyLimit: 4096 }, async (request, reply) => {
    const id = request.clientIdentity
    const partner = id.trustAnchor.name
    const body = request.body
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      return oauthError(reply, 400, 'invalid_request', 'send grant_type=client_credentials as a form (or JSON) body')
    }
    for (const [name, value] of Object.entries(body)) {
      if (typeof value !== 'string') return oauthError(reply, 400, 'invalid_request', `${name} must be given once, as a string`)
    }
    if (body.grant_type === undefined) return oauthError(reply, 400, 'invalid_request', 'grant_type is missing')
    if (body.grant_type !== 'client_credentials') return oauthError(reply, 400, 'unsupported_grant_type', 'only grant_type=client_credentials is supported')
    // client_id, when sent, must be the partner the certificate belongs to
    if (body.client_id !== undefined && body.client_id !== partner) {
      return oauthError(reply, 401, 'invalid_client', 'client_id does not match the client certificate')
    }
    const accessToken = app.jwt.sign({
      sub: partner,
      client_id: partner,
      jti: randomUUID(),
      cnf: { 'x5t#S256': id.thumbprintSha256 }
    })
    request.log.info({ partner, 'tls.client.thumbprint': id.thumbprintSha256 }, 'access token issued')
    return reply.header('cache-control', 'no-store').header('pragma', 'no-cache')
      .send({ access_token: accessToken, token_type: 'Bearer', expires_in: TOKEN_TTL })
  })

  // a bound token is required: verified by @fastify/jwt, then bound to this connection's certificate
  const verifyToken = async (request) => { await request.jwtVerify() }
  app.get('/v1/settlements', { preHandler: [verifyToken, app.mtls.requireBoundToken()] }, async (request) => {
    const partner = partnerOf(request)
    return { partner, settlements: data.settlements.filter((s) => s.partner === partner) }
  })

  try {
    await app.listen({ port, host })
  } catch (err) {
    await app.close()
    throw err
  }
  const url = `https://localhost:${app.server.address().port}`
  return { app, url, pki: paths }
}

/** Ready-to-paste curl commands for the running API. */
export function curlCommands (url, paths, cwd = process.cwd()) {
  const show = (f) => {
    const r = relative(cwd, f)
    return r.startsWith('..') || isAbsolute(r) ? f : r
  }
  const mercy = paths.partners['mercy-hospital'].clients
  const oak = paths.partners['oakridge-clinic'].clients
  const base = `curl --cacert ${show(paths.serverCa.cert)}`
  const as = (pair) => `${base} --cert ${show(pair.cert)} --key ${show(pair.key)}`
  return [
    ['health probe, no certificate (200)', `${base} ${url}/healthz`],
    ['no certificate (401 FST_MTLS_CERT_MISSING)', `${base} ${url}/v1/claims`],
    ['Mercy claims bot: its own claims only', `${as(mercy.claims)} ${url}/v1/claims`],
    ['who am I', `${as(mercy.claims)} ${url}/v1/whoami`],
    ['Oakridge asks for a Mercy claim (404)', `${as(oak.claims)} ${url}/v1/claims/C-1001`],
    ['submit a claim (claims bot: 201)', `${as(mercy.claims)} -H 'content-type: application/json' -d '{"patientRef":"MH-P-40000","amount":120}' ${url}/v1/claims`],
    ['submit a claim with the billing certificate (403 FST_MTLS_FORBIDDEN)', `${as(mercy.billing)} -H 'content-type: application/json' -d '{"patientRef":"MH-P-40000","amount":120}' ${url}/v1/claims`],
    ['invoices (billing certificate only)', `${as(oak.billing)} ${url}/v1/invoices`],
    ['get an access token bound to the Mercy claims certificate (RFC 8705 tls_client_auth, 300 s)',
      `TOKEN=$(${as(mercy.claims)} -s -d grant_type=client_credentials ${url}/oauth/token | node -p 'JSON.parse(require("fs").readFileSync(0, "utf8")).access_token')`],
    ['use it with its own certificate (200)', `${as(mercy.claims)} -H "authorization: Bearer $TOKEN" ${url}/v1/settlements`],
    ['the same token with Oakridge\'s certificate (401 FST_MTLS_TOKEN_NOT_BOUND)', `${as(oak.claims)} -H "authorization: Bearer $TOKEN" ${url}/v1/settlements`]
  ]
}

function isMain () {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))
  } catch {
    return false
  }
}

if (isMain()) {
  const { app, url, pki } = await start({
    port: Number(process.env.PORT ?? 8443),
    pkiDir: process.env.PKI_DIR || join(here, 'pki'),
    logger: { level: process.env.LOG_LEVEL ?? 'info' }
  })
  console.log(`Claims API ready at ${url}`)
  console.log(`Development PKI in ${pki.dir}\n`)
  for (const [what, cmd] of curlCommands(url, pki)) console.log(`# ${what}\n${cmd}\n`)
  const client = relative(process.cwd(), join(here, 'client.js'))
  const pkiEnv = pki.dir === join(here, 'pki') ? '' : `PKI_DIR=${pki.dir} `
  console.log(`# every case at once, as a table\n${pkiEnv}node ${client.startsWith('..') || isAbsolute(client) ? join(here, 'client.js') : client} ${url}`)
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
  }
}
