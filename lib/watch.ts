// Reload on file change, robust to how files are really delivered: Kubernetes
// secrets swap a `..data` symlink (an fs.watch on the file sees the first swap and
// nothing after), Vault Agent writes key and certificate one after the other. So
// the contents are polled by path (following whatever symlink is current), the
// folders are watched only to poll sooner, key and certificate are applied as a
// checked pair, and a failed reload is retried on the next change or tick.
import { createHash } from 'node:crypto'
import { watch as fsWatch, type FSWatcher } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname } from 'node:path'

export interface WatchOptions {
  ca?: string
  intermediates?: string
  crl?: string | readonly string[]
  key?: string
  cert?: string
  /** how often the files are read (default 2000 ms) */
  intervalMs?: number
}

export interface WatchStatus {
  files: string[]
  lastCheck: string | null
  lastChange: string | null
  lastOutcome: { at: string, ok: boolean, error: string | null } | null
}

type Field = 'ca' | 'intermediates' | 'crl' | 'key' | 'cert'

export interface WatchTarget {
  reload: (input: Partial<Record<Field, string | string[]>>) => Promise<unknown>
  log: { warn: (obj: object, msg: string) => void, info: (obj: object, msg: string) => void }
}

const FIELDS: Field[] = ['ca', 'intermediates', 'crl', 'key', 'cert']

export function checkWatchOptions (w: unknown): WatchOptions {
  if (typeof w !== 'object' || w === null || Array.isArray(w)) throw new TypeError('watch must be an object such as { ca: \'/etc/mtls/ca.pem\', crl: \'/etc/mtls/ca.crl\' }')
  const o = w as Record<string, unknown>
  for (const k of Object.keys(o)) {
    if (!(FIELDS as string[]).includes(k) && k !== 'intervalMs') throw new TypeError(`watch: unknown field "${k}" (known: ${FIELDS.join(', ')}, intervalMs)`)
  }
  for (const k of FIELDS) {
    const v = o[k]
    if (v === undefined) continue
    const paths = Array.isArray(v) ? v : [v]
    if (k !== 'crl' && Array.isArray(v)) throw new TypeError(`watch.${k} must be one file path`)
    if (paths.length === 0 || !paths.every((p) => typeof p === 'string' && p.length > 0)) throw new TypeError(`watch.${k} must be a file path${k === 'crl' ? ' or an array of them' : ''}`)
  }
  if ((o.key === undefined) !== (o.cert === undefined)) throw new TypeError('watch.key and watch.cert go together: they are applied as a pair')
  const interval = o.intervalMs ?? 2000
  if (typeof interval !== 'number' || !Number.isInteger(interval) || interval < 50 || interval > 3_600_000) throw new TypeError('watch.intervalMs must be an integer from 50 to 3600000')
  if (FIELDS.every((k) => o[k] === undefined)) throw new TypeError('watch needs at least one file: ca, intermediates, crl, key or cert')
  return o as WatchOptions
}

export class FileWatcher {
  private readonly paths: Map<Field, string[]>
  private readonly applied = new Map<string, string>()
  private timer: NodeJS.Timeout | undefined
  private watchers: FSWatcher[] = []
  private running: Promise<void> | undefined
  private again = false
  private closed = false
  readonly state: WatchStatus

  constructor (private readonly options: WatchOptions, private readonly target: WatchTarget) {
    this.paths = new Map()
    for (const k of FIELDS) {
      const v = options[k]
      if (v !== undefined) this.paths.set(k, typeof v === 'string' ? [v] : [...v])
    }
    const files = [...this.paths.values()].flat()
    this.state = { files, lastCheck: null, lastChange: null, lastOutcome: null }
  }

  /** Records the current contents as applied (the plugin was registered with them), then starts watching. */
  async start (): Promise<void> {
    const contents = await this.readAll()
    for (const [path, text] of contents) this.applied.set(path, hash(text))
    this.timer = setInterval(() => { this.poll() }, this.options.intervalMs ?? 2000)
    this.timer.unref()
    for (const dir of new Set(this.state.files.map((f) => dirname(f)))) {
      try {
        const w = fsWatch(dir, { persistent: false }, () => { this.poll() })
        w.on('error', () => { /* polling goes on */ })
        this.watchers.push(w)
      } catch {
        // a folder that cannot be watched is still polled
      }
    }
  }

  close (): void {
    this.closed = true
    if (this.timer !== undefined) clearInterval(this.timer)
    for (const w of this.watchers) w.close()
    this.watchers = []
  }

  /** Checks the files now; resolves when that check (and any reload it caused) is done. */
  poll (): Promise<void> {
    if (this.closed) return Promise.resolve()
    if (this.running !== undefined) {
      this.again = true
      return this.running
    }
    this.running = this.check().finally(() => {
      this.running = undefined
      if (this.again && !this.closed) {
        this.again = false
        this.poll()
      }
    })
    return this.running
  }

  private async readAll (): Promise<Map<string, string>> {
    const out = new Map<string, string>()
    for (const path of this.state.files) out.set(path, await readFile(path, 'utf8'))
    return out
  }

  private async check (): Promise<void> {
    const at = new Date().toISOString()
    this.state.lastCheck = at
    let contents: Map<string, string>
    try {
      contents = await this.readAll()
    } catch (err) {
      // a file mid-swap may be missing for a moment: try again on the next tick
      this.state.lastOutcome = { at, ok: false, error: `cannot read: ${(err as Error).message}` }
      return
    }
    const changed = new Set<Field>()
    for (const [field, paths] of this.paths) {
      if (paths.some((p) => this.applied.get(p) !== hash(contents.get(p) as string))) changed.add(field)
    }
    if (changed.size === 0) return
    // key and certificate are one change: a new key with the old certificate is half a rotation
    if (changed.has('key') || changed.has('cert')) { changed.add('key'); changed.add('cert') }
    const input: Partial<Record<Field, string | string[]>> = {}
    for (const field of changed) {
      const texts = (this.paths.get(field) as string[]).map((p) => contents.get(p) as string)
      input[field] = field === 'crl' ? texts : texts[0] as string
    }
    this.state.lastChange = at
    try {
      await this.target.reload(input)
      for (const field of changed) for (const p of this.paths.get(field) as string[]) this.applied.set(p, hash(contents.get(p) as string))
      this.state.lastOutcome = { at, ok: true, error: null }
      this.target.log.info({ 'mtls.watch': [...changed] }, 'fastify-mtls-auth: files changed, reloaded')
    } catch (err) {
      // not marked applied: the next change or tick tries again (e.g. the certificate half of a pair arrives)
      const error = (err as Error).message
      const repeated = this.state.lastOutcome?.ok === false && this.state.lastOutcome.error === error
      this.state.lastOutcome = { at, ok: false, error }
      if (!repeated) this.target.log.warn({ 'mtls.watch': [...changed], err }, 'fastify-mtls-auth: files changed but the reload was refused; will retry')
    }
  }
}

function hash (text: string): string {
  return createHash('sha256').update(text).digest('base64')
}
