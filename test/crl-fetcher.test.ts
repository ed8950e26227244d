// The CRL distribution-point fetcher (lib/revocation/crl-fetcher.ts) against a real
// node:http server on 127.0.0.1: allow-list, caching, refresh before nextUpdate, last good
// CRL kept on failure, ordering of CRLs, size and time bounds, shared downloads, status().
// Time is a fake clock and timers are fired by hand, except in one test that waits for a
// real (unref'ed) timer through an event; no test sleeps for a fixed time.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { verifyCertificateChain } from '../lib/index.js'
import { getCertificate } from '../lib/der/store.js'
import { MAX_CRL_BYTES, type ParsedCrl } from '../lib/der/crl.js'
import { CrlFetcher, MAX_URLS_PER_CERT, normaliseCrlUrl, type CrlFetcherDeps, type CrlFetchOptions } from '../lib/revocation/crl-fetcher.js'
import { issue, makeChain, makeCrl, type CrlSpec, type Issued } from './helpers/pki.js'

// ---------------------------------------------------------------- fixtures

const chain = await makeChain({ kind: 'ec256', label: 'CRL fetch' })
const int = chain.intermediates[0] as Issued
const sec = (ms: number): number => Math.floor(ms / 1000) * 1000
const T0 = sec(Date.now())
const HOUR = 3600e3
/** a CRL from the intermediate; times relative to T0 */
const crl = async (spec: Partial<CrlSpec> = {}): Promise<{ der: Buffer, pem: string }> =>
  makeCrl({ issuer: int, thisUpdate: new Date(T0 - HOUR), nextUpdate: new Date(T0 + HOUR), ...spec })

type Handler = (req: IncomingMessage, res: ServerResponse) => void
const routes = new Map<string, Handler>()
const hitCounts = new Map<string, number>()
const server = createServer((req, res) => {
  const path = req.url ?? ''
  hitCounts.set(path, (hitCounts.get(path) ?? 0) + 1)
  const handler = routes.get(path)
  if (handler === undefined) {
    res.writeHead(404).end()
    return
  }
  handler(req, res)
})
server.listen(0, '127.0.0.1')
await once(server, 'listening')
const BASE = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
t.teardown(() => {
  server.closeAllConnections()
  server.close()
})

const hits = (path: string): number => hitCounts.get(path) ?? 0
const reply = (body: string | Buffer, status = 200, headers: Record<string, string> = {}): Handler => (_req, res) => {
  res.writeHead(status, headers).end(body)
}
/** serves `body` at `path` (under /crls/, the allow-listed prefix, unless the path says otherwise) */
const serve = (path: string, body: string | Buffer | Handler, status = 200): string => {
  routes.set(path, typeof body === 'function' ? body : reply(body, status))
  return BASE + path
}

interface FakeTimer { fn: () => void, ms: number, cancelled: boolean }

interface Harness {
  fetcher: CrlFetcher
  clock: { now: number }
  timers: FakeTimer[]
  /** timers armed and not cancelled */
  live: () => FakeTimer[]
  /** runs every live timer once */
  fire: () => void
  news: Array<{ crl: ParsedCrl, url: string }>
  warnings: Array<{ obj: object, msg: string }>
}

/** a fake clock, hand-fired timers, and records of onNewCrl and log calls */
function harness (options: Partial<CrlFetchOptions> = {}, deps: Partial<CrlFetcherDeps> = {}): Harness {
  const clock = { now: T0 }
  const timers: FakeTimer[] = []
  const news: Array<{ crl: ParsedCrl, url: string }> = []
  const warnings: Array<{ obj: object, msg: string }> = []
  const fetcher = new CrlFetcher({ allow: [`${BASE}/crls/`], ...options }, {
    now: () => clock.now,
    setTimer: (fn, ms) => {
      const timer = { fn, ms, cancelled: false }
      timers.push(timer)
      return () => { timer.cancelled = true }
    },
    onNewCrl: (c, url) => { news.push({ crl: c, url }) },
    log: { warn: (obj, msg) => { warnings.push({ obj, msg }) }, info: () => {} },
    ...deps
  })
  const live = (): FakeTimer[] => timers.filter((x) => !x.cancelled)
  const fire = (): void => {
    for (const timer of live()) {
      timer.cancelled = true
      timer.fn()
    }
  }
  return { fetcher, clock, timers, live, fire, news, warnings }
}

const statusOf = (fetcher: CrlFetcher, url: string): ReturnType<CrlFetcher['status']>[number] => {
  const s = fetcher.status().find((x) => x.url === url)
  if (s === undefined) throw new Error(`no status for ${url}`)
  return s
}

// ---------------------------------------------------------------- tests

