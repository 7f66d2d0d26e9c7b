// Package queue is the Redis Streams queue between the ingestion API and the workers:
// one entry per event, read through a consumer group, acknowledged only after the
// event is committed in Postgres, and deleted from the stream when acknowledged.
import type Redis from 'ioredis'
import type { Event } from '../event/event.ts'

export type QueueOptions = {
  stream: string
  group: string
  deadLetterStream: string
  /**
   * Before reporting a write as done, wait until this many replicas have it (Redis WAIT).
   * 0 trusts the primary alone: with appendfsync everysec, about a second of writes can be
   * lost if its host crashes.
   */
  waitReplicas?: number
  waitTimeoutMs?: number
}

/** One stream entry that decoded into an event. */
export type Entry = { id: string; event: Event }
/** One stream entry that did not decode; it can only be dead-lettered. */
export type BadEntry = { id: string; fields: string[]; reason: string }
export type Delivery = { entries: Entry[]; bad: BadEntry[] }

export type EnqueueResult = { ok: true; id: string } | { ok: false; error: Error }

export type Depth = {
  /** Entries in the stream: delivered but not yet acknowledged, plus not yet delivered. */
  length: number
  /** Delivered to a worker and not yet acknowledged. */
  pending: number
  /** Not yet delivered to any worker. */
  undelivered: number | null
  /** Age of the oldest un-acknowledged entry, from when it was enqueued; 0 when none. */
  oldestPendingAgeMs: number
  deadLetters: number
}

type RawEntry = [id: string, fields: string[] | null]

export type Queue = ReturnType<typeof createQueue>

