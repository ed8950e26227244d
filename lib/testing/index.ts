// fastify-mtls-auth/testing: a throwaway PKI, a loopback listener and client dispatchers,
// so that a user's test suite can call its routes over real mutual TLS in a few lines.
//
// For tests only. Nothing here changes how the plugin verifies: the server options it
// returns hand every client certificate to the plugin (rejectUnauthorized: false, as the
// README recommends), and the plugin's verifier still decides. The package's main entry
// never imports this module.
import { createRequire } from 'node:module'
import { X509Certificate } from 'node:crypto'
import { Server as TlsServer } from 'node:tls'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { Agent } from 'undici'
import { createCrl, createDevPki, issueClient, type AltNames, type Certificate, type ClientCertificate, type DevPki, type KeyType, type RevokedEntry } from '../pki/index.js'

const DAY = 24 * 60 * 60 * 1000

/** Options of {@link createTestPki}. */
export interface TestPkiOptions {
  /** the key type of every certificate the PKI makes (default: the `fastify-mtls-auth/pki` default) */
  keyType?: KeyType
  /**
   * Make the PKI even when `NODE_ENV` is `'production'` (default false: refused there).
   * For a test run that deliberately uses production settings; never set it in application code.
   */
  allowProduction?: boolean
}

/** Options of {@link TestPki.client} and {@link TestPki.untrustedClient}. */
export interface TestClientOptions {
  /** the subject CN */
  cn: string
  /** the subject O */
  o?: string
  /** the subject OU (several for a repeated OU) */
  ou?: string | string[]
  /** subject alternative names */
  altNames?: AltNames
  /** a SPIFFE ID, written as the certificate's URI SAN */
  spiffe?: string
  /** the key type (default: the PKI's) */
  keyType?: KeyType
  /** validity in days from now (default: the `fastify-mtls-auth/pki` default) */
  days?: number
  /** an explicit start of validity */
  notBefore?: Date
  /** an explicit end of validity */
  notAfter?: Date
  /** valid from ten days ago until yesterday: the plugin answers 401 FST_MTLS_CERT_EXPIRED */
  expired?: boolean
  /** valid from tomorrow for thirty days: the plugin answers 401 FST_MTLS_CERT_NOT_YET_VALID */
  notYetValid?: boolean
}

/** A client certificate with its private key (`key.privateKeyPem`) and the chain it presents (`chainPem`: the leaf, then the client CA). */
export type TestClient = ClientCertificate

/** Server options for `Fastify({ https })`: the server certificate, the client CA names, and every client certificate handed to the plugin. */
export interface TestHttpsOptions {
  /** the server's private key (PEM) */
  key: string
  /** the server's certificate chain (PEM): valid for localhost, 127.0.0.1 and ::1 */
  cert: string
  /** the CA certificates whose names the server sends to clients: the PKI's root, the plugin's anchor */
  ca: string[]
  /** ask every client for a certificate */
  requestCert: true
  /** let the plugin answer a bad certificate with a readable 401 instead of a failed handshake */
  rejectUnauthorized: false
}

/** Options for `app.register(fastifyMtls, ...)`: the PKI's root as the trust anchor and the client CA's current CRL. */
export interface TestPluginOptions {
  /** the PKI's root certificate (PEM) */
  ca: string
  /**
   * the client CA (PEM), so that the plugin checks the CRL's signature when it starts
   * (a CRL whose issuer is neither in `ca` nor in `intermediates` is checked only when used)
   */
  intermediates: string[]
  /** the client CA's current CRL (PEM): empty until {@link TestPki.revoke} */
  crl: string
}

