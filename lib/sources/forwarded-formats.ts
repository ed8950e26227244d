// Parsers for client certificates forwarded by a TLS-terminating proxy in a request
// header: Envoy's x-forwarded-client-cert, URL-escaped PEM (nginx, AWS ALB), base64 DER
// (Traefik, Cloudflare, ASP.NET) and RFC 9440 Client-Cert / Client-Cert-Chain.
//
// This layer only turns one header value into DER certificates. It does not decide who
// may send the header (the trusted-proxy gate) and it does not verify anything: a
// forwarded certificate is public data with no proof of possession. What it does
// guarantee is that a value either decodes into exactly one reading or is refused:
// every parser here is a hand-written single pass (linear in the input, no regular
// expression that can backtrack), everything that does not fit the format throws
// MalformedHeader, and every certificate returned has parsed as X.509 (getCertificate).
import { createHash } from 'node:crypto'
import { parseOne } from '../der/reader.js'
import { getCertificate } from '../der/store.js'
import { MAX_PRESENTED } from '../verify/verify.js'

export type ForwardedFormat = 'xfcc' | 'escaped-pem' | 'base64-der' | 'rfc9440'

/** The header value does not parse. The message says why; it is for the log, never for the client. */
export class MalformedHeader extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'MalformedHeader'
  }
}

export interface ForwardedCertificate {
  /** DER of the client's certificate */
  leaf: Buffer
  /** DER of the other certificates the proxy forwarded (the presented intermediates), leaf excluded, in the order sent */
  chain: Buffer[]
}

export interface ParseForwardedOptions {
  /** XFCC only: which element is the client's. 'last' (default): the one the nearest proxy appended; 'only': more than one element is malformed. */
  xfccElement?: 'last' | 'only'
  /**
   * The value of a separate chain header (RFC 9440 Client-Cert-Chain), in the same
   * encoding as the certificate header: for 'rfc9440' a List of Byte Sequences, for
   * 'escaped-pem' and 'base64-der' the same encoding as the main header. Not allowed
   * with 'xfcc', whose Chain key is used instead (TypeError).
   */
  chainValue?: string
}

/** Longest header value accepted, in characters (Node's own limit for all headers together is 16 KiB by default). */
export const MAX_FORWARDED_HEADER_LENGTH = 64 * 1024
/** Most certificates accepted besides the leaf: the verifier's limit for a TLS peer. */
export const MAX_FORWARDED_CHAIN = MAX_PRESENTED

const FORMATS: ReadonlySet<string> = new Set(['xfcc', 'escaped-pem', 'base64-der', 'rfc9440'])

/**
 * Decodes one forwarded-certificate header value.
 *
 * `value` is the raw value of a single occurrence: the caller refuses a header that
 * appears twice before calling. Surrounding spaces and tabs are ignored (HTTP strips
 * them anyway). Returns undefined when the value is empty (nginx sends "" when the
 * client presented no certificate; a separate chain header must then be empty too).
 * Throws MalformedHeader on anything that does not parse, and TypeError on a bad call
 * (a format or option that does not exist, a non-string value, chainValue with xfcc).
 *
 * XFCC: the certificate comes only from the chosen element's `Cert` (URL-encoded PEM
 * of the leaf) and `Chain` (URL-encoded PEM, leaf first), never from `Subject`, `URI`,
 * `DNS` or `By`. An element with neither is malformed. With both, Chain must start
 * with the Cert certificate. `Hash`, when present, must be the SHA-256 of the leaf.
 */
