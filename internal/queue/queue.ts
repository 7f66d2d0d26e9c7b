// Package queue is the Redis Streams queue between the ingestion API and the workers:
// entries of up to 100 events, read through a consumer group, acknowledged only after
// their events are committed in Postgres, and deleted from the stream when acknowledged.
import type { RedisClient } from '../clients/clients.ts'
import { decode, fieldsOf, replayFields, type BadEntry, type Delivery, type RawEntry } from './entry.ts'
import { createWriter } from './writer.ts'

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
  /** Most events the API packs into one stream entry. */
  maxEntryEvents?: number
}

export type { BadEntry, Delivery, Entry } from './entry.ts'
// What a consumer needs of an entry; the fields on the wire stay in entry.ts.
export { countEvents, eventFields, eventsOf, fieldsOf, joinJson } from './entry.ts'
export type { EnqueueResult } from './writer.ts'

export type Depth = {
  /** Entries in the stream: delivered but not yet acknowledged, plus not yet delivered. */
  length: number
  /** Delivered to a worker and not yet acknowledged. */
  pending: number
  /** Not yet delivered to any worker. */
  undelivered: number | null
  /** Age of the oldest un-acknowledged entry, from when it was enqueued; 0 when none. */
  oldestPendingAgeMs: number
  /**
   * Age of the oldest entry not yet stored, delivered or not (the stream holds only those:
   * ack deletes); 0 when none. The rollup holds back closing visits by it.
   */
  oldestEntryAgeMs: number
  deadLetters: number
}

export type Queue = ReturnType<typeof createQueue>

/** KEYS[1] the stream, ARGV[1] the group, the rest entry ids: acknowledged and deleted at once. */
const ACK_SCRIPT = "redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2)); return redis.call('XDEL', KEYS[1], unpack(ARGV, 2))"
/** Ids per ack script: Lua's unpack takes some thousands of values at most. */
const ACK_CHUNK = 1000
/**
 * KEYS[1] the stream, KEYS[2] its dead-letter stream (the same hash slot), ARGV[1] the group,
 * ARGV[2] when, ARGV[3] the entries as JSON [{id, reason, fields}]. The acknowledgement comes
 * first: Redis refuses a script over its maxmemory only if its first write would add memory.
 * A script's writes are not rolled back if a later one fails, so everything that could fail
 * is checked before the first: the JSON, the dead-letter key's type, the fields' pairs.
 * Letters are written only for entries this call took out of the group's pending list (each
 * entry acknowledged once, however many of its events are letters): the same call run twice
 * (a reply lost, a retry) writes each letter once, and an entry another consumer took over
 * and stored meanwhile gets none.
 */
const DEAD_LETTER_SCRIPT = `local letters = cjson.decode(ARGV[3])
local kind = redis.call('TYPE', KEYS[2])['ok']
if kind ~= 'none' and kind ~= 'stream' then return redis.error_reply('the dead-letter key ' .. KEYS[2] .. ' is a ' .. kind) end
local ids = {}
for i, l in ipairs(letters) do
  if type(l.id) ~= 'string' or type(l.reason) ~= 'string' or #l.fields % 2 ~= 0 then return redis.error_reply('a malformed dead letter') end
  ids[i] = l.id
end
local took = {}
local acked = {}
for _, l in ipairs(letters) do
  if took[l.id] == nil then took[l.id] = redis.call('XACK', KEYS[1], ARGV[1], l.id) == 1 end
  if took[l.id] then acked[#acked + 1] = l end
end
redis.call('XDEL', KEYS[1], unpack(ids))
for _, l in ipairs(acked) do
  redis.call('XADD', KEYS[2], '*', 'source_id', l.id, 'reason', l.reason, 'failed_at', ARGV[2], unpack(l.fields))
end
return #acked`
/**
 * KEYS[1] the stream, ARGV[1] the group, ARGV[2] the consumer, the rest entry ids: each entry
 * the consumer still holds is claimed back by it with its delivery count one lower and its
 * idle time as it was. XCLAIM, unlike a MULTI, runs in a Redis over its maxmemory.
 */
const RELEASE_SCRIPT = `local given = 0
for i = 3, #ARGV do
  local row = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])[1]
  if row then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', row[3], 'RETRYCOUNT', math.max(0, row[4] - 1), 'JUSTID')
    given = given + 1
  end
end
return given`
/** KEYS[1] the stream, ARGV[1] the group, ARGV[2] the idle time: deletes idle consumers that hold nothing. */
const PRUNE_SCRIPT = `local gone = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['pending'] == 0 and f['idle'] >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    gone[#gone + 1] = f['name']
  end
end
return gone`

