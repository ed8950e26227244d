// Calls a running b2b-api example (examples/b2b-api/server.js) as the partners would, and
// prints what the API answers in each common case, as a table: a success for each partner,
// then one request for each usual rejection, with the status, the code and, on a line of
// its own, the server's message (what the client should fix). It starts nothing itself.
//
//   node examples/b2b-api/client.js [url]     (npm run example:client -- [url])
//
// url: the first argument, else API_URL, else https://localhost:8443. PKI_DIR: where the
// server's development PKI is (default examples/b2b-api/pki, as for the server).
// Exit code: 0 when every answer is the expected one, 1 when one is not, 2 when the API
// cannot be reached.
import { existsSync, readFileSync } from 'node:fs'
import { request } from 'node:https'
import { isIP } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const base = new URL(process.argv[2] ?? process.env.API_URL ?? 'https://localhost:8443')
const pkiDir = process.env.PKI_DIR || join(here, 'pki')

if (base.protocol !== 'https:') {
  console.error(`client.js: ${base.href} is not an https:// URL`)
  process.exit(2)
}
const serverCaFile = join(pkiDir, 'server-ca.pem')
if (!existsSync(serverCaFile)) {
  console.error(`client.js: no development PKI in ${pkiDir} (start the server once, or set PKI_DIR)`)
  process.exit(2)
}
const ca = readFileSync(serverCaFile)

/** The certificates by the name of their files in the PKI directory. */
const certificate = (name) => ({ name, cert: join(pkiDir, `${name}.pem`), key: join(pkiDir, `${name}.key`) })
const NONE = { name: '(none)' }

class Unreachable extends Error {}

/** One HTTPS request on a new connection (the certificate is per connection). */
function call ({ method = 'GET', path, as = NONE, headers = {}, body }) {
  return new Promise((resolve, reject) => {
    let tls
    try {
      tls = as === NONE ? {} : { cert: readFileSync(as.cert), key: readFileSync(as.key) }
    } catch (err) {
      reject(new Error(`cannot read ${as.name}: ${err.code ?? err.message}`))
      return
    }
    const url = new URL(path, base)
    const req = request(url, {
      method,
      ca,
      ...tls,
      ...(isIP(url.hostname.replace(/^\[|\]$/g, '')) === 0 ? { servername: url.hostname } : {}),
      agent: false,
      timeout: 10_000,
      headers: { accept: 'application/json', ...headers, ...(body === undefined ? {} : { 'content-length': Buffer.byteLength(body) }) }
    }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk) => { text += chunk })
      res.on('end', () => {
        let json
        try { json = JSON.parse(text) } catch { json = undefined }
        resolve({ status: res.statusCode, json, text })
      })
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Unreachable(`no answer from ${base.origin} within 10 s`)))
    req.on('error', (err) => {
      if (err instanceof Unreachable || ['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ECONNRESET'].includes(err.code)) {
        reject(new Unreachable(`cannot reach ${base.origin}: ${err.code ?? err.message} (is the server running? npm run example)`))
      } else {
        reject(err)
      }
    })
    req.end(body)
  })
}

