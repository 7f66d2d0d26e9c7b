// The second baseline: what a team would write in an afternoon. Hono, a valibot schema, and
// one awaited ioredis XADD per request before the 202. `bun bench/naive.ts <port> <redis-url> <stream>`.
import { Hono } from 'hono'
import Redis from 'ioredis'
import * as v from 'valibot'

const [port = '0', redisUrl = 'redis://127.0.0.1:6379', stream = 'naive:events'] = process.argv.slice(2)
const redis = new Redis(redisUrl)

const Event = v.object({
  site_id: v.pipe(v.string(), v.minLength(1), v.maxLength(128)),
  event_type: v.pipe(v.string(), v.minLength(1), v.maxLength(64)),
  path: v.optional(v.pipe(v.string(), v.maxLength(2048))),
  user_id: v.optional(v.pipe(v.string(), v.maxLength(256))),
  timestamp: v.pipe(v.string(), v.isoTimestamp()),
  event_id: v.optional(v.pipe(v.string(), v.uuid())),
})

const app = new Hono()
app.post('/event', async (c) => {
  const parsed = v.safeParse(Event, await c.req.json().catch(() => null))
  if (!parsed.success) return c.json({ error: 'invalid event', issues: parsed.issues.map((i) => i.message) }, 400)
  const event = { ...parsed.output, event_id: parsed.output.event_id ?? crypto.randomUUID(), received_at: Date.now() }
  await redis.xadd(stream, '*', 'e', JSON.stringify(event))
  return c.json({ status: 'accepted', event_id: event.event_id }, 202)
})

const server = Bun.serve({ port: Number(port), hostname: '127.0.0.1', fetch: app.fetch })
console.log(`naive listening on ${server.port}`)
