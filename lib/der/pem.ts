// PEM and DER input handling shared by certificates and CRLs.

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([^-]*?)-----END \1-----/g

export class InputError extends TypeError {
  constructor (message: string) {
    super(message)
    this.name = 'InputError'
  }
}

/**
 * Splits PEM text or DER bytes into DER buffers. `label` is the PEM label expected
 * ('CERTIFICATE' or 'X509 CRL'); blocks with other labels are refused, so a private
 * key pasted into a CA bundle is an error rather than silently ignored.
 */
export function toDerList (input: string | Buffer | Uint8Array, label: string, what: string): Buffer[] {
  let text: string
  if (typeof input === 'string') {
    text = input
  } else if (input instanceof Uint8Array) {
    const buf = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength)
    if (buf.length > 0 && buf[0] === 0x30) return [buf]
    text = buf.toString('latin1')
  } else {
    throw new InputError(`${what}: expected a PEM string or DER Buffer, got ${input === null ? 'null' : typeof input}`)
  }
  const out: Buffer[] = []
  PEM_BLOCK.lastIndex = 0
  let m: RegExpExecArray | null
  while ((m = PEM_BLOCK.exec(text)) !== null) {
    const blockLabel = m[1] as string
    if (blockLabel !== label && !(label === 'CERTIFICATE' && blockLabel === 'TRUSTED CERTIFICATE')) {
      throw new InputError(`${what}: unexpected PEM block "${blockLabel}" (expected "${label}")`)
    }
    if (blockLabel === 'TRUSTED CERTIFICATE') throw new InputError(`${what}: OpenSSL "TRUSTED CERTIFICATE" blocks are not supported; use plain CERTIFICATE blocks`)
    const body = (m[2] as string).replace(/[\r\n\t ]/g, '')
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) throw new InputError(`${what}: invalid base64 in PEM block`)
    const der = Buffer.from(body, 'base64')
    if (der.length === 0) throw new InputError(`${what}: empty PEM block`)
    out.push(der)
  }
  const begins = text.split('-----BEGIN ').length - 1
  if (begins !== out.length) throw new InputError(`${what}: malformed PEM (a BEGIN line without a matching END line?)`)
  if (out.length === 0) throw new InputError(`${what}: no PEM "${label}" block and not DER`)
  return out
}

export function toPem (der: Buffer, label = 'CERTIFICATE'): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`
}
