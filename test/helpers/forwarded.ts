/**
 * Shared fixtures of test/plugin-forwarded*.test.ts: the PKI, the header encoders of each
 * proxy, Fastify apps with the forwarded source (plain HTTP, HTTPS with both sources, HTTP/2)
 * and clients (undici, raw HTTP/1.1 lines, node:http2).
 *
 *   start(t, { transport, options, routes, before, logs, listen, fastify }) -> { app, url, port }
 *   call(url, path, { dispatcher, headers }) -> Reply        undici request
 *   raw(port, head) -> Reply                                  one HTTP/1.1 request written by hand
 *   h2(url, headers) -> Reply                                 node:http2 (repeated fields allowed)
 *   rejected(t, reply, code, what, todo?)                     status and Fastify error body
 *   view(identity)                                            what the '/' route replies
 */
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import http2 from 'node:http2'
import type { IncomingHttpHeaders } from 'node:http'
import { connect } from 'node:net'
import type { Writable } from 'node:stream'
import type { Test } from 'tap'
import Fastify, { type FastifyInstance, type FastifyListenOptions, type FastifyServerOptions } from 'fastify'
import { Agent, request } from 'undici'
import fastifyMtls, { rejectionError, type ClientIdentity, type FastifyMtlsOptions, type RejectionCode } from '../../lib/index.js'
import { issue, makeChain, newKey, type Chain, type Issued } from './pki.js'

// ---------------------------------------------------------------- PKI

export const serverChain = await makeChain({ kind: 'ec256', intermediates: 0, label: 'Server', leaf: { subject: 'CN=localhost', san: { dns: ['localhost'], ip: ['127.0.0.1', '::1'] }, extKeyUsage: ['serverAuth'] } })
const fresh = async () => newKey('ec256', { fresh: true })
const DAY = 24 * 60 * 60 * 1000

/** root -> intermediate -> leaf; the leaf needs the intermediate to verify */
export const partner: Chain = await makeChain({
  kind: 'ec256',
  label: 'Partner',
  root: { key: await fresh() },
  intermediate: { key: await fresh() },
  leaf: { subject: 'CN=svc,OU=payments,O=Partner', key: await fresh(), san: { dns: ['svc.partner.example'], uri: ['spiffe://partner.example/ns/prod/svc'], email: ['ops@partner.example'], ip: ['10.0.0.7'] } }
})
export const partnerCa = partner.intermediates[0] as Issued
const byPartner = async (subject: string, extra: Record<string, unknown> = {}): Promise<Issued> => issue({ subject, issuer: partnerCa, key: await fresh(), ...extra })
export const alice = await byPartner('CN=alice,OU=sales,O=Partner', { san: { dns: ['alice.partner.example'] } })
export const bob = await byPartner('CN=bob,OU=payments,O=Partner')
export const edgeProxy = await byPartner('CN=edge-proxy,OU=edge,O=Partner')
export const expired = await byPartner('CN=expired,O=Partner', { notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) })
/** a second trusted CA, for anchor policies */
export const other: Chain = await makeChain({ kind: 'ec256', label: 'Other', leaf: { subject: 'CN=svc,OU=payments,O=Other', key: await fresh() } })
/** a CA nobody trusts; its leaf says CN=edge-proxy too */
export const stranger: Chain = await makeChain({ kind: 'ec256', label: 'Stranger', leaf: { subject: 'CN=edge-proxy,OU=edge,O=Partner', key: await fresh() } })

// ---------------------------------------------------------------- encoders, as each proxy writes its header

