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
import { generateKeyPairSync, randomUUID, X509Certificate } from 'node:crypto'
import { dirname, isAbsolute, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import fastifyJwt from '@fastify/jwt'
import fastifyMtls from 'fastify-mtls-auth'
import { createCertificate, createCrl } from 'fastify-mtls-auth/pki'

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

/** Writes a certificate and its private key (mode 0600: a key file is a secret). */
function write (pair, cert) {
  writeFileSync(pair.cert, cert.pem)
  writeFileSync(pair.key, cert.key.privateKeyPem, { mode: 0o600 })
  chmodSync(pair.key, 0o600) // the mode above only applies to a new file
}

/**
 * True when every file exists and no certificate (other than the expired sample) expires
 * within a day. The CRL is made with the certificates and lasts as long as they do.
 */
function usable (paths, now) {
  try {
    for (const f of [...allFiles(paths), paths.samples.expired]) {
      if (!existsSync(f.cert) || !existsSync(f.key)) return false
    }
    for (const f of allFiles(paths)) {
      if (new Date(new X509Certificate(readFileSync(f.cert)).validTo).getTime() - now < DAY) return false
    }
    return readFileSync(paths.samples.crl, 'utf8').startsWith('-----BEGIN X509 CRL-----')
  } catch {
    return false
  }
}

/**
 * Makes the development PKI in `dir` unless a usable one is already there, with the
 * package's own PKI module (fastify-mtls-auth/pki; ECDSA P-256 keys):
 * a server CA and a server certificate for localhost, 127.0.0.1 and ::1; one CA per
 * partner, each issuing a claims and a billing client certificate; and the samples:
 * an expired and a revoked Mercy claims certificate and Mercy's CRL.
 * Resolves to the paths and whether anything was generated.
 */
export async function ensurePki (dir, { now = Date.now() } = {}) {
  const paths = pkiPaths(dir)
  if (usable(paths, now)) return { paths, generated: false }
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const inDays = (days) => new Date(now + days * DAY)
  const valid = (days) => ({ notBefore: new Date(now - 5 * 60 * 1000), notAfter: inDays(days) })

  const insurer = 'Northwind Insurance'
  const serverCa = await createCertificate({ subject: { o: insurer, cn: `${insurer} Dev Server CA` }, ca: true, ...valid(365) })
  const server = await createCertificate({
    subject: { o: insurer, cn: 'localhost' },
    issuer: serverCa,
    altNames: { dns: ['localhost'], ip: ['127.0.0.1', '::1'] },
    extKeyUsage: ['serverAuth'],
    ...valid(90)
  })
  write(paths.serverCa, serverCa)
  write(paths.server, server)

  for (const p of PARTNERS) {
    const ca = await createCertificate({ subject: { o: p.org, cn: `${p.org} Partner CA` }, ca: true, ...valid(365) })
    write(paths.partners[p.id].ca, ca)
    // subject O, OU, CN (CN=claims-bot,OU=claims,O=Mercy Hospital), clientAuth EKU
    const client = (ou, cn, dates = valid(90)) => createCertificate({ subject: { o: p.org, ou, cn }, issuer: ca, extKeyUsage: ['clientAuth'], ...dates })
    for (const c of CLIENTS) write(paths.partners[p.id].clients[c.ou], await client(c.ou, c.cn))
    if (p.id === 'mercy-hospital') {
      // expired yesterday (issued for nine days, ten days ago), and one revoked an hour ago
      const expired = await client('claims', 'claims-bot', { notBefore: inDays(-10), notAfter: inDays(-1) })
      const revoked = await client('claims', 'claims-bot')
      write(paths.samples.expired, expired)
      write(paths.samples.revoked, revoked)
      const crl = await createCrl({
        issuer: ca,
        revoked: [{ serialHex: revoked.serialHex, date: new Date(now - 60 * 60 * 1000) }],
        thisUpdate: new Date(now - 5 * 60 * 1000),
        nextUpdate: inDays(90)
      })
      writeFileSync(paths.samples.crl, crl.pem)
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