export function createQueue(
  redis: RedisClient,
  { stream, group, deadLetterStream, maxEntryEvents = 100, waitReplicas = 0, waitTimeoutMs = 100 }: QueueOptions,
) {
  /** Appends events; reports per event whether Redis took it. See createWriter. */
  const { enqueue } = createWriter(redis, { stream, maxEntryEvents, waitReplicas, waitTimeoutMs })

  /**
   * Creates the consumer group (and the stream) if missing. Safe to call from every worker.
   * Looks first: a Redis over its maxmemory refuses XGROUP CREATE even for a group that
   * exists, and a worker starting then must still get to its acknowledgements, which free it.
   */
  async function ensureGroup(): Promise<void> {
    const groups = await (redis.xinfo('GROUPS', stream) as Promise<unknown[][]>).catch(() => [])
    if (groups.map(toRecord).some((g) => g.name === group)) return
    try {
      await redis.xgroup('CREATE', stream, group, '0', 'MKSTREAM')
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err
    }
  }

  /** Reads up to `count` new entries for `consumer`, blocking up to `blockMs`. Pass a connection of its own: the read blocks it. */
  async function read(reader: RedisClient, consumer: string, { count, blockMs }: { count: number; blockMs: number }): Promise<Delivery> {
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
  async function claim(
    consumer: string,
    { minIdleMs, count, owner, maxDeliveries = Number.POSITIVE_INFINITY }: { minIdleMs: number; count: number; owner?: string; maxDeliveries?: number },
  ): Promise<Delivery> {
    const args: (string | number)[] = ['IDLE', minIdleMs, '-', '+', count]
    if (owner) args.push(owner)
    const pending = (await redis.call('XPENDING', stream, group, ...args)) as [string, string, number, number][]
    if (pending.length === 0) return { entries: [], bad: [] }
    const delivered = new Map(pending.map(([id, , , n]) => [id, n]))
    const claimed = (await redis.call('XCLAIM', stream, group, consumer, minIdleMs, ...pending.map(([id]) => id))) as RawEntry[]
    const { entries, bad } = decode(claimed)
    const tooOften = (id: string) => (delivered.get(id) ?? 0) + 1 > maxDeliveries
    for (const entry of entries.filter((e) => tooOften(e.id))) {
      bad.push({ id: entry.id, fields: fieldsOf(entry), reason: `delivered ${(delivered.get(entry.id) ?? 0) + 1} times without being stored` })
    }
    return { entries: entries.filter((e) => !tooOften(e.id)), bad }
  }

  /**
   * Gives back the delivery of entries `consumer` holds and stops without storing, for no
   * fault of theirs (Postgres failed while the worker stopped): their delivery count goes
   * down by one, and their idle time stays as it was, so the next claim of them does not
   * count towards maxDeliveries, and another consumer still takes them over on time. A
   * crash gives nothing back, so an entry that kills its worker is still counted. One script
   * per thousand ids (an entry acknowledged or taken over meanwhile is left alone), which a
   * Redis over its maxmemory still runs: a stop during a Postgres outage, which fills Redis,
   * must still give deliveries back, or restarts would dead-letter good entries.
   */
  async function release(consumer: string, ids: string[]): Promise<void> {
    for (let i = 0; i < ids.length; i += ACK_CHUNK) {
      await redis.eval(RELEASE_SCRIPT, 1, stream, group, consumer, ...ids.slice(i, i + ACK_CHUNK))
    }
  }

  /**
   * Acknowledges entries and removes them from the stream, so it holds only un-acknowledged
   * work. One script, not a MULTI: a Redis over its maxmemory (noeviction) refuses every
   * command of a MULTI, also XACK and XDEL, which would free it; a script runs them.
   */
  async function ack(ids: string[]): Promise<void> {
    for (let i = 0; i < ids.length; i += ACK_CHUNK) {
      await redis.eval(ACK_SCRIPT, 1, stream, group, ...ids.slice(i, i + ACK_CHUNK))
    }
  }

  /**
   * Moves entries to the dead-letter stream with the reason, and acknowledges and deletes
   * them, at once. A script, as ack's: a Redis over its maxmemory refuses a MULTI, and would
   * hold the chunk these entries came in (its lane waits for them) for good.
   */
  async function deadLetter(items: BadEntry[]): Promise<void> {
    if (items.length === 0) return
    const failedAt = new Date().toISOString()
    const letters = items.map(({ id, fields, reason }) => ({ id, reason, fields }))
    for (let i = 0; i < letters.length; i += ACK_CHUNK) {
      await redis.eval(DEAD_LETTER_SCRIPT, 2, stream, deadLetterStream, group, failedAt, JSON.stringify(letters.slice(i, i + ACK_CHUNK)))
    }
  }

  async function depth(now = Date.now()): Promise<Depth> {
    const [[, length], [, pendingSummary], [, groups], [, deadLetters], [, first]] = (await redis
      .pipeline()
      .xlen(stream)
      .xpending(stream, group)
      .xinfo('GROUPS', stream)
      .xlen(deadLetterStream)
      .xrange(stream, '-', '+', 'COUNT', 1)
      .exec()) as [[unknown, unknown], [unknown, unknown], [unknown, unknown], [unknown, unknown], [unknown, [string, string[]][] | undefined]]
    const [pending, oldestId] = (pendingSummary as [number, string | null] | null) ?? [0, null]
    const info = ((groups as unknown[][] | undefined) ?? []).map(toRecord).find((g) => g.name === group)
    return {
      length: length as number,
      pending,
      // No group yet (no worker has run): nothing has been delivered.
      undelivered: info === undefined ? (length as number) : typeof info.lag === 'number' ? info.lag : null,
      oldestPendingAgeMs: oldestId ? Math.max(0, now - Number(oldestId.split('-')[0])) : 0,
      oldestEntryAgeMs: first?.[0] ? Math.max(0, now - Number(first[0][0].split('-')[0])) : 0,
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
   * `into`: another stream to put them on (a shard of the current QUEUE_SHARDS, for the dead
   * letters of an old one). Two keys of different slots on a cluster, so two steps: a failure
   * between them leaves the letter, and a second replay stores its events once (event_id).
   */
  async function replay(ids: string[] | 'all', into?: string): Promise<{ replayed: string[]; skipped: { id: string; reason: string }[] }> {
    const letters =
      ids === 'all'
        ? await deadLetters(Number.MAX_SAFE_INTEGER)
        : await Promise.all(
            ids.map(async (id) => {
              const [entry] = (await redis.xrange(deadLetterStream, id, id)) as [string, string[]][]
              return entry ? { id, fields: toRecord(entry[1]) as Record<string, string> } : { id, fields: null }
            }),
          )
    const replayed: string[] = []
    const skipped: { id: string; reason: string }[] = []
    for (const { id, fields } of letters) {
      const payload = fields && replayFields(fields)
      if (!fields) skipped.push({ id, reason: 'no such dead letter' })
      else if (!payload) skipped.push({ id, reason: 'it holds no event (it was not a valid entry)' })
      else if (into !== undefined && into !== stream) {
        await redis.xadd(into, '*', ...payload)
        await redis.xdel(deadLetterStream, id)
        replayed.push(id)
      } else {
        await execAll(
          redis
            .multi()
            .xadd(stream, '*', ...payload)
            .xdel(deadLetterStream, id),
        )
        replayed.push(id)
      }
    }
    return { replayed, skipped }
  }

  /**
   * Deletes consumers that hold no pending entries and have been idle at least `minIdleMs`.
   * Returns their names. Looked at and deleted in one script: a consumer that reads between
   * the look and the delete would lose its pending entries with it, and no claim or read
   * would ever deliver them again.
   */
  async function pruneConsumers(minIdleMs: number): Promise<string[]> {
    return (await redis.eval(PRUNE_SCRIPT, 1, stream, group, minIdleMs)) as string[]
  }

  /** Whether a dead letter with this id exists (ids are unique within one dead-letter stream only). */
  async function hasDeadLetter(id: string): Promise<boolean> {
    return ((await redis.xrange(deadLetterStream, id, id)) as unknown[]).length > 0
  }

  return {
    stream,
    group,
    deadLetterStream,
    enqueue,
    pruneConsumers,
    hasDeadLetter,
    ensureGroup,
    read,
    claim,
    release,
    ack,
    deadLetter,
    depth,
    deadLetters,
    replay,
  }
}

/** Runs a MULTI, throwing the first command's error: exec() itself resolves with them. */
async function execAll(tx: ReturnType<RedisClient['multi']>): Promise<void> {
  const failed = (await tx.exec())?.find(([err]) => err)
  if (failed) throw failed[0]
}

function toRecord(flat: unknown[]): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1]
  return out
}
