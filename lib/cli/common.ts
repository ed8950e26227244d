// Shared by the command line's commands: one-line errors, --help, argument parsing.
import { parseArgs, type ParseArgsConfig } from 'node:util'

/** A refusal the user can act on: printed as one line (no stack trace), exit code 2 unless given. */
export class CliError extends Error {
  readonly exitCode: number
  constructor (message: string, exitCode = 2) {
    super(message)
    this.name = 'CliError'
    this.exitCode = exitCode
  }
}

/** Where a command writes: the real streams, or strings in tests. */
export interface Io {
  out: (text: string) => void
  err: (text: string) => void
}

export const processIo: Io = {
  out: (text) => { process.stdout.write(text.endsWith('\n') ? text : text + '\n') },
  err: (text) => { process.stderr.write(text.endsWith('\n') ? text : text + '\n') }
}

/** A command of the command line: `run` returns the exit code. */
export interface Command {
  /** shown by `fastify-mtls-auth --help` */
  summary: string
  /** shown by `fastify-mtls-auth <command> --help` */
  help: string
  run: (args: string[], io: Io) => Promise<number>
}

type Options = NonNullable<ParseArgsConfig['options']>

/**
 * node:util parseArgs, strict, with its errors made one readable line. Unknown flags,
 * a flag without its value and stray positionals become CliError.
 */
export interface Parsed {
  values: Record<string, string | boolean | Array<string | boolean> | undefined>
  positionals: string[]
}

export function parse (args: string[], options: Options, positionals = 0, usage = ''): Parsed {
  try {
    const parsed = parseArgs({ args, options, allowPositionals: positionals > 0, strict: true })
    if (parsed.positionals.length > positionals) throw new CliError(`unexpected argument ${JSON.stringify(parsed.positionals[positionals])}${usage === '' ? '' : ` (usage: ${usage})`}`)
    return parsed
  } catch (err) {
    if (err instanceof CliError) throw err
    // parseArgs messages are one line, but some end with advice about '--'
    const message = (err as Error).message.split('\n')[0]?.replace(/\. To specify a positional argument.*$/, '') ?? 'bad arguments'
    throw new CliError(`${message}${usage === '' ? '' : ` (usage: ${usage})`}`)
  }
}

/** True when the arguments ask for help (anywhere, as parseArgs would otherwise refuse it). */
export function wantsHelp (args: string[]): boolean {
  return args.includes('--help') || args.includes('-h')
}
