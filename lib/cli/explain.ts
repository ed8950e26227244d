// fastify-mtls-auth explain: runs the plugin's verifier and policy compiler on a certificate
// and prints every check with its outcome, then the code the plugin would send and what to do.
import { existsSync, realpathSync } from 'node:fs'
import { extname, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { InputError, toDerList } from '../der/pem.js'
import { getCrl } from '../der/store.js'
import { explainChain, identityFields, readCertificates, type Explanation, type ExplainStep, type Hint, type PolicyLine } from '../explain.js'
import { PolicyError } from '../policy.js'
import type { ClientIdentity, LabelledCertificate, Policy } from '../types.js'
import { CliError, parse, type Command } from './common.js'
import { readInput } from './inspect.js'

const USAGE = 'fastify-mtls-auth explain --cert <chain> --ca <anchors> [--ca ...] [options]'

const HELP = `usage: ${USAGE}

Runs the plugin's own verifier (verifyCertificateChain) and policy compiler on a
certificate and prints each check with its outcome (✓ passed, ✗ failed, – not
reached or not checked), then the FST_MTLS_* code the plugin would send, the
verifier's reason, and what to do about it.

options:
  --cert <file>                 the client certificate, PEM or DER; a PEM bundle's other
                                certificates are the chain the client presents (required)
  --ca <file>                   trust anchors (the plugin's \`ca\`); repeatable; write
                                --ca <label>=<file> for a labelled anchor a policy's
                                \`anchor\` can name (required)
  --intermediates <file>        configured intermediates (the plugin's \`intermediates\`); repeatable
  --crl <file>                  a CRL, PEM or DER (the plugin's \`crl\`, hard-fail); repeatable
  --policy <file>               a policy: JSON (strings only) or an ES module (.mjs, .js)
                                whose default export is a Policy (RegExps, check functions);
                                check functions get the stand-in request
                                { method: 'GET', url: '/', headers: {} }; the module must
                                load, and the policy settle, within 10 s
  --at <ISO date>               verify at this time instead of now (e.g. 2030-01-01T00:00:00Z)
  --purpose <p>                 clientAuth (default, as the plugin), serverAuth or any
  --require-client-auth-eku     as the plugin's requireClientAuthEku: the leaf must have
                                the clientAuth extended key usage
  --min-rsa-bits <n>            as the plugin's minRsaBits (default 2048)
  --max-chain-length <n>        as the plugin's maxChainLength (default 8)
  --clock-tolerance-sec <n>     as the plugin's clockToleranceSec (default 0)
  --json                        print a JSON document instead of text
  --help                        this text

Not covered: the deny list, CRLs fetched from distribution points, OCSP, and
crlMode 'soft-fail' (explain reports a stale or missing CRL as the hard-fail
default does). Nor the other intermediates the plugin can use, so explain may say
FST_MTLS_UNTRUSTED for a client the plugin accepts: those it learned from earlier
clients' chains (kept across reload) and, over direct TLS, the issuers Node's
getPeerCertificate(true) adds from the server's https \`ca\`; pass them with
--intermediates to see the plugin's verdict. Removing a CA from \`intermediates\`
does not cut it off (the plugin may have learned it): use \`deny\` or a CRL.

exit codes: 0 accepted, 1 rejected, 2 bad input (files must be regular files of at
most 16 MiB).`

const OPTIONS = {
  cert: { type: 'string' },
  ca: { type: 'string', multiple: true },
  intermediates: { type: 'string', multiple: true },
  crl: { type: 'string', multiple: true },
  policy: { type: 'string' },
  at: { type: 'string' },
  purpose: { type: 'string' },
  'require-client-auth-eku': { type: 'boolean' },
  'min-rsa-bits': { type: 'string' },
  'max-chain-length': { type: 'string' },
  'clock-tolerance-sec': { type: 'string' },
  json: { type: 'boolean' }
} as const

const MARK = { pass: '✓', fail: '✗', skip: '–' } as const
const LABEL = /^([A-Za-z0-9][A-Za-z0-9_.-]*)=(.+)$/

function strings (v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []
}

function integer (v: unknown, flag: string, min: number): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (typeof v !== 'string' || !/^[0-9]+$/.test(v) || n < min) throw new CliError(`${flag} must be an integer >= ${min}, got ${JSON.stringify(v)}`)
  return n
}

function inputLine (err: InputError, flag: string, file: string): CliError {
  // InputError messages start with the name given to the reader; keep only the reason
  const reason = (err.message.split('\n')[0] as string).replace(/^[^:]*: /, '')
  return new CliError(`${flag} ${file}: ${reason}`)
}

async function certificates (file: string, flag: string): Promise<Buffer> {
  const bytes = await readInput(file, flag)
  try {
    readCertificates(bytes, file)
  } catch (err) {
    if (err instanceof InputError) throw inputLine(err, flag, file)
    throw err
  }
  return bytes
}

