// Long fuzz run of the forwarded-certificate header parsers (lib/sources/forwarded-formats.ts):
// per format, seeded random junk and mutations of real header values (truncation, byte
// flips, inserted ; , " % \ and PEM markers, deletions, duplications, rotations, repeats)
// plus a few worst-case shapes at the 64 KiB limit. For each format it prints how many
// values parsed (with a known certificate, or with another certificate that a mutation
// happened to leave valid), came back empty, were refused (MalformedHeader), and how many
// did anything else (an exception other than MalformedHeader, a returned certificate that
// does not parse, an empty result for a non-empty value): that last count must be 0, and
// the script exits 1 otherwise. Also the worst parse time, the median of five re-runs of
// that slowest value (a runtime pause does not repeat; a slow input would), the 99th
// percentile and the mean.
//
//   npm run build && node bench/fuzz-forwarded.mjs [--count N] [--seed S]
import { execFileSync } from 'node:child_process'
import { createHash, X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MalformedHeader, parseForwarded } from '../dist/sources/forwarded-formats.js'
import { getCertificate } from '../dist/der/store.js'

const argv = process.argv.slice(2)
const arg = (name, fallback) => {
  const i = argv.indexOf(name)
  return i === -1 ? fallback : Number(argv[i + 1])
}
const COUNT = arg('--count', 100_000)
const SEED = arg('--seed', 0xf0cc)

// ------------------------------------------------------------------ certificates (openssl, as bench/verify.mjs)

const dir = mkdtempSync(join(tmpdir(), 'mtls-fuzz-'))
const openssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })

