// Captures the JSON lines a Fastify (Pino) logger writes: parsed, and as written.
import { Writable } from 'node:stream'

export type Json = Record<string, any>

export function logCapture (): { stream: Writable, lines: Json[], raw: string[] } {
  const lines: Json[] = []
  const raw: string[] = []
  const stream = new Writable({
    write (chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) {
        if (line.trim() === '') continue
        raw.push(line)
        lines.push(JSON.parse(line) as Json)
      }
      done()
    }
  })
  return { stream, lines, raw }
}

/** How many times a key appears in a raw JSON line (JSON.parse would keep only the last). */
export function keyCount (line: string, key: string): number {
  return line.split(`"${key}":`).length - 1
}