async function crl (file: string): Promise<Buffer> {
  const bytes = await readInput(file, '--crl')
  try {
    for (const der of toDerList(bytes, 'X509 CRL', file)) getCrl(der)
  } catch (err) {
    if (err instanceof InputError) throw inputLine(err, '--crl', file)
    throw new CliError(`--crl ${file}: not a CRL: ${(err as Error).message.split('\n')[0] as string}`)
  }
  return bytes
}

/** How long a policy module may take to load, and its checks to settle (MTLS_EXPLAIN_TIMEOUT_MS overrides, for tests). */
function timeLimitMs (): number {
  const v = process.env.MTLS_EXPLAIN_TIMEOUT_MS
  if (v === undefined || v === '') return 10_000
  if (!/^[0-9]+$/.test(v) || Number(v) < 1) throw new CliError(`MTLS_EXPLAIN_TIMEOUT_MS must be an integer >= 1 (milliseconds), got ${JSON.stringify(v)}`)
  return Number(v)
}

function seconds (ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`
}

/** The module that runs as the command line (dist/cli/main.js), to tell the bin from an import by tests. */
function isBin (): boolean {
  const invoked = process.argv[1]
  if (invoked === undefined) return false
  try {
    return realpathSync(invoked) === fileURLToPath(new URL('./main.js', import.meta.url))
  } catch {
    return false
  }
}

/**
 * Waits for a promise from user code (a policy module, a check) at most `ms`. The timer is
 * referenced while waiting, so a promise that can never settle still ends in the time limit's
 * error rather than in Node's exit 13 (a pending top-level await when the loop drains). When the
 * limit is hit, user code may keep the loop alive (an interval, a socket): the bin then exits
 * once the dispatcher has printed the error and set the exit code.
 */
async function within<T> (work: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      if (isBin()) setTimeout(() => process.exit(), 50).unref()
      reject(new CliError(message))
    }, ms)
  })
  try {
    return await Promise.race([work, limit])
  } finally {
    clearTimeout(timer)
  }
}

function reason (err: unknown): string {
  const text = err instanceof Error ? err.message : String(err)
  return text.split('\n')[0] as string
}

async function loadPolicy (file: string): Promise<Policy> {
  const ext = extname(file).toLowerCase()
  if (ext === '.json') {
    const text = (await readInput(file, '--policy')).toString('utf8')
    try {
      return JSON.parse(text) as Policy
    } catch (err) {
      throw new CliError(`--policy ${file}: not valid JSON: ${(err as Error).message}`)
    }
  }
  if (ext !== '.mjs' && ext !== '.js') throw new CliError(`--policy ${file}: expected a .json file or an ES module (.mjs, .js)`)
  await readInput(file, '--policy')
  let mod: { default?: unknown }
  const ms = timeLimitMs()
  try {
    mod = await within(import(pathToFileURL(resolve(file)).href) as Promise<{ default?: unknown }>, ms,
      `--policy ${file}: the module did not finish loading within ${seconds(ms)} (a top-level await that never settles?)`)
  } catch (err) {
    if (err instanceof CliError) throw err
    throw new CliError(`--policy ${file}: cannot load the module: ${reason(err)}`)
  }
  if (mod.default === undefined) throw new CliError(`--policy ${file}: the module has no default export (export default { ... } a Policy)`)
  return mod.default as Policy
}

function identityJson (id: ClientIdentity): Record<string, unknown> {
  return { ...identityFields(id), trustAnchor: id.trustAnchor }
}

function formatStep (s: ExplainStep, width: number): string[] {
  const out = [`  ${MARK[s.status]} ${s.title.padEnd(width)}  ${s.summary}`]
  for (const d of s.details) out.push(`      ${d}`)
  return out
}

function formatPolicy (lines: readonly PolicyLine[]): string[] {
  return lines.map((l) => `      ${'  '.repeat(l.depth)}${MARK[l.status]} ${l.rule}${l.text === '' ? '' : `: ${l.text}`}`)
}

export function formatExplanation (e: Explanation, cert: string): string {
  const width = Math.max(...e.steps.map((s) => s.title.length))
  const out = [`explain ${cert} at ${e.at.toISOString()}, purpose ${e.purpose}`, '']
  for (const s of e.steps) {
    out.push(...formatStep(s, width))
    if (s.step === 'policy') out.push(...formatPolicy(e.policy))
  }
  out.push('')
  if (e.accepted) {
    const id = e.identity as ClientIdentity
    out.push(`accepted: "${id.subject.rfc4514}" via trust anchor "${id.trustAnchor.name}", verdict valid until ${(e.validUntil as Date).toISOString()}`)
    const sans = [...id.san.dns.map((x) => `DNS:${x}`), ...id.san.uri.map((x) => `URI:${x}`), ...id.san.email.map((x) => `email:${x}`), ...id.san.ip.map((x) => `IP:${x}`)]
    out.push(`  SANs: ${sans.length === 0 ? '(none)' : sans.join(', ')}`, `  SPIFFE ID: ${id.spiffeId ?? '(none)'}`, `  fingerprint256: ${id.fingerprint256}`)
    return out.join('\n')
  }
  const hint = e.hint as Hint
  out.push(`rejected: ${e.code as string} (${hint.status as number}) at the ${e.failedStep as string} check`)
  out.push(`  reason: ${e.message as string}`)
  out.push(`  likely cause: ${hint.cause}`, `  how to check: ${hint.check}`, `  fix: ${hint.fix}`)
  return out.join('\n')
}

export const command: Command = {
  summary: 'say why a certificate is accepted or refused, check by check, with the FST_MTLS_* code and a fix',
  help: HELP,
  async run (args, io) {
    const { values } = parse(args, OPTIONS, 0, USAGE)
    const certFile = values.cert
    if (typeof certFile !== 'string') throw new CliError(`--cert is required (usage: ${USAGE})`)
    const caArgs = strings(values.ca)
    if (caArgs.length === 0) throw new CliError(`--ca is required: the trust anchors, as the plugin's \`ca\` (usage: ${USAGE})`)
    const purpose = values.purpose ?? 'clientAuth'
    if (purpose !== 'clientAuth' && purpose !== 'serverAuth' && purpose !== 'any') throw new CliError(`--purpose must be clientAuth, serverAuth or any, got ${JSON.stringify(purpose)}`)
    let at: Date | undefined
    if (values.at !== undefined) {
      const text = values.at as string
      at = new Date(text)
      if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(at.getTime())) throw new CliError(`--at must be an ISO 8601 date such as 2030-01-01T00:00:00Z, got ${JSON.stringify(text)}`)
    }
    const minRsaBits = integer(values['min-rsa-bits'], '--min-rsa-bits', 1024)
    const maxChainLength = integer(values['max-chain-length'], '--max-chain-length', 2)
    const clockToleranceSec = integer(values['clock-tolerance-sec'], '--clock-tolerance-sec', 0)

    const leaf = await readInput(certFile, '--cert')
    try {
      readCertificates(leaf, certFile)
    } catch (err) {
      if (err instanceof InputError) throw new CliError(`--cert ${certFile}: not a certificate: ${(err.message.split('\n')[0] as string).replace(/^[^:]*: /, '')}`)
      throw err
    }
    const labelled: Array<Buffer | LabelledCertificate> = []
    for (const arg of caArgs) {
      const m = LABEL.exec(arg)
      // label=file, unless a file of that very name exists
      if (m !== null && !existsSync(arg)) {
        labelled.push({ name: m[1] as string, cert: await certificates(m[2] as string, '--ca') })
      } else {
        labelled.push(await certificates(arg, '--ca'))
      }
    }
    const intermediates: Buffer[] = []
    for (const f of strings(values.intermediates)) intermediates.push(await certificates(f, '--intermediates'))
    const crls: Buffer[] = []
    for (const f of strings(values.crl)) crls.push(await crl(f))
    const policyFile = values.policy as string | undefined
    const policy = policyFile === undefined ? undefined : await loadPolicy(policyFile)

    let e: Explanation
    const ms = timeLimitMs()
    try {
      const explained = explainChain({
        leaf,
        trustAnchors: labelled,
        intermediates,
        crls,
        purpose,
        ...(at === undefined ? {} : { at }),
        ...(values['require-client-auth-eku'] === true ? { requireClientAuthEku: true } : {}),
        ...(minRsaBits === undefined ? {} : { minRsaBits }),
        ...(maxChainLength === undefined ? {} : { maxChainLength }),
        ...(clockToleranceSec === undefined ? {} : { clockToleranceSec }),
        ...(policy === undefined ? {} : { policy })
      })
      e = policy === undefined
        ? await explained
        : await within(explained, ms, `--policy ${policyFile as string}: the policy did not settle within ${seconds(ms)} (a check whose promise never settles?)`)
    } catch (err) {
      if (err instanceof CliError) throw err
      if (err instanceof PolicyError) throw new CliError(`--policy ${policyFile as string}: ${err.message}`)
      if (err instanceof InputError) throw new CliError((err.message.split('\n')[0] as string).replace(/^trustAnchors/, '--ca'))
      throw err
    }
    if (values.json === true) {
      io.out(JSON.stringify({
        accepted: e.accepted,
        code: e.code ?? null,
        message: e.message ?? null,
        failedStep: e.failedStep ?? null,
        hint: e.hint ?? null,
        at: e.at,
        purpose: e.purpose,
        steps: e.steps,
        policy: e.policy,
        trustAnchor: e.trustAnchor ?? null,
        validUntil: e.validUntil ?? null,
        identity: e.identity === undefined ? null : identityJson(e.identity),
        path: e.path
      }, null, 2))
    } else {
      io.out(formatExplanation(e, certFile))
    }
    return e.accepted ? 0 : 1
  }
}