export function parseForwarded (format: ForwardedFormat, value: string, options: ParseForwardedOptions = {}): ForwardedCertificate | undefined {
  if (!FORMATS.has(format)) throw new TypeError(`unknown forwarded certificate format ${JSON.stringify(format)}`)
  const element = options.xfccElement ?? 'last'
  if (element !== 'last' && element !== 'only') throw new TypeError(`xfccElement must be 'last' or 'only', got ${JSON.stringify(element)}`)
  const chainValue = options.chainValue
  if (format === 'xfcc' && chainValue !== undefined) throw new TypeError('chainValue cannot be used with the xfcc format (XFCC carries its own Chain key)')

  const main = trimOws(checkValue(value, 'certificate header'))
  const extra = chainValue === undefined ? '' : trimOws(checkValue(chainValue, 'chain header'))

  if (format === 'xfcc') return main === '' ? undefined : fromXfcc(main, element)

  const certs = main === '' ? [] : decodeMain(format, main)
  const more = extra === '' ? [] : decodeChainHeader(format, extra)
  const leaf = certs[0]
  if (leaf === undefined) {
    if (more.length > 0) throw new MalformedHeader('the chain header carries certificates but the certificate header is empty')
    return undefined
  }
  if (certs.length > 1 && more.length > 0) throw new MalformedHeader('the certificate header already carries a chain, and the chain header is not empty')
  let chain = certs.length > 1 ? certs.slice(1) : more
  // RFC 9440 orders Client-Cert-Chain "as in TLS"; a proxy that starts it with the leaf sent nothing new
  if (certs.length === 1 && chain[0] !== undefined && chain[0].equals(leaf)) chain = chain.slice(1)
  if (chain.length > MAX_FORWARDED_CHAIN) throw new MalformedHeader(`more than ${MAX_FORWARDED_CHAIN} chain certificates`)
  return { leaf, chain }
}

/**
 * Splits an x-forwarded-client-cert value into its elements (comma-separated), each a
 * map of lower-cased keys to values (`key=value` pairs separated by `;`; a value may be
 * double-quoted, and inside quotes a backslash escapes the next character, so a quoted
 * value may hold `,` `;` `=` and `\"`). Throws MalformedHeader on an empty element or
 * pair, a key that is not a token, a pair without `=`, a `"` inside an unquoted value,
 * an unterminated quote, anything but `;` or `,` after a closing quote, and a repeated
 * key. `By`, `URI` and `DNS` may repeat (Envoy writes one pair per SAN); only their
 * first value is kept, and nothing here ever reads them. Exposed for tests.
 */
export function parseXfcc (value: string): Array<Map<string, string>> {
  return xfccElements(trimOws(checkValue(value, 'x-forwarded-client-cert')))
}

// ----------------------------------------------------------------------------- XFCC

/** Keys Envoy repeats, one pair per SAN; never read for identity. */
const REPEATABLE_XFCC_KEYS: ReadonlySet<string> = new Set(['by', 'uri', 'dns'])

