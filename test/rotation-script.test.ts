// bench/rotation.mjs, the "rotation under load" script users run, as a child process with
// small numbers. It imports the built package (npm test builds first) and makes its PKI
// with the openssl command line.
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const script = join('bench', 'rotation.mjs')

t.ok(existsSync(join(root, 'dist', 'index.js')), 'the package is built (npm test builds first)')

interface Run { code: number | null, stdout: string, stderr: string }

async function run (...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [script, ...args], { cwd: root, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null
      resolve({ code, stdout, stderr })
    })
  })
}

const CLIENTS = ['A keep-alive', 'A new-conn', 'A resumed', 'B keep-alive', 'B new-conn', 'B resumed', 'B-revoked keep-alive', 'B-revoked resumed']

function check (t: Test, r: Run, requests: number): void {
  t.equal(r.code, 0, 'exit 0')
  if (r.code !== 0) t.comment(`${r.stdout}\n${r.stderr}`)
  const summary = /^summary: (\d+) requests, (\d+) ok, (\d+) refused as expected, (\d+) unexpected failures; (\d+) problems — (PASS|FAIL)$/m.exec(r.stdout)
  t.ok(summary, 'the summary line')
  const [, total, ok, refused, unexpected, problems, verdict] = summary ?? []
  t.equal(Number(total), requests)
  t.equal(Number(ok) + Number(refused), requests, 'every request accounted for')
  t.ok(Number(ok) > 0 && Number(refused) > 0, 'both accepted and refused requests')
  t.equal(unexpected, '0')
  t.equal(problems, '0')
  t.equal(verdict, 'PASS')
  t.notMatch(r.stdout, /^(UNEXPECTED|PROBLEM) /m)

  const lines = r.stdout.split('\n')
  for (const name of CLIENTS) {
    const row = lines.find((l) => l.startsWith(name.padEnd(20)))
    t.ok(row, `a row for ${name}`)
    const cells = (row ?? '').slice(20).trim().split(/\s+/)
    t.equal(cells.slice(0, 6).filter((c) => c !== '-' && !/^\d+\/\d+\/0$/.test(c)).length, 0, `${name}: no unexpected failure in any phase`)
    if (name.endsWith('keep-alive')) t.match(row, /\s1 connection$/, `${name}: one kept-alive connection for the whole run`)
    if (name.endsWith('resumed')) t.ok(Number(/(\d+) resumed$/.exec(row ?? '')?.[1]) > 0, `${name}: sessions resumed`)
  }
  // the A clients are refused once B alone is trusted, the revoked B client once the CRL is in
  const cell = (name: string, phase: number) => (lines.find((l) => l.startsWith(name.padEnd(20))) ?? '').slice(20).trim().split(/\s+/)[phase]
  t.match(cell('A keep-alive', 4), /^0\/\d+\/0$/, 'A refused in the CRL phase')
  t.match(cell('B-revoked keep-alive', 5), /^0\/\d+\/0$/, 'B-revoked refused in the last phase')
  t.match(cell('B keep-alive', 5), /^\d+\/0\/0$/, 'B accepted in the last phase')
  t.equal(cell('B keep-alive', 0), '-', 'B starts after A+B')

  for (const reload of ['phase 1 (A+B)', 'phase 2 (server cert)', 'phase 3 (B only)', 'phase 4 (CRL)']) {
    t.match(r.stdout, new RegExp(`reload -> ${reload.replace(/[()+]/g, '\\$&')}: .*: applied, epoch \\d+`), `reload to ${reload}`)
  }
  t.equal(lines.filter((l) => /broken reload \(.*\): refused, FST_MTLS_RELOAD_INVALID/.test(l)).length, 2, 'both broken reloads refused')
  t.match(r.stdout, /^final status: epoch 5, anchors O=Bench,CN=Partner B Root CA, crls .* \(1 revoked\), last reload refused$/m)
}

t.test('node bench/rotation.mjs --requests 300 (issuing CAs configured as intermediates)', async (t) => {
  const r = await run('--requests', '300')
  check(t, r, 300)
  t.match(r.stdout, /chain: intermediate;/)
})

t.test('node bench/rotation.mjs --requests 240 --chain root', async (t) => {
  const r = await run('--requests', '240', '--chain', 'root')
  check(t, r, 240)
  t.match(r.stdout, /crls O=Bench,CN=Partner B Root CA \(1 revoked\)/)
})

t.test('node bench/rotation.mjs --requests 240 --chain learned (issuing CAs learned from full handshakes)', async (t) => {
  const r = await run('--requests', '240', '--chain', 'learned')
  check(t, r, 240)
  t.match(r.stdout, /chain: learned;/)
})

t.test('bad arguments: exit 2 with a message', async (t) => {
  const r = await run('--requests', '10')
  t.equal(r.code, 2)
  t.match(r.stderr, /--requests must be an integer of at least 60/)
})
