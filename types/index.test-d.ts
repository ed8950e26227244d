import { expectAssignable, expectError, expectNotAssignable, expectType } from 'tsd'
import type { X509Certificate } from 'node:crypto'
import {
  buildIdentity, compilePolicy, verifyCertificateChain, MtlsForbiddenError, rejectionError,
  type ClientIdentity, type Policy, type VerifyResult, type VerificationCode
} from 'fastify-mtls-auth'

const pem = '-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n'

const pending = verifyCertificateChain({ leaf: pem, trustAnchors: [{ name: 'acme', cert: pem }] })
expectType<Promise<VerifyResult>>(pending)
expectError(verifyCertificateChain({ leaf: pem }))
expectError(verifyCertificateChain({ leaf: pem, trustAnchors: pem, purpose: 'emailProtection' }))
verifyCertificateChain({ leaf: Buffer.from(''), trustAnchors: [pem, Buffer.from('')], crls: [pem], purpose: 'any', at: new Date(), maxChainLength: 4, minRsaBits: 3072, clockToleranceSec: 30, requireClientAuthEku: true })

const result = await pending
if (result.ok) {
  expectType<X509Certificate[]>(result.chain)
  expectType<Date>(result.validUntil)
  expectType<string>(result.trustAnchor.name)
  const identity = buildIdentity(result)
  expectType<ClientIdentity>(identity)
  expectType<string | null>(identity.spiffeId)
  expectType<readonly string[]>(identity.san.dns)
  expectType<'tls' | 'forwarded'>(identity.source)
  expectError(identity.serialNumber = 'x')
} else {
  expectType<VerificationCode>(result.code)
  expectError(result.chain)
}

expectAssignable<Policy>({})
expectAssignable<Policy>({ subject: { CN: 'a', '2.5.4.97': /^x$/ }, dns: ['*.example.com', /^a\.example\.com$/], anyOf: [{ spiffeId: 'spiffe://td/*' }] })
expectAssignable<Policy>({ check: async (id: ClientIdentity) => id.subject.attributes.CN?.[0] === 'x' })
expectNotAssignable<Policy>({ dns: 42 })
expectNotAssignable<Policy>({ ip: /^10\./ })

const predicate = compilePolicy({ dns: 'api.example.com' })
expectType<boolean>(predicate.isAsync)

expectType<403>(new MtlsForbiddenError().statusCode)
expectType<'FST_MTLS_FORBIDDEN'>(new MtlsForbiddenError().code)
expectType<number>(rejectionError('FST_MTLS_CERT_REVOKED').statusCode)
