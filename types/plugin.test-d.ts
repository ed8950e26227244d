import { expectAssignable, expectError, expectType } from 'tsd'
import Fastify, { type FastifyRequest, type onRequestAsyncHookHandler } from 'fastify'
import fastifyMtlsDefault, { fastifyMtls, type ClientIdentity, type FastifyMtlsOptions, type MtlsRejection, type MtlsStatus } from 'fastify-mtls-auth'

const pem = '-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n'
const app = Fastify({ https: { key: pem, cert: pem, ca: pem, requestCert: true } })

// both import shapes are the same plugin
expectType<typeof fastifyMtls>(fastifyMtlsDefault)

app.register(fastifyMtls, { ca: pem })
app.register(fastifyMtlsDefault, {
  ca: [{ name: 'acme', cert: pem }, { name: 'globex', cert: Buffer.from(pem) }],
  mode: 'optional',
  policy: { anchor: 'acme', subject: { O: 'Acme' }, check: (identity, request) => identity.subject.attributes.CN?.[0] === request.headers['x-cn'] },
  intermediates: [pem],
  crl: pem,
  requireClientAuthEku: true,
  clockToleranceSec: 30,
  minRsaBits: 3072,
  maxChainLength: 4,
  maxVerdictAgeSec: 60,
  deny: ['AB:CD', { issuer: 'CN=Acme CA', serialNumber: '0F' }],
  enforce: false,
  wwwAuthenticate: 'Mutual',
  rejectionLogLimit: 10,
  onAuthenticated: (identity, request) => { request.log.info(identity.fingerprint256) },
  onRejected: async (rejection) => { expectType<MtlsRejection>(rejection) }
})
expectError(app.register(fastifyMtls, {}))
expectError(app.register(fastifyMtls, { ca: pem, mode: 'sometimes' }))
expectError(app.register(fastifyMtls, { ca: pem, policy: { dns: 42 } }))
expectError(app.register(fastifyMtls, { ca: pem, deny: [42] }))
expectAssignable<FastifyMtlsOptions>({ ca: pem })

app.get('/', async (request) => {
  expectType<ClientIdentity | null>(request.clientIdentity)
  if (request.clientIdentity !== null) expectType<string | null>(request.clientIdentity.spiffeId)
  return 'ok'
})

// route config is typed through FastifyContextConfig
app.get('/health', { config: { mtls: false } }, async () => 'ok')
app.get('/any', { config: { mtls: true } }, async () => 'ok')
app.get('/partner', { config: { mtls: { anchor: 'acme', spiffeId: 'spiffe://acme.example/*' } } }, async () => 'ok')
expectError(app.get('/bad', { config: { mtls: 'yes' } }, async () => 'ok'))
expectError(app.get('/bad', { config: { mtls: { dns: 42 } } }, async () => 'ok'))

// guards are hooks
expectType<onRequestAsyncHookHandler>(app.mtls.require())
app.get('/billing', { onRequest: app.mtls.require({ subject: { OU: 'billing' } }) }, async () => 'ok')
app.get('/claims', { preHandler: app.mtls.require({ check: async (id: ClientIdentity, req: FastifyRequest) => id.trustAnchor.name === req.params }) }, async () => 'ok')
expectType<MtlsStatus>(app.mtls.status())
expectType<number>(app.mtls.status().epoch)

// behind a proxy
app.register(fastifyMtls, { ca: pem, forwarded: { header: 'x-forwarded-client-cert', format: 'xfcc', trustedProxies: ['10.0.0.7', 'unix'], xfccElement: 'only' } })
app.register(fastifyMtls, { ca: pem, forwarded: { header: 'client-cert', chainHeader: 'client-cert-chain', format: 'rfc9440', trustedProxies: (address) => address === '10.0.0.7' } })
app.register(fastifyMtls, { ca: pem, forwarded: { header: 'x-ssl-client-cert', format: 'escaped-pem', trustedProxies: { policy: { subject: { CN: 'edge' } } }, verifyHeader: { name: 'x-ssl-client-verify', value: 'SUCCESS' } } })
expectError(app.register(fastifyMtls, { ca: pem, forwarded: { header: 'x', format: 'json', trustedProxies: [] } }))
expectError(app.register(fastifyMtls, { ca: pem, forwarded: { header: 'x', format: 'xfcc' } }))

// rotation and revocation
app.mtls.reload({ ca: pem, crl: [pem], deny: [], key: pem, cert: pem }).then((outcome) => expectType<boolean>(outcome.ok))
app.register(fastifyMtls, { ca: pem, crlMode: 'soft-fail', ocsp: { mode: 'hard-fail', responder: 'http://ocsp.example' }, crlFetch: { allow: ['http://crl.example/'] }, watch: { ca: '/etc/mtls/ca.pem' } })
expectError(app.register(fastifyMtls, { ca: pem, ocsp: { mode: 'sometimes' } }))

// certificate-bound tokens
expectType<onRequestAsyncHookHandler>(app.mtls.requireBoundToken())
app.get('/settlements', { preHandler: app.mtls.requireBoundToken({ claims: (request) => request.headers.authorization }) }, async () => 'ok')
expectError(app.mtls.requireBoundToken({ claims: 'user' }))
