// `fastify-mtls-auth pki`: a development PKI in a folder (init, issue, csr, sign, revoke, crl, p12).
// The PKI libraries (node-forge, @peculiar/x509) are optional dependencies: they are
// imported only when a subcommand runs, so `fastify-mtls-auth --help` works without them.
import { readFile } from 'node:fs/promises'
import { isAbsolute, join, relative } from 'node:path'
import { CliError, parse, wantsHelp, type Command, type Io, type Parsed } from './common.js'
import type * as PkiModule from '../pki/index.js'
import type * as DirectoryModule from '../pki/directory.js'

type Pki = typeof PkiModule
type Directory = typeof DirectoryModule

const KEY_TYPES = ['rsa', 'ec', 'ed25519']
const REASONS = ['unspecified', 'keyCompromise', 'caCompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation']
const DEFAULT_DIR = './pki'

const HELP: Record<string, string> = {
  init: `usage: fastify-mtls-auth pki init [dir] [--key rsa|ec|ed25519] [--force]

Creates a development PKI in dir (default ./pki): a root CA, an intermediate
client CA, a server certificate for localhost, 127.0.0.1 and ::1, an empty CRL,
index.json and a README.md describing each file. Private keys are written with
mode 0600. Refuses, before writing anything, a folder holding any file it
would write (README.md, crl.pem, ... included) unless --force. root.pem is a
development root: trust it only in the client that needs it, never system-wide.

  --key TYPE   key type of every key: ec (P-256, default), rsa (2048) or ed25519
  --force      replace an existing PKI in dir (its certificates stop verifying)`,
  issue: `usage: fastify-mtls-auth pki issue <name> [--cn CN] [--o ORG] [--ou UNIT]... [--dns NAME]...
         [--uri URI]... [--spiffe spiffe://...] [--email ADDRESS]... [--days N] [--key rsa|ec|ed25519]
         [--dir DIR] [--force]

Issues a client certificate (clientAuth) from the client CA and writes
<name>.pem, <name>.key (mode 0600) and <name>-chain.pem (the certificate then
the client CA: what a client sends) into the PKI folder.

  --cn CN          common name (default: the name)
  --o, --ou        organisation, organisational unit (--ou repeatable)
  --dns, --uri, --email   subject alternative names (each repeatable)
  --spiffe ID      a SPIFFE ID, added as a URI name (spiffe://trust-domain/path)
  --days N         validity in days (default 397)
  --key TYPE       key type (default: the client CA's)
  --dir DIR        the PKI folder (default ./pki)
  --force          replace existing files of that name; refused while <name>.pem
                   is not revoked (revoke it first with pki revoke <name>)`,
  csr: `usage: fastify-mtls-auth pki csr <name> [--cn CN] [--o ORG] [--ou UNIT]... [--dns NAME]... [--uri URI]...
         [--spiffe spiffe://...] [--email ADDRESS]... [--key rsa|ec|ed25519] [--dir DIR] [--force]

What a partner runs on their side: a new key, <name>.key (mode 0600), and a
certificate signing request, <name>.csr, in DIR (default: the current folder).
Send the .csr to the PKI's owner (pki sign); the key never leaves.

  --cn CN     common name (default: the name)
  --o, --ou, --dns, --uri, --email, --spiffe   as for pki issue (the signer decides what is used)
  --key TYPE  key type: ec (default), rsa or ed25519
  --dir DIR   where to write the files (default: the current folder)
  --force     replace existing files of that name`,
  sign: `usage: fastify-mtls-auth pki sign <csr-file> --name <name> [--cn CN] [--o ORG] [--ou UNIT]...
         [--dns NAME]... [--uri URI]... [--spiffe spiffe://...] [--email ADDRESS]... [--days N] [--dir DIR] [--force]

Signs a certificate signing request with the client CA: writes <name>.pem and
<name>-chain.pem into the PKI folder. The CSR's own signature must verify. The
certificate's subject and names come from these flags (--cn defaults to the
name), never from the CSR: check who asked before you sign. A <name>.key in
the folder that does not match the CSR's key is removed (the key is the
requester's).

  --name NAME      the files' name (required)
  --cn, --o, --ou, --dns, --uri, --email, --spiffe   as for pki issue
  --days N         validity in days (default 397)
  --dir DIR        the PKI folder (default ./pki)
  --force          replace existing files of that name; refused while <name>.pem
                   is not revoked (revoke it first with pki revoke <name>)`,
  revoke: `usage: fastify-mtls-auth pki revoke <name|certificate-file> [--reason REASON] [--dir DIR]

Revokes a certificate issued by the client CA: records it in index.json and
writes a fresh crl.pem (the plugin's crl option), valid for the days last
given to pki crl --days (default 7).

  --reason REASON   ${REASONS.join(', ')}
  --dir DIR         the PKI folder (default ./pki)`,
  crl: `usage: fastify-mtls-auth pki crl [--out FILE] [--days N] [--dir DIR]

Re-issues the client CA's CRL (new thisUpdate, next CRL number) with every
revoked serial of index.json.

  --out FILE   where to write it (default DIR/crl.pem)
  --days N     days until nextUpdate (default: the last --days given, else 7);
               remembered in index.json for pki revoke
  --dir DIR    the PKI folder (default ./pki)`,
  p12: `usage: fastify-mtls-auth pki p12 <name> [--password-file FILE | --password PASSWORD] [--out FILE] [--dir DIR]

Writes <name>.p12 (mode 0600): the client certificate, its key and the client
CA, for browsers, curl (--cert-type P12) and Java (keytool, javax.net.ssl.keyStore).
Encrypted as OpenSSL 3 does by default (AES-256-CBC, PBKDF2-SHA256, HMAC-SHA256).

The password, in order of preference: --password-file FILE (its first line),
the environment variable MTLS_P12_PASSWORD, or --password (visible to other
users in the process list and kept in your shell history: avoid it). The
password is never printed.

  --out FILE   default DIR/<name>.p12
  --dir DIR    the PKI folder (default ./pki)
  --force      replace an existing bundle`
}

