// Package worker drains the queue into Postgres: it reads entries through the consumer
// group, inserts their events in statements of at most batchSize events, and acknowledges
// entries only after the commit. Statements run in insertConcurrency lanes, each taking the
// next chunk as soon as its own commit is acknowledged, and the next read overlaps them.
import type { RedisClient } from '../clients/clients.ts'
import type { Event } from '../event/event.ts'
import { sleep } from '../lifecycle/lifecycle.ts'
import type { Logger } from '../log/log.ts'
import type { Metrics } from '../metrics/metrics.ts'
import { countEvents, eventFields, eventsOf, fieldsOf, joinJson, type BadEntry, type Delivery, type Entry, type Queue } from '../queue/queue.ts'
import { isDataError, type Store } from '../store/store.ts'

export type WorkerDeps = {
  queue: Queue
  store: Store
  /** A connection of its own: XREADGROUP BLOCK holds it. */
  reader: RedisClient
  log: Logger
  metrics?: Metrics | null
}

export type WorkerOptions = {
  consumer: string
  /** Most events per insert statement (and, roughly, per read). */
  batchSize?: number
  blockMs?: number
  /**
   * After a read that brought less than a quarter of what the insert lanes take, wait this
   * long before the next, so that light traffic is stored in fewer, larger statements. Adds
   * at most this much to an event's time to storage; 0 reads again at once.
   */
  lingerMs?: number
  /** Entries another consumer has held this long are taken over (it has probably died). */
  claimIdleMs?: number
  /** An entry delivered this many times without being stored goes to the dead-letter stream. */
  maxDeliveries?: number
  /** Most events the API puts in one entry; sizes the first read. */
  maxEntryEvents?: number
  /** Insert statements in flight at once, on separate connections: one Postgres backend is the bottleneck. */
  insertConcurrency?: number
  /** Backoff for Postgres and Redis failures: doubles from base to max, with jitter. */
  retryBaseMs?: number
  retryMaxMs?: number
  /** Once stopping, how long to keep retrying the batch in hand before leaving it pending for another worker. */
  stopGraceMs?: number
}

/** batches counts insert statements. */
export type WorkerStats = { batches: number; stored: number; duplicates: number; deadLettered: number }