/** A throwaway PKI for tests: a root, a client CA under it, and a server certificate for localhost, 127.0.0.1 and ::1. */
export interface TestPki {
  /** the root CA: the plugin's trust anchor and the CA the dispatchers trust for the server */
  readonly root: Certificate
  /** the CA that issues {@link TestPki.client} certificates */
  readonly clientCa: Certificate
  /** the server certificate (localhost, 127.0.0.1, ::1) */
  readonly server: Certificate
  /** Issues a client certificate from the client CA (clientAuth EKU); `expired` and `notYetValid` date it outside its validity. */
  client: (options: TestClientOptions) => Promise<TestClient>
  /** Issues a client certificate from another throwaway PKI that this one does not trust: the plugin answers 401 FST_MTLS_CERT_UNTRUSTED. */
  untrustedClient: (options: TestClientOptions) => Promise<TestClient>
  /**
   * Lists a client certificate on the client CA's CRL and resolves to the new CRL (PEM).
   * A plugin registered before the call sees it after `app.mtls.reload({ crl: pki.crl() })`.
   */
  revoke: (client: Certificate, reason?: RevokedEntry['reason']) => Promise<string>
  /** The client CA's current CRL (PEM), listing every certificate revoked so far. */
  crl: () => string
  /** Server options for `Fastify({ https: pki.httpsOptions() })`. */
  httpsOptions: () => TestHttpsOptions
  /** Plugin options for `app.register(fastifyMtls, pki.pluginOptions())`; spread it to add your own (`{ ...pki.pluginOptions(), policy }`). */
  pluginOptions: () => TestPluginOptions
  /**
   * An undici `Agent` that trusts the PKI's root for the server and presents `client`'s chain,
   * or no certificate at all without an argument. Needs the `undici` package (a peer dependency).
   */
  dispatcher: (client?: TestClient) => Agent
}

/** A Fastify app listening on 127.0.0.1, see {@link listenMtls}. */
export interface MtlsTestServer {
  /** `https://127.0.0.1:<port>`, without a trailing slash */
  readonly url: string
  /** the port the system picked */
  readonly port: number
  /** Closes the app (and with it the dispatchers' idle connections). */
  close: () => Promise<void>
}

type UndiciModule = typeof import('undici')
let undici: UndiciModule | undefined

/** undici, loaded on first use so that importing this module never needs it. */
function loadUndici (): UndiciModule {
  if (undici === undefined) {
    try {
      undici = createRequire(import.meta.url)('undici') as UndiciModule
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') {
        throw new Error('fastify-mtls-auth/testing: dispatcher() needs the undici package: npm install --save-dev undici')
      }
      throw err
    }
  }
  return undici
}

function refuseInProduction (allow: boolean | undefined): void {
  if (process.env.NODE_ENV === 'production' && allow !== true) {
    throw new Error('fastify-mtls-auth/testing makes throwaway CAs for tests and refuses to run with NODE_ENV=production (pass { allowProduction: true } to createTestPki in a test that needs it)')
  }
}

function clientOptions (o: TestClientOptions, keyType: KeyType | undefined): Parameters<typeof issueClient>[1] {
  if (o === null || typeof o !== 'object' || typeof o.cn !== 'string' || o.cn === '') {
    throw new TypeError('fastify-mtls-auth/testing: client() needs options with a cn, such as { cn: \'alice\' }')
  }
  if (o.expired === true && o.notYetValid === true) {
    throw new TypeError('fastify-mtls-auth/testing: a client certificate cannot be both expired and notYetValid')
  }
  const { expired, notYetValid, ...rest } = o
  const now = Date.now()
  const dates = expired === true
    ? { notBefore: new Date(now - 10 * DAY), notAfter: new Date(now - DAY) }
    : notYetValid === true
      ? { notBefore: new Date(now + DAY), notAfter: new Date(now + 31 * DAY) }
      : {}
  const type = rest.keyType ?? keyType
  return { ...rest, ...dates, ...(type === undefined ? {} : { keyType: type }) }
}

/**
 * Makes a throwaway PKI for tests (a root, a client CA, a server certificate for localhost,
 * 127.0.0.1 and ::1), in memory: nothing is written to disk.
 * Refused when `NODE_ENV` is `'production'` unless `allowProduction` is set.
 */