t.test('fetch and cache: DER and PEM bodies, one request until a refresh is due', async (t) => {
  const der = await crl({ crlNumber: 1 })
  const urlDer = serve('/crls/cache.crl', der.der)
  const urlPem = serve('/crls/cache.pem', der.pem)
  const h = harness()
  t.same(h.fetcher.crlsFor([urlDer]), [], 'nothing held before ensure()')
  await h.fetcher.ensure([urlDer, urlDer])
  t.equal(hits('/crls/cache.crl'), 1, 'one request for a URL listed twice')
  const held = h.fetcher.crlsFor([urlDer])
  t.equal(held.length, 1)
  t.ok(held[0]?.der.equals(der.der), 'the CRL served')
  t.equal(held[0]?.issuer.key, getCertificate(int.der).subject.key, 'issued by the intermediate')
  t.equal(h.news.length, 1, 'onNewCrl once')
  t.equal(h.news[0]?.url, urlDer)

  await h.fetcher.ensure([urlDer])
  h.clock.now += HOUR / 2
  await h.fetcher.ensure([urlDer])
  t.equal(hits('/crls/cache.crl'), 1, 'cached: no second request before the refresh time')
  t.equal(h.news.length, 1)

  await h.fetcher.ensure([urlPem])
  t.equal(hits('/crls/cache.pem'), 1)
  t.ok(h.fetcher.crlsFor([urlPem])[0]?.der.equals(der.der), 'a PEM body gives the same CRL')
  t.equal(h.fetcher.crlsFor([urlDer, urlPem, 'not a url']).length, 1, 'a CRL served at two URLs is returned once')
  t.equal(h.news.length, 2, 'each URL announces its first CRL')

  const s = statusOf(h.fetcher, urlDer)
  t.same(s, {
    url: urlDer,
    thisUpdate: new Date(T0 - HOUR).toISOString(),
    nextUpdate: new Date(T0 + HOUR).toISOString(),
    crlNumber: '1',
    lastFetch: new Date(T0).toISOString(),
    lastError: null,
    // lifetime 2 h: a tenth (12 min) is more than the default 300 s
    nextRefresh: new Date(T0 + HOUR - 300e3).toISOString(),
    stale: false
  }, 'status()')
  t.same(h.fetcher.status().map((x) => x.url), [urlPem, urlDer].sort(), 'status() lists every URL held, sorted')
  h.fetcher.close()
})

t.test('refresh before nextUpdate (fake clock, timers fired by hand)', async (t) => {
  const path = '/crls/refresh.crl'
  const url = serve(path, (await crl({ crlNumber: 1 })).der)
  const h = harness()
  await h.fetcher.ensure([url])
  const refreshAt = T0 + HOUR - 300e3
  t.same(h.live().map((x) => x.ms), [refreshAt - T0], 'one timer, armed for nextUpdate - 300 s')

  const second = await crl({ crlNumber: 2, thisUpdate: new Date(T0), nextUpdate: new Date(T0 + 2 * HOUR) })
  serve(path, second.der)
  h.clock.now = refreshAt - 1000
  await h.fetcher.ensure([url])
  t.equal(hits(path), 1, 'ensure() before the refresh time makes no request')
  h.fire()
  await h.fetcher.idle()
  t.equal(hits(path), 1, 'a timer firing early (long waits go in steps) makes no request...')
  t.equal(h.live().length, 1, '...and arms itself again')

  h.clock.now = refreshAt
  h.fire()
  await h.fetcher.idle()
  t.equal(hits(path), 2, 'the timer refreshed the CRL')
  t.equal(h.fetcher.crlsFor([url])[0]?.crlNumber, 2n, 'the new CRL is held')
  t.equal(h.news.length, 2, 'onNewCrl for the new CRL')
  t.same(h.live().map((x) => x.ms), [T0 + 2 * HOUR - 300e3 - refreshAt], 'next refresh armed from the new CRL')

  // a short-lived CRL: a tenth of its lifetime when that is less than refreshBeforeSec
  const shortPath = '/crls/short.crl'
  const shortUrl = serve(shortPath, (await crl({ thisUpdate: new Date(T0), nextUpdate: new Date(T0 + 1000e3) })).der)
  const h2 = harness({ refreshBeforeSec: 3600 })
  await h2.fetcher.ensure([shortUrl])
  t.same(h2.live().map((x) => x.ms), [900e3], '1000 s lifetime: refreshed 100 s before nextUpdate')

  // the clock jumps past the refresh time: ensure() fetches on demand, the server still has the same CRL
  h2.clock.now = T0 + 950e3
  await h2.fetcher.ensure([shortUrl])
  await h2.fetcher.idle()
  t.equal(hits(shortPath), 2, 'due: ensure() fetches')
  t.equal(statusOf(h2.fetcher, shortUrl).lastError, null, 'the same CRL again is not an error')
  await h2.fetcher.ensure([shortUrl])
  t.equal(hits(shortPath), 2, 'the same CRL again: no new request at once (retry after retrySec)')
  t.same(h2.live().map((x) => x.ms), [10e3], 'background retry in 10 s')
  t.equal(h2.news.length, 1, 'no onNewCrl for the same CRL')
  h.fetcher.close()
  h2.fetcher.close()
})

