// A development PKI in a folder, for the `pki` command: PEM files, private keys
// created with mode 0600, an index of issued and revoked serials, a README.
import { Buffer } from 'node:buffer'
import { randomBytes, X509Certificate } from 'node:crypto'
import { mkdir, open, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createCrl, loadCertificate, loadKey, PkiError, type Certificate, type DevPki, type Key, type RevocationReason } from './index.js'

/** The files of a PKI folder. */
export const FILES = {
  root: 'root.pem',
  rootKey: 'root.key',
  clientCa: 'client-ca.pem',
  clientCaKey: 'client-ca.key',
  server: 'server.pem',
  serverKey: 'server.key',
  crl: 'crl.pem',
  index: 'index.json',
  readme: 'README.md'
} as const

export interface IssuedRecord {
  name: string
  serialHex: string
  subject: string
  notAfter: string
  /** 'issue' (we made the key) or 'sign' (from a CSR: the key is the requester's) */
  via: 'issue' | 'sign'
}

export interface RevokedRecord {
  serialHex: string
  date: string
  reason?: RevocationReason
  name?: string
}

export interface PkiIndex {
  version: 1
  /** the number of the last CRL written */
  crlNumber: number
  /** the CRL lifetime in days last given to `pki crl --days` (default 7), reused by `pki revoke` */
  crlDays?: number
  issued: IssuedRecord[]
  revoked: RevokedRecord[]
}

export interface LoadedPki extends DevPki {
  dir: string
  index: PkiIndex
}

async function exists (path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
}

/** The lock file of a PKI folder: held by one command from reading index.json to its last write. */
export const LOCK_FILE = '.lock'

/**
 * Run `fn` holding the folder's lock file (created with `wx`). Another command that
 * holds it is waited for, up to `timeoutMs` (10 s); then a one-line PkiError names the lock file.
 */
export async function withLock<T> (dir: string, fn: () => Promise<T>, options: { timeoutMs?: number } = {}): Promise<T> {
  const path = join(dir, LOCK_FILE)
  const deadline = Date.now() + (options.timeoutMs ?? 10e3)
  let handle
  for (;;) {
    try {
      handle = await open(path, 'wx', 0o644)
      break
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT') throw new PkiError(`no PKI in ${dir} (no such folder): run fastify-mtls-auth pki init first`)
      if (code !== 'EEXIST') throw err
      if (Date.now() >= deadline) throw new PkiError(`the PKI folder is busy: ${path} exists (another pki command is running; if none is, a crashed one left it: delete it)`)
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.floor(Math.random() * 30)))
    }
  }
  try {
    await handle.writeFile(`${process.pid}\n`)
    await handle.close()
    return await fn()
  } finally {
    await unlink(path).catch(() => {})
  }
}

/** Write a private key: the file is created with mode 0600 (never widened then narrowed); an existing file is replaced only with `force`. */
export async function writePrivateFile (path: string, data: string | Buffer, force: boolean): Promise<void> {
  if (force) await unlink(path).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') throw err })
  let handle
  try {
    handle = await open(path, 'wx', 0o600)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new PkiError(`${path} already exists (use --force to replace it)`)
    throw err
  }
  try {
    await handle.writeFile(data)
  } finally {
    await handle.close()
  }
}

