// Each distinct certificate or CRL is parsed once, keyed by the SHA-256 of its DER.
import { createHash } from 'node:crypto'
import { LruCache } from '../cache.js'
import { parseCertificate, type ParsedCertificate } from './certificate.js'
import { parseCrl, type ParsedCrl } from './crl.js'

const certificates = new LruCache<string, ParsedCertificate>(2048)
const crls = new LruCache<string, ParsedCrl>(256)

export function getCertificate (der: Buffer): ParsedCertificate {
  const digest = createHash('sha256').update(der).digest()
  const key = digest.toString('latin1')
  let cert = certificates.get(key)
  if (cert === undefined) {
    // copy: the caller's buffer may be reused or mutated after we return
    cert = parseCertificate(Buffer.from(der), digest)
    certificates.set(key, cert)
  }
  return cert
}

export function getCrl (der: Buffer): ParsedCrl {
  const key = createHash('sha256').update(der).digest().toString('latin1')
  let crl = crls.get(key)
  if (crl === undefined) {
    crl = parseCrl(Buffer.from(der))
    crls.set(key, crl)
  }
  return crl
}

/** For tests and benchmarks: forget every parsed certificate and CRL. */
export function clearParseCache (): void {
  certificates.clear()
  crls.clear()
}
