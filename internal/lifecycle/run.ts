import { ConfigError } from '../config/config.ts'
import { EXIT } from './exit-codes.ts'
import { holdStopSignals } from './lifecycle.ts'
import { UnreachableError } from '../clients/clients.ts'

/**
 * Runs a binary's body and exits with its code. Bad config and unreachable dependencies
 * become one line on stderr and a dedicated exit code; anything else is a crash (1).
 */
export async function runMain(name: string, body: () => Promise<number>): Promise<never> {
  holdStopSignals()
  let code: number
  try {
    code = await body()
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`sluice-${name}: ${err.message}`)
      code = EXIT.config
    } else if (err instanceof UnreachableError) {
      console.error(`sluice-${name}: ${err.message}`)
      code = EXIT.unavailable
    } else {
      console.error(`sluice-${name}: fatal:`, err)
      code = EXIT.failed
    }
  }
  process.exit(code)
}

/** Resolves when the signal aborts. */
export function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true })))
}