export function createWorker({ queue, store, reader, log, metrics = null }: WorkerDeps, options: WorkerOptions) {
  const {
    consumer,
    batchSize = 2000,
    blockMs = 1000,
    lingerMs = 20,
    claimIdleMs = 60_000,
    maxDeliveries = 5,
    maxEntryEvents = 100,
    insertConcurrency = 2,
    retryBaseMs = 100,
    retryMaxMs = 5000,
    stopGraceMs = 5000,
  } = options
  // Each read aims at enough events for every insert slot.
  const readTarget = batchSize * insertConcurrency
  const stats: WorkerStats = { batches: 0, stored: 0, duplicates: 0, deadLettered: 0 }
  // Entries this run leaves pending because Postgres (or Redis) failed while it stopped.
  const leftPending = new Set<string>()
  const leave = (ids: string[]) => {
    for (const id of ids) leftPending.add(id)
  }
  // How many entries to ask for: enough for about batchSize events, adapted to the sizes seen.
  let count = Math.max(1, Math.floor(readTarget / maxEntryEvents))

  /** Runs until `signal` aborts, then finishes and acknowledges what it holds and returns. */
  async function run(signal: AbortSignal): Promise<WorkerStats> {
    let failures = 0
    let ownPendingDone = false
    let nextClaimAt = 0
    // A read started while the previous batch is inserted. It never rejects (it carries its
    // error instead), so a failure cannot go unhandled while the insert is still running.
    let prefetch: Promise<{ delivery: Delivery } | { error: unknown }> | null = null
    // Chunks being stored, at most insertConcurrency. Each lane frees itself when its chunk
    // is acknowledged, so Postgres gets the next statement while this process prepares
    // another, instead of every lane waiting for the slowest of a read's chunks.
    const lanes = new Set<Promise<void>>()
    await retrying('create consumer group', () => queue.ensureGroup(), signal)
    // Consumers of earlier worker processes stay in the group; forget those idle a day with nothing pending.
    await queue.pruneConsumers(24 * 3_600_000).catch((err) => log.warn({ err }, 'could not prune idle consumers'))
    while (!signal.aborted || prefetch) {
      try {
        let delivery: Delivery
        if (prefetch) {
          const read = await prefetch
          prefetch = null
          if ('error' in read) throw read.error
          delivery = read.delivery
        } else if (!ownPendingDone) {
          // After a restart under the same name, what this consumer held before comes first.
          // Claims see entries still being stored as pending too: let those finish first.
          await Promise.all(lanes)
          // Stopped meanwhile: claiming again would only count one more delivery of what it just left.
          if (signal.aborted) continue
          delivery = await queue.claim(consumer, { owner: consumer, minIdleMs: 0, count, maxDeliveries })
          ownPendingDone = size(delivery) === 0
        } else if (Date.now() >= nextClaimAt) {
          await Promise.all(lanes)
          if (signal.aborted) continue
          delivery = await queue.claim(consumer, { minIdleMs: claimIdleMs, count, maxDeliveries })
          const got = size(delivery)
          if (got > 0) log.warn({ entries: got }, 'took over entries from a stalled consumer')
          // A full read may mean more are waiting; otherwise look again in a while.
          if (got < count) nextClaimAt = Date.now() + Math.max(500, Math.min(claimIdleMs / 2, 30_000))
        } else {
          delivery = await queue.read(reader, consumer, { count, blockMs })
        }
        failures = 0
        if (size(delivery) === 0) continue
        const events = countEvents(delivery.entries)
        adapt(delivery, events)
        // Read the next batch while this one is inserted; it is stored before the loop ends.
        // Once stopping, no new read starts, so a stop finishes even under constant load.
        if (!signal.aborted && ownPendingDone && Date.now() < nextClaimAt) {
          const light = lingerMs > 0 && events < readTarget / 4
          prefetch = (light ? sleep(lingerMs, signal) : Promise.resolve())
            // A stop during the wait starts no new read.
            .then(() => (signal.aborted ? { entries: [], bad: [] } : queue.read(reader, consumer, { count, blockMs })))
            .then(
              (d) => ({ delivery: d }),
              (error: unknown) => ({ error }),
            )
        }
        if (delivery.bad.length) await inLane(lanes, () => setAside(delivery.bad, signal))
        for (const chunk of chunksOf(delivery.entries)) await inLane(lanes, () => storeChunk(chunk, signal))
      } catch (err) {
        failures++
        const wait = backoff(failures)
        log.error({ err, retry_in_ms: wait }, 'queue read failed; retrying')
        // Redis came back without its data (no persistence): the group has to be made again.
        if (String((err as Error).message).includes('NOGROUP')) await queue.ensureGroup().catch(() => {})
        await sleep(wait, signal)
      }
    }
    await Promise.all(lanes)
    // Not the entries' fault: give their delivery back, so restarts during an outage do not
    // push good entries towards the dead-letter stream (a crash never gets here).
    if (leftPending.size) {
      await queue.release(consumer, [...leftPending]).then(
        () => log.warn({ entries: leftPending.size }, 'left entries pending for the next worker'),
        (err) => log.error({ err, entries: leftPending.size }, 'left entries pending, and could not give their delivery back'),
      )
    }
    log.info(stats, 'worker stopped')
    return stats
  }

  const size = (d: Delivery) => d.entries.length + d.bad.length

  /** Runs `job` once a lane is free. The job never rejects: what it cannot finish stays pending for a later claim. */
  async function inLane(lanes: Set<Promise<void>>, job: () => Promise<void>): Promise<void> {
    while (lanes.size >= insertConcurrency) await Promise.race(lanes)
    const lane: Promise<void> = job()
      .catch((err) => log.error({ err }, 'storing a batch failed; leaving it pending'))
      .finally(() => lanes.delete(lane))
    lanes.add(lane)
  }

  /** Asks for more entries when they are small and fewer when they are large, so reads stay near readTarget events. */
  function adapt({ entries }: Delivery, events: number) {
    if (events === 0) return
    const full = entries.length >= count
    const ideal = Math.floor((entries.length * readTarget) / events)
    if (events > readTarget || full) count = Math.max(1, Math.min(readTarget, ideal))
  }

  /** Chunks of whole entries, at most batchSize events each (an entry larger than that is a chunk of its own). */
  function chunksOf(entries: Entry[]): Entry[][] {
    const chunks: Entry[][] = []
    let size = 0
    for (const entry of entries) {
      if (chunks.length === 0 || size + entry.count > batchSize) {
        chunks.push([])
        size = 0
      }
      chunks.at(-1)!.push(entry)
      size += entry.count
    }
    return chunks
  }

  /** Writes items to the dead-letter stream (which acknowledges their entries); false when stopping left them pending. */
  async function deadLetter(items: BadEntry[], signal: AbortSignal): Promise<boolean> {
    const written = await retrying('dead-letter entries', () => queue.deadLetter(items).then(() => true), signal, stopGraceMs)
    if (!written) return false
    log.error({ count: items.length, reasons: [...new Set(items.map((d) => d.reason))] }, 'moved entries to the dead-letter stream')
    return true
  }

  /** Moves entries that did not decode to the dead-letter stream. */
  async function setAside(bad: BadEntry[], signal: AbortSignal): Promise<void> {
    if (!(await deadLetter(bad, signal))) return leave(bad.map((b) => b.id))
    stats.deadLettered += bad.length
    metrics?.worker.deadLettered.inc(bad.length)
  }

  /** Stores a chunk in one statement and acknowledges its entries. What can never be stored goes to the dead-letter stream. */
  async function storeChunk(chunk: Entry[], signal: AbortSignal): Promise<void> {
    const events = countEvents(chunk)
    const ids = chunk.map((e) => e.id)
    const result = await retrying('insert batch', () => insert(chunk, events), signal, stopGraceMs)
    if (result === undefined) return leave(ids) // stopping, and Postgres is still failing: leave it pending.
    stats.batches++
    const { inserted, rejectedEvents, rejected } = result
    // Acking without the dead letters written would lose the rejected events: leave it all pending.
    if (rejected.length && !(await deadLetter(rejected, signal))) return leave(ids)
    const duplicates = events - inserted - rejectedEvents
    stats.stored += inserted
    stats.duplicates += duplicates
    stats.deadLettered += rejected.length
    metrics?.worker.stored.inc(inserted)
    if (duplicates > 0) metrics?.worker.duplicates.inc(duplicates)
    if (rejected.length) metrics?.worker.deadLettered.inc(rejected.length)
    // Stored: if the acknowledgement fails, the entries come back as duplicates, which cost
    // nothing but a delivery, so they are not given back.
    await retrying('acknowledge batch', () => queue.ack(ids), signal, stopGraceMs)
  }

  /**
   * Inserts a chunk of entries in one statement: their JSON, joined into one array, which the
   * store hands Postgres as one array per column. If Postgres rejects the data itself, parses
   * the entries and inserts one event at a time, so the good events still go in and only the
   * bad ones (or unreadable entries) are set aside.
   */
  async function insert(chunk: Entry[], events: number): Promise<{ inserted: number; rejectedEvents: number; rejected: BadEntry[] }> {
    try {
      const started = performance.now()
      const inserted = await store.insertEventsJson(joinJson(chunk))
      metrics?.worker.insertDuration.observe((performance.now() - started) / 1000)
      metrics?.worker.batchSize.observe(events)
      return { inserted, rejectedEvents: 0, rejected: [] }
    } catch (err) {
      if (!isDataError(err)) throw err
    }
    let inserted = 0
    let rejectedEvents = 0
    const rejected: BadEntry[] = []
    for (const entry of chunk) {
      let events: Event[]
      try {
        events = eventsOf(entry)
      } catch (err) {
        rejected.push({ id: entry.id, fields: fieldsOf(entry), reason: (err as Error).message })
        rejectedEvents += entry.count
        continue
      }
      for (const event of events) {
        try {
          inserted += await store.insertEvents([event])
        } catch (err) {
          if (!isDataError(err)) throw err
          rejected.push({ id: entry.id, fields: eventFields(event), reason: `postgres rejected the event: ${(err as Error).message}` })
          rejectedEvents++
        }
      }
    }
    return { inserted, rejectedEvents, rejected }
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
