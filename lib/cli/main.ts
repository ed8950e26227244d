#!/usr/bin/env node
// The fastify-mtls-auth command line: a development PKI, inspect and explain.
// Each command is a module exporting `command: Command` (lib/cli/common.ts), loaded only
// when it is asked for, so `explain` never loads the PKI's libraries.
import { CliError, processIo, wantsHelp, type Command, type Io } from './common.js'

const COMMANDS: Record<string, string> = {
  pki: './pki.js',
  inspect: './inspect.js',
  explain: './explain.js'
}

async function load (name: string): Promise<Command> {
  const path = COMMANDS[name] as string
  return ((await import(path)) as { command: Command }).command
}

async function usage (): Promise<string> {
  const lines = ['usage: fastify-mtls-auth <command> [options]', '', 'commands:']
  for (const name of Object.keys(COMMANDS)) lines.push(`  ${name.padEnd(9)} ${(await load(name)).summary}`)
  lines.push('', 'fastify-mtls-auth <command> --help shows the options of a command.')
  return lines.join('\n')
}

export async function main (args: string[], io: Io = processIo): Promise<number> {
  const [name, ...rest] = args
  try {
    if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
      io.out(await usage())
      return name === undefined ? 2 : 0
    }
    if (name === '--version' || name === '-v') {
      const { createRequire } = await import('node:module')
      io.out((createRequire(import.meta.url)('../../package.json') as { version: string }).version)
      return 0
    }
    if (!Object.hasOwn(COMMANDS, name)) throw new CliError(`unknown command ${JSON.stringify(name)}: try fastify-mtls-auth --help`)
    const command = await load(name)
    if (wantsHelp(rest) && name !== 'pki') {
      io.out(command.help)
      return 0
    }
    return await command.run(rest, io)
  } catch (err) {
    if (err instanceof CliError) {
      io.err(`fastify-mtls-auth: ${err.message}`)
      return err.exitCode
    }
    // anything else is our bug or the system's: still one line, the detail with DEBUG
    const e = err as NodeJS.ErrnoException
    const message = e.message ?? String(err)
    const prefix = typeof e.code === 'string' && !message.startsWith(e.code) ? `${e.code}: ` : ''
    io.err(`fastify-mtls-auth: ${prefix}${message.split('\n')[0] as string}`)
    if (process.env.DEBUG !== undefined && e.stack !== undefined) io.err(e.stack)
    return 2
  }
}

// run when executed (the package's bin), not when imported by tests
const invoked = process.argv[1]
if (invoked !== undefined && import.meta.url === (await import('node:url')).pathToFileURL((await import('node:fs')).realpathSync(invoked)).href) {
  process.exitCode = await main(process.argv.slice(2))
}