function makeChain (kind, name) {
  const keyArgs = kind === 'rsa' ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']
  writeFileSync(join(dir, 'ca.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n')
  writeFileSync(join(dir, 'leaf.ext'), `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\nsubjectAltName=URI:spiffe://example.org/${name},DNS:${name}.example\n`)
  openssl('req', '-x509', ...keyArgs, '-nodes', '-keyout', 'root.key', '-out', 'root.pem', '-subj', `/CN=${name} Root`, '-days', '2',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
  openssl('req', ...keyArgs, '-nodes', '-keyout', 'int.key', '-out', 'int.csr', '-subj', `/CN=${name} Intermediate`)
  openssl('x509', '-req', '-in', 'int.csr', '-CA', 'root.pem', '-CAkey', 'root.key', '-out', 'int.pem', '-days', '2', '-extfile', 'ca.ext', '-set_serial', '0x1001')
  openssl('req', ...keyArgs, '-nodes', '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', `/CN=${name} client/O=Fuzz`)
  openssl('x509', '-req', '-in', 'leaf.csr', '-CA', 'int.pem', '-CAkey', 'int.key', '-out', 'leaf.pem', '-days', '1', '-extfile', 'leaf.ext', '-set_serial', '0x2002')
  const read = (f) => readFileSync(join(dir, f), 'utf8')
  const pems = { leaf: read('leaf.pem'), intermediate: read('int.pem'), key: read('leaf.key') }
  const der = (pem) => new X509Certificate(pem).raw
  return { ...pems, leafDer: der(pems.leaf), intermediateDer: der(pems.intermediate) }
}

let A, R
try {
  A = makeChain('ec', 'fuzz-a')
  R = makeChain('rsa', 'fuzz-r')
} finally {
  rmSync(dir, { recursive: true, force: true })
}

// ------------------------------------------------------------------ header values, as each proxy writes them

const sha256 = (der) => createHash('sha256').update(der).digest('hex')
const b64 = (der) => der.toString('base64')
const sf = (der) => `:${b64(der)}:`
const envoyEncode = (pem) => pem.replace(/[\n +/=]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0'))
const albEncode = (pem) => encodeURIComponent(pem).replace(/%2B/g, '+').replace(/%3D/g, '=').replace(/%2F/g, '/')
const xfcc = (c) => `By=spiffe://cluster.local/ns/edge/sa/envoy;Hash=${sha256(c.leafDer)};Cert="${envoyEncode(c.leaf)}";` +
  `Chain="${envoyEncode(c.leaf + c.intermediate)}";Subject="CN=client,O=Fuzz";URI=spiffe://example.org/app;DNS=a.example;DNS=b.example`

const SEEDS = {
  xfcc: [xfcc(A), xfcc(R), `Hash=${sha256(A.leafDer)};Cert="${envoyEncode(A.leaf)}"`, `${xfcc(R)},${xfcc(A)}`,
    'By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=spiffe://lyft.com/test-team'],
  'escaped-pem': [encodeURIComponent(A.leaf), albEncode(R.leaf + R.intermediate), envoyEncode(A.leaf + A.intermediate), encodeURIComponent(A.leaf + A.key)],
  'base64-der': [[A.leafDer, A.intermediateDer].map(b64).join(','), b64(R.leafDer), ` ${b64(A.leafDer)} , ${b64(R.intermediateDer)}`],
  rfc9440: [sf(A.leafDer), sf(R.leafDer)]
}
const CHAIN_SEEDS = [sf(A.intermediateDer), `${sf(R.intermediateDer)}, ${sf(A.intermediateDer)}`, '']
const KNOWN = new Set([A.leafDer, R.leafDer, A.intermediateDer, R.intermediateDer].map(sha256))
const LIMIT = 64 * 1024
/** Worst-case shapes for each parser, at the size limit. */
const LARGE = {
  xfcc: [Array.from({ length: LIMIT / 6 }, (_, i) => `k${i.toString(36)}=v`).join(';').slice(0, LIMIT), 'Subject="' + '\\"'.repeat(LIMIT / 2 - 6) + '"', 'a=b,'.repeat(LIMIT / 4 - 1) + 'a=b', 'Cert="' + '%41'.repeat(LIMIT / 3 - 3) + '"'],
  'escaped-pem': ['%41'.repeat(LIMIT / 3), '-----BEGIN CERTIFICATE-----' + 'A'.repeat(LIMIT - 27), '-----BEGIN '.repeat(LIMIT / 11), encodeURIComponent(A.leaf).repeat(20).slice(0, LIMIT)],
  'base64-der': ['A'.repeat(LIMIT), 'AAAA,'.repeat(LIMIT / 5), 'MIIB' + 'A'.repeat(LIMIT - 4), (b64(A.leafDer) + ',').repeat(40).slice(0, LIMIT)],
  rfc9440: [':' + 'A'.repeat(LIMIT - 2) + ':', ':' + 'A'.repeat(LIMIT - 1), (sf(A.leafDer) + ', ').repeat(40).slice(0, LIMIT)]
}

// ------------------------------------------------------------------ random values

function rng (seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const SPECIALS = [';', ',', '"', '%', '\\', '=', ':', '%zz', '%e9', '%0', '%25', '%0A', '%2B', '+', ' ', '\t', '-----BEGIN ', '-----END CERTIFICATE-----',
  '-----BEGIN PRIVATE KEY-----', 'Cert=', ';Cert="', 'Hash=', ',Cert=', '\\"', ';a=1', '(', '\u00e9', '\u0000', '\u00ff']

function mutate (s, r) {
  const pos = () => Math.floor(r() * (s.length + 1))
  const times = 1 + Math.floor(r() * 4)
  for (let k = 0; k < times; k++) {
    const p = pos()
    switch (Math.floor(r() * 9)) {
      case 0: s = s.slice(0, p); break
      case 1: s = s.slice(0, p) + String.fromCharCode(32 + Math.floor(r() * 95)) + s.slice(p + 1); break
      case 2: s = s.slice(0, p) + SPECIALS[Math.floor(r() * SPECIALS.length)] + s.slice(p); break
      case 3: s = s.slice(0, p) + s.slice(p + 1 + Math.floor(r() * 64)); break
      case 4: { const q = pos(); s = s.slice(0, p) + s.slice(Math.min(p, q), Math.max(p, q)) + s.slice(p); break }
      case 5: s = s.slice(p) + s.slice(0, p); break
      case 6: s = s + (r() < 0.5 ? ',' : ';') + s; break
      case 7: { const c = s.charCodeAt(p); if (!Number.isNaN(c)) s = s.slice(0, p) + String.fromCharCode(c ^ (1 << Math.floor(r() * 8))) + s.slice(p + 1); break }
      default: s = s.slice(0, p) + s.slice(p, p + 1).repeat(1 + Math.floor(r() * 200)) + s.slice(p + 1)
    }
  }
  return s
}

function junk (r) {
  const n = r() < 0.02 ? Math.floor(r() * (LIMIT + 2048)) : Math.floor(r() * 4096)
  const raw = r() < 0.25
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=:;,"%\\ -'
  const out = new Array(n)
  for (let i = 0; i < n; i++) out[i] = raw ? String.fromCharCode(Math.floor(r() * 256)) : alphabet[Math.floor(r() * alphabet.length)]
  return out.join('')
}

// ------------------------------------------------------------------ run

const r = rng(SEED)
const rows = []
let otherTotal = 0
for (const format of Object.keys(SEEDS)) {
  const row = { format, total: 0, parsed: 0, 'parsed (other cert)': 0, empty: 0, malformed: 0, other: 0, 'worst µs': 0, 'worst at (chars)': 0, 'worst again µs': 0, 'p99 µs': 0, 'mean µs': 0 }
  const times = new Float64Array(COUNT)
  const examples = []
  let sum = 0
  let worst
  for (let i = 0; i < COUNT; i++) {
    const pick = r()
    const seeds = SEEDS[format]
    let value
    if (i < LARGE[format].length) value = LARGE[format][i]
    else if (pick < 0.1) value = junk(r)
    else if (pick < 0.13) value = seeds[Math.floor(r() * seeds.length)]
    else value = mutate(seeds[Math.floor(r() * seeds.length)], r)
    const options = {}
    if (format === 'xfcc') options.xfccElement = r() < 0.5 ? 'last' : 'only'
    if (format === 'rfc9440' && r() < 0.6) {
      const c = CHAIN_SEEDS[Math.floor(r() * CHAIN_SEEDS.length)]
      options.chainValue = r() < 0.5 ? c : mutate(c, r)
    }
    if (format !== 'xfcc' && format !== 'rfc9440' && r() < 0.05) options.chainValue = mutate(b64(R.intermediateDer), r)
    row.total++
    let result
    let problem
    const start = process.hrtime.bigint()
    try {
      result = parseForwarded(format, value, options)
    } catch (err) {
      result = err
    }
    const ns = Number(process.hrtime.bigint() - start)
    times[i] = ns
    sum += ns
    if (ns / 1000 > row['worst µs']) {
      row['worst µs'] = Math.round(ns / 1000)
      row['worst at (chars)'] = value.length
      worst = { value, options }
    }
    if (result instanceof MalformedHeader) {
      row.malformed++
      continue
    }
    if (result instanceof Error) {
      problem = `threw ${result.name}: ${result.message}`
    } else if (result === undefined) {
      if (value.trim() !== '') problem = 'undefined for a non-empty value'
      else row.empty++
    } else {
      try {
        getCertificate(result.leaf)
        for (const der of result.chain) getCertificate(der)
        if (result.chain.length > 10) problem = `${result.chain.length} chain certificates`
      } catch (err) {
        problem = `returned a certificate that does not parse: ${err.message}`
      }
      if (problem === undefined) {
        row.parsed++
        if (!KNOWN.has(sha256(result.leaf))) row['parsed (other cert)']++
      }
    }
    if (problem !== undefined) {
      row.other++
      if (examples.length < 5) examples.push(`${problem} for ${JSON.stringify(value.slice(0, 120))}`)
    }
  }
  // the slowest value again, five times: a pause of the runtime (GC, compilation) does not repeat, a slow input does
  const again = []
  for (let k = 0; k < 5; k++) {
    const start = process.hrtime.bigint()
    try { parseForwarded(format, worst.value, worst.options) } catch {}
    again.push(Number(process.hrtime.bigint() - start))
  }
  row['worst again µs'] = Math.round(again.sort((a, b) => a - b)[2] / 1000)
  times.sort()
  row['p99 µs'] = Math.round(times[Math.floor(COUNT * 0.99)] / 1000)
  row['mean µs'] = Math.round(sum / COUNT / 100) / 10
  otherTotal += row.other
  rows.push(row)
  for (const e of examples) console.error(`${format}: ${e}`)
}

console.log(`fuzz-forwarded: ${COUNT} values per format, seed 0x${SEED.toString(16)}, node ${process.version}`)
console.table(rows.map(({ format, ...rest }) => ({ format, ...rest })))
if (otherTotal > 0) {
  console.error(`${otherTotal} values produced something other than a certificate, an empty result or MalformedHeader`)
  process.exit(1)
}
