// The pure parsers of forwarded client-certificate headers (lib/sources/forwarded-formats.ts):
// real samples of each format, the known attacks on them, and a seeded fuzz run that checks
// the parsers never throw anything but MalformedHeader, never return a certificate that does
// not parse, and stay linear in the input.
import t, { type Test } from 'tap'
import { createHash, X509Certificate } from 'node:crypto'
import { MalformedHeader, parseForwarded, parseXfcc, type ForwardedFormat } from '../lib/sources/forwarded-formats.js'
import { getCertificate } from '../lib/der/store.js'
import { toDerList } from '../lib/der/pem.js'
import { makeChain, makeCrl, toPem, type Chain } from './helpers/pki.js'

// ------------------------------------------------------------------ encoders, as each proxy writes its header

const sha256 = (der: Buffer): string => createHash('sha256').update(der).digest('hex')
const b64 = (der: Buffer): string => der.toString('base64')
/** Envoy (urlEncodedPemEncodedPeerCertificate): exactly \n, space, +, / and = escaped. */
const envoyEncode = (pem: string): string => pem.replace(/[\n +/=]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0'))
/** nginx $ssl_client_escaped_cert: ngx_escape_uri(NGX_ESCAPE_URI_COMPONENT) escapes every reserved character, as encodeURIComponent does for PEM text. */
const nginxEncode = (pem: string): string => encodeURIComponent(pem)
/** AWS ALB X-Amzn-Mtls-Clientcert(-Leaf): URL-encoded PEM with +, = and / left as they are. */
const albEncode = (pem: string): string => encodeURIComponent(pem).replace(/%2B/g, '+').replace(/%3D/g, '=').replace(/%2F/g, '/')
/** The least a proxy can escape and still produce a one-line header. */
const minimalEncode = (pem: string): string => pem.replace(/\n/g, '%0A').replace(/ /g, '%20')
const sf = (der: Buffer): string => `:${b64(der)}:`

const A = await makeChain({ kind: 'ec256', label: 'Partner A' })
const V = await makeChain({ kind: 'ec256', intermediates: 2, label: 'Victim' })
const R = await makeChain({ kind: 'rsa2048', label: 'RSA partner' })
/** base64 of a certificate whose DER length is not a multiple of 3, so that it ends in padding */
const padded = [A, V, R].flatMap((c) => [c.leaf, ...c.intermediates, c.root]).map((c) => b64(c.der)).find((s) => s.endsWith('=')) ?? ''
const intermediatesOf = (c: Chain): Buffer[] => c.intermediates.slice().reverse().map((i) => i.der)

function xfccElement (c: Chain, extra = ''): string {
  return `By=spiffe://cluster.local/ns/edge/sa/envoy;Hash=${sha256(c.leaf.der)};Cert="${envoyEncode(c.leaf.pem)}";` +
    `Chain="${envoyEncode(c.chainPem)}";Subject="CN=client,O=Fixture PKI";` +
    `URI=spiffe://cluster.local/ns/app/sa/client;DNS=client.example;DNS=www.client.example${extra}`
}

function malformed (t: Test, fn: () => unknown, pattern: RegExp, msg: string): void {
  try {
    fn()
  } catch (err) {
    if (err instanceof MalformedHeader) t.match(err.message, pattern, msg)
    else t.fail(`${msg}: threw ${String(err)}`)
    return
  }
  t.fail(`${msg}: did not throw`)
}

// ------------------------------------------------------------------ XFCC

// Envoy's documented examples (configuration/http/http_conn_man/headers, x-forwarded-client-cert)
const ENVOY_DOC_ONE = 'By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=spiffe://lyft.com/test-team'
const ENVOY_DOC_TWO = ENVOY_DOC_ONE + ',By=http://backend.lyft.com;Hash=9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=spiffe://lyft.com/frontend-team'
const ENVOY_DOC_DNS = 'By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="";URI=;DNS=lyft.com;DNS=www.lyft.com'

t.test('parseXfcc reads Envoy\'s documented examples', async (t) => {
  const one = parseXfcc(ENVOY_DOC_ONE)
  t.equal(one.length, 1)
  t.same([...(one[0] as Map<string, string>)], [
    ['by', 'http://frontend.lyft.com'],
    ['hash', '468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688'],
    ['subject', '/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client'],
    ['uri', 'spiffe://lyft.com/test-team']
  ])
  const two = parseXfcc(ENVOY_DOC_TWO)
  t.equal(two.length, 2)
  t.equal(two[1]?.get('uri'), 'spiffe://lyft.com/frontend-team')
  const dns = parseXfcc(ENVOY_DOC_DNS)
  t.equal(dns[0]?.get('subject'), '', 'empty quoted value')
  t.equal(dns[0]?.get('uri'), '', 'empty unquoted value')
  t.equal(dns[0]?.get('dns'), 'lyft.com', 'DNS repeats (one pair per SAN, as Envoy writes it); the first is kept')
  t.equal(parseXfcc('').length, 0)

  const q = parseXfcc('SUBJECT="CN=a\\"b\\\\,O=x;y=z";Uri=u , hash=h')
  t.equal(q.length, 2)
  t.equal(q[0]?.get('subject'), 'CN=a"b\\,O=x;y=z', 'quoted value holds , ; = and backslash escapes; keys are lower-cased')
  t.equal(q[0]?.get('uri'), 'u', 'spaces around separators are ignored')
  t.equal(q[1]?.get('hash'), 'h')
  t.equal(parseXfcc('URI=https://a.example/?x=1&y=2')[0]?.get('uri'), 'https://a.example/?x=1&y=2', '= inside an unquoted value')
})

t.test('parseXfcc refuses what does not parse', async (t) => {
  const cases: Array<[string, RegExp, string]> = [
    ['Cert="abc', /unterminated/, 'unterminated quote'],
    ['Cert="abc\\"', /unterminated/, 'escaped closing quote'],
    ['Cert="abc\\', /unterminated/, 'backslash at the end'],
    ['Cert=a;Cert=b', /appears twice/, 'repeated key'],
    ['cert=a;CERT=b', /appears twice/, 'repeated key, other case'],
    ['Hash=a;Subject=x;hash=b', /appears twice/, 'repeated Hash'],
    ['Subject="a";Subject="b"', /appears twice/, 'repeated Subject'],
    ['Cert=a,', /empty pair/, 'trailing comma'],
    ['Cert=a,,Cert=b', /empty pair/, 'empty element'],
    ['Cert=a;', /empty pair/, 'trailing semicolon'],
    ['Cert', /not followed by '='/, 'key without value'],
    ['Cert =a', /not followed by '='/, 'space before ='],
    ['=a', /where a key should start/, 'empty key'],
    ['Subject="a"b', /after a value/, 'text after a closing quote'],
    ['URI=a"b"', /inside an unquoted value/, 'quote inside an unquoted value'],
    ['Subject= "a"', /inside an unquoted value/, 'space before an opening quote'],
    ['K{ey=a', /where a key should start|not followed/, 'key that is not a token'],
    ['Subject="a\nb"', /control character/, 'control character']
  ]
  for (const [value, pattern, msg] of cases) malformed(t, () => parseXfcc(value), pattern, msg)
})

t.test('xfcc: the certificate comes only from Cert and Chain', async (t) => {
  malformed(t, () => parseForwarded('xfcc', ENVOY_DOC_ONE), /no Cert and no Chain/, 'Envoy\'s documented example has no Cert: an identity is never made from Subject/URI')
  malformed(t, () => parseForwarded('xfcc', ENVOY_DOC_DNS), /no Cert and no Chain/, 'DNS pairs give no certificate either')

  const full = parseForwarded('xfcc', xfccElement(A))
  t.ok(full?.leaf.equals(A.leaf.der), 'leaf from Cert')
  t.same(full?.chain, intermediatesOf(A), 'Chain minus the leaf')

  const certOnly = parseForwarded('xfcc', `Hash=${sha256(V.leaf.der)};Cert="${envoyEncode(V.leaf.pem)}"`)
  t.ok(certOnly?.leaf.equals(V.leaf.der))
  t.same(certOnly?.chain, [])

  const chainOnly = parseForwarded('xfcc', `Hash=${sha256(V.leaf.der).toUpperCase()};Chain="${envoyEncode(V.chainPem)}"`)
  t.ok(chainOnly?.leaf.equals(V.leaf.der), 'leaf = first certificate of Chain; Hash compared case-insensitively')
  t.same(chainOnly?.chain, intermediatesOf(V))

  const unquoted = parseForwarded('xfcc', `Cert=${nginxEncode(R.leaf.pem)}`)
  t.ok(unquoted?.leaf.equals(R.leaf.der), 'an unquoted Cert (RSA leaf, fully escaped) also parses')
  t.equal(parseForwarded('xfcc', ''), undefined, 'empty header')
  t.equal(parseForwarded('xfcc', ' \t'), undefined, 'blank header')
})

t.test('xfcc: attacks', async (t) => {
  const attacker = `Hash=${sha256(V.leaf.der)};Cert="${envoyEncode(V.leaf.pem)}";Subject="CN=victim"`
  const header = `${attacker},${xfccElement(A)}`
  t.ok(parseForwarded('xfcc', header)?.leaf.equals(A.leaf.der), 'an element the client sent before the proxy\'s: last picks the proxy\'s')
  malformed(t, () => parseForwarded('xfcc', header, { xfccElement: 'only' }), /2 elements/, 'only refuses a client-supplied element')
  malformed(t, () => parseForwarded('xfcc', `${attacker},`), /empty pair/, 'an element cut short')

  // a quoted Subject hiding ;Cert= must stay inside the Subject
  const hidden = `Hash=${sha256(A.leaf.der)};Subject="CN=x;Cert=\\"${envoyEncode(V.leaf.pem)}\\",O=y";Cert="${envoyEncode(A.leaf.pem)}"`
  t.ok(parseForwarded('xfcc', hidden)?.leaf.equals(A.leaf.der), 'Subject hiding ;Cert= is not taken as Cert')
  t.match(parseXfcc(hidden)[0]?.get('subject'), /;Cert="/)
  malformed(t, () => parseForwarded('xfcc', `Subject="CN=x;Cert=${envoyEncode(V.leaf.pem)}"`), /no Cert and no Chain/, 'Cert inside a Subject alone gives no certificate')
  // Envoy writes Subject in RFC 2253 form, which puts a backslash before " \\ , + ; < >:
  // a client whose CN is x\";Cert="<victim> cannot close the quotes
  const cn = `x\\";Cert="${envoyEncode(V.leaf.pem)}`
  const rfc2253 = 'CN=' + cn.replace(/[\\",+;<>]/g, (c) => '\\' + c)
  const viaSubject = `Hash=${sha256(A.leaf.der)};Cert="${envoyEncode(A.leaf.pem)}";Subject="${rfc2253}"`
  t.ok(parseForwarded('xfcc', viaSubject)?.leaf.equals(A.leaf.der), 'an RFC 2253 subject holding quotes and ;Cert= stays a Subject')
  t.equal(parseXfcc(viaSubject)[0]?.get('subject'), 'CN=' + cn, 'and is read back whole')

  // a URI SAN with ;Cert= (Envoy writes URI unquoted): the proxy's own Cert or Hash exposes it
  const injected = `Hash=${sha256(A.leaf.der)};Cert="${envoyEncode(A.leaf.pem)}";URI=spiffe://x;Cert="${envoyEncode(V.leaf.pem)}"`
  malformed(t, () => parseForwarded('xfcc', injected), /appears twice/, 'injected Cert next to the real one')
  malformed(t, () => parseForwarded('xfcc', `Hash=${sha256(A.leaf.der)};URI=spiffe://x;Cert="${envoyEncode(V.leaf.pem)}"`), /Hash does not match/, 'injected Cert where the proxy forwards only Hash')
  malformed(t, () => parseForwarded('xfcc', `Hash=${sha256(A.leaf.der)};Chain="${envoyEncode(A.chainPem)}";URI=x;Cert="${envoyEncode(V.leaf.pem)}"`),
    /Hash does not match|not the Cert/, 'injected Cert where the proxy forwards Chain')
  // A comma in an unquoted URI SAN starts a new element that the client controls entirely,
  // Hash included; only xfccElement 'only' (Envoy SANITIZE_SET) sees it. The README must
  // say so: forward Cert and Chain only, and use 'only' with SANITIZE_SET.
  const comma = `${xfccElement(A, `;URI=spiffe://x,Hash=${sha256(V.leaf.der)};Cert="${envoyEncode(V.leaf.pem)}"`)}`
  malformed(t, () => parseForwarded('xfcc', comma, { xfccElement: 'only' }), /2 elements/, 'a comma in an unquoted URI: only refuses')
  t.ok(parseForwarded('xfcc', comma)?.leaf.equals(V.leaf.der), 'documented limit of last: the split-off element is taken')

  malformed(t, () => parseForwarded('xfcc', `Hash=${sha256(V.leaf.der)};Cert="${envoyEncode(A.leaf.pem)}"`), /Hash does not match/, 'Hash mismatch')
  malformed(t, () => parseForwarded('xfcc', `Hash=${sha256(A.leaf.der).slice(1)};Cert="${envoyEncode(A.leaf.pem)}"`), /not a hex SHA-256/, 'short Hash')
  malformed(t, () => parseForwarded('xfcc', `Hash=${'g'.repeat(64)};Cert="${envoyEncode(A.leaf.pem)}"`), /not a hex SHA-256/, 'Hash not hex')
  malformed(t, () => parseForwarded('xfcc', `Hash=${sha256(A.leaf.der)};Hash=${sha256(A.leaf.der)};Cert="${envoyEncode(A.leaf.pem)}"`), /appears twice/, 'duplicate Hash')
  malformed(t, () => parseForwarded('xfcc', `Cert="${envoyEncode(A.leaf.pem)}";Chain="${envoyEncode(V.chainPem)}"`), /not the Cert/, 'Chain of another certificate')
  malformed(t, () => parseForwarded('xfcc', `Cert="${envoyEncode(A.chainPem)}"`), /more than 1 certificate/, 'Cert with two certificates')
  malformed(t, () => parseForwarded('xfcc', 'Cert=""'), /no certificate/, 'empty Cert')
  malformed(t, () => parseForwarded('xfcc', `Cert="${envoyEncode(A.leaf.pem.slice(0, 200))}"`), /no END/, 'truncated PEM')
  malformed(t, () => parseForwarded('xfcc', `Cert="${envoyEncode(A.leaf.key.privateKeyPem)}"`), /unexpected PEM block "PRIVATE KEY"/, 'a private key')
  malformed(t, () => parseForwarded('xfcc', `Cert="${envoyEncode(A.leaf.pem)}%zz"`), /bad percent-escape/, 'bad escape in Cert')
})

// ------------------------------------------------------------------ escaped PEM

t.test('escaped-pem: nginx, ALB and other encoders', async (t) => {
  for (const [name, encode] of [['nginx', nginxEncode], ['Envoy-style', envoyEncode], ['ALB', albEncode], ['minimal', minimalEncode]] as const) {
    const leaf = parseForwarded('escaped-pem', encode(R.leaf.pem))
    t.ok(leaf?.leaf.equals(R.leaf.der), `${name}: leaf`)
    t.same(leaf?.chain, [], `${name}: leaf only`)
    const chain = parseForwarded('escaped-pem', encode(V.chainPem))
    t.ok(chain?.leaf.equals(V.leaf.der), `${name}: first block is the leaf`)
    t.same(chain?.chain, intermediatesOf(V), `${name}: the rest is the chain`)
  }
  // ALB passthrough: the whole chain with literal '+': percent-decoding only, never form-decoding
  const pems = [A.chainPem, V.chainPem, R.chainPem]
  const withPlus = pems.find((p) => p.includes('+')) as string
  const alb = albEncode(withPlus)
  t.ok(alb.includes('+'), 'the ALB sample holds a literal +')
  t.ok(parseForwarded('escaped-pem', alb)?.leaf.equals(toDerList(withPlus, 'CERTIFICATE', 'x')[0] as Buffer), 'a literal + stays +')
  malformed(t, () => parseForwarded('escaped-pem', alb.replace(/\+/g, ' ')), /base64|DER/, 'what a form-decoder would have made of it (+ as space) does not parse')
  t.ok(parseForwarded('escaped-pem', nginxEncode(A.leaf.pem).replace(/%0A/g, '%0a'))?.leaf.equals(A.leaf.der), 'lower-case hex escapes')
  t.ok(parseForwarded('escaped-pem', nginxEncode(A.leaf.pem.replace(/\n/g, '\r\n')))?.leaf.equals(A.leaf.der), 'CRLF line ends')
  const oneLine = `-----BEGIN CERTIFICATE-----${b64(A.leaf.der)}-----END CERTIFICATE-----`
  t.ok(parseForwarded('escaped-pem', nginxEncode(oneLine))?.leaf.equals(A.leaf.der), 'PEM without line breaks')
  t.equal(parseForwarded('escaped-pem', ''), undefined, 'nginx sends an empty value without a client certificate')
})

t.test('escaped-pem: hostile values', async (t) => {
  const good = nginxEncode(A.leaf.pem)
  const cases: Array<[string, RegExp, string]> = [
    [good.replace('%0A', '%zz'), /bad percent-escape/, '%zz'],
    [good + '%4', /bad percent-escape/, 'short escape at the end'],
    [good + '%', /bad percent-escape/, 'lone %'],
    [good.replace('%0A', '%e9'), /0xe9 .* not PEM text/, '%e9: not UTF-8 PEM'],
    [good.replace('%0A', '%C3%A9'), /0xc3 .* not PEM text/, 'UTF-8 é in PEM'],
    [good.replace('%0A', '%00'), /0x00 .* not PEM text/, 'NUL'],
    [good.replace('M', 'é'), /0xe9 .* not PEM text/, 'raw Latin-1 character'],
    [nginxEncode(A.leaf.pem.slice(0, 300)), /no END/, 'truncated PEM'],
    [nginxEncode(A.leaf.pem.replace(/\n-----END CERTIFICATE-----\n$/, '')), /no END/, 'no END line'],
    [nginxEncode(A.leaf.pem.slice(0, 8)), /text outside/, 'cut inside BEGIN'],
    [nginxEncode('-----BEGIN CERTIFICATE'), /truncated PEM BEGIN/, 'BEGIN line without dashes'],
    [nginxEncode(A.leaf.key.privateKeyPem), /unexpected PEM block "PRIVATE KEY"/, 'a private key'],
    [nginxEncode(A.leaf.pem + A.leaf.key.privateKeyPem), /unexpected PEM block "PRIVATE KEY"/, 'certificate then private key'],
    [nginxEncode(A.leaf.pem.replace(/CERTIFICATE/g, 'TRUSTED CERTIFICATE')), /unexpected PEM block "TRUSTED CERTIFICATE"/, 'OpenSSL trusted certificate'],
    [nginxEncode('subject=CN=x\n' + A.leaf.pem), /text outside/, 'explanatory text before the block'],
    [nginxEncode(A.leaf.pem + 'junk'), /text outside/, 'text after the block'],
    [nginxEncode('-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n'), /empty base64/, 'empty block'],
    [nginxEncode(A.leaf.pem.replace(/\n([A-Za-z0-9+/]{10})/, '\n$1*')), /not base64/, 'a character outside base64'],
    [nginxEncode(toPem(Buffer.concat([A.leaf.der, Buffer.from([0])]))), /trailing data/, 'DER with trailing data'],
    [nginxEncode(toPem(A.leaf.key.spkiDer)), /not an X.509 certificate/, 'a public key in a CERTIFICATE block'],
    [nginxEncode(toPem(Buffer.from('hello world'))), /does not start with a SEQUENCE/, 'not DER'],
    [nginxEncode(Array.from({ length: 12 }, () => A.leaf.pem).join('')), /more than 11 certificates/, '12 certificates']
  ]
  for (const [value, pattern, msg] of cases) malformed(t, () => parseForwarded('escaped-pem', value), pattern, msg)
  const eleven = parseForwarded('escaped-pem', nginxEncode(Array.from({ length: 11 }, () => A.leaf.pem).join('')))
  t.equal(eleven?.chain.length, 10, 'the leaf and 10 more are accepted')
})

// ------------------------------------------------------------------ base64 DER

t.test('base64-der: Traefik, Cloudflare, ASP.NET', async (t) => {
  const traefik = [V.leaf.der, ...intermediatesOf(V)].map(b64).join(',')
  const r = parseForwarded('base64-der', traefik)
  t.ok(r?.leaf.equals(V.leaf.der), 'Traefik X-Forwarded-Tls-Client-Cert: leaf first')
  t.same(r?.chain, intermediatesOf(V))
  t.ok(parseForwarded('base64-der', ` ${b64(A.leaf.der)} ,\t${b64(A.intermediates[0]?.der as Buffer)} `)?.leaf.equals(A.leaf.der), 'spaces around items')
  const single = parseForwarded('base64-der', b64(R.leaf.der))
  t.ok(single?.leaf.equals(R.leaf.der), 'single certificate (Cloudflare, ASP.NET)')
  t.same(single?.chain, [])
  const withChainHeader = parseForwarded('base64-der', b64(A.leaf.der), { chainValue: b64(A.intermediates[0]?.der as Buffer) })
  t.same(withChainHeader?.chain, intermediatesOf(A), 'a separate chain header in the same encoding')

  const crl = await makeCrl({ issuer: A.intermediates[0] as NonNullable<typeof A.intermediates[0]> })
  const leaf64 = b64(A.leaf.der)
  t.ok(padded.endsWith('='), 'a padded sample')
  const cases: Array<[string, RegExp, string]> = [
    [`${leaf64},`, /empty item/, 'trailing comma'],
    [`${leaf64},,${leaf64}`, /empty item/, 'empty item'],
    [padded.replace(/=+$/, ''), /not padded/, 'padding missing'],
    // a URL-safe character forced in (a random certificate's base64 may have no '+' or '/' to convert)
    ['-' + leaf64.slice(1).replace(/\+/g, '-').replace(/\//g, '_'), /not base64/, 'URL-safe alphabet'],
    [leaf64.slice(0, 40) + ' ' + leaf64.slice(40), /not base64/, 'space inside an item'],
    [leaf64.slice(0, 40) + '=' + leaf64.slice(41), /not base64/, '= in the middle'],
    [b64(Buffer.concat([A.leaf.der, Buffer.from([0, 0, 0])])), /trailing data/, 'DER with trailing data'],
    [leaf64.slice(0, 400), /runs past|truncated|not a single DER/, 'truncated DER'],
    [b64(A.leaf.der.subarray(0, A.leaf.der.length - 1)), /runs past|not a single DER/, 'DER one byte short'],
    [b64(crl.der), /not an X.509 certificate/, 'a CRL'],
    [b64(Buffer.from('hello')), /does not start with a SEQUENCE/, 'not DER'],
    [b64(Buffer.from(A.leaf.pem)), /does not start with a SEQUENCE/, 'base64 of PEM'],
    [Array.from({ length: 12 }, () => leaf64).join(','), /more than 11 certificates/, '12 certificates']
  ]
  for (const [value, pattern, msg] of cases) malformed(t, () => parseForwarded('base64-der', value), pattern, msg)
  // non-zero pad bits: the last base64 character carries bits that are not part of the data
  const i = padded.indexOf('=') - 1
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
  const bumped = padded.slice(0, i) + alphabet[alphabet.indexOf(padded[i] as string) + 1] + padded.slice(i + 1)
  malformed(t, () => parseForwarded('base64-der', bumped), /non-zero pad bits/, 'non-canonical pad bits')
})

// ------------------------------------------------------------------ RFC 9440

// RFC 9440 Appendix A, with the display line breaks and spaces removed
const RFC9440_CLIENT_CERT = `:MIIBqDCCAU6gAwIBAgIBBzAKBggqhkjOPQQDAjA6MRswGQYDVQQKDBJ
 MZXQncyBBdXRoZW50aWNhdGUxGzAZBgNVBAMMEkxBIEludGVybWVkaWF0ZSBDQTAeFw0
 yMDAxMTQyMjU1MzNaFw0yMTAxMjMyMjU1MzNaMA0xCzAJBgNVBAMMAkJDMFkwEwYHKoZ
 Izj0CAQYIKoZIzj0DAQcDQgAE8YnXXfaUgmnMtOXU/IncWalRhebrXmckC8vdgJ1p5Be
 5F/3YC8OthxM4+k1M6aEAEFcGzkJiNy6J84y7uzo9M6NyMHAwCQYDVR0TBAIwADAfBgN
 VHSMEGDAWgBRm3WjLa38lbEYCuiCPct0ZaSED2DAOBgNVHQ8BAf8EBAMCBsAwEwYDVR0
 lBAwwCgYIKwYBBQUHAwIwHQYDVR0RAQH/BBMwEYEPYmRjQGV4YW1wbGUuY29tMAoGCCq
 GSM49BAMCA0gAMEUCIBHda/r1vaL6G3VliL4/Di6YK0Q6bMjeSkC3dFCOOB8TAiEAx/k
 HSB4urmiZ0NX5r5XarmPk0wmuydBVoU4hBVZ1yhk=:`.replace(/\s/g, '')
const RFC9440_CLIENT_CERT_CHAIN = `:MIIB5jCCAYugAwIBAgIBFjAKBggqhkjOPQQDAjBWMQsw
 CQYDVQQGEwJVUzEbMBkGA1UECgwSTGV0J3MgQXV0aGVudGljYXRlMSowKAYDVQQ
 DDCFMZXQncyBBdXRoZW50aWNhdGUgUm9vdCBBdXRob3JpdHkwHhcNMjAwMTE0Mj
 EzMjMwWhcNMzAwMTExMjEzMjMwWjA6MRswGQYDVQQKDBJMZXQncyBBdXRoZW50a
 WNhdGUxGzAZBgNVBAMMEkxBIEludGVybWVkaWF0ZSBDQTBZMBMGByqGSM49AgEG
 CCqGSM49AwEHA0IABJf+aA54RC5pyLAR5yfXVYmNpgd+CGUTDp2KOGhc0gK91zx
 hHesEYkdXkpS2UN8Kati+yHtWCV3kkhCngGyv7RqjZjBkMB0GA1UdDgQWBBRm3W
 jLa38lbEYCuiCPct0ZaSED2DAfBgNVHSMEGDAWgBTEA2Q6eecKu9g9yb5glbkhh
 VINGDASBgNVHRMBAf8ECDAGAQH/AgEAMA4GA1UdDwEB/wQEAwIBhjAKBggqhkjO
 PQQDAgNJADBGAiEA5pLvaFwRRkxomIAtDIwg9D7gC1xzxBl4r28EzmSO1pcCIQC
 JUShpSXO9HDIQMUgH69fNDEMHXD3RRX5gP7kuu2KGMg==:, :MIICBjCCAaygAw
 IBAgIJAKS0yiqKtlhoMAoGCCqGSM49BAMCMFYxCzAJBgNVBAYTAlVTMRswGQYDV
 QQKDBJMZXQncyBBdXRoZW50aWNhdGUxKjAoBgNVBAMMIUxldCdzIEF1dGhlbnRp
 Y2F0ZSBSb290IEF1dGhvcml0eTAeFw0yMDAxMTQyMTI1NDVaFw00MDAxMDkyMTI
 1NDVaMFYxCzAJBgNVBAYTAlVTMRswGQYDVQQKDBJMZXQncyBBdXRoZW50aWNhdG
 UxKjAoBgNVBAMMIUxldCdzIEF1dGhlbnRpY2F0ZSBSb290IEF1dGhvcml0eTBZM
 BMGByqGSM49AgEGCCqGSM49AwEHA0IABFoaHU+Z5bPKmGzlYXtCf+E6HYj62fOR
 aHDOrt+yyh3H/rTcs7ynFfGn+gyFsrSP3Ez88rajv+U2NfD0o0uZ4PmjYzBhMB0
 GA1UdDgQWBBTEA2Q6eecKu9g9yb5glbkhhVINGDAfBgNVHSMEGDAWgBTEA2Q6ee
 cKu9g9yb5glbkhhVINGDAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIBh
 jAKBggqhkjOPQQDAgNIADBFAiEAmAeg1ycKHriqHnaD4M/UDBpQRpkmdcRFYGMg
 1Qyrkx4CIB4ivz3wQcQkGhcsUZ1SOImd/lq1Q0FLf09rGfLQPWDc:`.replace(/\s/g, '').replace('==:,:', '==:, :')

t.test('rfc9440: the RFC\'s example and our own', async (t) => {
  const r = parseForwarded('rfc9440', RFC9440_CLIENT_CERT, { chainValue: RFC9440_CLIENT_CERT_CHAIN })
  t.ok(r !== undefined)
  t.equal(new X509Certificate(r?.leaf as Buffer).subject, 'CN=BC', 'the RFC\'s leaf')
  t.equal(r?.chain.length, 2, 'intermediate and root, as the RFC sends them')
  t.equal(new X509Certificate(r?.chain[0] as Buffer).subject, 'O=Let\'s Authenticate\nCN=LA Intermediate CA')

  const own = parseForwarded('rfc9440', sf(V.leaf.der), { chainValue: intermediatesOf(V).map(sf).join(', ') })
  t.ok(own?.leaf.equals(V.leaf.der))
  t.same(own?.chain, intermediatesOf(V))
  t.same(parseForwarded('rfc9440', sf(V.leaf.der), { chainValue: [V.leaf.der, ...intermediatesOf(V)].map(sf).join(',') })?.chain, intermediatesOf(V),
    'a chain that starts with the leaf, "in TLS order": the leaf is dropped')
  t.same(parseForwarded('rfc9440', sf(A.leaf.der), { chainValue: '' })?.chain, [], 'empty chain header (Cloudflare sends "" without intermediates)')
  t.same(parseForwarded('rfc9440', sf(A.leaf.der))?.chain, [])
  t.ok(parseForwarded('rfc9440', `:${padded.replace(/=+$/, '')}:`)?.leaf.toString('base64') === padded, 'missing padding is tolerated (RFC 8941 4.2.7)')
  t.equal(parseForwarded('rfc9440', ''), undefined)

  const leaf64 = b64(A.leaf.der)
  const cases: Array<[string, string | undefined, RegExp, string]> = [
    [`${sf(A.leaf.der)};a=1`, undefined, /parameters/, 'parameters on Client-Cert'],
    [sf(A.leaf.der), `${sf(A.intermediates[0]?.der as Buffer)};x`, /parameters/, 'parameters on a chain member'],
    [leaf64, undefined, /expected a byte sequence/, 'bare base64'],
    [`:${leaf64}`, undefined, /no closing ':'/, 'no closing colon'],
    [`${sf(A.leaf.der)}, ${sf(A.leaf.der)}`, undefined, /after the byte sequence/, 'a list in Client-Cert'],
    [`"${leaf64}"`, undefined, /expected a byte sequence/, 'a string'],
    [sf(A.leaf.der), `(${sf(A.intermediates[0]?.der as Buffer)})`, /expected a byte sequence/, 'an inner list'],
    [sf(A.leaf.der), `${sf(A.intermediates[0]?.der as Buffer)},`, /trailing ','/, 'trailing comma'],
    [sf(A.leaf.der), `${sf(A.intermediates[0]?.der as Buffer)} ${sf(A.intermediates[0]?.der as Buffer)}`, /expected ','/, 'no comma'],
    [`:-${leaf64.slice(1).replace(/\+/g, '-')}:`, undefined, /not base64/, 'URL-safe alphabet'],
    [`:${leaf64.slice(0, 20)}=${leaf64.slice(21)}:`, undefined, /not base64/, '= in the middle'],
    [`:${leaf64.replace(/=+$/, '')}A:`, undefined, /impossible|not padded|trailing|runs past|not a single/, 'impossible length'],
    ['', sf(A.intermediates[0]?.der as Buffer), /chain header carries certificates/, 'chain without a leaf'],
    [sf(A.leaf.der), Array.from({ length: 12 }, () => sf(A.leaf.der)).join(', '), /more than 11 certificates/, '12 chain members'],
    [sf(A.leaf.der), Array.from({ length: 11 }, () => sf(A.intermediates[0]?.der as Buffer)).join(', '), /more than 10 chain/, '11 intermediates']
  ]
  for (const [value, chainValue, pattern, msg] of cases) {
    malformed(t, () => parseForwarded('rfc9440', value, chainValue === undefined ? {} : { chainValue }), pattern, msg)
  }
})

// ------------------------------------------------------------------ shared rules

t.test('bounds, empty values and bad calls', async (t) => {
  const huge = 'A'.repeat(64 * 1024 + 1)
  for (const format of ['xfcc', 'escaped-pem', 'base64-der', 'rfc9440'] as const) {
    malformed(t, () => parseForwarded(format, huge), /longer than 65536/, `${format}: over 64 KiB`)
    malformed(t, () => parseForwarded(format, 'a\u0000b'), /control character/, `${format}: NUL`)
    t.equal(parseForwarded(format, ''), undefined, `${format}: empty`)
  }
  malformed(t, () => parseForwarded('rfc9440', sf(A.leaf.der), { chainValue: huge }), /chain header: value longer/, 'huge chain header')
  malformed(t, () => parseForwarded('escaped-pem', nginxEncode(A.chainPem), { chainValue: nginxEncode(V.intermediates[0]?.pem as string) }), /already carries a chain/, 'a chain in both headers')
  t.same(parseForwarded('escaped-pem', nginxEncode(A.leaf.pem), { chainValue: nginxEncode(A.intermediates[0]?.pem as string) })?.chain, intermediatesOf(A))
  t.throws(() => parseForwarded('xfcc', 'Cert=x', { chainValue: 'y' }), TypeError, 'chainValue with xfcc is a bad call')
  t.throws(() => parseForwarded('pem' as ForwardedFormat, 'x'), TypeError)
  t.throws(() => parseForwarded('xfcc', 'x', { xfccElement: 'first' as 'last' }), TypeError)
  t.throws(() => parseForwarded('xfcc', undefined as unknown as string), TypeError)
  t.throws(() => parseForwarded('escaped-pem', null as unknown as string), /got null/)
  const err = new MalformedHeader('m')
  t.equal(err.name, 'MalformedHeader')
  t.ok(err instanceof Error)
})

// ------------------------------------------------------------------ fuzz

function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const SPECIALS = [';', ',', '"', '%', '\\', '=', ':', '%zz', '%e9', '%0', '%25', '%0A', '+', ' ', '-----BEGIN ', '-----END CERTIFICATE-----', 'Cert=', ';Cert="', '\\"', '\u00e9', '\u0000']

function mutate (s: string, r: () => number): string {
  const pos = (): number => Math.floor(r() * (s.length + 1))
  const times = 1 + Math.floor(r() * 3)
  for (let k = 0; k < times; k++) {
    const p = pos()
    switch (Math.floor(r() * 8)) {
      case 0: s = s.slice(0, p); break
      case 1: s = s.slice(0, p) + String.fromCharCode(32 + Math.floor(r() * 95)) + s.slice(p + 1); break
      case 2: s = s.slice(0, p) + (SPECIALS[Math.floor(r() * SPECIALS.length)] as string) + s.slice(p); break
      case 3: s = s.slice(0, p) + s.slice(p + 1 + Math.floor(r() * 64)); break
      case 4: { const q = pos(); s = s.slice(0, p) + s.slice(Math.min(p, q), Math.max(p, q)) + s.slice(p); break }
      case 5: s = s.slice(p) + s.slice(0, p); break
      case 6: s = s + (r() < 0.5 ? ',' : ';') + s; break
      default: { const c = s.charCodeAt(p); if (!Number.isNaN(c)) s = s.slice(0, p) + String.fromCharCode(c ^ (1 << Math.floor(r() * 7))) + s.slice(p + 1) }
    }
  }
  return s
}

function junk (r: () => number, max: number): string {
  const n = Math.floor(r() * max)
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=:;,"%\\ -'
  let s = ''
  const raw = r() < 0.2
  for (let i = 0; i < n; i++) s += raw ? String.fromCharCode(Math.floor(r() * 256)) : alphabet[Math.floor(r() * alphabet.length)]
  return s
}

const SEEDS: Record<ForwardedFormat, string[]> = {
  xfcc: [xfccElement(A), xfccElement(V), `Hash=${sha256(R.leaf.der)};Cert="${envoyEncode(R.leaf.pem)}"`, `${xfccElement(V)},${xfccElement(A)}`, ENVOY_DOC_TWO],
  'escaped-pem': [nginxEncode(A.leaf.pem), albEncode(V.chainPem), envoyEncode(R.chainPem), minimalEncode(A.chainPem)],
  'base64-der': [[V.leaf.der, ...intermediatesOf(V)].map(b64).join(','), b64(A.leaf.der), b64(R.leaf.der)],
  rfc9440: [sf(A.leaf.der), RFC9440_CLIENT_CERT, sf(V.leaf.der)]
}
const CHAIN_SEEDS = [intermediatesOf(V).map(sf).join(', '), RFC9440_CLIENT_CERT_CHAIN, '']
const KNOWN = new Set([
  ...[A, V, R].flatMap((c) => [c.leaf.der, ...c.intermediates.map((i) => i.der)]),
  Buffer.from(RFC9440_CLIENT_CERT.slice(1, -1), 'base64')
].map(sha256))

t.test('fuzz: random and mutated values', async (t) => {
  const PER_FORMAT = 2500
  const r = rng(0x5eed)
  for (const format of Object.keys(SEEDS) as ForwardedFormat[]) {
    const counts = { parsed: 0, unknownLeaf: 0, empty: 0, malformed: 0 }
    const failures: string[] = []
    for (let i = 0; i < PER_FORMAT; i++) {
      const seeds = SEEDS[format]
      const value = r() < 0.15 ? junk(r, 3000) : mutate(seeds[Math.floor(r() * seeds.length)] as string, r)
      const options: { xfccElement?: 'last' | 'only', chainValue?: string } = {}
      if (format === 'xfcc') options.xfccElement = r() < 0.5 ? 'last' : 'only'
      if (format === 'rfc9440' && r() < 0.5) {
        const c = CHAIN_SEEDS[Math.floor(r() * CHAIN_SEEDS.length)] as string
        options.chainValue = r() < 0.5 ? c : mutate(c, r)
      }
      let result
      try {
        result = parseForwarded(format, value, options)
      } catch (err) {
        if (err instanceof MalformedHeader && err.message.length > 0) counts.malformed++
        else failures.push(`${format}: threw ${String(err)} for ${JSON.stringify(value.slice(0, 80))}`)
        continue
      }
      if (result === undefined) {
        counts.empty++
        if (value.trim() !== '') failures.push(`${format}: undefined for a non-empty value ${JSON.stringify(value.slice(0, 80))}`)
        continue
      }
      counts.parsed++
      try {
        getCertificate(result.leaf)
        for (const der of result.chain) getCertificate(der)
      } catch (err) {
        failures.push(`${format}: returned a certificate that does not parse: ${(err as Error).message}`)
      }
      if (result.chain.length > 10) failures.push(`${format}: ${result.chain.length} chain certificates`)
      // a mutation may land on a still-valid encoding of another certificate (a flipped
      // signature byte); that is a certificate, and the verifier will refuse it
      if (!KNOWN.has(sha256(result.leaf))) counts.unknownLeaf++
    }
    t.same(failures, [], `${format}: only MalformedHeader, and every returned certificate parses`)
    t.ok(counts.malformed > PER_FORMAT / 2, `${format}: most mutations are refused (${JSON.stringify(counts)})`)
  }
})

t.test('parsing time is linear in the input', async (t) => {
  const leafPem = nginxEncode(A.leaf.pem)
  const patterns: Record<ForwardedFormat, Array<(n: number) => string>> = {
    xfcc: [
      (n) => Array.from({ length: Math.ceil(n / 8) }, (_, i) => `k${i.toString(36)}=v`).join(';').slice(0, n),
      (n) => 'Subject="' + '\\"'.repeat(n / 2 - 6) + '"',
      (n) => ('a=b,').repeat(n / 4 - 1) + 'a=b',
      (n) => 'URI=' + 'x'.repeat(n - 4),
      (n) => 'Cert="' + '%41'.repeat(n / 3 - 3) + '"'
    ],
    'escaped-pem': [
      (n) => '%41'.repeat(n / 3),
      (n) => '-----BEGIN CERTIFICATE-----' + 'A'.repeat(n - 27),
      (n) => '-----BEGIN '.repeat(n / 11),
      (n) => '-----BEGIN ' + 'A'.repeat(n - 11),
      (n) => (leafPem + '%0A').repeat(Math.ceil(n / leafPem.length)).slice(0, n)
    ],
    'base64-der': [
      (n) => 'A'.repeat(n - (n % 4)),
      (n) => 'AAAA,'.repeat(n / 5),
      (n) => 'MIIB' + 'A'.repeat(n - 4 - (n % 4)),
      (n) => ' '.repeat(n - 4) + 'AAAA'
    ],
    rfc9440: [
      (n) => ':' + 'A'.repeat(n - 2) + ':',
      (n) => ':' + 'A'.repeat(n - 1),
      (n) => ':AAAA:, '.repeat(n / 8)
    ]
  }
  const best = (fn: () => void): number => {
    let min = Infinity
    for (let k = 0; k < 15; k++) {
      const start = process.hrtime.bigint()
      fn()
      min = Math.min(min, Number(process.hrtime.bigint() - start))
    }
    return min
  }
  const run = (format: ForwardedFormat, value: string, options = {}): void => {
    try { parseForwarded(format, value, options) } catch (err) { if (!(err instanceof MalformedHeader)) throw err }
  }
  for (const format of Object.keys(patterns) as ForwardedFormat[]) {
    for (const [i, make] of (patterns[format]).entries()) {
      const small = make(6 * 1024)
      const large = make(60 * 1024)
      const options = format === 'rfc9440' && i === 2 ? { chainValue: large } : {}
      const smallOptions = format === 'rfc9440' && i === 2 ? { chainValue: small } : {}
      const value = format === 'rfc9440' && i === 2 ? sf(A.leaf.der) : large
      const smallValue = format === 'rfc9440' && i === 2 ? sf(A.leaf.der) : small
      run(format, value, options) // warm up
      const tSmall = best(() => run(format, smallValue, smallOptions))
      const tLarge = best(() => run(format, value, options))
      const ratio = tLarge / Math.max(tSmall, 1)
      t.ok(ratio < 30 && tLarge < 50e6, `${format} pattern ${i}: 60 KiB takes ${(tLarge / 1e3).toFixed(0)} µs, ${ratio.toFixed(1)}x the 6 KiB time`)
    }
  }
})