export const sha256Hex = (der: Buffer): string => createHash('sha256').update(der).digest('hex')
export const b64 = (c: Issued): string => c.der.toString('base64')
/** RFC 9440 / RFC 8941 byte sequence */
export const sf = (c: Issued): string => `:${b64(c)}:`
/** Envoy (urlEncodedPemEncodedPeerCertificate): \n, space, +, / and = escaped */
export const envoyEncode = (pem: string): string => pem.replace(/[\n +/=]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0'))
/** nginx $ssl_client_escaped_cert */
export const nginxEncode = (pem: string): string => encodeURIComponent(pem)
/** AWS ALB X-Amzn-Mtls-Clientcert: URL-encoded PEM with + = / left as they are */
export const albEncode = (pem: string): string => encodeURIComponent(pem).replace(/%2B/g, '+').replace(/%3D/g, '=').replace(/%2F/g, '/')
/** one XFCC element as Envoy writes it with cert: true and chain: true */
export function xfcc (leaf: Issued, chain: Issued[] = [], opts: { quote?: boolean, hash?: string | false, by?: string } = {}): string {
  const q = (s: string): string => opts.quote === true ? `"${s}"` : s
  const parts = [`By=${opts.by ?? 'spiffe://cluster.local/ns/edge/sa/envoy'}`]
  if (opts.hash !== false) parts.push(`Hash=${opts.hash ?? sha256Hex(leaf.der)}`)
  parts.push(`Cert=${q(envoyEncode(leaf.pem))}`)
  if (chain.length > 0) parts.push(`Chain=${q(envoyEncode([leaf, ...chain].map((c) => c.pem).join('')))}`)
  parts.push('Subject="CN=whoever,O=Fixture PKI"', 'URI=spiffe://cluster.local/ns/app/sa/client', 'DNS=client.example')
  return parts.join(';')
}

// ---------------------------------------------------------------- apps

export type { Json } from './logs.js'
import type { Json } from './logs.js'

/** What the '/' route replies for an identity: the fields a direct TLS connection is compared on. */
export function view (identity: ClientIdentity | null): Json | null {
  if (identity === null) return null
  return {
    source: identity.source,
    fingerprint256: identity.fingerprint256,
    subject: identity.subject.rfc4514,
    issuer: identity.issuer.rfc4514,
    serialNumber: identity.serialNumber,
    san: identity.san,
    spiffeId: identity.spiffeId,
    trustAnchor: identity.trustAnchor,
    chain: identity.chain.length
  }
}

export const XFCC = 'x-forwarded-client-cert'
export const LOOPBACK = ['127.0.0.1']
export const xfccOptions = (extra: Partial<NonNullable<FastifyMtlsOptions['forwarded']>> = {}): NonNullable<FastifyMtlsOptions['forwarded']> =>
  ({ header: XFCC, format: 'xfcc', trustedProxies: LOOPBACK, ...extra })

const httpsOptions = { key: serverChain.leaf.key.privateKeyPem, cert: serverChain.leaf.pem, ca: partner.root.pem, requestCert: true, rejectUnauthorized: false }

export interface StartOptions {
  /** 'http' (default), 'https' (requestCert: both sources), 'h2' (HTTP/2 over TLS, requestCert) */
  transport?: 'http' | 'https' | 'h2'
  /** plugin options besides ca (partner.root.pem unless given) */
  options?: Partial<FastifyMtlsOptions>
  before?: (app: FastifyInstance) => void
  routes?: (app: FastifyInstance) => void | Promise<void>
  logs?: Writable
  listen?: FastifyListenOptions
  fastify?: FastifyServerOptions
}

export async function start (t: Test, s: StartOptions = {}): Promise<{ app: FastifyInstance, url: string, port: number }> {
  const transport = s.transport ?? 'http'
  const app = Fastify({
    ...(transport === 'http' ? {} : { https: httpsOptions }),
    ...(transport === 'h2' ? { http2: true } : {}),
    ...(s.logs === undefined ? {} : { logger: { level: 'info', stream: s.logs } }),
    ...s.fastify
  } as FastifyServerOptions) as unknown as FastifyInstance
  s.before?.(app)
  await app.register(fastifyMtls, { ca: partner.root.pem, ...s.options })
  app.get('/', async (req) => ({ id: view(req.clientIdentity), peer: req.raw.socket?.remoteAddress ?? null, port: req.raw.socket?.remotePort ?? null, ip: req.ip }))
  await s.routes?.(app)
  t.teardown(async () => app.close())
  await app.listen(s.listen ?? { host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return { app, url: `${transport === 'http' ? 'http' : 'https'}://127.0.0.1:${port}`, port }
}

// ---------------------------------------------------------------- clients

const agents: Agent[] = []
/** closes every agent made by tlsAgent/h2Agent; call once from the test file's teardown */
export async function closeAgents (): Promise<void> { await Promise.all(agents.splice(0).filter((a) => !a.closed && !a.destroyed).map(async (a) => a.close())) }

/** an undici Agent presenting `leaf` (and `chain`) to the HTTPS apps */
export function tlsAgent (leaf?: Issued, chain: Issued[] = [], extra: { allowH2?: boolean } = {}): Agent {
  const cert = leaf === undefined ? {} : { cert: [leaf, ...chain].map((c) => c.pem).join(''), key: leaf.key.privateKeyPem }
  const a = new Agent({ ...extra, connect: { ca: serverChain.root.pem, servername: 'localhost', ...cert } })
  agents.push(a)
  return a
}

export interface Reply { status: number, body: any, text: string, headers: IncomingHttpHeaders }

const parse = (text: string): unknown => { try { return JSON.parse(text) } catch { return text } }

export async function call (url: string, path = '/', o: { dispatcher?: Agent, headers?: Record<string, string> | string[] } = {}): Promise<Reply> {
  const res = await request(`${url}${path}`, { ...(o.dispatcher === undefined ? {} : { dispatcher: o.dispatcher }), headers: o.headers ?? {} })
  const text = await res.body.text()
  return { status: res.statusCode, body: parse(text), text, headers: res.headers }
}

/** One HTTP/1.1 request written line by line (`head` is the header lines after Host), read to the end. */
export async function raw (port: number, head: string[], path = '/'): Promise<Reply> {
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  // write, not end: a half-closed request is aborted by Node's HTTP server before the reply
  socket.write([`GET ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close', ...head, '', ''].join('\r\n'))
  const chunks: Buffer[] = []
  for await (const chunk of socket) chunks.push(chunk as Buffer)
  const reply = Buffer.concat(chunks).toString('utf8')
  const split = reply.indexOf('\r\n\r\n')
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1] ?? 0)
  const text = reply.slice(split + 4)
  return { status, body: parse(text), text, headers: {} }
}

/** A request over node:http2, which sends an array value as repeated header fields (undici joins them). */
export async function h2 (url: string, headers: http2.OutgoingHttpHeaders, client?: Issued): Promise<Reply> {
  const session = http2.connect(url, { ca: serverChain.root.pem, servername: 'localhost', ...(client === undefined ? {} : { cert: client.pem, key: client.key.privateKeyPem }) })
  try {
    const stream = session.request({ ':path': '/', ...headers })
    stream.setEncoding('utf8')
    let text = ''
    stream.on('data', (c: string) => { text += c })
    const [response] = await once(stream, 'response') as [http2.IncomingHttpHeaders]
    await once(stream, 'end')
    return { status: Number(response[':status']), body: parse(text), text, headers: {} }
  } finally {
    session.close()
  }
}

// ---------------------------------------------------------------- assertions, logs

const ERROR_NAMES: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden' }

export function rejected (t: Test, r: Reply, code: RejectionCode, what: string, todo?: string): void {
  const error = rejectionError(code)
  const extra = todo === undefined ? {} : { todo }
  t.equal(r.status, error.statusCode, `${what}: status ${error.statusCode}`, extra)
  t.same(r.body, { statusCode: error.statusCode, code, error: ERROR_NAMES[error.statusCode], message: error.message }, `${what}: ${code}`, extra)
}

export { logCapture } from './logs.js'

/** An app that registers but never listens: for option errors. */
export async function register (options: Record<string, unknown>, fastify: Record<string, unknown> = {}): Promise<void> {
  const app = Fastify(fastify as FastifyServerOptions)
  try {
    await app.register(fastifyMtls, { ca: partner.root.pem, ...options } as FastifyMtlsOptions)
    await app.ready()
  } finally {
    await app.close()
  }
}

export const httpsServerOptions = httpsOptions