const json = (value) => ({ headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) })
const bearer = (token) => ({ authorization: `Bearer ${token}` })
const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`

/** What a 2xx answer says, in a few words. */
function summary (path, body) {
  if (body === undefined) return ''
  if (path === '/oauth/token') return `${body.token_type} token, expires in ${body.expires_in} s`
  if (Array.isArray(body.claims)) return `${body.partner}: ${plural(body.claims.length, 'claim')}`
  if (Array.isArray(body.settlements)) return `${body.partner}: ${plural(body.settlements.length, 'settlement')}`
  return ''
}

const mercy = { claims: certificate('mercy-claims'), billing: certificate('mercy-billing') }
const oakridge = { claims: certificate('oakridge-claims') }
let token // the token issued to Mercy's claims certificate, used by the last cases

/** The cases, in order. `expect`: the status, and the code of a refusal. */
const cases = [
  { what: "Mercy's claims bot lists its claims", as: mercy.claims, path: '/v1/claims', expect: { status: 200 } },
  { what: "Oakridge's claims bot lists its claims", as: oakridge.claims, path: '/v1/claims', expect: { status: 200 } },
  { what: 'no certificate', as: NONE, path: '/v1/claims', expect: { status: 401, code: 'FST_MTLS_CERT_MISSING' } },
  { what: "another partner's claim", as: oakridge.claims, path: '/v1/claims/C-1001', expect: { status: 404, code: 'CLAIM_NOT_FOUND' } },
  { what: 'billing certificate submits a claim', as: mercy.billing, method: 'POST', path: '/v1/claims', ...json({ patientRef: 'MH-P-40000', amount: 120 }), expect: { status: 403, code: 'FST_MTLS_FORBIDDEN' } },
  { what: 'expired certificate', as: certificate('mercy-expired'), path: '/v1/claims', expect: { status: 401, code: 'FST_MTLS_CERT_EXPIRED' } },
  { what: 'revoked certificate (on the CRL)', as: certificate('mercy-revoked'), path: '/v1/claims', expect: { status: 401, code: 'FST_MTLS_CERT_REVOKED' } },
  {
    what: 'token for the claims certificate',
    as: mercy.claims,
    method: 'POST',
    path: '/oauth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials',
    expect: { status: 200 },
    after: (r) => { token = r.json?.access_token }
  },
  { what: 'the token with its own certificate', as: mercy.claims, path: '/v1/settlements', withToken: true, expect: { status: 200 } },
  { what: "the token with Oakridge's certificate", as: oakridge.claims, path: '/v1/settlements', withToken: true, expect: { status: 401, code: 'FST_MTLS_TOKEN_NOT_BOUND' } },
  { what: 'settlements without a token', as: mercy.claims, path: '/v1/settlements', expect: { status: 401, code: 'FST_JWT_NO_AUTHORIZATION_IN_HEADER' } }
]

async function run (c) {
  const row = {
    what: c.what,
    certificate: c.as.name,
    request: `${c.method ?? 'GET'} ${c.path}${c.withToken ? ' + token' : ''}`,
    expected: [c.expect.status, c.expect.code].filter(Boolean).join(' ')
  }
  if (c.withToken && token === undefined) return { ...row, status: '-', code: '', message: 'no token (the token request failed)', ok: false }
  let r
  try {
    r = await call({ ...c, headers: { ...c.headers, ...(c.withToken ? bearer(token) : {}) } })
  } catch (err) {
    if (err instanceof Unreachable) throw err
    return { ...row, status: '-', code: '', message: `no answer: ${err.code === undefined ? '' : err.code + ', '}${err.message}`, ok: false }
  }
  c.after?.(r)
  const code = r.json?.code ?? r.json?.error ?? ''
  const message = r.status < 300 ? summary(c.path, r.json) : r.json?.message ?? r.json?.error_description ?? r.text.slice(0, 200)
  const ok = r.status === c.expect.status && (c.expect.code === undefined || code === c.expect.code)
  return { ...row, status: String(r.status), code: r.status < 300 ? '' : code, message, ok }
}

/**
 * A plain-text table, two lines per case: first whether the answer is the expected one
 * (ok or FAIL), the case, the certificate and the answer (status and code; a FAIL adds
 * what was expected); then, indented, the request and what the server said: for a
 * refusal its message, which tells the client what to fix. About 100 columns wide.
 */
function table (rows) {
  const columns = [
    ['', (r) => (r.ok ? 'ok' : 'FAIL')],
    ['#', (_, i) => String(i + 1)],
    ['case', (r) => r.what],
    ['certificate', (r) => r.certificate],
    ['answer', (r) => `${r.status}${r.code === '' ? '' : ' ' + r.code}${r.ok ? '' : `, expected ${r.expected}`}`]
  ]
  const cells = rows.map((r, i) => columns.map(([, cell]) => cell(r, i)))
  const widths = columns.map(([title], j) => Math.max(title.length, ...cells.map((row) => row[j].length)))
  const line = (values) => values.map((v, j) => v.padEnd(widths[j])).join('  ').trimEnd()
  const indent = ' '.repeat(widths[0] + 2 + widths[1] + 2)
  const lines = [line(columns.map(([title]) => title)), line(widths.map((w) => '-'.repeat(w)))]
  rows.forEach((r, i) => {
    lines.push(line(cells[i]), `${indent}${r.request} -> ${r.message === '' ? '(no body)' : r.message}`)
  })
  return lines.join('\n')
}

console.log(`Calling ${base.origin} with the certificates in ${pkiDir}\n`)
const rows = []
try {
  for (const c of cases) rows.push(await run(c))
} catch (err) {
  console.error(`client.js: ${err.message}`)
  process.exit(2)
}
console.log(table(rows))
const failed = rows.filter((r) => !r.ok).length
console.log(`\n${failed === 0 ? `All ${rows.length} answers as expected.` : `${failed} of ${rows.length} answers NOT as expected.`}`)
process.exitCode = failed === 0 ? 0 : 1