export function createQueue(redis: Redis, { stream, group, deadLetterStream, waitReplicas = 0, waitTimeoutMs = 100 }: QueueOptions) {
  /** Appends events, one entry each, in one round trip; reports per event whether Redis took it. */
  async function enqueue(events: Event[]): Promise<EnqueueResult[]> {
    if (events.length === 1 && waitReplicas === 0) {
      try {
        const id = await redis.xadd(stream, '*', 'e', JSON.stringify(events[0]))
        return [{ ok: true, id: id as string }]
      } catch (err) {
        return [{ ok: false, error: err as Error }]
      }
    }
    const pipeline = redis.pipeline()
    for (const event of events) pipeline.xadd(stream, '*', 'e', JSON.stringify(event))
    if (waitReplicas > 0) pipeline.wait(waitReplicas, waitTimeoutMs)
    let replies: [Error | null, unknown][] | null
    try {
      replies = await pipeline.exec()
    } catch (err) {
      return events.map(() => ({ ok: false, error: err as Error }))
    }
    if (waitReplicas > 0) {
      const [err, acked] = replies?.at(-1) ?? [new Error('no reply from Redis'), 0]
      if (err || (acked as number) < waitReplicas) {
        const error = err ?? new Error(`only ${acked} of ${waitReplicas} replicas confirmed the write within ${waitTimeoutMs} ms`)
        return events.map(() => ({ ok: false, error }))
      }
    }
    return events.map((_, i) => {
      const [error, id] = replies?.[i] ?? [new Error('no reply from Redis'), null]
      return error ? { ok: false, error } : { ok: true, id: id as string }
    })
  }

  /** Creates the consumer group (and the stream) if missing. Safe to call from every worker. */
  async function ensureGroup(): Promise<void> {
    try {
      await redis.xgroup('CREATE', stream, group, '0', 'MKSTREAM')
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err
    }
  }

  /** Reads up to `count` new entries for `consumer`, blocking up to `blockMs`. Pass a connection of its own: the read blocks it. */
  async function read(reader: Redis, consumer: string, { count, blockMs }: { count: number; blockMs: number }): Promise<Delivery> {
    const reply = await reader.xreadgroup('GROUP', group, consumer, 'COUNT', count, 'BLOCK', blockMs, 'STREAMS', stream, '>')
    const entries = (reply as [string, RawEntry[]][] | null)?.[0]?.[1] ?? []
    return decode(entries)
  }

  /**
   * Takes over up to `count` entries that have waited unacknowledged for at least `minIdleMs`:
   * those of `owner` only (a worker resuming its own after a restart), or anyone's (a consumer
   * that died). An entry already delivered `maxDeliveries` times comes back in `bad`, to be
   * dead-lettered instead of failing again.
   */
  async function claim(consumer: string, { minIdleMs, count, owner, maxDeliveries = Number.POSITIVE_INFINITY }: { minIdleMs: number; count: number; owner?: string; maxDeliveries?: number }): Promise<Delivery> {
    const args: (string | number)[] = ['IDLE', minIdleMs, '-', '+', count]
    if (owner) args.push(owner)
    const pending = (await redis.call('XPENDING', stream, group, ...args)) as [string, string, number, number][]
    if (pending.length === 0) return { entries: [], bad: [] }
    const delivered = new Map(pending.map(([id, , , n]) => [id, n]))
    const claimed = (await redis.xclaim(stream, group, consumer, minIdleMs, ...pending.map(([id]) => id))) as RawEntry[]
    const tooOften = claimed.filter(([id]) => (delivered.get(id) ?? 0) + 1 > maxDeliveries)
    const { entries, bad } = decode(claimed.filter((e) => !tooOften.includes(e)))
    for (const [id, fields] of tooOften) {
      bad.push({ id, fields: fields ?? [], reason: `delivered ${(delivered.get(id) ?? 0) + 1} times without being stored` })
    }
    return { entries, bad }
  }

  /** Acknowledges entries and removes them from the stream, so it holds only un-acknowledged work. */
  async function ack(ids: string[]): Promise<void> {
    if (ids.length === 0) return
    const replies = await redis.multi().xack(stream, group, ...ids).xdel(stream, ...ids).exec()
    const failed = replies?.find(([err]) => err)
    if (failed) throw failed[0]
  }

  /** Moves entries to the dead-letter stream with the reason, then acknowledges them. */
  async function deadLetter(items: { id: string; fields: string[]; reason: string }[]): Promise<void> {
    if (items.length === 0) return
    const tx = redis.multi()
    for (const { id, fields, reason } of items) {
      tx.xadd(deadLetterStream, '*', 'source_id', id, 'reason', reason, 'failed_at', new Date().toISOString(), ...fields)
    }
    tx.xack(stream, group, ...items.map((i) => i.id)).xdel(stream, ...items.map((i) => i.id))
    const replies = await tx.exec()
    const failed = replies?.find(([err]) => err)
    if (failed) throw failed[0]
  }

  async function depth(now = Date.now()): Promise<Depth> {
    const [[, length], [, pendingSummary], [, groups], [, deadLetters]] = (await redis
      .pipeline()
      .xlen(stream)
      .xpending(stream, group)
      .xinfo('GROUPS', stream)
      .xlen(deadLetterStream)
      .exec()) as [[unknown, unknown], [unknown, unknown], [unknown, unknown], [unknown, unknown]]
    const [pending, oldestId] = (pendingSummary as [number, string | null] | null) ?? [0, null]
    const info = ((groups as unknown[][] | undefined) ?? []).map(toRecord).find((g) => g.name === group)
    return {
      length: length as number,
      pending,
      undelivered: typeof info?.lag === 'number' ? info.lag : null,
      oldestPendingAgeMs: oldestId ? Math.max(0, now - Number(oldestId.split('-')[0])) : 0,
      deadLetters: deadLetters as number,
    }
  }

  /** Lists dead letters, oldest first. */
  async function deadLetters(count = 100): Promise<{ id: string; fields: Record<string, string> }[]> {
    const entries = (await redis.xrange(deadLetterStream, '-', '+', 'COUNT', count)) as [string, string[]][]
    return entries.map(([id, fields]) => ({ id, fields: toRecord(fields) as Record<string, string> }))
  }

  /**
   * Puts dead letters back on the stream (all of them, or those with the given ids) and
   * removes them from the dead-letter stream. Entries with no event to replay stay put.
   */
  async function replay(ids: string[] | 'all'): Promise<{ replayed: string[]; skipped: { id: string; reason: string }[] }> {
    const letters = ids === 'all' ? await deadLetters(Number.MAX_SAFE_INTEGER) : await Promise.all(ids.map(async (id) => {
      const [entry] = (await redis.xrange(deadLetterStream, id, id)) as [string, string[]][]
      return entry ? { id, fields: toRecord(entry[1]) as Record<string, string> } : { id, fields: null }
    }))
    const replayed: string[] = []
    const skipped: { id: string; reason: string }[] = []
    for (const { id, fields } of letters) {
      if (!fields) skipped.push({ id, reason: 'no such dead letter' })
      else if (fields.e === undefined) skipped.push({ id, reason: 'it holds no event (it was not a valid entry)' })
      else {
        const replies = await redis.multi().xadd(stream, '*', 'e', fields.e).xdel(deadLetterStream, id).exec()
        const failed = replies?.find(([err]) => err)
        if (failed) throw failed[0]
        replayed.push(id)
      }
    }
    return { replayed, skipped }
  }

  return { stream, group, enqueue, ensureGroup, read, claim, ack, deadLetter, depth, deadLetters, replay }
}

function decode(raw: RawEntry[]): Delivery {
  const entries: Entry[] = []
  const bad: BadEntry[] = []
  for (const [id, fields] of raw) {
    // A pending entry that was deleted from the stream comes back without fields; nothing is left to store.
    if (fields === null) {
      bad.push({ id, fields: [], reason: 'entry was deleted from the stream before it was stored' })
      continue
    }
    const i = fields.indexOf('e')
    try {
      if (i < 0 || i % 2 !== 0) throw new Error('no "e" field')
      entries.push({ id, event: checkShape(JSON.parse(fields[i + 1]!)) })
    } catch (err) {
      bad.push({ id, fields, reason: `undecodable entry: ${(err as Error).message}` })
    }
  }
  return { entries, bad }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/**
 * The API validated the event before writing it; this re-checks only what Postgres would
 * choke on, so a hand-written or corrupted entry is set aside instead of retried forever.
 */
function checkShape(e: Event): Event {
  const str = (x: unknown) => typeof x === 'string'
  const optional = (x: unknown) => x === null || str(x)
  if (
    !e || !UUID.test(e.event_id) || !str(e.site_id) || !str(e.event_type) || !optional(e.path) || !optional(e.user_id) ||
    !str(e.timestamp) || Number.isNaN(Date.parse(e.timestamp)) || !Number.isFinite(e.received_at)
  ) {
    throw new Error('not a valid event')
  }
  return e
}

function toRecord(flat: unknown[]): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1]
  return out
}
