
export type RateLimiterOptions = {
  /** Events per second each key may send on average. */
  perSecond: number
  /** How many events a key may send at once after being idle. */
  burst: number
  now?: () => number
}

/** A token bucket per key (a client IP): one token per event, refilled at perSecond. */
export function createRateLimiter({ perSecond, burst, now = Date.now }: RateLimiterOptions) {
  const buckets = new Map<string, { tokens: number; at: number }>()
  let calls = 0

  return function take(key: string, n = 1): { ok: true } | { ok: false; retryAfterS: number } {
    const t = now()
    if (++calls % 10_000 === 0) sweep(t)
    const b = buckets.get(key) ?? { tokens: burst, at: t }
    b.tokens = Math.min(burst, b.tokens + ((t - b.at) / 1000) * perSecond)
    b.at = t
    buckets.set(key, b)
    if (b.tokens >= n) {
      b.tokens -= n
      return { ok: true }
    }
    return { ok: false, retryAfterS: Math.max(1, Math.ceil((Math.min(n, burst) - b.tokens) / perSecond)) }
  }

  /** Forgets keys whose bucket has refilled: they would start full anyway. */
  function sweep(t: number) {
    for (const [key, b] of buckets) if (b.tokens + ((t - b.at) / 1000) * perSecond >= burst) buckets.delete(key)
  }
}

/**
 * The client's address: behind a trusted proxy (nginx appends the address it saw to
 * X-Forwarded-For), the last entry of that header; otherwise the socket's peer.
 */
export function clientIp(req: Request, server: RequestIpSource | undefined, trustProxy: boolean): string {
  if (trustProxy) {
    const last = req.headers.get('x-forwarded-for')?.split(',').at(-1)?.trim()
    if (last) return last
  }
  return server?.requestIP?.(req)?.address ?? 'unknown'
}

/** What Bun's server offers to tell a request's peer address. */
export type RequestIpSource = { requestIP?: (req: Request) => { address: string } | null }

/**
 * Bounds the request bytes being worked on at once. A request past the bound waits, with its
 * body still unread in the socket, so a burst of large batches cannot grow the heap without
 * limit. Waiters are served in order.
 */
export function createGate(maxBytes: number) {
  let inUse = 0
  const waiting: { n: number; go: () => void }[] = []
  const release = (n: number) => () => {
    inUse -= n
    while (waiting.length && (inUse === 0 || inUse + waiting[0]!.n <= maxBytes)) {
      const next = waiting.shift()!
      inUse += next.n
      next.go()
    }
  }
  return {
    /** Resolves with a release function once `n` bytes fit (a single request larger than the bound still gets in alone). */
    acquire(n: number): Promise<() => void> | (() => void) {
      if (waiting.length === 0 && (inUse === 0 || inUse + n <= maxBytes)) {
        inUse += n
        return release(n)
      }
      return new Promise((resolve) => waiting.push({ n, go: () => resolve(release(n)) }))
    },
    inUse: () => inUse,
  }
}
