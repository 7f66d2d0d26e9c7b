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

/** Bodies up to this size may use the part of the in-flight budget kept back from larger ones. */
export const SMALL_BODY_BYTES = 16 * 1024

/** One request's place in the in-flight budget (see createGate). */
export type Hold = { grow(total: number): boolean; release(): void }

/**
 * Bounds the request-body bytes the API holds at once, counted from the declared length
 * before a byte is read: Bun buffers a request's body as it arrives whether or not anyone
 * reads it, so a request that does not fit is refused at once (the caller answers 503 and
 * closes the connection) rather than kept waiting with its bytes in memory.
 *
 * A quarter of the budget is kept for small bodies (single events, beacons): large or slow
 * uploads can hold at most the other three quarters, so they never stop small ones. A lone
 * large body bigger than its share still gets in when no other large one is held. So the
 * bytes held are at most maxBytes, or one body limit plus the small quarter.
 */
export function createGate(maxBytes: number, { smallBytes = SMALL_BODY_BYTES, smallShare = 0.25 } = {}) {
  const smallReserve = Math.floor(maxBytes * smallShare)
  const largeCap = maxBytes - smallReserve
  let small = 0
  let large = 0
  const fits = (n: number, asSmall: boolean) =>
    asSmall ? small + large === 0 || small + n <= smallReserve || small + large + n <= maxBytes : large === 0 || large + n <= largeCap

  return {
    /**
     * A hold on the budget for one request's body, empty until grown. `grow(total)` makes it
     * cover `total` bytes (the declared length up front, or the bytes arrived so far) and
     * returns false, holding what it held, when they do not fit. A body counts as small while
     * it is at most smallBytes, and as large (its whole `largeBytes`) from then on.
     */
    hold(largeBytes: number): Hold {
      let held = 0
      let isLarge = false
      let done = false
      const give = () => {
        if (isLarge) large -= held
        else small -= held
        held = 0
      }
      return {
        grow(total: number): boolean {
          // A size that is not a number would stay in the running total for good.
          if (!Number.isFinite(total)) return false
          if (done || total <= held) return !done
          if (total <= smallBytes && !isLarge) {
            if (!fits(total - held, true)) return false
            small += total - held
            held = total
            return true
          }
          if (isLarge) return true // a large hold already covers the whole body
          const want = Math.max(total, largeBytes)
          if (!fits(want, false)) return false
          give()
          large += want
          held = want
          isLarge = true
          return true
        },
        release() {
          if (done) return
          done = true
          give()
        },
      }
    },
    inUse: () => small + large,
    maxBytes,
  }
}

/**
 * Turns at parsing and processing large bodies: JSON.parse and what follows hold about ten
 * times a body's size in objects, so at most `maxBytes` of large bodies are worked on at
 * once and the rest wait, in order, with their raw bytes already counted by the gate. A
 * body larger than maxBytes still gets its turn alone.
 */
export function createTurns(maxBytes: number) {
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
    /** A release function now, or a promise of one once `n` bytes fit. */
    take(n: number): Promise<() => void> | (() => void) {
      if (waiting.length === 0 && (inUse === 0 || inUse + n <= maxBytes)) {
        inUse += n
        return release(n)
      }
      return new Promise((resolve) => waiting.push({ n, go: () => resolve(release(n)) }))
    },
    inUse: () => inUse,
  }
}
