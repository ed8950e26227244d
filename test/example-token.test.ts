// The b2b-api example's certificate-bound tokens (RFC 8705) and its client script: the token
// endpoint (tls_client_auth), GET /v1/settlements with a bound token, the printed curl pair,
// the expired and revoked sample certificates, and examples/b2b-api/client.js run against an
// in-process example on port 0.
import t from 'tap'
import { execFile } from 'node:child_process'
import { createHash, generateKeyPairSync, sign, X509Certificate } from 'node:crypto'
import { cpSync, mkdtempSync, readFileSync, rmSync, unlinkSync } from 'node:fs'
import type { IncomingHttpHeaders } from 'node:http'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Agent, request } from 'undici'
import type { FastifyInstance } from 'fastify'

interface Pair { cert: string, key: string }
interface PkiPaths {
  dir: string
  serverCa: Pair
  server: Pair
  partners: Record<string, { ca: Pair, clients: Record<string, Pair> }>
  samples: { expired: Pair, revoked: Pair, crl: string }
}
interface Example {
  start: (o?: { port?: number, host?: string, pkiDir?: string, logger?: unknown }) => Promise<{ app: FastifyInstance, url: string, pki: PkiPaths }>
  ensurePki: (dir: string, o?: { now?: number }) => Promise<{ paths: PkiPaths, generated: boolean }>
  curlCommands: (url: string, paths: PkiPaths, cwd?: string) => Array<[string, string]>
  TOKEN_TTL: number
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const clientScript = join(root, 'examples', 'b2b-api', 'client.js')
const example = await import(new URL('../examples/b2b-api/server.js', import.meta.url).href) as Example

const dir = mkdtempSync(join(tmpdir(), 'mtls-b2b-token-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

const { app, url, pki } = await example.start({ port: 0, pkiDir: join(dir, 'pki') })
const agents: Agent[] = []
t.teardown(async () => {
  await Promise.all(agents.map(async (a) => a.close()))
  await app.close()
})

const read = (f: string): string => readFileSync(f, 'utf8')
const mercy = pki.partners['mercy-hospital']!.clients as Record<'claims' | 'billing', Pair>
const oakridge = pki.partners['oakridge-clinic']!.clients as Record<'claims' | 'billing', Pair>
const thumbprint = (pair: Pair): string => createHash('sha256').update(new X509Certificate(read(pair.cert)).raw).digest('base64url')

function agent (pair?: Pair): Agent {
  const a = new Agent({ connect: { ca: read(pki.serverCa.cert), servername: 'localhost', ...(pair === undefined ? {} : { cert: read(pair.cert), key: read(pair.key) }) } })
  agents.push(a)
  return a
}
const as = {
  none: agent(),
  mercyClaims: agent(mercy.claims),
  mercyBilling: agent(mercy.billing),
  oakClaims: agent(oakridge.claims),
  oakBilling: agent(oakridge.billing),
  expired: agent(pki.samples.expired),
  revoked: agent(pki.samples.revoked)
}

interface Reply { status: number, body: any, headers: IncomingHttpHeaders }
async function call (dispatcher: Agent, path: string, o: { method?: 'GET' | 'POST', headers?: Record<string, string>, body?: string } = {}): Promise<Reply> {
  const res = await request(`${url}${path}`, { dispatcher, method: o.method ?? 'GET', headers: o.headers ?? {}, ...(o.body === undefined ? {} : { body: o.body }) })
  const text = await res.body.text()
  return { status: res.statusCode, body: text === '' ? undefined : JSON.parse(text), headers: res.headers }
}
const form = (body: string): { method: 'POST', headers: Record<string, string>, body: string } =>
  ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body })
const asJson = (body: unknown): { method: 'POST', headers: Record<string, string>, body: string } =>
  ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

async function tokenFor (dispatcher: Agent): Promise<string> {
  const r = await call(dispatcher, '/oauth/token', form('grant_type=client_credentials'))
  if (r.status !== 200) throw new Error(`token request: ${r.status} ${JSON.stringify(r.body)}`)
  return r.body.access_token as string
}
const decode = (token: string, part: 0 | 1): any => JSON.parse(Buffer.from(token.split('.')[part]!, 'base64url').toString('utf8'))

t.test('POST /oauth/token: a short-lived token bound to the calling certificate', async (t) => {
  const r = await call(as.mercyClaims, '/oauth/token', form('grant_type=client_credentials'))
  t.equal(r.status, 200)
  t.equal(r.headers['cache-control'], 'no-store', 'RFC 6749 5.1: not cached')
  t.equal(r.headers.pragma, 'no-cache')
  t.same(Object.keys(r.body).sort(), ['access_token', 'expires_in', 'token_type'])
  t.same([r.body.token_type, r.body.expires_in], ['Bearer', 300])
  t.equal(example.TOKEN_TTL, 300)
  const token = r.body.access_token as string
  t.match(decode(token, 0), { alg: 'ES256' })
  const claims = app.jwt.verify<Record<string, any>>(token)
  t.match(claims, { sub: 'mercy-hospital', client_id: 'mercy-hospital', cnf: { 'x5t#S256': thumbprint(mercy.claims) }, iss: String, aud: String, jti: String })
  t.equal(claims.exp - claims.iat, 300, 'five minutes')
  t.ok(Math.abs(claims.iat - Date.now() / 1000) < 60, 'issued now')

  const fromJson = await call(as.oakBilling, '/oauth/token', asJson({ grant_type: 'client_credentials' }))
  t.equal(fromJson.status, 200, 'a JSON body')
  t.match(app.jwt.verify<Record<string, any>>(fromJson.body.access_token), { sub: 'oakridge-clinic', cnf: { 'x5t#S256': thumbprint(oakridge.billing) } })
  const withId = await call(as.mercyBilling, '/oauth/token', form('grant_type=client_credentials&client_id=mercy-hospital'))
  t.equal(withId.status, 200, 'client_id of the certificate\'s partner')
  t.not(decode(withId.body.access_token, 1).jti, decode(token, 1).jti, 'a new jti per token')
})

t.test('POST /oauth/token: refusals', async (t) => {
  const oauth = async (r: Promise<Reply>, status: number, error: string, what: string): Promise<void> => {
    const got = await r
    t.same([got.status, got.body.error], [status, error], what)
    t.type(got.body.error_description, 'string', `${what}: described`)
    t.equal(got.body.access_token, undefined)
  }
  await oauth(call(as.mercyClaims, '/oauth/token', form('grant_type=password')), 400, 'unsupported_grant_type', 'another grant')
  await oauth(call(as.mercyClaims, '/oauth/token', form('scope=claims')), 400, 'invalid_request', 'no grant_type')
  await oauth(call(as.mercyClaims, '/oauth/token', form('grant_type=client_credentials&grant_type=client_credentials')), 400, 'invalid_request', 'a repeated parameter')
  await oauth(call(as.mercyClaims, '/oauth/token', asJson({ grant_type: ['client_credentials'] })), 400, 'invalid_request', 'a JSON array')
  await oauth(call(as.mercyClaims, '/oauth/token', asJson('client_credentials')), 400, 'invalid_request', 'a JSON string')
  await oauth(call(as.mercyClaims, '/oauth/token', { method: 'POST' }), 400, 'invalid_request', 'no body')
  await oauth(call(as.mercyClaims, '/oauth/token', form('grant_type=client_credentials&client_id=oakridge-clinic')), 401, 'invalid_client', 'client_id of another partner')
  const none = await call(as.none, '/oauth/token', form('grant_type=client_credentials'))
  t.same([none.status, none.body.code], [401, 'FST_MTLS_CERT_MISSING'], 'no certificate, no token')
  const expired = await call(as.expired, '/oauth/token', form('grant_type=client_credentials'))
  t.same([expired.status, expired.body.code], [401, 'FST_MTLS_CERT_EXPIRED'], 'an expired certificate')
  const revoked = await call(as.revoked, '/oauth/token', form('grant_type=client_credentials'))
  t.same([revoked.status, revoked.body.code], [401, 'FST_MTLS_CERT_REVOKED'], 'a revoked certificate')
})

t.test('GET /v1/settlements: the token only with its own certificate', async (t) => {
  const mercyToken = await tokenFor(as.mercyClaims)
  const ok = await call(as.mercyClaims, '/v1/settlements', { headers: bearer(mercyToken) })
  t.equal(ok.status, 200)
  t.equal(ok.body.partner, 'mercy-hospital')
  t.ok(ok.body.settlements.length >= 1 && ok.body.settlements.every((s: { partner: string }) => s.partner === 'mercy-hospital'))

  const bearerChallenge = 'Bearer error="invalid_token", error_description="the token is not bound to this client certificate"'
  for (const [dispatcher, what] of [[as.oakClaims, "another partner's certificate"], [as.mercyBilling, 'the same partner\'s other certificate']] as const) {
    const r = await call(dispatcher, '/v1/settlements', { headers: bearer(mercyToken) })
    t.equal(r.status, 401, what)
    t.equal(r.body.code, 'FST_MTLS_TOKEN_NOT_BOUND', what)
    t.equal(r.headers['www-authenticate'], bearerChallenge, `${what}: the Bearer challenge`)
  }

  const oakToken = await tokenFor(as.oakClaims)
  const oak = await call(as.oakClaims, '/v1/settlements', { headers: bearer(oakToken) })
  t.same([oak.status, oak.body.partner], [200, 'oakridge-clinic'], 'Oakridge with its own token')
  t.equal((await call(as.mercyClaims, '/v1/settlements', { headers: bearer(oakToken) })).body.code, 'FST_MTLS_TOKEN_NOT_BOUND', "Oakridge's token from Mercy")

  const noToken = await call(as.mercyClaims, '/v1/settlements')
  t.same([noToken.status, noToken.body.code], [401, 'FST_JWT_NO_AUTHORIZATION_IN_HEADER'], 'no token')
  const noCert = await call(as.none, '/v1/settlements', { headers: bearer(mercyToken) })
  t.same([noCert.status, noCert.body.code], [401, 'FST_MTLS_CERT_MISSING'], 'the token without any certificate')

  // a token with the right binding, signed by a key the server does not know
  const stolen = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
  const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url')
  const input = `${b64({ alg: 'ES256', typ: 'JWT' })}.${b64({ ...decode(mercyToken, 1), jti: 'forged' })}`
  const forged = `${input}.${sign('sha256', Buffer.from(input), { key: stolen, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`
  const f = await call(as.mercyClaims, '/v1/settlements', { headers: bearer(forged) })
  t.same([f.status, f.body.code], [401, 'FST_JWT_AUTHORIZATION_TOKEN_INVALID'], 'a forged signature')
})

t.test('the printed curl pair', async (t) => {
  const cmds = example.curlCommands(url, pki, root)
  const find = (re: RegExp): string => cmds.find(([what]) => re.test(what))?.[1] ?? ''
  const get = find(/get an access token/)
  const use = find(/its own certificate/)
  const other = find(/Oakridge's certificate/)
  t.match(get, /^TOKEN=\$\(curl .* -d grant_type=client_credentials .*\/oauth\/token \| node -p /)
  t.match(use, /-H "authorization: Bearer \$TOKEN" .*\/v1\/settlements$/)
  const sh = async (script: string): Promise<{ status: number, body: any }> => {
    const out = await new Promise<string>((resolve, reject) => {
      execFile('sh', ['-c', script], { cwd: root }, (err, stdout, stderr) => { if (err !== null) reject(new Error(`${err.message} ${stderr}`)); else resolve(stdout) })
    })
    const cut = out.lastIndexOf('\n')
    return { status: Number(out.slice(cut + 1)), body: JSON.parse(out.slice(0, cut)) }
  }
  const own = await sh(`${get}\n${use} -s -w '\\n%{http_code}'`)
  t.same([own.status, own.body.partner], [200, 'mercy-hospital'], 'pasted: the token with its own certificate')
  const theirs = await sh(`${get}\n${other} -s -w '\\n%{http_code}'`)
  t.same([theirs.status, theirs.body.code], [401, 'FST_MTLS_TOKEN_NOT_BOUND'], "pasted: with Oakridge's certificate")
})

t.test('the expired and revoked samples', async (t) => {
  const expired = new X509Certificate(read(pki.samples.expired.cert))
  t.ok(new Date(expired.validTo).getTime() < Date.now(), 'expired')
  t.ok(expired.checkIssued(new X509Certificate(read(pki.partners['mercy-hospital']!.ca.cert))), "issued by Mercy's CA")
  const crls = app.mtls.status().crls
  t.equal(crls.length, 1)
  t.match(crls[0], { issuer: 'CN=Mercy Hospital Partner CA,O=Mercy Hospital', stale: false, revoked: 1 })
  t.equal((await call(as.mercyClaims, '/v1/claims')).status, 200, 'the CRL does not list the claims certificate')
  t.equal((await call(as.revoked, '/v1/claims')).body.code, 'FST_MTLS_CERT_REVOKED')
  t.equal((await call(as.expired, '/v1/claims')).body.code, 'FST_MTLS_CERT_EXPIRED')

  t.equal((await example.ensurePki(pki.dir)).generated, false, 'reused: the expired sample does not make a new PKI')
  const copy = join(dir, 'no-crl')
  cpSync(pki.dir, copy, { recursive: true })
  unlinkSync(join(copy, 'mercy-ca.crl'))
  t.equal((await example.ensurePki(copy)).generated, true, 'a PKI without the CRL is made again')
  t.ok(read(join(copy, 'mercy-ca.crl')).startsWith('-----BEGIN X509 CRL-----'))
})

// ---------------------------------------------------------------- the client script

interface Run { code: number | null, stdout: string, stderr: string }
async function client (args: string[], env: Record<string, string>): Promise<Run> {
  return await new Promise((resolve) => {
    const child = execFile(process.execPath, [clientScript, ...args], { cwd: root, env: { ...process.env, API_URL: '', ...env }, timeout: 30_000 }, (_err, stdout, stderr) => {
      resolve({ code: child.exitCode, stdout, stderr })
    })
  })
}
/**
 * The table's rows as [number, case, certificate, request, answer, ok/FAIL, message]: each case
 * is a line "ok|FAIL  #  case  certificate  answer" (columns two spaces apart) and an indented
 * line "request -> the server's message".
 */
function rowsOf (stdout: string): string[][] {
  const lines = stdout.split('\n')
  const start = lines.findIndex((l) => /^-+ {2}-+ {2}/.test(l)) + 1
  const end = lines.indexOf('', start)
  const rows: string[][] = []
  for (let i = start; i < end; i += 2) {
    const [mark = '', number = '', what = '', certificate = '', answer = ''] = lines[i]!.split(/ {2,}/)
    const detail = lines[i + 1] ?? ''
    const cut = detail.indexOf(' -> ')
    rows.push([number, what, certificate, detail.slice(0, cut).trim(), answer, mark, detail.slice(cut + 4)])
  }
  return rows
}

t.test('examples/b2b-api/client.js against the running example', async (t) => {
  const run = await client([url], { PKI_DIR: pki.dir })
  t.equal(run.code, 0, `exit code 0\n${run.stdout}${run.stderr}`)
  t.match(run.stdout, `Calling ${url} with the certificates in ${pki.dir}`)
  const rows = rowsOf(run.stdout)
  t.same(rows.map((r) => [r[1], r[2], r[3], r[4], r[5]]), [
    ["Mercy's claims bot lists its claims", 'mercy-claims', 'GET /v1/claims', '200', 'ok'],
    ["Oakridge's claims bot lists its claims", 'oakridge-claims', 'GET /v1/claims', '200', 'ok'],
    ['no certificate', '(none)', 'GET /v1/claims', '401 FST_MTLS_CERT_MISSING', 'ok'],
    ["another partner's claim", 'oakridge-claims', 'GET /v1/claims/C-1001', '404 CLAIM_NOT_FOUND', 'ok'],
    ['billing certificate submits a claim', 'mercy-billing', 'POST /v1/claims', '403 FST_MTLS_FORBIDDEN', 'ok'],
    ['expired certificate', 'mercy-expired', 'GET /v1/claims', '401 FST_MTLS_CERT_EXPIRED', 'ok'],
    ['revoked certificate (on the CRL)', 'mercy-revoked', 'GET /v1/claims', '401 FST_MTLS_CERT_REVOKED', 'ok'],
    ['token for the claims certificate', 'mercy-claims', 'POST /oauth/token', '200', 'ok'],
    ['the token with its own certificate', 'mercy-claims', 'GET /v1/settlements + token', '200', 'ok'],
    ["the token with Oakridge's certificate", 'oakridge-claims', 'GET /v1/settlements + token', '401 FST_MTLS_TOKEN_NOT_BOUND', 'ok'],
    ['settlements without a token', 'mercy-claims', 'GET /v1/settlements', '401 FST_JWT_NO_AUTHORIZATION_IN_HEADER', 'ok']
  ], 'every row as expected')
  const message = (n: number): string | undefined => rows[n - 1]?.[6]
  t.equal(message(1), 'mercy-hospital: 2 claims')
  t.equal(message(3), 'A client certificate is required: connect with a certificate issued by a CA this server trusts', "the server's message")
  t.equal(message(4), 'Claim C-1001 not found')
  t.equal(message(5), 'The client certificate is not allowed to access this resource')
  t.equal(message(6), 'A certificate in the client chain has expired: renew it', 'the hint of each refusal')
  t.equal(message(7), 'The client certificate has been revoked')
  t.equal(message(8), 'Bearer token, expires in 300 s')
  const table = run.stdout.split('\n').filter((l) => /^(ok|FAIL) /.test(l))
  t.equal(table.length, 11)
  t.ok(table.every((l) => l.length <= 110), 'the case lines fit a 110-column terminal; the messages have lines of their own')
  t.match(message(10), /^The access token is not bound to this client certificate/)
  t.match(run.stdout, 'All 11 answers as expected.')

  const byEnv = await client([], { PKI_DIR: pki.dir, API_URL: url })
  t.equal(byEnv.code, 0, 'the URL from API_URL')
  t.equal(rowsOf(byEnv.stdout).length, 11)
})

t.test('client.js: a wrong answer is exit code 1, no server is exit code 2', async (t) => {
  // the client trusts another server CA: every TLS connection fails, every row is a FAIL
  const wrong = join(dir, 'wrong-ca')
  cpSync(pki.dir, wrong, { recursive: true })
  cpSync(pki.partners['mercy-hospital']!.ca.cert, join(wrong, 'server-ca.pem'))
  const failed = await client([url], { PKI_DIR: wrong })
  t.equal(failed.code, 1, 'exit code 1')
  const rows = rowsOf(failed.stdout)
  t.equal(rows.length, 11)
  t.ok(rows.every((r) => r[5] === 'FAIL' && /^-, expected \d{3}/.test(r[4] ?? '')), 'every row says FAIL and what was expected')
  t.equal(rows[2]?.[4], '-, expected 401 FST_MTLS_CERT_MISSING')
  t.match(rows[0]?.[6], /^no answer: UNABLE_TO_VERIFY_LEAF_SIGNATURE, /, 'and why')
  t.equal(rows[8]?.[6], 'no token (the token request failed)')
  t.match(failed.stdout, '11 of 11 answers NOT as expected.')

  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port
      s.close(() => resolve(p))
    })
  })
  const down = await client([`https://localhost:${port}`], { PKI_DIR: pki.dir })
  t.equal(down.code, 2, 'exit code 2')
  t.match(down.stderr, /cannot reach https:\/\/localhost:\d+: ECONNREFUSED/)
  const noPki = await client([url], { PKI_DIR: join(dir, 'nowhere') })
  t.equal(noPki.code, 2)
  t.match(noPki.stderr, /no development PKI/)
  const plain = await client(['http://localhost:1'], { PKI_DIR: pki.dir })
  t.equal(plain.code, 2)
  t.match(plain.stderr, /not an https:\/\/ URL/)
})
