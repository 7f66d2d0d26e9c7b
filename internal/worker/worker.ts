// Package worker drains the queue into Postgres: it reads batches through the consumer
// group, inserts each in one statement, and acknowledges only after the commit.
import type Redis from 'ioredis'
import type { Event } from '../event/event.ts'
import { sleep } from '../lifecycle/lifecycle.ts'
import type { Logger } from '../log/log.ts'
import type { Delivery, Entry, Queue } from '../queue/queue.ts'
import { isDataError, type Store } from '../store/store.ts'

export type WorkerDeps = {
  queue: Queue
  store: Store
  /** A connection of its own: XREADGROUP BLOCK holds it. */
  reader: Redis
  log: Logger
}

export type WorkerOptions = {
  consumer: string
  batchSize?: number
  blockMs?: number
  /** Entries another consumer has held this long are taken over (it has probably died). */
  claimIdleMs?: number
  /** An entry delivered this many times without being stored goes to the dead-letter stream. */
  maxDeliveries?: number
  /** Backoff for Postgres and Redis failures: doubles from base to max, with full jitter. */
  retryBaseMs?: number
  retryMaxMs?: number
  /** Once stopping, how long to keep retrying the batch in hand before leaving it pending for another worker. */
  stopGraceMs?: number
}

export type WorkerStats = { batches: number; stored: number; duplicates: number; deadLettered: number }

export function createWorker({ queue, store, reader, log }: WorkerDeps, options: WorkerOptions) {
  const { consumer, batchSize = 2000, blockMs = 1000, claimIdleMs = 60_000, maxDeliveries = 5, retryBaseMs = 100, retryMaxMs = 5000, stopGraceMs = 5000 } = options
  const stats: WorkerStats = { batches: 0, stored: 0, duplicates: 0, deadLettered: 0 }

  /** Runs until `signal` aborts, then finishes and acknowledges the batch in hand and returns. */
  async function run(signal: AbortSignal): Promise<WorkerStats> {
    let failures = 0
    let ownPendingDone = false
    let nextClaimAt = 0
    await retrying('create consumer group', () => queue.ensureGroup(), signal)
    while (!signal.aborted) {
      try {
        let delivery: Delivery
        if (!ownPendingDone) {
          // After a restart under the same name, what this consumer held before comes first.
          delivery = await queue.claim(consumer, { owner: consumer, minIdleMs: 0, count: batchSize, maxDeliveries })
          ownPendingDone = delivery.entries.length + delivery.bad.length === 0
        } else if (Date.now() >= nextClaimAt) {
          delivery = await queue.claim(consumer, { minIdleMs: claimIdleMs, count: batchSize, maxDeliveries })
          const got = delivery.entries.length + delivery.bad.length
          if (got > 0) log.warn({ count: got }, 'took over entries from a stalled consumer')
          // A full batch may mean more are waiting; otherwise look again in a while.
          if (got < batchSize) nextClaimAt = Date.now() + Math.max(500, Math.min(claimIdleMs / 2, 30_000))
        } else {
          delivery = await queue.read(reader, consumer, { count: batchSize, blockMs })
        }
        failures = 0
        if (delivery.entries.length + delivery.bad.length > 0) await handle(delivery, signal)
      } catch (err) {
        failures++
        const wait = backoff(failures)
        log.error({ err, retry_in_ms: wait }, 'queue read failed; retrying')
        // Redis came back without its data (no persistence): the group has to be made again.
        if (String((err as Error).message).includes('NOGROUP')) await queue.ensureGroup().catch(() => {})
        await sleep(wait, signal)
      }
    }
    log.info(stats, 'worker stopped')
    return stats
  }

  /** Stores a delivery and acknowledges it. Entries that can never be stored go to the dead-letter stream. */
  async function handle({ entries, bad }: Delivery, signal: AbortSignal): Promise<void> {
    const deadLetters = bad.map((b) => ({ id: b.id, fields: b.fields, reason: b.reason }))
    const stored = await retrying('insert batch', () => insert(entries), signal, stopGraceMs)
    if (stored === undefined) return // stopping, and Postgres is still failing: leave the batch pending.
    for (const { entry, reason } of stored.rejected) {
      deadLetters.push({ id: entry.id, fields: ['e', JSON.stringify(entry.event)], reason })
    }
    const good = entries.filter((e) => !stored.rejected.some((r) => r.entry === e)).map((e) => e.id)
    await retrying('acknowledge batch', () => queue.ack(good), signal, stopGraceMs)
    if (deadLetters.length) {
      await retrying('dead-letter entries', () => queue.deadLetter(deadLetters), signal, stopGraceMs)
      log.error({ count: deadLetters.length, reasons: [...new Set(deadLetters.map((d) => d.reason))] }, 'moved entries to the dead-letter stream')
    }
    stats.batches++
    stats.stored += stored.inserted
    stats.duplicates += entries.length - stored.rejected.length - stored.inserted
    stats.deadLettered += deadLetters.length
  }

  /**
   * Inserts the whole batch in one statement. If Postgres rejects the data itself, falls back
   * to one event at a time so the good ones still go in and only the bad ones are set aside.
   */
  async function insert(entries: Entry[]): Promise<{ inserted: number; rejected: { entry: Entry; reason: string }[] }> {
    const events: Event[] = entries.map((e) => e.event)
    try {
      return { inserted: await store.insertEvents(events), rejected: [] }
    } catch (err) {
      if (!isDataError(err)) throw err
    }
    let inserted = 0
    const rejected: { entry: Entry; reason: string }[] = []
    for (const entry of entries) {
      try {
        inserted += await store.insertEvents([entry.event])
      } catch (err) {
        if (!isDataError(err)) throw err
        rejected.push({ entry, reason: `postgres rejected the event: ${(err as Error).message}` })
      }
    }
    return { inserted, rejected }
  }

  /**
   * Calls `fn` until it succeeds, backing off between failures. Once `signal` has aborted it
   * keeps trying for `graceMs` more, then gives up and resolves undefined.
   */
  async function retrying<T>(what: string, fn: () => Promise<T>, signal: AbortSignal, graceMs = 0): Promise<T | undefined> {
    let stopDeadline = Number.POSITIVE_INFINITY
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn()
      } catch (err) {
        if (signal.aborted) stopDeadline = Math.min(stopDeadline, Date.now() + graceMs)
        if (Date.now() >= stopDeadline) {
          log.error({ err }, `${what} failed while stopping; leaving the batch pending for another worker`)
          return undefined
        }
        const wait = backoff(attempt)
        log.error({ err, attempt, retry_in_ms: wait }, `${what} failed; retrying`)
        await Bun.sleep(Math.min(wait, Math.max(0, stopDeadline - Date.now())))
      }
    }
  }

  function backoff(attempt: number): number {
    const cap = Math.min(retryMaxMs, retryBaseMs * 2 ** Math.min(attempt - 1, 20))
    return Math.floor(cap / 2 + Math.random() * (cap / 2))
  }

  return { run, stats }
}
