// bun bench/identity.ts: what the cookieless visitor id costs per event, in ns per call.
// salt() on the hot path (the day's salt from memory) and visitorId() (HMAC-SHA256 with
// Bun.CryptoHasher), against node:crypto's createHmac, which was the other candidate.
// Uses the local Redis under a key prefix of its own. Measures, never asserts.
import { createHmac } from 'node:crypto'
import { createIdentity } from '../internal/identity/identity.ts'
import { createTestRedis } from '../internal/testkit/testkit.ts'

const N = 500_000
const UA = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'
const r = await createTestRedis()
const identity = createIdentity({ redis: r.redis }, { keyPrefix: `${r.queue.stream}:identity` })
const salt = await identity.salt()
const key = (await r.redis.getBuffer(identity.keyOf(salt.day)))!
const ips = Array.from({ length: 1024 }, (_, i) => `${1 + (i % 223)}.${(i * 7) % 256}.${(i * 13) % 256}.${1 + (i % 254)}`)

function time(name: string, f: (i: number) => unknown) {
  for (let i = 0; i < N / 10; i++) f(i) // warm-up
  const t = Bun.nanoseconds()
  let sink: unknown
  for (let i = 0; i < N; i++) sink = f(i)
  const ns = (Bun.nanoseconds() - t) / N
  console.log(`${name.padEnd(52)} ${ns.toFixed(0).padStart(6)} ns/call${typeof sink === 'string' ? `  (${sink})` : ''}`)
}
for (let round = 1; round <= 3; round++) {
  console.log(`round ${round}`)
  time('salt() from memory', () => identity.salt())
  time('visitorId() (Bun.CryptoHasher HMAC-SHA256)', (i) => salt.visitorId('bench-site', ips[i & 1023]!, UA))
  time('node:crypto createHmac, the same hash', (i) =>
    createHmac('sha256', key)
      .update(`bench-site\n${ips[i & 1023]!}\n${UA}`)
      .digest()
      .toString('base64url', 0, 16),
  )
}
await r.cleanup()
