// A development PKI in a folder, for the `pki` command: PEM files, private keys
// created with mode 0600, an index of issued and revoked serials, a README.
import { Buffer } from 'node:buffer'
import { randomBytes } from 'node:crypto'
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
  if (index?.version !== 1 || !Array.isArray(index.issued) || !Array.isArray(index.revoked) || !Number.isSafeInteger(index.crlNumber)) {
    throw new PkiError(`${join(dir, FILES.index)} is not an index this version understands`)
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

/** Whether `dir` already holds a PKI (any of its CA files or its index). */
export async function holdsPki (dir: string): Promise<string | undefined> {
  for (const file of [FILES.index, FILES.root, FILES.rootKey, FILES.clientCa, FILES.clientCaKey]) {
    if (await exists(join(dir, file))) return file
  }
  return undefined
}

/** A fresh CRL of the client CA listing the index's revoked serials; bumps and records the CRL number. */
export async function writeCrl (pki: LoadedPki | (DevPki & { dir: string, index: PkiIndex }), options: { out?: string, days?: number } = {}): Promise<{ path: string, crlNumber: number }> {
  const index = pki.index
  index.crlNumber += 1
  const thisUpdate = new Date(Date.now() - 5 * 60e3)
  const crl = await createCrl({
    issuer: pki.clientCa,
    revoked: index.revoked.map((r) => ({ serialHex: r.serialHex, date: new Date(r.date), reason: r.reason })),
    thisUpdate,
    nextUpdate: new Date(thisUpdate.getTime() + (options.days ?? 7) * 86400e3),
    crlNumber: index.crlNumber
  })
  const path = options.out ?? join(pki.dir, FILES.crl)
  await writePublicFile(path, crl.pem)
  await writeIndex(pki.dir, index)
  return { path, crlNumber: index.crlNumber }
}

/** Write a new dev PKI into `dir` (created if missing). Refuses a folder that already holds one unless `force`. */
export async function writeDevPki (dir: string, pki: DevPki, options: { force?: boolean } = {}): Promise<LoadedPki> {
  const force = options.force === true
  await mkdir(dir, { recursive: true, mode: 0o755 })
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

/** Write a client certificate (`<name>.pem`, `<name>-chain.pem`, and `<name>.key` when we hold the key) and record it in the index. */
export async function writeClient (pki: LoadedPki, name: string, cert: Certificate, options: { force?: boolean, via: 'issue' | 'sign' }): Promise<string[]> {
  const force = options.force === true
  const files = [`${name}.pem`, `${name}-chain.pem`]
  if (!force) {
    for (const file of [...files, `${name}.key`]) {
      if (await exists(join(pki.dir, file))) throw new PkiError(`${join(pki.dir, file)} already exists (use --force to replace it, or another name)`)
    }
  }
  if (cert.key !== undefined) {
    await writePrivateFile(join(pki.dir, `${name}.key`), cert.key.privateKeyPem, force)
    files.push(`${name}.key`)
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
