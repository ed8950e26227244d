// The forwarded-certificate source: a header set by a trusted proxy. A forwarded
// certificate is public data with no proof of possession, so the trusted-proxy gate
// is the only control: headers from any other peer are refused, never read.
import ipaddr from 'ipaddr.js'
import { LruCache } from '../cache.js'
import type { FastifyRequest } from 'fastify'
import type { Policy } from '../types.js'

export type TrustedProxies =
  | ReadonlyArray<string>
  | ((address: string | undefined) => boolean)
  | { policy: Policy<FastifyRequest> }

export interface ForwardedOptions {
  /** the header's exact name (matched case-insensitively, as HTTP does) */
  header: string
  format: 'xfcc' | 'escaped-pem' | 'base64-der' | 'rfc9440'
  /** addresses and CIDRs, 'unix' for Unix-socket peers, a function of the peer address, or { policy } for a proxy that authenticates with mTLS */
  trustedProxies: TrustedProxies
  /** a separate chain header (RFC 9440 Client-Cert-Chain) */
  chainHeader?: string
  /** a header the proxy sets to `value` when it verified the client (nginx $ssl_client_verify = SUCCESS) */
  verifyHeader?: { name: string, value: string }
  /** 'last' (default): the element the nearest proxy appended; 'only': more than one element is malformed */
  xfccElement?: 'last' | 'only'
}

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number]

export interface CompiledGate {
  /** true when the peer is a trusted proxy by address (the mTLS-policy kind is decided by the plugin) */
  byAddress: ((address: string | undefined) => boolean) | undefined
  policy: Policy<FastifyRequest> | undefined
  /** CIDRs wider than /24 (IPv4) or /64 (IPv6), for a start-up warning */
  wide: string[]
}

// Peers are few and come back on every request: both answers below are pure functions of the
// address text, remembered (bounded) so that a request does not parse its peer's address again.
const normalised = new LruCache<string, string>(1024)

/** The peer address as the socket reports it, IPv4-mapped IPv6 written as IPv4. */
export function normaliseAddress (address: string | undefined): string | undefined {
  if (address === undefined) return undefined
  let out = normalised.get(address)
  if (out === undefined) {
    out = address
    if (ipaddr.isValid(address)) {
      const parsed = ipaddr.parse(address)
      out = parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress() ? (parsed as ipaddr.IPv6).toIPv4Address().toString() : parsed.toString()
    }
    normalised.set(address, out)
  }
  return out
}

/** Checks `trustedProxies` and compiles it. Throws a TypeError saying what is wrong. */
export function compileGate (trusted: unknown): CompiledGate {
  if (typeof trusted === 'function') return { byAddress: trusted as (a: string | undefined) => boolean, policy: undefined, wide: [] }
  if (typeof trusted === 'object' && trusted !== null && !Array.isArray(trusted)) {
    const policy = (trusted as { policy?: unknown }).policy
    if (typeof policy !== 'object' || policy === null || Object.keys(trusted).length !== 1) {
      throw new TypeError('forwarded.trustedProxies must be an array of addresses/CIDRs (or \'unix\'), a function, or { policy } for a proxy that authenticates with mTLS')
    }
    return { byAddress: undefined, policy: policy as Policy<FastifyRequest>, wide: [] }
  }
  if (!Array.isArray(trusted) || trusted.length === 0) {
    throw new TypeError('forwarded.trustedProxies must list the proxies allowed to set the header, e.g. [\'10.0.0.7\'] (there is no default: an empty list would trust no one)')
  }
  let unix = false
  const ranges: Range[] = []
  // a link-local address means nothing without its zone (the interface): zoned entries match exactly
  const zoned = new Set<string>()
  const wide: string[] = []
  trusted.forEach((entry, i) => {
    if (entry === 'unix') {
      unix = true
      return
    }
    if (typeof entry !== 'string') throw new TypeError(`forwarded.trustedProxies[${i}] must be a string`)
    if (entry.includes('%')) {
      const [addr, zone] = entry.split('%') as [string, string]
      if (entry.includes('/') || zone === '' || !ipaddr.IPv6.isValid(addr)) throw new TypeError(`forwarded.trustedProxies[${i}]: ${JSON.stringify(entry)}: a zone (%interface) goes only with a single IPv6 address`)
      zoned.add(ipaddr.parse(addr).toString() + '%' + zone)
      return
    }
    let range: Range
    const base = entry.split('/')[0] as string
    // only four-part decimal IPv4: '010.0.0.7' (octal) or '127.1' mean other addresses to other parsers
    const ambiguous = !base.includes(':') && !ipaddr.IPv4.isValidFourPartDecimal(base)
    try {
      if (ambiguous) throw new TypeError('ambiguous')
      range = entry.includes('/') ? ipaddr.parseCIDR(entry) : [ipaddr.parse(entry), ipaddr.parse(entry).kind() === 'ipv4' ? 32 : 128]
    } catch {
      throw new TypeError(`forwarded.trustedProxies[${i}]: ${JSON.stringify(entry)} is not an IP address or CIDR (or 'unix'); write IPv4 as four decimal numbers, e.g. 10.0.0.7`)
    }
    const [addr, bits] = range
    // an IPv4-mapped IPv6 range means its IPv4 range (peers are normalised the same way)
    const mapped: Range = addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96
      ? [(addr as ipaddr.IPv6).toIPv4Address(), bits - 96]
      : range
    if ((mapped[0].kind() === 'ipv4' && mapped[1] < 24) || (mapped[0].kind() === 'ipv6' && mapped[1] < 64)) wide.push(entry)
    ranges.push(mapped)
  })
  const judge = (address: string): boolean => {
    // a zoned peer (fe80::1%eth1) matches only the same address on the same interface
    if (address.includes('%')) {
      const [addr, zone] = address.split('%') as [string, string]
      return ipaddr.IPv6.isValid(addr) && zoned.has(ipaddr.parse(addr).toString() + '%' + zone)
    }
    if (!ipaddr.isValid(address)) return false
    const peer = ipaddr.parse(address)
    return ranges.some(([base, bits]) => base.kind() === peer.kind() && peer.match(base, bits))
  }
  const judged = new LruCache<string, boolean>(1024)
  return {
    byAddress: (address) => {
      if (address === undefined) return unix
      let trustedPeer = judged.get(address)
      if (trustedPeer === undefined) {
        trustedPeer = judge(address)
        judged.set(address, trustedPeer)
      }
      return trustedPeer
    },
    policy: undefined,
    wide
  }
}

/** Node keeps at most about a thousand header lines and drops the rest without a word. */
export const MAX_HEADER_LINES = 1000

/**
 * How often each of `names` appears among the request's raw header lines (a name that does
 * not appear has no entry). Node joins a repeated header with ", " (which looks like a valid
 * multi-hop XFCC list), and headersDistinct does not exist under HTTP/2, so the raw lines are
 * counted.
 */
export function headerCounts (request: FastifyRequest, names: readonly string[]): Map<string, { count: number, values: string[] }> {
  // entries only for the names that appear: this runs on every request from a proxy
  const out = new Map<string, { count: number, values: string[] }>()
  const raw = request.raw.rawHeaders
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase()
    if (!names.includes(name)) continue
    const entry = out.get(name)
    if (entry === undefined) out.set(name, { count: 1, values: [raw[i + 1] as string] })
    else {
      entry.count++
      entry.values.push(raw[i + 1] as string)
    }
  }
  return out
}
