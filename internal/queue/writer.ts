import type { RedisClient } from '../clients/clients.ts'
import type { Event } from '../event/event.ts'
import { encode } from './entry.ts'

export type EnqueueResult = { ok: true; id: string } | { ok: false; error: Error }

export type WriterOptions = {
  stream: string
  /** Most events in one stream entry. */
  maxEntryEvents?: number
  waitReplicas?: number
  waitTimeoutMs?: number
}

type Waiting = { events: Event[]; resolve: (r: EnqueueResult[]) => void; signal?: AbortSignal }

/** A caller whose request was abandoned before the flush: nobody would learn of its write. */
const ABANDONED: EnqueueResult = { ok: false, error: new Error('the request was abandoned (its connection closed) before its events were written') }

/**
 * Coalesces writes: events from every request that arrives in the same turn of the event
 * loop go to Redis together, packed into entries of up to maxEntryEvents events, in one
 * pipeline (one round trip and one Command per entry instead of per event). Each caller's
 * promise resolves only after Redis has answered for the entries holding its events.
 */
export function createWriter(redis: RedisClient, { stream, maxEntryEvents = 100, waitReplicas = 0, waitTimeoutMs = 100 }: WriterOptions) {
  let waiting: Waiting[] = []
  let scheduled = false

  /**
   * Resolves once Redis has answered for the events. When `signal` (the request's) has
   * aborted by the flush, the events are not written: its client gets no answer, so a write
   * would store events nobody was told of (Bun closes pipelined requests this way).
   */
  function enqueue(events: Event[], signal?: AbortSignal): Promise<EnqueueResult[]> {
    return new Promise((resolve) => {
      waiting.push({ events, resolve, signal })
      if (!scheduled) {
        scheduled = true
        setImmediate(flush)
      }
    })
  }

  async function flush() {
    let batch = waiting
    waiting = []
    scheduled = false
    if (batch.some((w) => w.signal?.aborted)) {
      for (const w of batch) if (w.signal?.aborted) w.resolve(w.events.map(() => ABANDONED))
      batch = batch.filter((w) => !w.signal?.aborted)
      if (batch.length === 0) return
    }
    // Pack events into entries, remembering which caller and position each one came from.
    const entries: Event[][] = []
    const owners: { entry: number; caller: number; index: number }[][] = []
    let current: Event[] = []
    let currentOwners: { entry: number; caller: number; index: number }[] = []
    batch.forEach(({ events }, caller) => {
      events.forEach((event, index) => {
        if (current.length === maxEntryEvents) {
          entries.push(current)
          owners.push(currentOwners)
          current = []
          currentOwners = []
        }
        current.push(event)
        currentOwners.push({ entry: entries.length, caller, index })
      })
    })
    if (current.length) {
      entries.push(current)
      owners.push(currentOwners)
    }
    const outcomes = await write(entries)
    const results = batch.map(({ events }) => new Array<EnqueueResult>(events.length))
    owners.forEach((list, e) => {
      for (const { caller, index } of list) results[caller]![index] = outcomes[e]!
    })
    batch.forEach(({ resolve }, caller) => {
      resolve(results[caller]!)
    })
  }

  async function write(entries: Event[][]): Promise<EnqueueResult[]> {
    const pipeline = redis.pipeline()
    for (const events of entries) pipeline.xadd(stream, '*', ...encode(events))
    if (waitReplicas > 0) pipeline.wait(waitReplicas, waitTimeoutMs)
    let replies: [Error | null, unknown][] | null
    try {
      replies = await pipeline.exec()
    } catch (err) {
      return entries.map(() => ({ ok: false, error: err as Error }))
    }
    if (waitReplicas > 0) {
      const [err, acked] = replies?.at(-1) ?? [new Error('no reply from Redis'), 0]
      if (err || (acked as number) < waitReplicas) {
        const error = err ?? new Error(`only ${acked} of ${waitReplicas} replicas confirmed the write within ${waitTimeoutMs} ms`)
        return entries.map(() => ({ ok: false, error }))
      }
    }
    return entries.map((_, i) => {
      const [error, id] = replies?.[i] ?? [new Error('no reply from Redis'), null]
      return error ? { ok: false, error } : { ok: true, id: id as string }
    })
  }

  return { enqueue }
}
