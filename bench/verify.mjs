// Cost of verifyCertificateChain: cold (nothing parsed or checked before) and cached
// (certificates parsed and signatures checked once already), for a 3-certificate
// RSA-2048 chain and a P-256 chain, next to what node:crypto alone costs for the
// same chain (X509Certificate parse + signature checks, no path rules) in the same run.
//
//   npm run build && node bench/verify.mjs [--iterations N]
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { verifyCertificateChain } from '../dist/index.js'
import { clearParseCache, getCertificate } from '../dist/der/store.js'
import { clearSignatureMemo } from '../dist/verify/chain.js'
import { parseCertificate } from '../dist/der/certificate.js'

const argv = process.argv.slice(2)
const iterations = Number(argv[argv.indexOf('--iterations') + 1]) || 300

const dir = mkdtempSync(join(tmpdir(), 'mtls-bench-'))
const openssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })

function makeChain (kind) {
  const keyArgs = kind === 'rsa' ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']
  writeFileSync(join(dir, 'ca.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n')
  writeFileSync(join(dir, 'leaf.ext'), 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\nsubjectAltName=URI:spiffe://example.org/bench\n')
  openssl('req', '-x509', ...keyArgs, '-nodes', '-keyout', 'root.key', '-out', 'root.pem', '-subj', '/CN=Bench Root', '-days', '2',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
  openssl('req', ...keyArgs, '-nodes', '-keyout', 'int.key', '-out', 'int.csr', '-subj', '/CN=Bench Intermediate')
  openssl('x509', '-req', '-in', 'int.csr', '-CA', 'root.pem', '-CAkey', 'root.key', '-out', 'int.pem', '-days', '2', '-extfile', 'ca.ext', '-set_serial', '0x1001')
  openssl('req', ...keyArgs, '-nodes', '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=bench-client/O=Bench')
  openssl('x509', '-req', '-in', 'leaf.csr', '-CA', 'int.pem', '-CAkey', 'int.key', '-out', 'leaf.pem', '-days', '1', '-extfile', 'leaf.ext', '-set_serial', '0x2002')
  const read = (f) => readFileSync(join(dir, f), 'utf8')
  return { root: read('root.pem'), intermediate: read('int.pem'), leaf: read('leaf.pem') }
}

function time (fn, n) {
  for (let i = 0; i < Math.min(20, n); i++) fn()
  const start = process.hrtime.bigint()
  for (let i = 0; i < n; i++) fn()
  return Number(process.hrtime.bigint() - start) / n / 1000
}

async function timeAsync (fn, n) {
  for (let i = 0; i < Math.min(20, n); i++) await fn()
  const start = process.hrtime.bigint()
  for (let i = 0; i < n; i++) await fn()
  return Number(process.hrtime.bigint() - start) / n / 1000
}

const rows = []
try {
  for (const kind of ['rsa', 'p256']) {
    const c = makeChain(kind === 'rsa' ? 'rsa' : 'ec')
    const input = { leaf: c.leaf, intermediates: [c.intermediate], trustAnchors: [c.root] }
    const check = await verifyCertificateChain(input)
    if (!check.ok) throw new Error(`benchmark chain does not verify: ${check.code} ${check.message}`)
    const ders = [c.leaf, c.intermediate, c.root].map((p) => new X509Certificate(p).raw)

    const nodeOnly = time(() => {
      const [l, i, r] = ders.map((d) => new X509Certificate(d))
      if (!l.verify(i.publicKey) || !i.verify(r.publicKey)) throw new Error('node verify failed')
    }, iterations)
    const parseOne = time(() => parseCertificate(ders[0]), iterations * 20)
    const cold = await timeAsync(async () => {
      clearParseCache()
      clearSignatureMemo()
      const r = await verifyCertificateChain(input)
      if (!r.ok) throw new Error('cold verification failed')
    }, iterations)
    const cached = await timeAsync(async () => {
      const r = await verifyCertificateChain(input)
      if (!r.ok) throw new Error('cached verification failed')
    }, iterations * 10)
    getCertificate(ders[0])
    rows.push({ chain: kind === 'rsa' ? 'RSA-2048, 3 certs' : 'P-256, 3 certs', parseOne, nodeOnly, cold, cached })
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}

const f = (us) => `${us.toFixed(1)} µs`
console.log(`node ${process.version}, ${iterations} iterations (cached: ${iterations * 10})`)
console.log('chain'.padEnd(20), 'DER parse (1 cert)'.padStart(20), 'node:crypto only'.padStart(18), 'cold verify'.padStart(14), 'cached verify'.padStart(15), 'cold/node'.padStart(10), 'cached/node'.padStart(12))
for (const r of rows) {
  console.log(r.chain.padEnd(20), f(r.parseOne).padStart(20), f(r.nodeOnly).padStart(18), f(r.cold).padStart(14), f(r.cached).padStart(15),
    (r.cold / r.nodeOnly).toFixed(2).padStart(10), (r.cached / r.nodeOnly).toFixed(2).padStart(12))
}
console.log('node:crypto only = new X509Certificate() for the 3 certificates + 2 signature checks, no path rules (a baseline, not a verifier)')
