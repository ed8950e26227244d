import { expectError, expectType } from 'tsd'
import Fastify from 'fastify'
import { fastifyMtls, toPrometheus, type CountsByCode, type MtlsMetric, type MtlsMetricPoint } from 'fastify-mtls-auth'

const pem = '-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n'
const app = Fastify({ https: { key: pem, cert: pem, ca: pem, requestCert: true } })

app.register(fastifyMtls, { ca: pem, logIdentity: false })
expectError(app.register(fastifyMtls, { ca: pem, logIdentity: 'yes' }))

const status = app.mtls.status()
expectType<number>(status.requests.accepted)
expectType<number>(status.requests.withoutCertificate)
expectType<number>(status.requests.rejected.FST_MTLS_CERT_EXPIRED)
expectType<CountsByCode>(status.requests.wouldReject)
expectType<number>(status.guards.rejected.FST_MTLS_TOKEN_NOT_BOUND)
expectType<number>(status.verdictReuses.connection)
expectError(status.requests.rejected.FST_MTLS_NOT_A_CODE)

const metrics = app.mtls.metrics()
expectType<MtlsMetric[]>(metrics)
const first = metrics[0]
if (first !== undefined) {
  expectType<'counter' | 'gauge'>(first.kind)
  expectType<readonly MtlsMetricPoint[]>(first.points)
  expectType<Readonly<Record<string, string>>>(first.points[0]?.attributes ?? {})
}
expectType<string>(toPrometheus(metrics))
