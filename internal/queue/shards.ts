import calculateSlot from 'cluster-key-slot'
import type { Event } from '../event/event.ts'
import type { RedisClient } from '../clients/clients.ts'
import { createQueue, type Depth, type Queue, type QueueOptions } from './queue.ts'

const SLOTS = 16_384

/**
 * The stream's shard keys. One shard on a single Redis keeps the plain names. Otherwise
 * each shard is `{<stream>:<i>.<n>}`: the braces make it a hash tag that its dead-letter
 * stream shares (so an ack plus a dead-letter write stays in one slot), and the suffix
 * `n` is chosen so that shard i falls in the i-th of `shards` equal ranges of the 16384
 * cluster slots. Shards therefore spread over the masters however the slots are split.
 */
export function shardNames(stream: string, shards: number, cluster: boolean): { stream: string; deadLetterStream: string }[] {
  if (shards === 1 && !cluster) return [{ stream, deadLetterStream: `${stream}:dead` }]
  return Array.from({ length: shards }, (_, i) => {
    const lo = Math.floor((i * SLOTS) / shards)
    const hi = Math.floor(((i + 1) * SLOTS) / shards)
    for (let n = 0; ; n++) {
      const tag = `${stream}:${i}.${n}`
      const slot = calculateSlot(tag)
      if (slot >= lo && slot < hi) return { stream: `{${tag}}`, deadLetterStream: `{${tag}}:dead` }
    }
  })
}

/**
 * Shards of another `QUEUE_SHARDS` (from 1 to `upTo`) that still hold entries: where events
 * wait after the setting changed without the queue being drained first. Each comes with its
 * length, the entries in it (delivered or not). Of `what: 'deadLetters'`, the shards whose
 * dead-letter stream holds letters instead, with their count as `length`.
 */
export async function strandedShards(
  redis: RedisClient,
  { stream, shards, cluster }: { stream: string; shards: number; cluster: boolean },
  { what = 'entries', upTo = 32 }: { what?: 'entries' | 'deadLetters'; upTo?: number } = {},
): Promise<{ stream: string; deadLetterStream: string; length: number }[]> {
  const current = new Set(shardNames(stream, shards, cluster).map((s) => s.stream))
  const others = new Map<string, { stream: string; deadLetterStream: string }>()
  for (let k = 1; k <= Math.max(upTo, shards); k++) {
    for (const names of shardNames(stream, k, cluster)) if (!current.has(names.stream)) others.set(names.stream, names)
  }
  // One command per key: on a cluster they live in different slots.
  const lengths = await Promise.all(
    [...others.values()].map(async (names) => ({ ...names, length: await redis.xlen(what === 'deadLetters' ? names.deadLetterStream : names.stream) })),
  )
  return lengths.filter((s) => s.length > 0)
}

export type ShardedQueueOptions = Omit<QueueOptions, 'stream' | 'deadLetterStream'> & { stream: string; shards: number; cluster: boolean }

/**
 * The queue as the API, cron and operators see it: every shard together. Requests go to the
 * shards in turn; workers consume each shard through its own Queue (`shards`).
 */
export function createShardedQueue(redis: RedisClient, { stream, shards, cluster, ...options }: ShardedQueueOptions) {
  const queueOf = ({ stream, deadLetterStream }: { stream: string; deadLetterStream: string }) => createQueue(redis, { ...options, stream, deadLetterStream })
  const queues: Queue[] = shardNames(stream, shards, cluster).map(queueOf)
  let next = 0
  const others = (what: 'entries' | 'deadLetters') => strandedShards(redis, { stream, shards, cluster }, { what })
  /** Queues of the shards of another QUEUE_SHARDS whose dead-letter stream holds letters. */
  const oldLetters = async () => (await others('deadLetters')).map(queueOf)
  /** A current shard's stream, in turn: where an old shard's dead letters are replayed, since no worker reads its stream for long. */
  const target = () => queues[next++ % queues.length]!.stream

  return {
    shards: queues,
    streams: queues.map((q) => q.stream),
    /** Dead-letter streams of the shards of another QUEUE_SHARDS that hold letters, with their counts. */
    strandedDeadLetters: async () => (await others('deadLetters')).map(({ deadLetterStream, length }) => ({ stream: deadLetterStream, length })),
    /** Queues of the shards of another QUEUE_SHARDS that still hold entries (see strandedShards), for workers to drain. */
    async stranded(): Promise<{ queue: Queue; length: number }[]> {
      return (await others('entries')).map((found) => ({ length: found.length, queue: queueOf(found) }))
    },
    enqueue: (events: Event[], signal?: AbortSignal) => queues[next++ % queues.length]!.enqueue(events, signal),
    async depth(): Promise<Depth & { shards: number }> {
      const all = await Promise.all(queues.map((q) => q.depth()))
      return {
        shards: all.length,
        length: all.reduce((s, d) => s + d.length, 0),
        pending: all.reduce((s, d) => s + d.pending, 0),
        undelivered: all.some((d) => d.undelivered === null) ? null : all.reduce((s, d) => s + d.undelivered!, 0),
        oldestPendingAgeMs: Math.max(0, ...all.map((d) => d.oldestPendingAgeMs)),
        oldestEntryAgeMs: Math.max(0, ...all.map((d) => d.oldestEntryAgeMs)),
        deadLetters: all.reduce((s, d) => s + d.deadLetters, 0),
      }
    },
    /** Dead letters, oldest first, of every shard, and of the shards of another QUEUE_SHARDS that hold some. */
    async deadLetters(count = 100) {
      const all = (
        await Promise.all(
          [...queues, ...(await oldLetters())].map(async (q) => (await q.deadLetters(count)).map((l) => ({ ...l, stream: q.deadLetterStream }))),
        )
      )
        .flat()
        .sort((a, b) => compareIds(a.id, b.id))
      return all.slice(0, count)
    },
    /**
     * Replays all dead letters, or those with the given ids. An id is unique only within one
     * shard's dead-letter stream, so an id found in several shards is skipped, not guessed.
     */
    async replay(ids: string[] | 'all') {
      const old = await oldLetters()
      if (ids === 'all') {
        const results = await Promise.all([...queues.map((q) => q.replay('all')), ...old.map((q) => q.replay('all', target()))])
        return { replayed: results.flatMap((r) => r.replayed), skipped: results.flatMap((r) => r.skipped) }
      }
      const replayed: string[] = []
      const skipped: { id: string; reason: string }[] = []
      for (const id of ids) {
        const owners = (await Promise.all([...queues, ...old].map(async (q) => ((await q.hasDeadLetter(id)) ? q : null)))).filter((q) => q !== null)
        if (owners.length !== 1) {
          skipped.push({
            id,
            reason: owners.length === 0 ? 'no such dead letter' : `the id is in ${owners.length} shards' dead-letter streams; use replay --all`,
          })
          continue
        }
        const r = await owners[0]!.replay([id], queues.includes(owners[0]!) ? undefined : target())
        replayed.push(...r.replayed)
        skipped.push(...r.skipped)
      }
      return { replayed, skipped }
    },
  }
}

export type ShardedQueue = ReturnType<typeof createShardedQueue>

function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(Number) as [number, number]
  const [bm, bs] = b.split('-').map(Number) as [number, number]
  return am - bm || as - bs
}
