// lib/sources/tls.ts over real TLS: the leaf's fingerprint read from the serialised session
// names the same certificate as getPeerCertificate(false), for every key type and TLS
// version, full and resumed; the session's bytes (which hold its secret) are zeroed before
// the read returns, whatever it finds; anything unexpected falls back to getPeerCertificate.
import t, { type Test } from 'tap'
import { once } from 'node:events'
import * as tls from 'node:tls'
import type { TLSSocket } from 'node:tls'
import { leafFingerprint, sameHandshake, sessionLeafFingerprint } from '../lib/sources/tls.js'
import { makeChain, type Chain } from './helpers/pki.js'

const server = await makeChain({ kind: 'ec256', intermediates: 0, label: 'Server', leaf: { subject: 'CN=localhost', san: { dns: ['localhost'], ip: ['127.0.0.1'] }, extKeyUsage: ['serverAuth'] } })
const [ec, rsa, ed] = await Promise.all([
  makeChain({ kind: 'ec256', label: 'EC Partner', leaf: { subject: 'CN=ec-svc,O=Partner' } }),
  makeChain({ kind: 'rsa2048', label: 'RSA Partner', leaf: { subject: 'CN=rsa-svc,O=Partner' } }),
  makeChain({ kind: 'ed25519', label: 'Ed Partner', leaf: { subject: 'CN=ed-svc,O=Partner' } })
])

interface Seen {
  /** what the plugin reads */
  leaf: string | undefined
  /** the session read alone, and Node's own reading of the leaf */
  session: string | undefined
  node: string | undefined
  reused: boolean
  /** every buffer getSession() handed out during the reads, and whether each was all zeros afterwards */
  zeroed: boolean[]
}

/** A TLS server (no HTTP) that reads the leaf of each connection as the plugin does. */
async function listen (t: Test) {
  const seen: Seen[] = []
  const srv = tls.createServer({ key: server.leaf.key.privateKeyPem, cert: server.leaf.pem, ca: [ec.root.pem, rsa.root.pem, ed.root.pem], requestCert: true, rejectUnauthorized: false }, (socket) => {
    const handed: Buffer[] = []
    const original = socket.getSession.bind(socket)
    socket.getSession = () => {
      const b = original()
      if (b !== undefined) handed.push(b)
      return b
    }
    const leaf = leafFingerprint(socket)
    const session = sessionLeafFingerprint(socket)
    const node = (socket.getPeerCertificate(false) as { fingerprint256?: string }).fingerprint256
    seen.push({ leaf, session, node, reused: socket.isSessionReused(), zeroed: handed.map((b) => b.length > 0 && b.every((x) => x === 0)) })
    socket.end('ok')
  })
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  t.teardown(() => srv.close())
  return { seen, port: (srv.address() as { port: number }).port }
}

/** One connection; resolves with the session ticket the server sent (TLS 1.3) or the session (TLS 1.2). */
async function connect (port: number, o: { chain?: Chain, version: 'TLSv1.2' | 'TLSv1.3', session?: Buffer }): Promise<Buffer | undefined> {
  const socket = tls.connect({
    host: '127.0.0.1',
    port,
    servername: 'localhost',
    ca: server.root.pem,
    minVersion: o.version,
    maxVersion: o.version,
    ...(o.chain === undefined ? {} : { cert: o.chain.chainPem, key: o.chain.leaf.key.privateKeyPem }),
    ...(o.session === undefined ? {} : { session: o.session })
  })
  let session: Buffer | undefined
  socket.on('session', (s: Buffer) => { session = s })
  socket.resume()
  await once(socket, 'end')
  socket.end()
  await once(socket, 'close')
  return session
}

const clients: Array<[string, Chain]> = [['ECDSA P-256', ec], ['RSA-2048', rsa], ['Ed25519', ed]]

