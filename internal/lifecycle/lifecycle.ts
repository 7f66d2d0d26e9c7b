// Package lifecycle owns process signals and the ordered shutdown every binary runs.
import type { Logger } from '../log/log.ts'

/**
 * The first SIGTERM or SIGINT aborts the returned signal, which starts a graceful stop;
 * a second one exits at once with 130.
 */
export function onStopSignals(log: Logger): AbortSignal {
  const controller = new AbortController()
  const handle = (sig: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      log.warn({ signal: sig }, 'second stop signal: exiting now')
      process.exit(130)
    }
    log.info({ signal: sig }, 'stopping gracefully; send the signal again to exit at once')
    controller.abort()
  }
  process.on('SIGTERM', handle)
  process.on('SIGINT', handle)
  return controller.signal
}

export type ShutdownStep = readonly [name: string, run: () => unknown]

/**
 * Runs each step in order, each in its own try/catch, under an overall deadline.
 * Resolves true when every step succeeded in time.
 */
export async function shutdown(log: Logger, steps: ShutdownStep[], timeoutMs: number): Promise<boolean> {
  const force = setTimeout(() => {
    log.error({ timeout_ms: timeoutMs }, 'shutdown took too long: exiting')
    process.exit(1)
  }, timeoutMs)
  force.unref()
  let ok = true
  for (const [name, run] of steps) {
    try {
      await run()
    } catch (err) {
      ok = false
      log.error({ err, step: name }, 'shutdown step failed')
    }
  }
  clearTimeout(force)
  return ok
}

/** Resolves after `ms`, or at once when `signal` aborts. Never rejects. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const timer = setTimeout(done, ms)
    function done() {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })
}
