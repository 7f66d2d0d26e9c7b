import type Redis from 'ioredis'

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
export function createBackpressure(redis: Redis, stream: string, { maxBacklog, refreshMs = 250, now = Date.now }: BackpressureOptions) {
  let backlog = 0
  let checkedAt = Number.NEGATIVE_INFINITY
  let inFlight = false

  function refresh() {
    if (inFlight || now() - checkedAt < refreshMs) return
    inFlight = true
    redis
      .xlen(stream)
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
      backlog = await redis.xlen(stream)
      checkedAt = now()
      return backlog
    },
  }
}

export type Backpressure = ReturnType<typeof createBackpressure>
