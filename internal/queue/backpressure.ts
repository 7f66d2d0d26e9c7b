import type { RedisClient } from '../clients/clients.ts'

export type BackpressureOptions = {
  /** Most entries the stream may hold (delivered-but-unacknowledged plus undelivered) before ingest sheds load. */
  maxBacklog: number
  /** How stale the backlog reading may get; it is refreshed in the background, never on the request path. */
  refreshMs?: number
  now?: () => number
}

/**
 * Tells the API when the queue holds too much unprocessed work, so it can answer 503 instead
 * of letting Redis run out of memory while workers are down or behind. Acknowledged entries
 * are deleted from the stream, so its length is exactly the backlog.
 */
export function createBackpressure(redis: RedisClient, streams: string | string[], { maxBacklog, refreshMs = 250, now = Date.now }: BackpressureOptions) {
  const keys = Array.isArray(streams) ? streams : [streams]
  // One XLEN per shard: in a cluster the shards live on different nodes.
  const total = async () => (await Promise.all(keys.map((k) => redis.xlen(k)))).reduce((a, b) => a + b, 0)
  let backlog = 0
  let checkedAt = Number.NEGATIVE_INFINITY
  let inFlight = false

  function refresh() {
    if (inFlight || now() - checkedAt < refreshMs) return
    inFlight = true
    total()
      .then((n) => {
        backlog = n
        checkedAt = now()
      })
      // Redis is unreachable: keep the last reading; the write itself will fail and answer 503.
      .catch(() => {})
      .finally(() => (inFlight = false))
  }

  return {
    /** True while the last reading is at or over the limit. Starts a refresh when the reading is stale. */
    overloaded(): boolean {
      refresh()
      return backlog >= maxBacklog
    },
    backlog: () => backlog,
    maxBacklog,
    /** Reads the backlog now (for tests and start-up). */
    async check(): Promise<number> {
      backlog = await total()
      checkedAt = now()
      return backlog
    },
  }
}

export type Backpressure = ReturnType<typeof createBackpressure>