t.test('ensure() waits for a missing or stale CRL, not for the refresh of a fresh one', async (t) => {
  const path = '/crls/no-wait.crl'
  const first = await crl({ crlNumber: 1 })
  const second = await crl({ crlNumber: 2, thisUpdate: new Date(T0), nextUpdate: new Date(T0 + 3 * HOUR) })
  const third = await crl({ crlNumber: 3, thisUpdate: new Date(T0 + HOUR), nextUpdate: new Date(T0 + 3 * HOUR) })
  let release: () => void = () => {}
  const gated = (body: Buffer): Handler => {
    const gate = new Promise<void>((resolve) => { release = resolve })
    return (_req, res) => { gate.then(() => res.writeHead(200).end(body), () => {}) }
  }
  const url = serve(path, first.der)
  const h = harness()
  await h.fetcher.ensure([url])
  serve(path, gated(second.der))
  h.clock.now = T0 + HOUR - 60e3 // due for refresh, still fresh
  await h.fetcher.ensure([url])
  t.equal(h.fetcher.crlsFor([url])[0]?.crlNumber, 1n, 'ensure() returned before the refresh finished, the fresh CRL still in use')
  release()
  await h.fetcher.idle()
  t.equal(h.fetcher.crlsFor([url])[0]?.crlNumber, 2n, 'the background refresh then brought the new one')

  serve(path, gated(third.der))
  h.clock.now = T0 + 3 * HOUR // the held CRL is now stale
  let returned = false
  const call = h.fetcher.ensure([url]).then(() => { returned = true })
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(returned, false, 'with a stale CRL, ensure() waits for the download')
  release()
  await call
  t.equal(h.fetcher.crlsFor([url])[0]?.crlNumber, 3n)
  h.fetcher.close()
})

t.test('refresh with real timers (awaited through onNewCrl, no fixed sleep)', async (t) => {
  const path = '/crls/real-timer.crl'
  const now = Date.now()
  // nextUpdate 3 s away, lifetime ~23 s: refreshed about 0.7 s from now (or at once, then after retrySec)
  const first = await makeCrl({ issuer: int, crlNumber: 1, thisUpdate: new Date(now - 20e3), nextUpdate: new Date(now + 3e3) })
  const second = await makeCrl({ issuer: int, crlNumber: 2, thisUpdate: new Date(now), nextUpdate: new Date(now + 600e3) })
  const url = serve(path, first.der)
  let announce: (crl: ParsedCrl) => void = () => {}
  const fetcher = new CrlFetcher({ allow: [url], retrySec: 0.2 }, { onNewCrl: (c) => { announce(c) } })
  t.teardown(() => { fetcher.close() })
  await fetcher.ensure([url])
  t.equal(fetcher.crlsFor([url])[0]?.crlNumber, 1n)
  serve(path, second.der)
  const refreshed = await new Promise<ParsedCrl>((resolve) => { announce = resolve })
  t.equal(refreshed.crlNumber, 2n, 'the background refresh brought the new CRL')
  t.equal(fetcher.crlsFor([url])[0]?.crlNumber, 2n)
  t.equal(hits(path), 2)
})

t.test('the last good CRL is kept while refreshes fail, until it is stale; then replaced by a newer one', async (t) => {
  const path = '/crls/flaky.crl'
  const first = await crl({ crlNumber: 7 })
  const url = serve(path, first.der)
  const h = harness()
  await h.fetcher.ensure([url])
  serve(path, 'down for maintenance', 500)
  h.clock.now = T0 + HOUR - 300e3
  h.fire()
  await h.fetcher.idle()
  t.equal(hits(path), 2)
  t.ok(h.fetcher.crlsFor([url])[0]?.der.equals(first.der), 'the last good CRL is still served')
  let s = statusOf(h.fetcher, url)
  t.equal(s.lastError, 'HTTP 500')
  t.equal(s.crlNumber, '7')
  t.equal(s.stale, false, 'not stale yet')
  t.equal(s.lastFetch, new Date(h.clock.now).toISOString())
  t.match(h.warnings.at(-1), { obj: { 'mtls.crl_url': url, 'mtls.reason': 'HTTP 500' }, msg: /CRL download failed/ }, 'logged')

  await h.fetcher.ensure([url])
  t.equal(hits(path), 2, 'right after a failure: no new request (retry backoff)')
  t.same(h.live().map((x) => x.ms), [10e3], 'background retry in retrySec')
  h.clock.now += 10e3
  h.fire()
  await h.fetcher.idle()
  t.equal(hits(path), 3, 'retried')
  t.same(h.live().map((x) => x.ms), [20e3], 'the wait doubles')
  h.clock.now += 20e3
  await h.fetcher.ensure([url])
  await h.fetcher.idle()
  t.equal(hits(path), 4, 'ensure() retries once the wait is over')

  h.clock.now = T0 + HOUR + 1000
  s = statusOf(h.fetcher, url)
  t.equal(s.stale, true, 'past nextUpdate: stale')
  t.ok(h.fetcher.crlsFor([url])[0]?.der.equals(first.der), 'still handed to the verifier, which says it is stale')

  const newer = await crl({ crlNumber: 8, thisUpdate: new Date(T0 + HOUR), nextUpdate: new Date(T0 + 5 * HOUR) })
  serve(path, newer.der)
  h.clock.now += 600e3
  await h.fetcher.ensure([url])
  t.equal(h.fetcher.crlsFor([url])[0]?.crlNumber, 8n, 'a newer CRL replaces it')
  s = statusOf(h.fetcher, url)
  t.equal(s.lastError, null)
  t.equal(s.stale, false)
  t.same(h.news.map((n) => n.crl.crlNumber), [7n, 8n], 'onNewCrl once per new CRL')
  h.fetcher.close()
})

