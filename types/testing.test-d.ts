import { expectAssignable, expectError, expectType } from 'tsd'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Agent } from 'undici'
import fastifyMtls from 'fastify-mtls-auth'
import type { Certificate, Key } from 'fastify-mtls-auth/pki'
import {
  createTestPki, listenMtls,
  type MtlsTestServer, type TestClient, type TestClientOptions, type TestHttpsOptions, type TestPki, type TestPkiOptions, type TestPluginOptions
} from 'fastify-mtls-auth/testing'

const pki = await createTestPki()
expectType<TestPki>(pki)
expectType<Promise<TestPki>>(createTestPki({ keyType: 'ed25519', allowProduction: true }))
expectError(createTestPki({ keyType: 'dsa' }))
expectError(createTestPki({ trustAnything: true }))
expectAssignable<TestPkiOptions>({})

expectType<Certificate>(pki.root)
expectType<Certificate>(pki.clientCa)
expectType<Certificate>(pki.server)
expectError(pki.root = pki.server)

const alice = await pki.client({ cn: 'alice', o: 'Acme', ou: ['a', 'b'], spiffe: 'spiffe://acme.test/a', altNames: { dns: ['a.test'] }, keyType: 'rsa', days: 3 })
expectType<TestClient>(alice)
expectType<Key>(alice.key)
expectType<string>(alice.chainPem)
expectType<string>(alice.key.privateKeyPem)
expectType<Promise<TestClient>>(pki.client({ cn: 'old', expired: true }))
expectType<Promise<TestClient>>(pki.client({ cn: 'early', notYetValid: true, notBefore: new Date(), notAfter: new Date() }))
expectType<Promise<TestClient>>(pki.untrustedClient({ cn: 'eve' }))
expectError(pki.client({ o: 'Acme' }))
expectError(pki.client({ cn: 'x', expired: 'yes' }))
expectAssignable<TestClientOptions>({ cn: 'x' })

expectType<Promise<string>>(pki.revoke(alice))
expectType<Promise<string>>(pki.revoke(alice, 'keyCompromise'))
expectError(pki.revoke(alice, 'because'))
expectType<string>(pki.crl())

const https = pki.httpsOptions()
expectType<TestHttpsOptions>(https)
expectType<true>(https.requestCert)
expectType<false>(https.rejectUnauthorized)
expectType<TestPluginOptions>(pki.pluginOptions())

const app = Fastify({ https: pki.httpsOptions() })
await app.register(fastifyMtls, pki.pluginOptions())
await app.register(fastifyMtls, { ...pki.pluginOptions(), mode: 'optional', policy: { subject: { CN: 'alice' } } })

expectType<Agent>(pki.dispatcher())
expectType<Agent>(pki.dispatcher(alice))
expectError(pki.dispatcher(pki.root))

const server = await listenMtls(app)
expectType<MtlsTestServer>(server)
expectType<string>(server.url)
expectType<number>(server.port)
expectType<Promise<void>>(server.close())
expectError(listenMtls())
expectAssignable<(app: FastifyInstance) => Promise<MtlsTestServer>>(listenMtls)
