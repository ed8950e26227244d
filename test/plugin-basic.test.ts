// The plugin over real TLS: a Fastify HTTPS server on 127.0.0.1 port 0 and undici clients presenting real certificates.
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import { Agent, request } from 'undici'
import fastifyMtls from '../lib/index.js'
import { makeChain } from './helpers/pki.js'

const server = await makeChain({ kind: 'ec256', intermediates: 0, label: 'Server', leaf: { subject: 'CN=localhost', san: { dns: ['localhost'], ip: ['127.0.0.1'] }, extKeyUsage: ['serverAuth'] } })
const partner = await makeChain({ kind: 'ec256', label: 'Partner', leaf: { subject: 'CN=svc,O=Partner', san: { uri: ['spiffe://partner.example/svc'] } } })

async function start (t: Test, options: Record<string, unknown> = {}, routes?: (app: ReturnType<typeof Fastify>) => void) {
  const app = Fastify({ https: { key: server.leaf.key.privateKeyPem, cert: server.leaf.pem, ca: partner.root.pem, requestCert: true, rejectUnauthorized: false } })
  await app.register(fastifyMtls, { ca: partner.root.pem, ...options })
  app.get('/', async (req) => ({ cn: req.clientIdentity?.subject.attributes.CN?.[0] ?? null }))
  routes?.(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const address = app.server.address() as { port: number }
  return { app, url: `https://127.0.0.1:${address.port}` }
}

function agent (t: Test, cert?: { pem: string, key: string }) {
  const a = new Agent({ connect: { ca: server.root.pem, servername: 'localhost', ...(cert === undefined ? {} : { cert: cert.pem, key: cert.key }) } })
  t.teardown(() => a.close())
  return a
}

t.test('a valid certificate gets an identity', async (t) => {
  const { url } = await start(t)
  const res = await request(url, { dispatcher: agent(t, { pem: partner.chainPem, key: partner.leaf.key.privateKeyPem }) })
  t.equal(res.statusCode, 200)
  t.same(await res.body.json(), { cn: 'svc' })
})

t.test('no certificate: 401 FST_MTLS_CERT_MISSING', async (t) => {
  const { url } = await start(t)
  const res = await request(url, { dispatcher: agent(t) })
  t.equal(res.statusCode, 401)
  t.match(await res.body.json(), { code: 'FST_MTLS_CERT_MISSING', statusCode: 401, error: 'Unauthorized' })
})

t.test('a certificate from another CA: 401 FST_MTLS_CERT_UNTRUSTED', async (t) => {
  const { url } = await start(t)
  const stranger = await makeChain({ kind: 'ec256', intermediates: 0, label: 'Stranger' })
  const res = await request(url, { dispatcher: agent(t, { pem: stranger.leaf.pem, key: stranger.leaf.key.privateKeyPem }) })
  t.equal(res.statusCode, 401)
  t.match(await res.body.json(), { code: 'FST_MTLS_CERT_UNTRUSTED' })
})
