// The built package resolves for both `import` and `require` through package.json "exports".
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'
import { existsSync } from 'node:fs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

function run (code: string, type: 'module' | 'commonjs'): { status: number | null, stdout: string, stderr: string } {
  const args = type === 'module' ? ['--input-type=module', '-e', code] : ['--input-type=commonjs', '-e', code]
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8' })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

t.ok(existsSync(join(root, 'dist', 'index.js')), 'the package is built (npm test builds first)')

t.test('import resolves the built package', async (t) => {
  const r = run("const m = await import('fastify-mtls-auth'); console.log(typeof m.verifyCertificateChain, typeof m.compilePolicy, typeof m.MtlsForbiddenError, import.meta.resolve('fastify-mtls-auth'))", 'module')
  t.equal(r.status, 0, r.stderr)
  const [verify, policy, err, url] = r.stdout.trim().split(' ')
  t.equal(verify, 'function')
  t.equal(policy, 'function')
  t.equal(err, 'function')
  t.match(url, /\/dist\/index\.js$/)
})

t.test('require resolves the built package', async (t) => {
  const r = run("const m = require('fastify-mtls-auth'); console.log(typeof m.verifyCertificateChain, typeof m.buildIdentity, require.resolve('fastify-mtls-auth'))", 'commonjs')
  t.equal(r.status, 0, r.stderr)
  const [verify, identity, path] = r.stdout.trim().split(' ')
  t.equal(verify, 'function')
  t.equal(identity, 'function')
  t.match(path, /[/\\]dist[/\\]index\.js$/)
})

t.test('a verdict comes back through both module systems', async (t) => {
  const code = (load: string): string => `${load}; m.verifyCertificateChain({ leaf: 'nope', trustAnchors: [] }).then(() => console.log('resolved'), (e) => console.log(e.name))`
  const esm = run(code("const m = await import('fastify-mtls-auth')"), 'module')
  const cjs = run(code("const m = require('fastify-mtls-auth')"), 'commonjs')
  t.equal(esm.stdout.trim(), 'InputError', esm.stderr)
  t.equal(cjs.stdout.trim(), 'InputError', cjs.stderr)
})

t.test('the plugin is the default export for import, and reachable from require', async (t) => {
  const esm = run("const m = await import('fastify-mtls-auth'); console.log(typeof m.default, m.default === m.fastifyMtls, m.default[Symbol.for('fastify.display-name')])", 'module')
  t.equal(esm.stdout.trim(), 'function true fastify-mtls-auth', esm.stderr)
  // Fastify's register() unwraps a module's default export, so register(require('fastify-mtls-auth')) works
  const cjs = run("const m = require('fastify-mtls-auth'); const f = require('fastify')({ https: null }); f.register(m, { ca: 'x' }); f.ready().then(() => console.log('started'), (e) => console.log(e.code))", 'commonjs')
  t.equal(cjs.stdout.trim(), 'FST_MTLS_INVALID_OPTIONS', cjs.stderr)
})

t.test('deep imports are closed', async (t) => {
  const r = run("try { require('fastify-mtls-auth/dist/verify/chain.js'); console.log('open') } catch (e) { console.log(e.code) }", 'commonjs')
  t.equal(r.stdout.trim(), 'ERR_PACKAGE_PATH_NOT_EXPORTED')
})
