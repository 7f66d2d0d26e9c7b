// Package identity derives a visitor id without storing anything on the visitor's device:
// a keyed hash of site, client IP and user agent under a random salt per UTC day, which
// every API replica reads from one Redis key and which Redis deletes 48 h after its day began.
import { randomBytes } from 'node:crypto'
import type { RedisClient } from '../clients/clients.ts'

const DAY_MS = 86_400_000
/** A day's salt is deleted this long after the start of its UTC day. */
export const SALT_LIFETIME_MS = 2 * DAY_MS

export type IdentityDeps = { redis: Pick<RedisClient, 'set' | 'getBuffer'> }

export type IdentityOptions = {
  /** Salt keys are `<keyPrefix>:salt:<YYYY-MM-DD>` (IDENTITY_KEY_PREFIX). */
  keyPrefix: string
  now?: () => number
  /** How long before a UTC midnight the next day's salt is fetched, so no request waits for it then. */
  aheadMs?: number
  /**
   * How often a process checks, in the background, that Redis still holds the salt it uses:
   * a key Redis lost (a restart without persistence, a failover) is put back, and a salt
   * another process made meanwhile is taken up, so replicas agree again within this long.
   */
  recheckMs?: number
}

/** One UTC day's salt: what turns a site, IP and user agent into a visitor id for that day. */
export type Salt = {
  /** YYYY-MM-DD (UTC). */
  day: string
  /** The visitor id: 22 characters of base64url (128 bits of HMAC-SHA256). */
  visitorId(siteId: string, ip: string, userAgent: string | null): string
}

export type Identity = {
  /**
   * The salt of the current UTC day: the cached one itself (no Redis call, no await) on
   * every request but the first of a day; a promise while it is being fetched, shared by
   * every request that asks meanwhile. The promise rejects when Redis cannot give it.
   */
  salt(): Salt | Promise<Salt>
  /** The Redis key of a day's salt. */
  keyOf(day: string): string
}

/** The UTC day of an epoch-millisecond time, as YYYY-MM-DD. */
export const utcDay = (ms: number) => new Date(ms).toISOString().slice(0, 10)

/**
 * The salt of a day is made once by whichever replica asks first: `SET key value NX PXAT`
 * (expiring 48 h after the day began), then every replica reads whichever value won. Only
 * the current day's salt, and near midnight the next day's, is held in memory.
 */
export function createIdentity({ redis }: IdentityDeps, { keyPrefix, now = Date.now, aheadMs = 30_000, recheckMs = 60_000 }: IdentityOptions): Identity {
  const keyOf = (day: string) => `${keyPrefix}:salt:${day}`
  /** Salts in memory by day number (days since the epoch): the current day's, and near midnight the next one's. */
  const salts = new Map<number, Held>()
  const fetching = new Map<number, Promise<Salt>>()
  let today = Number.NaN
  /** The salt returned without further checks while now() is in [hotFrom, hotUntil). */
  let hot: Salt | null = null
  let hotFrom = 0
  let hotUntil = 0
  let checkAt = 0

  /** Offers a salt for day n (`SET NX`) and returns whichever Redis holds: the offer, or another process's. */
  async function load(n: number, mine: Buffer = randomBytes(32)): Promise<Held> {
    const day = utcDay(n * DAY_MS)
    const key = keyOf(day)
    const set = await redis.set(key, mine, 'PXAT', n * DAY_MS + SALT_LIFETIME_MS, 'NX')
    const salt = set === 'OK' ? mine : await redis.getBuffer(key)
    if (!salt || salt.length !== 32) throw new IdentityError(`the salt of ${day} is missing from Redis (${key})`)
    return saltOf(day, salt)
  }

  /** Fetches a day's salt once however many ask; a failure is forgotten, so the next request tries again. */
  function fetch(n: number, offer?: Buffer): Promise<Salt> {
    let p = fetching.get(n)
    if (p) return p
    p = load(n, offer).then(
      (salt) => {
        fetching.delete(n)
        if (n >= today) {
          // A salt that changed (re-checked against another process's) is used from the next request on.
          if (!salts.get(n)?.bytes.equals(salt.bytes)) hot = null
          salts.set(n, salt)
          if (n === today) checkAt = now() + recheckMs
        }
        return salt
      },
      (err) => {
        fetching.delete(n)
        throw err instanceof IdentityError ? err : new IdentityError(`could not read the salt of ${utcDay(n * DAY_MS)} from Redis: ${(err as Error).message}`)
      },
    )
    fetching.set(n, p)
    return p
  }

  return {
    keyOf,
    salt() {
      const t = now()
      // The common case: today's salt, and not yet time to fetch tomorrow's.
      if (hot && t >= hotFrom && t < hotUntil) return hot
      const n = Math.floor(t / DAY_MS)
      if (n !== today) {
        // A new day: forget every earlier salt, so this process cannot recompute an old id either.
        today = n
        for (const day of salts.keys()) if (day < n) salts.delete(day)
      }
      const salt = salts.get(n)
      if (!salt) return fetch(n)
      if (t >= checkAt && !fetching.has(n)) {
        // Redis may have lost the key since: put this salt back, or take up the one that is there now.
        checkAt = t + recheckMs
        fetch(n, salt.bytes).catch(() => {})
      }
      hot = salt
      hotFrom = n * DAY_MS
      const ahead = (n + 1) * DAY_MS - aheadMs
      hotUntil = Math.min(ahead, checkAt)
      // Near midnight, the next day's salt is fetched in the background; a failure here is retried on the next request.
      if (aheadMs > 0 && t >= ahead && !salts.has(n + 1) && !fetching.has(n + 1)) fetch(n + 1).catch(() => {})
      return salt
    },
  }
}

/** A salt with the bytes it was made from, which a re-check offers back to Redis. */
type Held = Salt & { readonly bytes: Buffer }

function saltOf(day: string, key: Buffer): Held {
  return {
    day,
    bytes: key,
    visitorId(siteId, ip, userAgent) {
      // site_id and the IP never contain a newline, so the three parts cannot run into each other.
      const h = new Bun.CryptoHasher('sha256', key)
      h.update(`${siteId}\n${ip}\n${userAgent ?? ''}`)
      return h.digest().toString('base64url', 0, 16)
    },
  }
}

/** Redis could not give the day's salt: the caller answers 503 and the client retries. */
export class IdentityError extends Error {
  readonly code = 'IDENTITY_UNAVAILABLE'
  constructor(message: string) {
    super(message)
    this.name = 'IdentityError'
  }
}