/** The hand parser behind parseXfcc, for a value already checked and trimmed: one pass, no backtracking. */
function xfccElements (s: string): Array<Map<string, string>> {
  const elements: Array<Map<string, string>> = []
  if (s === '') return elements
  const n = s.length
  let current = new Map<string, string>()
  let i = 0
  for (;;) {
    i = skipOws(s, i)
    const keyStart = i
    while (i < n && isTchar(s.charCodeAt(i))) i++
    if (i === keyStart) {
      throw new MalformedHeader(i >= n || s[i] === ',' || s[i] === ';'
        ? `xfcc: empty pair at offset ${i}`
        : `xfcc: unexpected character ${describeChar(s, i)} at offset ${i} where a key should start`)
    }
    const key = s.slice(keyStart, i).toLowerCase()
    if (s.charCodeAt(i) !== 0x3d /* = */) throw new MalformedHeader(`xfcc: key at offset ${keyStart} is not followed by '='`)
    i++
    let v: string
    if (s.charCodeAt(i) === 0x22 /* " */) {
      const open = i
      i++
      let out = ''
      let chunk = i
      for (;;) {
        if (i >= n) throw new MalformedHeader(`xfcc: unterminated quoted value starting at offset ${open}`)
        const c = s.charCodeAt(i)
        if (c === 0x5c /* \ */) {
          if (i + 1 >= n) throw new MalformedHeader(`xfcc: unterminated quoted value starting at offset ${open}`)
          out += s.slice(chunk, i) + s[i + 1]
          i += 2
          chunk = i
        } else if (c === 0x22) {
          out += s.slice(chunk, i)
          i++
          break
        } else {
          i++
        }
      }
      v = out
    } else {
      const start = i
      while (i < n) {
        const c = s.charCodeAt(i)
        if (c === 0x3b /* ; */ || c === 0x2c /* , */) break
        if (c === 0x22) throw new MalformedHeader(`xfcc: '"' inside an unquoted value at offset ${i}`)
        i++
      }
      v = trimOws(s.slice(start, i))
    }
    if (current.has(key)) {
      if (!REPEATABLE_XFCC_KEYS.has(key)) throw new MalformedHeader(`xfcc: key "${key}" appears twice in one element`)
    } else {
      current.set(key, v)
    }
    i = skipOws(s, i)
    if (i >= n) break
    const sep = s.charCodeAt(i)
    if (sep === 0x2c) {
      elements.push(current)
      current = new Map()
    } else if (sep !== 0x3b) {
      throw new MalformedHeader(`xfcc: unexpected character ${describeChar(s, i)} at offset ${i} after a value`)
    }
    i++
  }
  elements.push(current)
  return elements
}

function fromXfcc (value: string, element: 'last' | 'only'): ForwardedCertificate {
  const elements = xfccElements(value)
  if (element === 'only' && elements.length > 1) {
    throw new MalformedHeader(`xfcc: ${elements.length} elements where only one is allowed (xfccElement 'only')`)
  }
  const chosen = elements[elements.length - 1] as Map<string, string>
  const cert = chosen.get('cert')
  const chainText = chosen.get('chain')
  if (cert === undefined && chainText === undefined) {
    throw new MalformedHeader('xfcc: the element has no Cert and no Chain (configure the proxy to forward the certificate itself)')
  }
  let leaf: Buffer | undefined
  if (cert !== undefined) {
    const certs = pemCertificates(percentDecode(cert, 'xfcc Cert'), 'xfcc Cert', 1)
    leaf = certs[0] as Buffer
  }
  let chain: Buffer[] = []
  if (chainText !== undefined) {
    const certs = pemCertificates(percentDecode(chainText, 'xfcc Chain'), 'xfcc Chain', MAX_FORWARDED_CHAIN + 1)
    const first = certs[0] as Buffer
    if (leaf !== undefined && !first.equals(leaf)) throw new MalformedHeader('xfcc: the first certificate of Chain is not the Cert certificate')
    leaf = first
    chain = certs.slice(1)
  }
  const hash = chosen.get('hash')
  if (hash !== undefined) {
    if (!isSha256Hex(hash)) throw new MalformedHeader('xfcc: Hash is not a hex SHA-256 digest')
    const digest = createHash('sha256').update(leaf as Buffer).digest('hex')
    if (digest !== hash.toLowerCase()) throw new MalformedHeader('xfcc: Hash does not match the SHA-256 of the certificate')
  }
  return { leaf: leaf as Buffer, chain }
}

function isSha256Hex (s: string): boolean {
  if (s.length !== 64) return false
  for (let i = 0; i < 64; i++) {
    const c = s.charCodeAt(i)
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66))) return false
  }
  return true
}

// ----------------------------------------------------------------------------- other formats

function decodeMain (format: Exclude<ForwardedFormat, 'xfcc'>, value: string): Buffer[] {
  switch (format) {
    case 'escaped-pem': return pemCertificates(percentDecode(value, 'escaped-pem'), 'escaped-pem', MAX_FORWARDED_CHAIN + 1)
    case 'base64-der': return base64DerList(value, 'base64-der', MAX_FORWARDED_CHAIN + 1)
    case 'rfc9440': return [sfByteSequenceItem(value, 'Client-Cert')]
  }
}