export async function createTestPki (options: TestPkiOptions = {}): Promise<TestPki> {
  refuseInProduction(options.allowProduction)
  const keyType = options.keyType
  const dev = await createDevPki(keyType === undefined ? {} : { keyType })
  const { root, clientCa, server } = dev
  const clientCaX509 = new X509Certificate(clientCa.der)
  const revoked: RevokedEntry[] = []
  let crlNumber = 0
  let currentNumber = 0
  let currentCrl = ''
  // each CRL lists every revocation made before it was started; of CRLs signed concurrently the newest wins
  const makeCrl = async (): Promise<string> => {
    const now = Date.now()
    const number = ++crlNumber
    const crl = await createCrl({ issuer: clientCa, revoked: [...revoked], thisUpdate: new Date(now - 60 * 1000), nextUpdate: new Date(now + 7 * DAY), crlNumber: number })
    if (number > currentNumber) {
      currentNumber = number
      currentCrl = crl.pem
    }
    return currentCrl
  }
  await makeCrl()
  const issuedByClientCa = (cert: Certificate): boolean => {
    if (cert === null || typeof cert !== 'object' || !Buffer.isBuffer(cert.der)) return false
    const x = new X509Certificate(cert.der)
    return x.checkIssued(clientCaX509) && x.verify(clientCaX509.publicKey)
  }
  let stranger: Promise<DevPki> | undefined

  const pki: TestPki = {
    root,
    clientCa,
    server,
    async client (o) {
      return await issueClient(dev, clientOptions(o, keyType))
    },
    async untrustedClient (o) {
      const issued = clientOptions(o, keyType)
      stranger ??= createDevPki(keyType === undefined ? {} : { keyType })
      return await issueClient(await stranger, issued)
    },
    async revoke (client, reason) {
      if (!issuedByClientCa(client)) {
        throw new TypeError('fastify-mtls-auth/testing: revoke() takes a certificate made by this PKI\'s client()')
      }
      if (!revoked.some((r) => r.serialHex === client.serialHex)) {
        revoked.push({ serialHex: client.serialHex, date: new Date(Date.now() - 60 * 1000), ...(reason === undefined ? {} : { reason }) })
      }
      return await makeCrl()
    },
    crl: () => currentCrl,
    httpsOptions: () => ({
      key: server.key?.privateKeyPem as string,
      cert: server.pem,
      ca: [root.pem],
      requestCert: true,
      rejectUnauthorized: false
    }),
    pluginOptions: () => ({ ca: root.pem, intermediates: [clientCa.pem], crl: currentCrl }),
    dispatcher (client) {
      if (client !== undefined && (client === null || typeof client.chainPem !== 'string' || typeof client.key?.privateKeyPem !== 'string')) {
        throw new TypeError('fastify-mtls-auth/testing: dispatcher() takes a certificate made by client() or untrustedClient(), or nothing')
      }
      const { Agent } = loadUndici()
      return new Agent({
        connect: {
          ca: root.pem,
          ...(client === undefined ? {} : { cert: client.chainPem, key: client.key.privateKeyPem })
        }
      })
    }
  }
  return Object.freeze(pki)
}

/**
 * Starts `app` on 127.0.0.1 with a port the system picks and resolves to its URL and a
 * `close()`. The app must have been created with `https` options (`pki.httpsOptions()`).
 */
export async function listenMtls (app: FastifyInstance): Promise<MtlsTestServer> {
  if (!(app.server instanceof TlsServer)) {
    throw new TypeError('fastify-mtls-auth/testing: listenMtls() needs an HTTPS app: create it with Fastify({ https: pki.httpsOptions() })')
  }
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  return Object.freeze({
    url: `https://127.0.0.1:${port}`,
    port,
    close: async () => { await app.close() }
  })
}
