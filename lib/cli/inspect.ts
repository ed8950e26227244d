// fastify-mtls-auth inspect <cert|chain file> [--json]: a certificate as the plugin sees it.
import { open, stat, type FileHandle } from 'node:fs/promises'
import { InputError } from '../der/pem.js'
import { inspectCertificates, keyText, type CertificateReport } from '../explain.js'
import { CliError, parse, type Command } from './common.js'

const USAGE = 'fastify-mtls-auth inspect <cert|chain file> [--json]'

const HELP = `usage: ${USAGE}

Shows each certificate of a PEM bundle or a DER file, in order, with the identity
fields exactly as the plugin builds them (request.clientIdentity): subject, issuer,
serial, validity, SANs (DNS, URI, email, IP), SPIFFE ID, SHA-256 fingerprint,
x5t#S256 thumbprint, SPKI hash; and the profile: key type and size, signature
algorithm, key usage, extended key usage, basic constraints, key identifiers.

options:
  --json     print a JSON document { certificates: [...] } instead of text
  --help     this text

exit codes: 0 shown, 2 bad input (missing file, not a regular file, larger than
16 MiB, not a certificate).`

/** The largest input file read: certificates, CRLs and policies are far smaller. */
export const MAX_INPUT_BYTES = 16 * 1024 * 1024

/**
 * Reads a file for a command, as one line on failure. Only a regular file of at most
 * MAX_INPUT_BYTES: a device (/dev/zero), a FIFO or a huge file is refused before reading.
 */
export async function readInput (path: string, what: string): Promise<Buffer> {
  let handle: FileHandle | undefined
  try {
    // stat before opening: opening a FIFO would wait for a writer
    const before = await stat(path)
    if (!before.isFile()) throw new CliError(`${what} ${path}: ${before.isDirectory() ? 'is a directory' : 'not a regular file'}`)
    handle = await open(path, 'r')
    const st = await handle.stat()
    if (!st.isFile()) throw new CliError(`${what} ${path}: not a regular file`)
    if (st.size > MAX_INPUT_BYTES) throw new CliError(`${what} ${path}: too large (${st.size} bytes, the limit is ${MAX_INPUT_BYTES} bytes = 16 MiB)`)
    // read at most one byte more than its size: a file that grows while it is read is refused
    const buf = Buffer.alloc(st.size + 1)
    let n = 0
    while (n < buf.length) {
      const { bytesRead } = await handle.read(buf, n, buf.length - n, n)
      if (bytesRead === 0) break
      n += bytesRead
    }
    if (n > st.size) throw new CliError(`${what} ${path}: the file grew while it was read`)
    return buf.subarray(0, n)
  } catch (err) {
    if (err instanceof CliError) throw err
    const e = err as NodeJS.ErrnoException
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'is a directory' : e.code === 'EACCES' ? 'permission denied' : e.message
    throw new CliError(`${what} ${path}: ${why}`)
  } finally {
    await handle?.close()
  }
}

function list (xs: readonly string[]): string {
  return xs.length === 0 ? '(none)' : xs.join(', ')
}

export function formatCertificate (r: CertificateReport, heading: string): string {
  const bc = r.basicConstraints
  const lines = [
    heading,
    `  subject:          ${r.subject.rfc4514 || '(empty)'}`,
    `  issuer:           ${r.issuer.rfc4514 || '(empty)'}`,
    `  serial:           ${r.serialNumber}`,
    `  valid:            ${r.notBefore.toISOString()} to ${r.notAfter.toISOString()}`,
    `  SAN DNS:          ${list(r.san.dns)}`,
    `  SAN URI:          ${list(r.san.uri)}`,
    `  SAN email:        ${list(r.san.email)}`,
    `  SAN IP:           ${list(r.san.ip)}`
  ]
  if (r.otherSan.length > 0) lines.push(`  SAN other:        ${r.otherSan.join(', ')}`)
  lines.push(
    `  SPIFFE ID:        ${r.spiffeId ?? '(none)'}`,
    `  fingerprint256:   ${r.fingerprint256}`,
    `  x5t#S256:         ${r.thumbprintSha256}`,
    `  spkiSha256:       ${r.spkiSha256}`,
    `  key:              ${keyText(r.key)}`,
    `  signature:        ${r.signatureAlgorithm}`,
    `  key usage:        ${r.keyUsage === null ? '(no extension: any)' : list(r.keyUsage)}`,
    `  ext. key usage:   ${r.extKeyUsage === null ? '(no extension: any purpose)' : list(r.extKeyUsage)}`,
    `  CA:               ${bc === null ? 'no (no basicConstraints)' : bc.ca ? `yes${bc.pathLen === null ? '' : `, pathLen ${bc.pathLen}`}` : 'no'}${r.selfIssued ? ', self-issued' : ''}`,
    `  subject key id:   ${r.subjectKeyId ?? '(none)'}`,
    `  authority key id: ${r.authorityKeyId ?? '(none)'}`
  )
  if (r.crlDistributionPoints.length > 0) lines.push(`  CRL DPs:          ${r.crlDistributionPoints.join(', ')}`)
  return lines.join('\n')
}

export const command: Command = {
  summary: 'show a certificate or chain as the plugin sees it (identity, SANs, SPIFFE ID, hashes, key)',
  help: HELP,
  async run (args, io) {
    const { values, positionals } = parse(args, { json: { type: 'boolean' } }, 1, USAGE)
    const file = positionals[0]
    if (file === undefined) throw new CliError(`a certificate file is required (usage: ${USAGE})`)
    const bytes = await readInput(file, 'cannot read')
    let reports: CertificateReport[]
    try {
      reports = inspectCertificates(bytes, file)
    } catch (err) {
      if (err instanceof InputError) throw new CliError(`${err.message.split('\n')[0] as string} (expected a PEM or DER certificate)`)
      throw err
    }
    if (values.json === true) {
      io.out(JSON.stringify({ certificates: reports }, null, 2))
      return 0
    }
    io.out(reports.map((r, i) => formatCertificate(r, reports.length === 1 ? 'certificate' : `certificate ${i + 1} of ${reports.length}${i === 0 ? ' (leaf)' : ''}`)).join('\n\n'))
    return 0
  }
}