for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
  t.test(`${version}: the session names the same leaf as getPeerCertificate(false), full and resumed; its bytes are zeroed`, async (t) => {
    const { seen, port } = await listen(t)
    for (const [name, chain] of clients) {
      const ticket = await connect(port, { chain, version })
      const full = seen.at(-1) as Seen
      t.equal(full.reused, false, `${name}: a full handshake`)
      t.equal(full.leaf, chain.leaf.cert.fingerprint256, `${name}: the plugin's read is the leaf's fingerprint`)
      t.equal(full.session, full.node, `${name}: the session's peer is Node's peer certificate`)
      t.ok(full.zeroed.length >= 2 && full.zeroed.every(Boolean), `${name}: every session buffer read was zeroed (${full.zeroed.length})`)

      t.ok(ticket, `${name}: the server issued a session`)
      await connect(port, { chain, version, session: ticket })
      const resumed = seen.at(-1) as Seen
      t.equal(resumed.reused, true, `${name}: resumed`)
      t.equal(resumed.leaf, chain.leaf.cert.fingerprint256, `${name}: resumed, the same leaf`)
      t.equal(resumed.session, resumed.node, `${name}: resumed, the session's peer is Node's`)
      t.ok(resumed.zeroed.every(Boolean))
    }
  })
}

t.test('no client certificate: no fingerprint from either read', async (t) => {
  const { seen, port } = await listen(t)
  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    await connect(port, { version })
    const s = seen.at(-1) as Seen
    t.equal(s.leaf, undefined, version)
    t.equal(s.session, undefined)
    t.equal(s.node, undefined)
    t.ok(s.zeroed.every(Boolean))
  }
})

// ------------------------------------------------------------------ what the session read refuses

/** A fake socket whose getSession() returns `bytes` (kept, to check the zeroing) or throws. */
function fake (bytes: Buffer | undefined | Error) {
  const handed: Buffer[] = []
  let peerReads = 0
  const socket = {
    isSessionReused: () => false,
    getSession: () => {
      if (bytes instanceof Error) throw bytes
      if (bytes === undefined) return undefined
      const copy = Buffer.from(bytes)
      handed.push(copy)
      return copy
    },
    getPeerCertificate: () => {
      peerReads++
      return { fingerprint256: 'FROM:NODE' }
    }
  }
  return { socket: socket as unknown as TLSSocket, handed, peerReads: () => peerReads }
}

const der = (tag: number, ...body: Buffer[]): Buffer => {
  const content = Buffer.concat(body)
  const n = content.length
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff]
  return Buffer.concat([Buffer.from([tag, ...len]), content])
}
const int = (v: number): Buffer => der(0x02, Buffer.from([v]))
const octets = (n: number): Buffer => der(0x04, Buffer.alloc(n, 0x5a))
const certLike = der(0x30, der(0x30, int(2)), der(0x30), der(0x03, Buffer.from([0])))
/** the shape of an OpenSSL session: version, TLS version, cipher, id, secret, time, timeout, peer */
const session = (o: { version?: Buffer, peer?: Buffer | null, trailing?: Buffer } = {}): Buffer => Buffer.concat([der(0x30,
  o.version ?? int(1), der(0x02, Buffer.from([0x03, 0x04])), octets(2), octets(32), octets(48),
  der(0xa1, int(100)), der(0xa2, int(7)),
  ...(o.peer === null ? [] : [der(0xa3, o.peer ?? certLike)]),
  der(0xa4, octets(4))
), o.trailing ?? Buffer.alloc(0)])

t.test('a well-formed session: the peer field is hashed; the buffer is zeroed', async (t) => {
  const f = fake(session())
  const { createHash } = await import('node:crypto')
  const expected = createHash('sha256').update(certLike).digest('hex').toUpperCase().match(/../g)?.join(':')
  t.equal(leafFingerprint(f.socket), expected)
  t.equal(f.peerReads(), 0, 'Node\'s object is not read')
  t.ok(f.handed[0]?.every((x) => x === 0), 'zeroed')
})

const refused: Array<[string, Buffer | undefined | Error]> = [
  ['getSession() returns undefined', undefined],
  ['getSession() throws', new Error('boom')],
  ['not DER at all', Buffer.from('not a session at all')],
  ['trailing bytes after the session', session({ trailing: Buffer.from([0]) })],
  ['an unknown session version', session({ version: int(2) })],
  ['a version that is not an INTEGER', session({ version: octets(1) })],
  ['no peer field (a session without a client certificate)', session({ peer: null })],
  ['a peer field holding no SEQUENCE', session({ peer: octets(3) })],
  ['a peer field holding two values', session({ peer: Buffer.concat([certLike, int(1)]) })],
  ['a truncated session', session().subarray(0, 90)]
]
for (const [name, bytes] of refused) {
  t.test(`${name}: falls back to getPeerCertificate(false); anything handed out is zeroed`, async (t) => {
    const f = fake(bytes)
    t.equal(leafFingerprint(f.socket), 'FROM:NODE')
    t.equal(f.peerReads(), 1)
    for (const b of f.handed) t.ok(b.every((x) => x === 0), 'zeroed')
  })
}