const SUMMARY = 'development PKI: init, issue, csr, sign, revoke, crl, p12'

const USAGE = `usage: fastify-mtls-auth pki <subcommand> [options]

A development PKI in a folder (default ./pki). Not for production.

subcommands:
  init [dir]          root CA, client CA, server certificate for localhost
  issue <name>        a client certificate and its key
  csr <name>          a key and a certificate signing request (the partner's side)
  sign <csr>          sign a CSR with the client CA
  revoke <name|file>  revoke a certificate and write a fresh CRL
  crl                 re-issue the CRL
  p12 <name>          a PKCS#12 bundle for browsers, curl and Java

init, issue, sign, revoke and crl hold the folder's lock file DIR/.lock while
they run; another command waits for it up to 10 s.
fastify-mtls-auth pki <subcommand> --help shows its options.
Requires the optional dependencies node-forge and @peculiar/x509.`

interface Libs { pki: Pki, dir: Directory }
/** The PKI libraries, loaded once a subcommand's arguments have been checked. */
type GetLibs = () => Promise<Libs>

async function loadLibs (): Promise<Libs> {
  try {
    const [pki, dir] = await Promise.all([import('../pki/index.js'), import('../pki/directory.js')])
    return { pki, dir }
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    if (e.code === 'ERR_MODULE_NOT_FOUND' || e.code === 'MODULE_NOT_FOUND') {
      const missing = /['"]((?:@[^/'"]+\/)?[^/'"]+)['"]/.exec(e.message)?.[1] ?? 'a library'
      throw new CliError(`the pki command needs the optional dependencies node-forge, @peculiar/x509 and reflect-metadata (${missing} is not installed): reinstall without --omit=optional`)
    }
    throw err
  }
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

/** The PKI folder's own files (lib/pki/directory.ts FILES), which a client name must not shadow. */
const RESERVED_NAMES = new Set(['root', 'client-ca', 'server', 'crl', 'index', 'readme'])

function checkName (name: string | undefined, what: string): string {
  if (name === undefined) throw new CliError(`missing ${what}`)
  if (!NAME_RE.test(name) || name.includes('..')) throw new CliError(`bad ${what} ${JSON.stringify(name)}: use letters, digits, '.', '_' and '-' (at most 64, no path)`)
  if (RESERVED_NAMES.has(name.toLowerCase()) || /\.(pem|key|csr|p12)$/.test(name) || name.endsWith('-chain')) throw new CliError(`${what} ${JSON.stringify(name)} is reserved or ends like a file name: choose another`)
  return name
}

function str (parsed: Parsed, flag: string): string | undefined {
  const value = parsed.values[flag]
  return typeof value === 'string' ? value : undefined
}

function list (parsed: Parsed, flag: string): string[] {
  const value = parsed.values[flag]
  if (value === undefined) return []
  return (Array.isArray(value) ? value : [value]).filter((v): v is string => typeof v === 'string')
}

function positiveInt (parsed: Parsed, flag: string, max: number): number | undefined {
  const text = str(parsed, flag)
  if (text === undefined) return undefined
  if (!/^[0-9]+$/.test(text) || Number(text) < 1 || Number(text) > max) throw new CliError(`--${flag} must be a whole number from 1 to ${max} (got ${JSON.stringify(text)})`)
  return Number(text)
}

function keyType (parsed: Parsed): PkiModule.KeyType | undefined {
  const type = str(parsed, 'key')
  if (type !== undefined && !KEY_TYPES.includes(type)) throw new CliError(`--key must be one of ${KEY_TYPES.join(', ')} (got ${JSON.stringify(type)})`)
  return type as PkiModule.KeyType | undefined
}

function nonEmpty (parsed: Parsed, flag: string): string | undefined {
  const value = str(parsed, flag)
  if (value !== undefined && value.trim() === '') throw new CliError(`--${flag} must not be empty`)
  return value
}

const SUBJECT_FLAGS = {
  cn: { type: 'string' },
  o: { type: 'string' },
  ou: { type: 'string', multiple: true },
  dns: { type: 'string', multiple: true },
  uri: { type: 'string', multiple: true },
  email: { type: 'string', multiple: true },
  spiffe: { type: 'string' }
} as const

const DNS_RE = /^(\*\.)?(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/
const EMAIL_RE = /^[^\s@"(),:;<>[\\\]]+@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/
const SPIFFE_RE = /^spiffe:\/\/[a-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/

/** Subject and names from the flags; every value checked. */
function subjectFlags (parsed: Parsed, name: string): { subject: PkiModule.SubjectName, altNames: PkiModule.AltNames, spiffe?: string } {
  const dns = list(parsed, 'dns')
  for (const d of dns) if (!DNS_RE.test(d)) throw new CliError(`--dns ${JSON.stringify(d)} is not a DNS name`)
  const email = list(parsed, 'email')
  for (const e of email) if (!EMAIL_RE.test(e)) throw new CliError(`--email ${JSON.stringify(e)} does not look like an address (user@example.com)`)
  const uri = list(parsed, 'uri')
  for (const u of uri) {
    if (!/^[A-Za-z][A-Za-z0-9+.-]*:\S+$/.test(u) || !URL.canParse(u)) throw new CliError(`--uri ${JSON.stringify(u)} is not an absolute URI`)
  }
  const spiffe = str(parsed, 'spiffe')
  if (spiffe !== undefined) {
    if (!spiffe.startsWith('spiffe://')) throw new CliError(`--spiffe must start with spiffe:// (got ${JSON.stringify(spiffe)})`)
    if (!SPIFFE_RE.test(spiffe) || spiffe.split('/').slice(3).some((s) => s === '.' || s === '..')) {
      throw new CliError(`--spiffe ${JSON.stringify(spiffe)} is not a SPIFFE ID: spiffe://lowercase-trust-domain/path, no empty, '.' or '..' segments`)
    }
  }
  const ou = list(parsed, 'ou')
  for (const u of ou) if (u.trim() === '') throw new CliError('--ou must not be empty')
  const subject: PkiModule.SubjectName = { cn: nonEmpty(parsed, 'cn') ?? name }
  const o = nonEmpty(parsed, 'o')
  if (o !== undefined) subject.o = o
  if (ou.length > 0) subject.ou = ou
  for (const [flag, value] of Object.entries(subject)) {
    for (const v of Array.isArray(value) ? value : [value]) if (typeof v === 'string' && v.length > 64) throw new CliError(`--${flag} is longer than 64 characters`)
  }
  const altNames: PkiModule.AltNames = { dns, email, uri: spiffe === undefined ? uri : [...uri, spiffe] }
  return spiffe === undefined ? { subject, altNames } : { subject, altNames, spiffe }
}

function shown (path: string): string {
  const rel = relative(process.cwd(), path)
  return rel === '' ? '.' : rel.startsWith('..') || isAbsolute(rel) ? path : rel
}

// ---------------------------------------------------------------- subcommands

async function init (args: string[], io: Io, getLibs: GetLibs): Promise<number> {
  const parsed = parse(args, { key: { type: 'string' }, force: { type: 'boolean' } }, 1, 'pki init [dir] [--key rsa|ec|ed25519] [--force]')
  const dir = parsed.positionals[0] ?? DEFAULT_DIR
  const force = parsed.values.force === true
  const type = keyType(parsed) ?? 'ec'
  const libs = await getLibs()
  const existing = await libs.dir.holdsPki(dir)
  if (existing !== undefined && !force) throw new CliError(`${dir} already holds a PKI (${existing}); use --force to replace it`)
  const pki = await libs.pki.createDevPki({ keyType: type, onProgress: (step) => io.err(step) })
  await libs.dir.writeDevPki(dir, pki, { force })
  const F = libs.dir.FILES
  io.out([
    `Development PKI written to ${shown(dir)}:`,
    `  ${F.root} (${pki.root.subject}), ${F.clientCa} (${pki.clientCa.subject}),`,
    `  ${F.server} for localhost, 127.0.0.1 and ::1, ${F.crl}, ${F.index}, ${F.readme}`,
    `  ${F.rootKey}, ${F.clientCaKey}, ${F.serverKey} (mode 0600: keep them private)`,
    '',
    'Next: fastify-mtls-auth pki issue alice' + (dir === DEFAULT_DIR || dir === 'pki' ? '' : ` --dir ${dir}`)
  ].join('\n'))
  return 0
}

async function issue (args: string[], io: Io, getLibs: GetLibs): Promise<number> {
  const parsed = parse(args, { ...SUBJECT_FLAGS, days: { type: 'string' }, key: { type: 'string' }, dir: { type: 'string' }, force: { type: 'boolean' } }, 1, 'pki issue <name> [--cn ...] [--dir DIR]')
  const name = checkName(parsed.positionals[0], 'name')
  const { subject, altNames } = subjectFlags(parsed, name)
  const days = positiveInt(parsed, 'days', 3650)
  const type = keyType(parsed)
  const dir = str(parsed, 'dir') ?? DEFAULT_DIR
  const libs = await getLibs()
  const { cert, files } = await libs.dir.withLock(dir, async () => {
    const pki = await libs.dir.loadPki(dir)
    const key = await libs.pki.generateKey(type ?? pki.clientCa.key?.type ?? 'ec')
    const cert = await libs.pki.createCertificate({ subject, key, issuer: pki.clientCa, altNames, extKeyUsage: ['clientAuth'], days })
    return { cert, files: await libs.dir.writeClient(pki, name, cert, { force: parsed.values.force === true, via: 'issue' }) }
  })
  io.out(`${cert.subject} (serial ${cert.serialHex}, valid until ${cert.notAfter.toISOString()}): ${files.map((f) => shown(join(dir, f))).join(', ')}`)
  return 0
}

async function csr (args: string[], io: Io, getLibs: GetLibs): Promise<number> {
  const parsed = parse(args, { ...SUBJECT_FLAGS, key: { type: 'string' }, dir: { type: 'string' }, force: { type: 'boolean' } }, 1, 'pki csr <name> [--cn ...] [--key TYPE] [--dir DIR]')
  const name = checkName(parsed.positionals[0], 'name')
  const { subject, altNames } = subjectFlags(parsed, name)
  const type = keyType(parsed) ?? 'ec'
  const dir = str(parsed, 'dir') ?? '.'
  const force = parsed.values.force === true
  const csrPath = join(dir, `${name}.csr`)
  if (!force && await readFile(csrPath).then(() => true, () => false)) throw new CliError(`${csrPath} already exists (use --force to replace it)`)
  const libs = await getLibs()
  const key = await libs.pki.generateKey(type)
  const pem = await libs.pki.createCsr({ subject, key, altNames })
  await libs.dir.writePrivateFile(join(dir, `${name}.key`), key.privateKeyPem, force)
  await libs.dir.writePublicFile(csrPath, pem)
  io.out(`${shown(join(dir, `${name}.key`))} (mode 0600: it stays with you) and ${shown(csrPath)} (send it to the PKI's owner: fastify-mtls-auth pki sign ${name}.csr --name ${name})`)
  return 0
}

async function sign (args: string[], io: Io, getLibs: GetLibs): Promise<number> {
  const parsed = parse(args, { ...SUBJECT_FLAGS, name: { type: 'string' }, days: { type: 'string' }, dir: { type: 'string' }, force: { type: 'boolean' } }, 1, 'pki sign <csr-file> --name <name> [--cn ...] [--dir DIR]')
  const csrFile = parsed.positionals[0]
  if (csrFile === undefined) throw new CliError('missing the CSR file (usage: pki sign <csr-file> --name <name>)')
  const name = checkName(str(parsed, 'name'), '--name')
  const { subject, altNames } = subjectFlags(parsed, name)
  const days = positiveInt(parsed, 'days', 3650)
  const dir = str(parsed, 'dir') ?? DEFAULT_DIR
  let text: string
  try {
    text = await readFile(csrFile, 'utf8')
  } catch (err) {
    throw new CliError(`cannot read ${csrFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  const libs = await getLibs()
  const info = await libs.pki.readCsr(text)
  const { cert, files } = await libs.dir.withLock(dir, async () => {
    const pki = await libs.dir.loadPki(dir)
    const cert = await libs.pki.signCsr(text, { subject, issuer: pki.clientCa, altNames, extKeyUsage: ['clientAuth'], days })
    return { cert, files: await libs.dir.writeClient(pki, name, cert, { force: parsed.values.force === true, via: 'sign' }) }
  })
  const asked = info.subject === cert.subject ? '' : ` (the CSR asked for ${JSON.stringify(info.subject)}; ignored)`
  const removed = files.removedKey === undefined ? '' : `; removed ${shown(join(dir, files.removedKey))} (it did not match: the key is the requester's)`
  io.out(`${cert.subject}${asked}, ${info.keyType} key, serial ${cert.serialHex}, valid until ${cert.notAfter.toISOString()}: ${files.map((f) => shown(join(dir, f))).join(', ')}${removed}`)
  return 0
}

async function revoke (args: string[], io: Io, getLibs: GetLibs): Promise<number> {
  const parsed = parse(args, { reason: { type: 'string' }, dir: { type: 'string' } }, 1, 'pki revoke <name|certificate-file> [--reason REASON] [--dir DIR]')
  const target = parsed.positionals[0]
  if (target === undefined) throw new CliError('missing the certificate to revoke: a name or a certificate file')
  const reason = str(parsed, 'reason')
  if (reason !== undefined && !REASONS.includes(reason)) throw new CliError(`--reason must be one of ${REASONS.join(', ')} (got ${JSON.stringify(reason)})`)
  const dir = str(parsed, 'dir') ?? DEFAULT_DIR
  const libs = await getLibs()
  return await libs.dir.withLock(dir, async () => {
    const pki = await libs.dir.loadPki(dir)
    const byName = NAME_RE.test(target) && !target.endsWith('.pem') && !target.includes('/')
    const path = byName ? join(dir, `${target}.pem`) : target
    let pem: string
    try {
      pem = await readFile(path, 'utf8')
    } catch (err) {
      throw new CliError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`)
    }
    const cert = libs.pki.loadCertificate(pem)
    const { X509Certificate } = await import('node:crypto')
    const x = new X509Certificate(cert.der)
    if (pki.clientCa.key === undefined || !x.checkIssued(new X509Certificate(pki.clientCa.der)) || !x.verify(pki.clientCa.key.publicKey)) {
      throw new CliError(`${shown(path)} was not issued by this PKI's client CA (${pki.clientCa.subject})`)
    }
    const already = pki.index.revoked.find((r) => r.serialHex === cert.serialHex)
    if (already !== undefined) throw new CliError(`${cert.subject} (serial ${cert.serialHex}) is already revoked (since ${already.date})`)
    const record = pki.index.issued.find((r) => r.serialHex === cert.serialHex)
    pki.index.revoked.push({
      serialHex: cert.serialHex,
      date: new Date().toISOString(),
      ...(reason === undefined ? {} : { reason: reason as PkiModule.RevocationReason }),
      ...(record === undefined ? {} : { name: record.name })
    })
    const written = await libs.dir.writeCrl(pki)
    io.out(`revoked ${cert.subject} (serial ${cert.serialHex}${reason === undefined ? '' : `, ${reason}`}); CRL #${written.crlNumber} (next update in ${written.days} days) written to ${shown(written.path)}: reload it into the plugin (crl option, or app.mtls.reload({ crl }))`)
    return 0
  })
}

async function crl (args: string[], io: Io, getLibs: GetLibs): Promise<number> {
  const parsed = parse(args, { out: { type: 'string' }, days: { type: 'string' }, dir: { type: 'string' } }, 0, 'pki crl [--out FILE] [--days N] [--dir DIR]')
  const days = positiveInt(parsed, 'days', 365)
  const dir = str(parsed, 'dir') ?? DEFAULT_DIR
  const libs = await getLibs()
  const out = str(parsed, 'out')
  const { written, count } = await libs.dir.withLock(dir, async () => {
    const pki = await libs.dir.loadPki(dir)
    const written = await libs.dir.writeCrl(pki, { ...(out === undefined ? {} : { out }), ...(days === undefined ? {} : { days }) })
    return { written, count: pki.index.revoked.length }
  })
  io.out(`CRL #${written.crlNumber} (${count} revoked, next update in ${written.days} days) written to ${shown(written.path)}`)
  return 0
}

async function p12 (args: string[], io: Io, getLibs: GetLibs): Promise<number> {
  const parsed = parse(args, { password: { type: 'string' }, 'password-file': { type: 'string' }, out: { type: 'string' }, dir: { type: 'string' }, force: { type: 'boolean' } }, 1, 'pki p12 <name> [--password-file FILE] [--out FILE] [--dir DIR]')
  const name = checkName(parsed.positionals[0], 'name')
  const dir = str(parsed, 'dir') ?? DEFAULT_DIR
  const passwordFile = str(parsed, 'password-file')
  if (passwordFile !== undefined && str(parsed, 'password') !== undefined) throw new CliError('give --password-file or --password, not both')
  let password: string | undefined
  if (passwordFile !== undefined) {
    try {
      password = (await readFile(passwordFile, 'utf8')).split(/\r?\n/)[0]
    } catch (err) {
      throw new CliError(`cannot read the password file ${passwordFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
  } else {
    password = str(parsed, 'password') ?? process.env.MTLS_P12_PASSWORD
  }
  if (password === undefined || password === '') throw new CliError('a non-empty password is needed: --password-file FILE, the MTLS_P12_PASSWORD environment variable, or --password')
  const libs = await getLibs()
  const pki = await libs.dir.loadPki(dir)
  const read = async (file: string, what: string): Promise<string> => {
    try {
      return await readFile(join(dir, file), 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      throw new CliError(what === 'key'
        ? `no key ${shown(join(dir, file))}: a certificate signed from a CSR has its key on the requester's side (they make the .p12 with openssl pkcs12 -export)`
        : `no certificate ${shown(join(dir, file))}: issue it first (fastify-mtls-auth pki issue ${name})`)
    }
  }
  const certPem = await read(`${name}.pem`, 'certificate')
  const key = libs.pki.loadKey(await read(`${name}.key`, 'key'))
  const certificate = libs.pki.loadCertificate(certPem, key)
  const bundle = libs.pki.createPkcs12({ key, certificate, chain: [pki.clientCa], password, friendlyName: name })
  const out = str(parsed, 'out') ?? join(dir, `${name}.p12`)
  await libs.dir.writePrivateFile(out, bundle, parsed.values.force === true)
  io.out(`${shown(out)} (mode 0600): ${certificate.subject} with its key and the client CA. curl --cert-type P12 --cert ${shown(out)}:PASSWORD ...; browsers and Java import it as PKCS#12`)
  return 0
}

const SUBCOMMANDS: Record<string, (args: string[], io: Io, getLibs: GetLibs) => Promise<number>> = { init, issue, csr, sign, revoke, crl, p12 }

async function run (args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args
  if (sub === undefined) throw new CliError('missing subcommand: init, issue, csr, sign, revoke, crl or p12 (fastify-mtls-auth pki --help)')
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    io.out(USAGE)
    return 0
  }
  const handler = Object.hasOwn(SUBCOMMANDS, sub) ? SUBCOMMANDS[sub] : undefined
  if (handler === undefined) throw new CliError(`unknown pki subcommand ${JSON.stringify(sub)}: use init, issue, csr, sign, revoke, crl or p12`)
  if (wantsHelp(rest)) {
    io.out(HELP[sub] as string)
    return 0
  }
  let libs: Promise<Libs> | undefined
  try {
    return await handler(rest, io, () => (libs ??= loadLibs()))
  } catch (err) {
    if ((err as Error)?.name === 'PkiError') throw new CliError((err as Error).message)
    throw err
  }
}

export const command: Command = { summary: SUMMARY, help: USAGE, run }