/** Write a public file (certificate, CRL, index), replacing any old one atomically. */
export async function writePublicFile (path: string, data: string | Buffer): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`
  await writeFile(tmp, data, { mode: 0o644, flag: 'wx' })
  await rename(tmp, path)
}

export async function readIndex (dir: string): Promise<PkiIndex> {
  let text: string
  try {
    text = await readFile(join(dir, FILES.index), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new PkiError(`no PKI in ${dir} (no ${FILES.index}): run fastify-mtls-auth pki init first`)
    throw err
  }
  let index: PkiIndex
  try {
    index = JSON.parse(text) as PkiIndex
  } catch {
    throw new PkiError(`${join(dir, FILES.index)} is not valid JSON`)
  }
  if (index?.version !== 1 || !Array.isArray(index.issued) || !Array.isArray(index.revoked) || !Number.isSafeInteger(index.crlNumber) ||
    (index.crlDays !== undefined && (!Number.isSafeInteger(index.crlDays) || index.crlDays < 1))) {
    throw new PkiError(`${join(dir, FILES.index)} is not an index this version understands`)
  }
  for (const r of index.revoked) {
    if (r === null || typeof r !== 'object' || typeof r.serialHex !== 'string' || typeof r.date !== 'string' || Number.isNaN(new Date(r.date).getTime())) {
      throw new PkiError(`${join(dir, FILES.index)} has a revoked entry without a valid serialHex and date: ${JSON.stringify(r)}`)
    }
  }
  return index
}

export async function writeIndex (dir: string, index: PkiIndex): Promise<void> {
  await writePublicFile(join(dir, FILES.index), JSON.stringify(index, null, 2) + '\n')
}

async function readText (path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new PkiError(`${what} ${path} is missing`)
    throw err
  }
}

/** The PKI of a folder written by `writeDevPki`, with the CA keys. */
export async function loadPki (dir: string): Promise<LoadedPki> {
  const index = await readIndex(dir)
  const load = async (certFile: string, keyFile: string | undefined, what: string): Promise<Certificate> => {
    const key = keyFile === undefined ? undefined : loadKey(await readText(join(dir, keyFile), `the ${what} key`))
    return loadCertificate(await readText(join(dir, certFile), `the ${what} certificate`), key)
  }
  return {
    dir,
    index,
    root: await load(FILES.root, undefined, 'root CA'),
    clientCa: await load(FILES.clientCa, FILES.clientCaKey, 'client CA'),
    server: await load(FILES.server, undefined, 'server')
  }
}

/** The first file of FILES (any file `writeDevPki` writes) that already exists in `dir`. */
export async function holdsPki (dir: string): Promise<string | undefined> {
  for (const file of Object.values(FILES)) {
    if (await exists(join(dir, file))) return file
  }
  return undefined
}

/**
 * A fresh CRL of the client CA listing the index's revoked serials; bumps and records the CRL number.
 * Its lifetime is `days`, else the index's `crlDays` (the last `days` given), else 7; `days` is recorded.
 * index.json is written before the CRL, so a crash between the two never reuses a CRL number.
 * Call it holding the folder's lock (`withLock`).
 */
export async function writeCrl (pki: LoadedPki | (DevPki & { dir: string, index: PkiIndex }), options: { out?: string, days?: number } = {}): Promise<{ path: string, crlNumber: number, days: number }> {
  const index = pki.index
  const days = options.days ?? index.crlDays ?? 7
  index.crlNumber += 1
  if (options.days !== undefined) index.crlDays = options.days
  const thisUpdate = new Date(Date.now() - 5 * 60e3)
  const crl = await createCrl({
    issuer: pki.clientCa,
    revoked: index.revoked.map((r) => ({ serialHex: r.serialHex, date: new Date(r.date), reason: r.reason })),
    thisUpdate,
    nextUpdate: new Date(thisUpdate.getTime() + days * 86400e3),
    crlNumber: index.crlNumber
  })
  const path = options.out ?? join(pki.dir, FILES.crl)
  await writeIndex(pki.dir, index)
  await writePublicFile(path, crl.pem)
  return { path, crlNumber: index.crlNumber, days }
}

/** Write a new dev PKI into `dir` (created if missing), holding its lock. Refuses, before writing anything, a folder holding any file it would write, unless `force`. */
export async function writeDevPki (dir: string, pki: DevPki, options: { force?: boolean } = {}): Promise<LoadedPki> {
  await mkdir(dir, { recursive: true, mode: 0o755 })
  return await withLock(dir, () => writeDevPkiLocked(dir, pki, options.force === true))
}

async function writeDevPkiLocked (dir: string, pki: DevPki, force: boolean): Promise<LoadedPki> {
  const existing = await holdsPki(dir)
  if (existing !== undefined && !force) throw new PkiError(`${dir} already holds a PKI (${existing}); use --force to replace it`)
  if (force) {
    for (const file of Object.values(FILES)) await rm(join(dir, file), { force: true })
  }
  const keyPem = (key: Key | undefined): string => {
    if (key === undefined) throw new PkiError('a dev PKI certificate is missing its key')
    return key.privateKeyPem
  }
  await writePrivateFile(join(dir, FILES.rootKey), keyPem(pki.root.key), force)
  await writePrivateFile(join(dir, FILES.clientCaKey), keyPem(pki.clientCa.key), force)
  await writePrivateFile(join(dir, FILES.serverKey), keyPem(pki.server.key), force)
  await writePublicFile(join(dir, FILES.root), pki.root.pem)
  await writePublicFile(join(dir, FILES.clientCa), pki.clientCa.pem)
  await writePublicFile(join(dir, FILES.server), pki.server.pem)
  await writePublicFile(join(dir, FILES.readme), readme(pki))
  const loaded = { ...pki, dir, index: { version: 1 as const, crlNumber: 0, issued: [], revoked: [] } }
  await writeCrl(loaded)
  return loaded
}

/**
 * Write a client certificate (`<name>.pem`, `<name>-chain.pem`, and `<name>.key` when we hold the key) and record it in the index.
 * `force` replaces the files of `name`, but never a `<name>.pem` whose serial is not revoked in the index (revoke it first).
 * A certificate signed from a CSR (no key here) removes a `<name>.key` that does not match it; `removedKey` says so.
 * Call it holding the folder's lock (`withLock`).
 */
export async function writeClient (pki: LoadedPki, name: string, cert: Certificate, options: { force?: boolean, via: 'issue' | 'sign' }): Promise<string[] & { removedKey?: string }> {
  const force = options.force === true
  const files: string[] & { removedKey?: string } = [`${name}.pem`, `${name}-chain.pem`]
  const keyPath = join(pki.dir, `${name}.key`)
  const checked = cert.key === undefined ? files : [...files, `${name}.key`]
  if (!force) {
    for (const file of checked) {
      if (await exists(join(pki.dir, file))) throw new PkiError(`${join(pki.dir, file)} already exists (use --force to replace it, or another name)`)
    }
  }
  const pemPath = join(pki.dir, `${name}.pem`)
  if (force && await exists(pemPath)) {
    let old: Certificate | undefined
    try {
      old = loadCertificate(await readFile(pemPath))
    } catch {
      old = undefined // not a certificate: nothing that could still be in use
    }
    if (old !== undefined && !pki.index.revoked.some((r) => r.serialHex === old.serialHex)) {
      throw new PkiError(`${pemPath} (${old.subject}, serial ${old.serialHex}) is not revoked: revoke it first with pki revoke ${name}, then use --force`)
    }
  }
  if (cert.key !== undefined) {
    await writePrivateFile(keyPath, cert.key.privateKeyPem, force)
    files.push(`${name}.key`)
  } else if (await exists(keyPath)) {
    // the signed key is the requester's: a <name>.key here that does not match would make `pki p12` fail later
    let matches = false
    try {
      matches = loadKey(await readFile(keyPath)).publicKey.export({ type: 'spki', format: 'der' })
        .equals(new X509Certificate(cert.der).publicKey.export({ type: 'spki', format: 'der' }))
    } catch {
      matches = false
    }
    if (!matches) {
      await unlink(keyPath)
      files.removedKey = `${name}.key`
    }
  }
  await writePublicFile(join(pki.dir, `${name}.pem`), cert.pem)
  await writePublicFile(join(pki.dir, `${name}-chain.pem`), cert.pem + pki.clientCa.pem)
  pki.index.issued.push({ name, serialHex: cert.serialHex, subject: cert.subject, notAfter: cert.notAfter.toISOString(), via: options.via })
  await writeIndex(pki.dir, pki.index)
  return files
}

function readme (pki: DevPki): string {
  return `# Development PKI (fastify-mtls-auth)

