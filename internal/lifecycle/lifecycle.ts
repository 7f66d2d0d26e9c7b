// Package lifecycle owns process signals and the ordered shutdown every binary runs.
import type { Logger } from '../log/log.ts'
import { EXIT } from './exit-codes.ts'

/**
 * Signals that arrive this soon after the first are echoes of the same stop: one Ctrl-C in
 * a terminal reaches a binary as SIGINT from the terminal, SIGINT again from `bun run`, and
 * SIGTERM from `bun run start`'s supervisor.
 */
export const SIGNAL_ECHO_MS = 1000

/**
 * The first SIGTERM or SIGINT aborts the returned signal, which starts a graceful stop.
 * Signals within SIGNAL_ECHO_MS of it belong to the same stop; one after that (a second,
 * deliberate Ctrl-C) exits at once with 130.
 */
export function onStopSignals(log: Logger, { echoMs = SIGNAL_ECHO_MS, now = Date.now } = {}): AbortSignal {
  const controller = new AbortController()
  let firstAt = 0
  const early = takeEarlySignal()
  if (early) {
    firstAt = early.at
    log.info({ signal: early.signal }, 'stop signal during start-up: stopping gracefully once started')
    controller.abort()
  }
  const handle = (sig: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      if (now() - firstAt < echoMs) {
        log.debug({ signal: sig }, 'stop signal again: part of the same stop')
        return
      }
      log.warn({ signal: sig }, 'second stop signal: exiting now')
      process.exit(EXIT.interrupted)
    }
    firstAt = now()
    log.info({ signal: sig }, 'stopping gracefully; send the signal again to exit at once')
    controller.abort()
  }
  process.on('SIGTERM', handle)
  process.on('SIGINT', handle)
  return controller.signal
}

// Process signals are the process's own, so what arrives before a binary installs its
// handlers is kept here: runMain holds them from its first line, onStopSignals takes them.
let early: { signal: NodeJS.Signals; at: number } | null = null
let holder: ((sig: NodeJS.Signals) => void) | null = null

/** Keeps a stop signal that arrives during start-up, instead of dying of it, until onStopSignals runs. */
export function holdStopSignals(): void {
  if (holder) return
  holder = (signal) => {
    early ??= { signal, at: Date.now() }
  }
  process.on('SIGTERM', holder)
  process.on('SIGINT', holder)
}

function takeEarlySignal() {
  if (holder) {
    process.off('SIGTERM', holder)
    process.off('SIGINT', holder)
    holder = null
  }
  const taken = early
  early = null
  return taken
}

export type ShutdownStep = readonly [name: string, run: () => unknown]

/** Exits EXIT.failed, saying `what`, unless the timer it returns is cleared within `timeoutMs`. */
function exitAfter(timeoutMs: number, log: Logger, what: string): ReturnType<typeof setTimeout> {
  const force = setTimeout(() => {
    log.error({ timeout_ms: timeoutMs }, what)
    process.exit(EXIT.failed)
  }, timeoutMs)
  force.unref()
  return force
}

/**
 * Exits EXIT.failed if the process is still running `timeoutMs` after `stop` aborts: a stop
 * that waits for work in flight (an insert, a rollup chunk, Redis gone) is bounded from the
 * signal, not only from when shutdown() starts closing connections.
 */
export function exitIfStopTakesLonger(stop: AbortSignal, timeoutMs: number, log: Logger): void {
  const arm = () => void exitAfter(timeoutMs, log, 'stopping took longer than SHUTDOWN_TIMEOUT_MS: exiting')
  if (stop.aborted) arm()
  else stop.addEventListener('abort', arm, { once: true })
}

/**
 * Runs each step in order, each in its own try/catch, under an overall deadline.
 * Resolves true when every step succeeded in time.
 */
export async function shutdown(log: Logger, steps: ShutdownStep[], timeoutMs: number): Promise<boolean> {
  const force = exitAfter(timeoutMs, log, 'shutdown took too long: exiting')
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