// ------------------------------------------------------------------ TLS 1.2: renegotiation

t.test('sameHandshake: the Finished message tells a new handshake; only then is the leaf read again', async (t) => {
  let finished: Buffer | undefined = Buffer.from('first-finish')
  let leaf = 'AA:AA'
  let leafReads = 0
  const socket = {
    getFinished: () => finished,
    isSessionReused: () => false,
    getSession: () => undefined,
    getPeerCertificate: () => {
      leafReads++
      return { fingerprint256: leaf }
    }
  } as unknown as TLSSocket
  const mark = { fingerprint: 'AA:AA', finished: Buffer.from('first-finish') }
  t.equal(sameHandshake(socket, mark), true, 'the same handshake')
  t.equal(leafReads, 0, 'without reading the leaf')

  finished = Buffer.from('second-finis')
  t.equal(sameHandshake(socket, mark), true, 'a new handshake with the same leaf')
  t.equal(leafReads, 1)
  t.same(mark.finished, Buffer.from('second-finis'), 'the mark moves to the new handshake')
  t.equal(sameHandshake(socket, mark), true)
  t.equal(leafReads, 1, 'and the next request reads nothing')

  finished = Buffer.from('third-finish')
  leaf = 'BB:BB'
  t.equal(sameHandshake(socket, mark), false, 'a new handshake with another leaf')
  t.equal(mark.finished.toString(), 'second-finis', 'the mark stays on the handshake it was made on')

  finished = undefined
  leaf = 'AA:AA'
  t.equal(sameHandshake(socket, mark), true, 'no Finished to compare: the leaf decides')
  t.equal(leafReads, 3)
  t.equal(sameHandshake(socket, { fingerprint: 'AA:AA', finished: undefined }), true)
  leaf = 'CC:CC'
  t.equal(sameHandshake(socket, { fingerprint: 'AA:AA', finished: undefined }), false)
})

t.test('the session read: headers it does not take, a large leaf, the same leaf twice', async (t) => {
  for (const [name, bytes] of [
    ['a multi-byte tag', Buffer.from([0x1f, 0x81, 0x01, 0x00])],
    ['a length in four bytes', Buffer.from([0x30, 0x84, 0x00, 0x00, 0x00, 0x03, 0x02, 0x01, 0x01])],
    ['an indefinite length', Buffer.from([0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00])],
    ['a length past the end', Buffer.from([0x30, 0x82, 0x01, 0x00, 0x02, 0x01, 0x01])],
    ['a field cut short', Buffer.from([0x30, 0x05, 0x02, 0x01, 0x01, 0xa3, 0x05])]
  ] as Array<[string, Buffer]>) {
    const f = fake(bytes)
    t.equal(leafFingerprint(f.socket), 'FROM:NODE', name)
    t.ok(f.handed[0]?.every((x) => x === 0), `${name}: zeroed`)
  }
  const { createHash } = await import('node:crypto')
  const fp = (b: Buffer): string | undefined => createHash('sha256').update(b).digest('hex').toUpperCase().match(/../g)?.join(':')
  // larger than the remembered size (8 KiB): hashed every time, still right
  const large = der(0x30, der(0x30, int(2), der(0x04, Buffer.alloc(9000, 1))), der(0x30), der(0x03, Buffer.from([0])))
  t.equal(leafFingerprint(fake(session({ peer: large })).socket), fp(large))
  // the same leaf twice (the second from memory), and another of the same length
  const other = der(0x30, der(0x30, int(3)), der(0x30), der(0x03, Buffer.from([0])))
  t.equal(other.length, certLike.length)
  for (let i = 0; i < 2; i++) {
    t.equal(leafFingerprint(fake(session()).socket), fp(certLike), `leaf ${i + 1}`)
    t.equal(leafFingerprint(fake(session({ peer: other })).socket), fp(other), `the other leaf ${i + 1}`)
  }
})