Made by \`fastify-mtls-auth pki init\`. For development and tests only: the keys
are unencrypted. Keep the \`.key\` files private (they are created with mode 0600)
and never commit them.

**Warning:** \`root.pem\` is a development root. Do not trust it system-wide (OS or
browser trust store): anyone holding \`root.key\` or \`client-ca.key\` could then
impersonate any site to you. Trust it only in the client that needs it
(\`curl --cacert root.pem\`, undici's \`connect: { ca }\`, NODE_EXTRA_CA_CERTS for one process).

| file | what it is |
| --- | --- |
| \`root.pem\` | root CA certificate (${pki.root.subject}): clients trust it for the server certificate |
| \`root.key\` | root CA private key |
| \`client-ca.pem\` | client CA (${pki.clientCa.subject}), under the root: it issues the client certificates; give it to the plugin as \`ca\` and to the server as \`ca\` |
| \`client-ca.key\` | client CA private key |
| \`server.pem\`, \`server.key\` | server certificate for localhost, 127.0.0.1 and ::1, issued by the root |
| \`crl.pem\` | CRL of the client CA: the plugin's \`crl\` option |
| \`index.json\` | issued and revoked serial numbers, and the last CRL number |
| \`<name>.pem\`, \`<name>.key\` | a client certificate and its key (\`pki issue\`) |
| \`<name>-chain.pem\` | the client certificate followed by the client CA: what a client sends |
| \`<name>.p12\` | PKCS#12 bundle for browsers, curl and Java (\`pki p12\`) |

Next commands (add \`--dir <this folder>\` when it is not ./pki):

    npx fastify-mtls-auth pki issue alice --o Acme --spiffe spiffe://example.org/alice
    npx fastify-mtls-auth pki csr bob --cn bob          # on the partner's side: a key and bob.csr
    npx fastify-mtls-auth pki sign bob.csr --name bob --cn bob --o Partner
    npx fastify-mtls-auth pki revoke alice --reason keyCompromise
    npx fastify-mtls-auth pki crl
    MTLS_P12_PASSWORD=... npx fastify-mtls-auth pki p12 alice

A server with the plugin:

    https: { key: server.key, cert: server.pem, ca: client-ca.pem, requestCert: true, rejectUnauthorized: false }
    app.register(fastifyMtls, { ca: client-ca.pem, crl: crl.pem })

A client: \`curl --cacert root.pem --cert alice-chain.pem --key alice.key https://localhost:3000/\`
`
}