t.test('a CRL no newer than the one held is ignored', async (t) => {
  const path = '/crls/order.crl'
  const held = await crl({ crlNumber: 5, thisUpdate: new Date(T0 - HOUR) })
  const url = serve(path, held.der)
  const h = harness({ retrySec: 1 })
  await h.fetcher.ensure([url])
  const step = async (body: Buffer): Promise<void> => {
    serve(path, body)
    h.clock.now += 3600e3
    await h.fetcher.ensure([url])
    await h.fetcher.idle()
  }
  await step((await crl({ crlNumber: 4, thisUpdate: new Date(T0), nextUpdate: new Date(T0 + 9 * HOUR) })).der)
  t.equal(h.fetcher.crlsFor([url])[0]?.crlNumber, 5n, 'lower cRLNumber (even with a later thisUpdate): ignored')
  t.match(statusOf(h.fetcher, url).lastError, /no newer than the one held \(cRLNumber 4, .*held: cRLNumber 5/)
  await step((await crl({ crlNumber: 6, thisUpdate: new Date(T0 - 2 * HOUR), nextUpdate: new Date(T0 + 9 * HOUR) })).der)
  t.equal(h.fetcher.crlsFor([url])[0]?.crlNumber, 5n, 'older thisUpdate (even with a higher cRLNumber): ignored')
  await step((await crl({ crlNumber: 5, thisUpdate: new Date(T0 - HOUR), nextUpdate: new Date(T0 + 9 * HOUR) })).der)
  t.equal(h.fetcher.crlsFor([url])[0]?.der.equals(held.der), true, 'same number and thisUpdate, other bytes: not newer')
  await step((await crl({ crlNumber: false, thisUpdate: new Date(T0 - HOUR), nextUpdate: new Date(T0 + 9 * HOUR) })).der)
  t.equal(h.fetcher.crlsFor([url])[0]?.crlNumber, 5n, 'no cRLNumber and the same thisUpdate: not newer')
  t.equal(h.news.length, 1, 'no onNewCrl for any of them')
  await step(held.der)
  t.equal(statusOf(h.fetcher, url).lastError, null, 'the same CRL again: no error')

  await step((await crl({ crlNumber: 5, thisUpdate: new Date(T0), nextUpdate: new Date(T0 + 2 * HOUR) })).der)
  t.equal(h.fetcher.crlsFor([url])[0]?.thisUpdate.getTime(), T0, 'same cRLNumber, later thisUpdate: newer')
  const other = await makeChain({ kind: 'ec256', label: 'CRL fetch other' })
  await step((await makeCrl({ issuer: other.intermediates[0] as Issued, crlNumber: 1, thisUpdate: new Date(T0 + 1000), nextUpdate: new Date(T0 + 9 * HOUR) })).der)
  t.equal(h.fetcher.crlsFor([url])[0]?.crlNumber, 1n, 'another issuer: cRLNumbers are not compared, a later thisUpdate wins')
  t.equal(h.news.length, 3)
  h.fetcher.close()
})

t.test('allow-list: normalisation, exact URLs and prefixes', async (t) => {
  const f = new CrlFetcher({ allow: ['http://crl.acme.example/', 'HTTPS://Other.Example:443/ca/root.crl', 'http://deep.example/crls/'] })
  const yes = [
    ['http://crl.acme.example/int.crl', 'http://crl.acme.example/int.crl'],
    ['HTTP://CRL.ACME.EXAMPLE:80/a/b.crl', 'http://crl.acme.example/a/b.crl'],
    ['http://crl.acme.example/int.crl#frag', 'http://crl.acme.example/int.crl'],
    ['http://crl.acme.example/x.crl?v=2', 'http://crl.acme.example/x.crl?v=2'],
    ['https://other.example/ca/root.crl', 'https://other.example/ca/root.crl'],
    ['http://deep.example/crls/a/../b.crl', 'http://deep.example/crls/b.crl']
  ]
  for (const [raw, normal] of yes) t.equal(f.allowedUrl(raw as string), normal, `allowed: ${raw}`)
  const no = [
    'http://crl.acme.example.evil/int.crl',
    'http://crl.acme.example.evil/',
    'http://crl.acme.example@evil.example/int.crl',
    'http://user:pw@crl.acme.example/int.crl',
    'http://user@crl.acme.example/int.crl',
    'https://crl.acme.example/int.crl',
    'http://crl.acme.example:8080/int.crl',
    'ldap://crl.acme.example/cn=x?certificateRevocationList',
    'ftp://crl.acme.example/int.crl',
    'file:///etc/passwd',
    'http://deep.example/crls/../secret.crl',
    'http://deep.example/crls/%2e%2e/secret.crl',
    'http://deep.example/crls/..%2fsecret.crl',
    'http://deep.example/crls/..%5Csecret.crl',
    'http://deep.example/crls',
    'https://other.example/ca/root.crl?x',
    'https://other.example/ca/root.crlx',
    'https://other.example/ca/',
    'http://crl.acme.example/int.crl\n',
    'http://crl.acme.example/ int.crl',
    'http://crl.acme.example/é.crl',
    '/relative.crl',
    '',
    'http://crl.acme.example/' + 'a'.repeat(2100)
  ]
  for (const raw of no) t.equal(f.allowedUrl(raw), undefined, `refused: ${JSON.stringify(raw.slice(0, 60))}`)
  t.equal(normaliseCrlUrl(42 as unknown as string), undefined, 'not a string')
  t.equal(normaliseCrlUrl('http://[::1/'), undefined, 'not a URL')

  const withDps = await issue({
    subject: 'CN=with dps',
    issuer: int,
    crlDistributionPoints: [
      'ldap://crl.acme.example/cn=int', 'http://crl.acme.example.evil/int.crl', 'http://crl.acme.example/int.crl',
      'HTTP://crl.acme.example/int.crl', 'http://crl.acme.example/int2.crl', 'https://other.example/ca/root.crl',
      'http://deep.example/crls/3.crl', 'http://deep.example/crls/4.crl'
    ]
  })
  t.same(f.allowedUrls(getCertificate(withDps.der)),
    ['http://crl.acme.example/int.crl', 'http://crl.acme.example/int2.crl', 'https://other.example/ca/root.crl', 'http://deep.example/crls/3.crl'],
    `allowedUrls: allow-listed, normalised, distinct, at most ${MAX_URLS_PER_CERT}`)
  t.same(f.allowedUrls(getCertificate(chain.leaf.der)), [], 'a certificate without distribution points')

  const bad: unknown[] = [
    'crl.acme.example/', 'ldap://crl.acme.example/', 'http://u:p@crl.acme.example/', 'http://crl.acme.example/?q/', 42, ''
  ]
  for (const entry of bad) t.throws(() => new CrlFetcher({ allow: [entry as string] }), TypeError, `allow entry ${JSON.stringify(entry)} refused`)
  t.throws(() => new CrlFetcher({ allow: 'http://crl.acme.example/' as unknown as string[] }), /allow must be an array/)
  t.throws(() => new CrlFetcher(null as unknown as CrlFetchOptions), /options must be an object/)
  for (const [key, value] of [['timeoutMs', 0], ['timeoutMs', -1], ['maxBytes', Number.NaN], ['refreshBeforeSec', -1], ['retrySec', 0], ['maxUrls', 1.5], ['maxUrls', 0], ['timeoutMs', '5']] as const) {
    t.throws(() => new CrlFetcher({ allow: [], [key]: value }), TypeError, `${key}: ${String(value)} refused`)
  }
  t.doesNotThrow(() => new CrlFetcher({ allow: [], refreshBeforeSec: 0 }), 'refreshBeforeSec 0 is allowed')
})

t.test('nothing outside the allow-list is ever requested', async (t) => {
  const der = (await crl()).der
  const evil = serve('/crls-evil/x.crl', der)
  const outside = serve('/other/x.crl', der)
  const userinfo = `http://user@127.0.0.1:${new URL(BASE).port}/crls/userinfo.crl`
  serve('/crls/userinfo.crl', der)
  const h = harness()
  await h.fetcher.ensure([evil, outside, userinfo, 'ldap://127.0.0.1/crls/x.crl'])
  t.equal(hits('/crls-evil/x.crl'), 0, 'a sibling path that shares the prefix text but not the "/" is not requested')
  t.equal(hits('/other/x.crl'), 0, 'a path outside the prefix is not requested')
  t.equal(hits('/crls/userinfo.crl'), 0, 'a URL with credentials is not requested')
  t.same(h.fetcher.status(), [], 'nothing recorded for them')
  t.same(h.fetcher.crlsFor([evil, outside]), [])

  // redirects are followed only to allow-listed URLs
  const target = serve('/crls/target.crl', der)
  const viaOk = serve('/crls/redirect-ok.crl', reply('', 302, { location: '/crls/target.crl' }))
  const viaBad = serve('/crls/redirect-bad.crl', reply('', 301, { location: '/other/x.crl' }))
  const viaNone = serve('/crls/redirect-none.crl', reply('', 307))
  const loop = serve('/crls/loop.crl', reply('', 302, { location: '/crls/loop.crl' }))
  const viaLdap = serve('/crls/redirect-ldap.crl', reply('', 308, { location: 'ldap://x/' + 'a'.repeat(300) }))
  await h.fetcher.ensure([viaOk, viaBad, viaNone, loop, viaLdap])
  t.equal(statusOf(h.fetcher, viaLdap).lastError, `redirected to "ldap://x/${'a'.repeat(191)}…", which is not allow-listed`, 'not http(s): refused, quoted short')
  t.equal(hits('/crls/target.crl'), 1, 'an allow-listed redirect target is fetched')
  t.ok(h.fetcher.crlsFor([viaOk])[0]?.der.equals(der), '...and its CRL is held under the URL asked for')
  t.equal(statusOf(h.fetcher, viaBad).lastError, `redirected to ${JSON.stringify(BASE + '/other/x.crl')}, which is not allow-listed`)
  t.equal(hits('/other/x.crl'), 0, 'a redirect target outside the allow-list is not requested')
  t.equal(statusOf(h.fetcher, viaNone).lastError, 'HTTP 307 without a Location header')
  t.equal(statusOf(h.fetcher, loop).lastError, 'more than 3 redirects')
  t.equal(hits('/crls/loop.crl'), 4, 'a redirect loop stops after 3 redirects')
  t.equal(statusOf(h.fetcher, target.replace('target', 'redirect-ok')).lastError, null)
  h.fetcher.close()
})

t.test('size bound: a declared or streamed body past maxBytes is refused and the download aborted', async (t) => {
  const der = (await crl()).der
  const big = Buffer.concat([der, Buffer.alloc(2048)])
  const declared = serve('/crls/declared.crl', reply(big, 200, { 'content-length': String(big.length) }))
  let closedEarly: () => void = () => {}
  const aborted = new Promise<void>((resolve) => { closedEarly = resolve })
  let sent = 0
  const endless = serve('/crls/endless.crl', (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/pkix-crl' })
    const chunk = Buffer.alloc(64 * 1024, 0x30)
    const pump = (): void => {
      while (!res.destroyed && res.write(chunk)) sent += chunk.length
    }
    res.on('drain', pump)
    res.on('close', () => { closedEarly() })
    pump()
  })
  const h = harness({ maxBytes: der.length + 100 })
  await h.fetcher.ensure([declared, endless])
  t.equal(statusOf(h.fetcher, declared).lastError, `response larger than ${der.length + 100} bytes`, 'content-length past the bound')
  t.equal(statusOf(h.fetcher, endless).lastError, `response larger than ${der.length + 100} bytes`, 'a streamed body past the bound')
  await aborted
  t.pass('the server saw the endless download closed')
  t.same(h.fetcher.crlsFor([declared, endless]), [])

  const exact = serve('/crls/exact.crl', der)
  const h2 = harness({ maxBytes: der.length })
  await h2.fetcher.ensure([exact])
  t.equal(h2.fetcher.crlsFor([exact]).length, 1, 'a body of exactly maxBytes is accepted')

  const h3 = harness({ maxBytes: 1e12 })
  const before = sent
  await h3.fetcher.ensure([endless])
  t.equal(statusOf(h3.fetcher, endless).lastError, `response larger than ${MAX_CRL_BYTES} bytes`, 'maxBytes is never above MAX_CRL_BYTES')
  t.ok(sent - before < MAX_CRL_BYTES + 8 * 1024 * 1024, 'the download stopped near the bound')
})

t.test('time bound: a server that does not answer, or stalls mid-body, gives a timeout', async (t) => {
  const held: ServerResponse[] = []
  const silent = serve('/crls/silent.crl', (_req, res) => { held.push(res) })
  const stalled = serve('/crls/stalled.crl', (_req, res) => {
    res.writeHead(200, { 'content-length': '1000' })
    res.write(Buffer.alloc(10, 0x30))
    held.push(res)
  })
  const h = harness({ timeoutMs: 300 })
  const started = Date.now()
  await h.fetcher.ensure([silent, stalled])
  t.ok(Date.now() - started < 5000, 'ensure() returned in bounded time')
  t.equal(statusOf(h.fetcher, silent).lastError, 'timed out after 300 ms', 'no response')
  t.equal(statusOf(h.fetcher, stalled).lastError, 'timed out after 300 ms', 'body stalled')
  for (const res of held) res.destroy()
})

t.test('bodies that are not one CRL, refused CRLs, connection errors', async (t) => {
  const cases: Array<[string, string | Buffer, RegExp]> = [
    ['/crls/garbage.crl', 'this is not a CRL', /^not a CRL: response: no PEM "X509 CRL" block and not DER$/],
    ['/crls/empty.crl', '', /^not a CRL: /],
    ['/crls/bad-der.crl', Buffer.from([0x30, 0x03, 0x02, 0x01]), /^not a CRL: /],
    ['/crls/cert.pem', chain.leaf.pem, /^not a CRL: response: unexpected PEM block "CERTIFICATE"/],
    ['/crls/cert.der', chain.leaf.der, /^not a CRL: /],
    ['/crls/two.pem', (await crl()).pem + (await crl({ crlNumber: 2 })).pem, /^2 CRLs in one response/]
  ]
  const h = harness()
  const urls = cases.map(([path, body]) => serve(path, body))
  await h.fetcher.ensure(urls)
  cases.forEach(([path, , message], i) => {
    t.match(statusOf(h.fetcher, urls[i] as string).lastError, message, path)
  })
  t.same(h.fetcher.crlsFor(urls), [], 'none held')
  t.equal(h.news.length, 0)
  t.same(h.live(), [], 'no background retry for a URL without a CRL (fetched on demand)')
  t.equal(statusOf(h.fetcher, urls[0] as string).nextRefresh, new Date(T0 + 10e3).toISOString(), 'next attempt after retrySec')
  t.equal(statusOf(h.fetcher, urls[0] as string).stale, true)

  // the accept check (e.g. a signature check by the plugin) keeps a refused CRL out
  const good = (await crl({ crlNumber: 3 })).der
  const refusedUrl = serve('/crls/refused.crl', good)
  const throwsUrl = serve('/crls/accept-throws.crl', good)
  const h2 = harness({}, {
    accept: (c, url) => {
      if (url.endsWith('throws.crl')) throw new Error('boom')
      return c.crlNumber === 3n ? 'signature does not verify with any known CA key' : undefined
    }
  })
  await h2.fetcher.ensure([refusedUrl, throwsUrl])
  t.equal(statusOf(h2.fetcher, refusedUrl).lastError, 'CRL refused: signature does not verify with any known CA key')
  t.equal(statusOf(h2.fetcher, throwsUrl).lastError, 'CRL refused: the accept check threw: boom')
  t.same(h2.fetcher.crlsFor([refusedUrl, throwsUrl]), [])
  t.equal(h2.news.length, 0)

  // nothing listening
  const probe = createServer()
  probe.listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const port = (probe.address() as AddressInfo).port
  probe.close()
  await once(probe, 'close')
  const closedUrl = `http://127.0.0.1:${port}/crls/x.crl`
  const h3 = harness({ allow: [closedUrl] })
  await h3.fetcher.ensure([closedUrl])
  t.match(statusOf(h3.fetcher, closedUrl).lastError, /^fetch failed: .*ECONNREFUSED/, 'connection refused')

  // a fetch that throws something odd, and an onNewCrl that throws
  const h4 = harness({}, {
    fetch: (async () => { throw 'not an Error' }) as unknown as typeof fetch // eslint-disable-line no-throw-literal
  })
  await h4.fetcher.ensure([`${BASE}/crls/odd.crl`])
  t.equal(statusOf(h4.fetcher, `${BASE}/crls/odd.crl`).lastError, 'not an Error')
  const ok = serve('/crls/announce-throws.crl', good)
  const h5 = harness({}, { onNewCrl: () => { throw new Error('listener failed') } })
  await h5.fetcher.ensure([ok])
  t.equal(h5.fetcher.crlsFor([ok]).length, 1, 'a throwing onNewCrl does not lose the CRL')
  t.match(h5.warnings, [{ msg: /onNewCrl threw/ }], 'and is logged')
})

t.test('concurrent ensure() calls share one download per URL', async (t) => {
  const path = '/crls/concurrent.crl'
  const der = (await crl()).der
  const waiting: ServerResponse[] = []
  let arrived: () => void = () => {}
  const firstRequest = new Promise<void>((resolve) => { arrived = resolve })
  const url = serve(path, (_req, res) => {
    waiting.push(res)
    arrived()
  })
  const h = harness()
  const calls = [h.fetcher.ensure([url]), h.fetcher.ensure([url, url]), h.fetcher.ensure([url.replace('http:', 'HTTP:')])]
  await firstRequest
  calls.push(h.fetcher.ensure([url]))
  for (const res of waiting) res.writeHead(200).end(der)
  await Promise.all(calls)
  t.equal(hits(path), 1, 'four concurrent calls, one request')
  t.equal(h.fetcher.crlsFor([url]).length, 1)
  t.equal(h.news.length, 1)
})

t.test('bounded number of URLs (least recently used dropped), close()', async (t) => {
  const der = (await crl()).der
  const urls = ['/crls/lru-1.crl', '/crls/lru-2.crl', '/crls/lru-3.crl'].map((p) => serve(p, der))
  const [u1, u2, u3] = urls as [string, string, string]
  const h = harness({ maxUrls: 2 })
  await h.fetcher.ensure([u1, u2])
  t.equal(h.live().length, 2)
  h.fetcher.crlsFor([u1]) // u1 is now the most recently used
  await h.fetcher.ensure([u3])
  t.same(h.fetcher.status().map((s) => s.url), [u1, u3], 'the least recently used URL was dropped')
  t.equal(h.live().length, 2, 'and its timer cancelled')

  h.fetcher.close()
  t.same(h.live(), [], 'close() cancels every timer')
  t.equal(h.fetcher.status()[0]?.nextRefresh, null, 'no refresh planned once closed')
  await h.fetcher.ensure(['/crls/lru-4.crl'].map((p) => serve(p, der)))
  t.equal(hits('/crls/lru-4.crl'), 0, 'ensure() after close() requests nothing')

  // close() aborts a download in progress; a URL dropped while downloading is not announced
  const waiting: ServerResponse[] = []
  let arrived: () => void = () => {}
  const inServer = new Promise<void>((resolve) => { arrived = resolve })
  const slow = serve('/crls/close-slow.crl', (_req, res) => {
    waiting.push(res)
    arrived()
  })
  const h2 = harness()
  const pending = h2.fetcher.ensure([slow])
  await inServer
  h2.fetcher.close()
  await pending
  t.equal(statusOf(h2.fetcher, slow).lastError, 'the CRL fetcher was closed')
  for (const res of waiting) res.destroy()

  let release: () => void = () => {}
  const gate = new Promise<void>((resolve) => { release = resolve })
  const gated = serve('/crls/gated.crl', (_req, res) => { gate.then(() => res.writeHead(200).end(der), () => {}) })
  const h3 = harness({ maxUrls: 1 })
  const first = h3.fetcher.ensure([gated])
  await h3.fetcher.ensure([u1]) // drops the gated URL while its download runs
  release()
  await first
  t.same(h3.fetcher.status().map((s) => s.url), [u1])
  t.same(h3.news.map((n) => n.url), [u1], 'the dropped URL\'s CRL is not announced')
  t.equal(h3.live().length, 1, 'and gets no timer')
  h3.fetcher.close()
})

t.test('a CRL without nextUpdate is held, reported stale, and looked for again hourly', async (t) => {
  const url = serve('/crls/no-next.crl', (await crl({ nextUpdate: null })).der)
  const h = harness()
  await h.fetcher.ensure([url])
  t.equal(h.fetcher.crlsFor([url]).length, 1, 'held (the verifier refuses it and says why)')
  const s = statusOf(h.fetcher, url)
  t.equal(s.nextUpdate, null)
  t.equal(s.stale, true)
  t.same(h.live().map((x) => x.ms), [HOUR])
  h.fetcher.close()
})

t.test('a CRL made by `openssl ca -gencrl`, fetched, revokes the leaf in the verifier', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crl-fetch-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = (name: string): string => join(dir, name)
  writeFileSync(file('int.pem'), int.pem)
  writeFileSync(file('int.key'), int.key.privateKeyPem, { mode: 0o600 })
  writeFileSync(file('index.txt'), `R\t301231235959Z\t240101000000Z,keyCompromise\t${chain.leaf.serialHex}\tunknown\t/CN=leaf\n`)
  writeFileSync(file('crlnumber'), '2A\n')
  writeFileSync(file('ca.cnf'), [
    '[ ca ]', 'default_ca = CA_default', '[ CA_default ]', `database = ${file('index.txt')}`, `crlnumber = ${file('crlnumber')}`,
    'default_md = sha256', 'default_crl_days = 7', 'crl_extensions = crl_ext', '[ crl_ext ]', 'authorityKeyIdentifier = keyid:always', ''
  ].join('\n'))
  const r = spawnSync('openssl', ['ca', '-gencrl', '-config', file('ca.cnf'), '-keyfile', file('int.key'), '-cert', file('int.pem'), '-out', file('crl.pem')], { encoding: 'utf8' })
  t.equal(r.status, 0, `openssl ca -gencrl: ${r.stderr}`)
  const url = serve('/crls/openssl.crl', readFileSync(file('crl.pem'), 'utf8'))
  const h = harness({}, { now: Date.now })
  await h.fetcher.ensure([url])
  const [fetched] = h.fetcher.crlsFor([url])
  t.equal(fetched?.crlNumber, 0x2an, 'the openssl CRL, cRLNumber 42')
  t.equal(statusOf(h.fetcher, url).stale, false)
  const result = await verifyCertificateChain({
    leaf: chain.chainPem, trustAnchors: chain.root.pem, crls: h.fetcher.crlsFor([url]).map((c) => c.der)
  })
  t.match(result, { ok: false, code: 'FST_MTLS_CERT_REVOKED' }, 'the verifier uses the fetched CRL')
  h.fetcher.close()
})
