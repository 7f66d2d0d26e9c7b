import { ConfigError } from '../config/config.ts'
import { EXIT } from './exit-codes.ts'
import { holdStopSignals } from './lifecycle.ts'
import { UnreachableError } from '../clients/clients.ts'

/**
 * Runs a binary's body and exits with its code. Bad config and unreachable dependencies
 * become one line on stderr and a dedicated exit code; anything else is a crash (1).
 *
 * A service (api, worker, cron) holds a stop signal until it can stop gracefully. A one-shot
 * command (`oneShot`: migrate, the operator command) exits on it at once, with 128 + the
 * signal's number: what it was doing runs in Postgres transactions, which roll back when the
 * connection drops, so a migration waiting on a lock can be interrupted.
 */
export async function runMain(name: string, body: () => Promise<number>, { oneShot = false }: { oneShot?: boolean } = {}): Promise<never> {
  if (oneShot) exitOnStopSignals(name)
  else holdStopSignals()
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
    } else if (typeof (err as { code?: unknown })?.code === 'string' && (err as { code: string }).code.startsWith('ERR_PARSE_ARGS_')) {
      // node:util parseArgs: an unknown option, a missing value, a stray argument.
      console.error(`sluice-${name}: ${(err as Error).message}`)
      code = EXIT.usage
    } else {
      console.error(`sluice-${name}: fatal:`, err)
      code = EXIT.failed
    }
  }
  process.exit(code)
}

function exitOnStopSignals(name: string): void {
  const exit = (signal: 'SIGINT' | 'SIGTERM') => {
    console.error(`sluice-${name}: stopped by ${signal}; what it had not committed is rolled back`)
    process.exit(signal === 'SIGINT' ? EXIT.interrupted : EXIT.terminated)
  }
  process.on('SIGINT', exit)
  process.on('SIGTERM', exit)
}

/** Resolves when the signal aborts. */
export function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true })))
}
