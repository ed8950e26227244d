// Mutated forwarded-certificate headers through a real request: never a 5xx, and never an
// identity other than one of the real certificates (a mutation may still be a valid encoding).
import t from 'tap'
import Fastify from 'fastify'
import { request } from 'undici'
import fastifyMtls from '../lib/index.js'
import { makeChain } from './helpers/pki.js'
import { xorshift } from './helpers/random.js'

const partner = await makeChain({ kind: 'ec256', label: 'Fuzz partner' })
const int = partner.intermediates[0]!

const ALPHABET = ';,="\\%+/:= aZ09-_.'
function mutate (value: string, rnd: () => number): string {
  const at = Math.floor(rnd() * value.length)
  switch (Math.floor(rnd() * 5)) {
    case 0: return value.slice(0, at)
    case 1: return value.slice(0, at) + ALPHABET[Math.floor(rnd() * ALPHABET.length)] + value.slice(at)
    case 2: return value.slice(0, at) + value.slice(at + 1)
    case 3: return value.slice(0, at) + value.slice(at, at + 20) + value.slice(at)
    default: {
      const c = String.fromCharCode(0x21 + Math.floor(rnd() * 0x5e))
      return value.slice(0, at) + c + value.slice(at + 1)
    }
  }
}

const escaped = (pem: string): string => encodeURIComponent(pem)
const samples: Record<'xfcc' | 'escaped-pem' | 'base64-der', string> = {
  xfcc: `By=spiffe://proxy;Hash=${partner.leaf.cert.fingerprint256.replace(/:/g, '').toLowerCase()};Cert="${escaped(partner.leaf.pem)}";Chain="${escaped(partner.leaf.pem + int.pem)}";Subject="CN=x"`,
  'escaped-pem': escaped(partner.leaf.pem + int.pem),
  'base64-der': `${partner.leaf.der.toString('base64')},${int.der.toString('base64')}`
}

for (const format of Object.keys(samples) as Array<keyof typeof samples>) {
  t.test(`${format}: mutated values`, async (t) => {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(fastifyMtls, { ca: partner.root.pem, intermediates: int.pem, forwarded: { header: 'x-client-cert', format, trustedProxies: ['127.0.0.1'] } })
    app.get('/', async (req) => ({ fp: req.clientIdentity?.fingerprint256 ?? null }))
    await app.listen({ host: '127.0.0.1', port: 0 })
    const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}/`
    const rnd = xorshift(0xf022 + format.length)
    const statuses = new Map<number, number>()
    const problems: string[] = []
    let sent = 0
    for (let i = 0; i < 300; i++) {
      let value = samples[format]
      for (let k = 1 + Math.floor(rnd() * 3); k > 0; k--) value = mutate(value, rnd)
      let res
      try {
        res = await request(url, { headers: { 'x-client-cert': value } })
      } catch {
        continue // undici refuses some header values on the client side: nothing reached the server
      }
      sent++
      const body = await res.body.json() as { fp?: string | null, code?: string }
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
      if (res.statusCode >= 500) problems.push(`#${i}: ${res.statusCode} ${JSON.stringify(body)}`)
      if (res.statusCode === 200 && body.fp !== partner.leaf.cert.fingerprint256) problems.push(`#${i}: identity ${body.fp}`)
    }
    t.same(problems, [], 'never a 5xx, never a foreign identity')
    t.ok(sent > 200, `most values reached the server (${sent})`)
    t.ok((statuses.get(400) ?? 0) > 0, `malformed values are 400 (${JSON.stringify(Object.fromEntries(statuses))})`)
  })
}
