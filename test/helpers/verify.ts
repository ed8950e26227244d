// Assertions shared by the verifier tests.
import type { Test } from 'tap'
import { verifyCertificateChain } from '../../lib/index.js'
import { InputError } from '../../lib/der/pem.js'
import type { VerifyOptions, VerifySuccess } from '../../lib/types.js'

/** Asserts that the chain verifies and returns the result (throws, ending the subtest, when it does not). */
export async function verifyOk (t: Test, opts: VerifyOptions, what = 'verifies'): Promise<VerifySuccess> {
  const r = await verifyCertificateChain(opts)
  if (!r.ok) {
    t.fail(`${what}: got ${r.code}: ${r.message}`)
    throw new Error(`${what}: verification failed`)
  }
  t.pass(what)
  return r
}

/** Asserts the rejection code and message. `todo`: a known bug; the assertions run and report as TODO. */
export async function verifyFails (t: Test, opts: VerifyOptions, code: string, message: RegExp, what?: string, todo?: string): Promise<void> {
  const r = await verifyCertificateChain(opts)
  const extra = todo === undefined ? {} : { todo }
  if (r.ok) {
    t.fail(`${what ?? code}: verified, expected ${code}`, extra)
    return
  }
  t.equal(r.code, code, what ?? code, extra)
  t.match(r.message, message, `${what ?? code}: message`, extra)
}

/** Asserts that bad input rejects the promise with an InputError (a TypeError) and this message. */
export async function inputError (t: Test, opts: unknown, message: RegExp, what?: string): Promise<void> {
  try {
    await verifyCertificateChain(opts as VerifyOptions)
    t.fail(`${what ?? String(message)}: resolved, expected a rejection`)
  } catch (err) {
    t.ok(err instanceof InputError && err instanceof TypeError, `${what ?? String(message)}: an InputError (a TypeError)`)
    t.match((err as Error).message, message, what ?? String(message))
  }
}