function decodeChainHeader (format: Exclude<ForwardedFormat, 'xfcc'>, value: string): Buffer[] {
  // one more than the limit: the chain header may repeat the leaf first
  switch (format) {
    case 'escaped-pem': return pemCertificates(percentDecode(value, 'escaped-pem chain'), 'escaped-pem chain', MAX_FORWARDED_CHAIN + 1)
    case 'base64-der': return base64DerList(value, 'base64-der chain', MAX_FORWARDED_CHAIN + 1)
    case 'rfc9440': return sfByteSequenceList(value, 'Client-Cert-Chain', MAX_FORWARDED_CHAIN + 1)
  }
}

/** Comma-separated strict base64 DER certificates (Traefik joins the chain with ","), spaces around items allowed. */
function base64DerList (value: string, what: string, max: number): Buffer[] {
  const out: Buffer[] = []
  let start = 0
  for (;;) {
    const comma = value.indexOf(',', start)
    const end = comma === -1 ? value.length : comma
    const item = trimOws(value.slice(start, end))
    if (item === '') throw new MalformedHeader(`${what}: empty item at offset ${start}`)
    if (out.length === max) throw new MalformedHeader(`${what}: more than ${max} certificates`)
    out.push(certificateDer(base64Decode(item, `${what} item ${out.length + 1}`, true), `${what} item ${out.length + 1}`))
    if (comma === -1) return out
    start = comma + 1
  }
}

/** RFC 8941 Item whose value must be a Byte Sequence without parameters (RFC 9440: `Client-Cert = sf-binary`). */
function sfByteSequenceItem (value: string, what: string): Buffer {
  const { der, end } = sfByteSequence(value, 0, what)
  if (end !== value.length) throw new MalformedHeader(`${what}: unexpected ${describeChar(value, end)} at offset ${end} after the byte sequence`)
  return der
}

/** RFC 8941 List whose members must all be Byte Sequences without parameters (Client-Cert-Chain). */
function sfByteSequenceList (value: string, what: string, max: number): Buffer[] {
  const out: Buffer[] = []
  let i = 0
  for (;;) {
    if (out.length === max) throw new MalformedHeader(`${what}: more than ${max} certificates`)
    const { der, end } = sfByteSequence(value, i, `${what} member ${out.length + 1}`)
    out.push(der)
    i = skipOws(value, end)
    if (i >= value.length) return out
    if (value.charCodeAt(i) !== 0x2c) throw new MalformedHeader(`${what}: expected ',' at offset ${i}, found ${describeChar(value, i)}`)
    i = skipOws(value, i + 1)
    if (i >= value.length) throw new MalformedHeader(`${what}: trailing ','`)
  }
}

function sfByteSequence (value: string, start: number, what: string): { der: Buffer, end: number } {
  if (value.charCodeAt(start) !== 0x3a /* : */) {
    throw new MalformedHeader(`${what}: expected a byte sequence (":base64:") at offset ${start}, found ${describeChar(value, start)}`)
  }
  const close = value.indexOf(':', start + 1)
  if (close === -1) throw new MalformedHeader(`${what}: byte sequence starting at offset ${start} has no closing ':'`)
  const der = certificateDer(base64Decode(value.slice(start + 1, close), what, false), what)
  const end = close + 1
  if (value.charCodeAt(end) === 0x3b /* ; */) throw new MalformedHeader(`${what}: parameters on a certificate byte sequence are not accepted`)
  return { der, end }
}

// ----------------------------------------------------------------------------- PEM

const PEM_BEGIN = '-----BEGIN '
const PEM_DASHES = '-----'
const PEM_END = '-----END CERTIFICATE-----'

/**
 * CERTIFICATE blocks separated only by whitespace, nothing else before, between or
 * after them (a header is not a file: no explanatory text). Any other label, such as
 * PRIVATE KEY, is malformed. At most `max` blocks.
 */
function pemCertificates (text: string, what: string, max: number): Buffer[] {
  const out: Buffer[] = []
  let i = skipWhitespace(text, 0)
  if (i >= text.length) throw new MalformedHeader(`${what}: no certificate`)
  while (i < text.length) {
    if (!text.startsWith(PEM_BEGIN, i)) throw new MalformedHeader(`${what}: text outside a PEM block at offset ${i}`)
    const labelStart = i + PEM_BEGIN.length
    const labelEnd = text.indexOf(PEM_DASHES, labelStart)
    if (labelEnd === -1) throw new MalformedHeader(`${what}: truncated PEM BEGIN line at offset ${i}`)
    const label = text.slice(labelStart, labelEnd)
    if (label !== 'CERTIFICATE') throw new MalformedHeader(`${what}: unexpected PEM block ${JSON.stringify(label.slice(0, 40))} (only CERTIFICATE blocks are accepted)`)
    if (out.length === max) throw new MalformedHeader(`${what}: more than ${max} certificate${max === 1 ? '' : 's'}`)
    const bodyStart = labelEnd + PEM_DASHES.length
    const end = text.indexOf(PEM_END, bodyStart)
    if (end === -1) throw new MalformedHeader(`${what}: PEM block at offset ${i} has no END CERTIFICATE line (truncated?)`)
    const body = stripWhitespace(text.slice(bodyStart, end))
    const item = `${what} certificate ${out.length + 1}`
    out.push(certificateDer(base64Decode(body, item, true), item))
    i = skipWhitespace(text, end + PEM_END.length)
  }
  return out
}

// ----------------------------------------------------------------------------- decoding primitives

/**
 * Percent-decoding only: `%XX` becomes the byte XX and every other character stands for
 * itself, so a literal `+` stays `+` (never form-decoding: base64 uses `+`, and AWS ALB
 * leaves it unescaped). A `%` without two hex digits is malformed, and so is any decoded
 * byte that cannot appear in PEM text (controls other than tab, CR, LF; anything past
 * 0x7e, such as `%e9`).
 */
function percentDecode (value: string, what: string): string {
  const out = Buffer.allocUnsafe(value.length)
  let n = 0
  for (let i = 0; i < value.length; i++) {
    let c = value.charCodeAt(i)
    const at = i
    if (c === 0x25 /* % */) {
      const hi = hexDigit(value.charCodeAt(i + 1))
      const lo = hexDigit(value.charCodeAt(i + 2))
      if (hi < 0 || lo < 0) throw new MalformedHeader(`${what}: bad percent-escape at offset ${at}`)
      c = hi * 16 + lo
      i += 2
    }
    if (!(c === 0x09 || c === 0x0a || c === 0x0d || (c >= 0x20 && c <= 0x7e))) {
      throw new MalformedHeader(`${what}: byte 0x${c.toString(16).padStart(2, '0')} at offset ${at} is not PEM text`)
    }
    out[n++] = c
  }
  return out.toString('latin1', 0, n)
}

function hexDigit (c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  if (c >= 0x41 && c <= 0x46) return c - 0x37
  if (c >= 0x61 && c <= 0x66) return c - 0x57
  return -1
}

/**
 * Standard-alphabet base64. `strict`: padding required and pad bits zero (the one
 * canonical encoding). Otherwise RFC 8941 byte-sequence rules: missing padding and
 * non-zero pad bits are tolerated (RFC 8941 4.2.7 says parsers SHOULD NOT fail on them),
 * anything outside the alphabet or `=` before the end is not.
 */
function base64Decode (s: string, what: string, strict: boolean): Buffer {
  let end = s.length
  let pad = 0
  while (end > 0 && pad < 2 && s.charCodeAt(end - 1) === 0x3d /* = */) {
    end--
    pad++
  }
  const bad = NOT_BASE64.exec(end === s.length ? s : s.slice(0, end))
  if (bad !== null) throw new MalformedHeader(`${what}: ${describeChar(s, bad.index)} at offset ${bad.index} is not base64`)
  if (end === 0) throw new MalformedHeader(`${what}: empty base64`)
  if (end % 4 === 1) throw new MalformedHeader(`${what}: base64 length is impossible (truncated?)`)
  if ((pad > 0 || strict) && s.length % 4 !== 0) throw new MalformedHeader(`${what}: base64 is not padded to a multiple of 4 characters`)
  const bytes = Buffer.from(s, 'base64')
  if (strict && bytes.toString('base64') !== s) throw new MalformedHeader(`${what}: base64 has non-zero pad bits (not the canonical encoding)`)
  return bytes
}

/** One DER certificate: a single SEQUENCE TLV with nothing after it, which parses as X.509. */
function certificateDer (der: Buffer, what: string): Buffer {
  if (der[0] !== 0x30) throw new MalformedHeader(`${what}: not a DER certificate (does not start with a SEQUENCE)`)
  try {
    parseOne(der, what)
  } catch (err) {
    throw new MalformedHeader(`${what}: not a single DER value: ${(err as Error).message}`)
  }
  try {
    getCertificate(der)
  } catch (err) {
    throw new MalformedHeader(`${what}: not an X.509 certificate: ${(err as Error).message}`)
  }
  return der
}

// ----------------------------------------------------------------------------- text helpers

// Single-character classes: a search with one cannot backtrack, so it is linear like the loops here.
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTER = /[\x00-\x08\x0a-\x1f\x7f]/
const NOT_BASE64 = /[^A-Za-z0-9+/]/
const WHITESPACE = /[\t\n\r ]/g

function checkValue (value: string, what: string): string {
  if (typeof value !== 'string') throw new TypeError(`${what}: expected a string, got ${value === null ? 'null' : typeof value}`)
  if (value.length > MAX_FORWARDED_HEADER_LENGTH) throw new MalformedHeader(`${what}: value longer than ${MAX_FORWARDED_HEADER_LENGTH} characters`)
  const control = CONTROL_CHARACTER.exec(value)
  if (control !== null) throw new MalformedHeader(`${what}: control character 0x${value.charCodeAt(control.index).toString(16).padStart(2, '0')} at offset ${control.index}`)
  return value
}

/** RFC 9110 tchar: the characters of a token. */
function isTchar (c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) ||
    c === 0x21 || (c >= 0x23 && c <= 0x27) || c === 0x2a || c === 0x2b || c === 0x2d || c === 0x2e ||
    c === 0x5e || c === 0x5f || c === 0x60 || c === 0x7c || c === 0x7e
}

const isOws = (c: number): boolean => c === 0x20 || c === 0x09

function skipOws (s: string, i: number): number {
  while (i < s.length && isOws(s.charCodeAt(i))) i++
  return i
}

function trimOws (s: string): string {
  let start = 0
  let end = s.length
  while (start < end && isOws(s.charCodeAt(start))) start++
  while (end > start && isOws(s.charCodeAt(end - 1))) end--
  return start === 0 && end === s.length ? s : s.slice(start, end)
}

const isWhitespace = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d

function skipWhitespace (s: string, i: number): number {
  while (i < s.length && isWhitespace(s.charCodeAt(i))) i++
  return i
}

const stripWhitespace = (s: string): string => s.replace(WHITESPACE, '')

/** The character at `i` (callers pass i < s.length) for a log message: printable ASCII quoted, anything else as a code point. */
function describeChar (s: string, i: number): string {
  const c = s.charCodeAt(i)
  return c > 0x20 && c < 0x7f ? JSON.stringify(s[i]) : `U+${c.toString(16).toUpperCase().padStart(4, '0')}`
}
