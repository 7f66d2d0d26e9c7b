// One step of the ladder (bench/ladder.ts): a Bun.serve doing the API's work for POST /event
// up to step N (1 and up; step 0 is bench/baseline.ts), so the CPU each piece adds can be
// told apart in one run. `bun bench/ladder-server.ts <port> <step> <redis-url> <stream>`.
// Step `floor-timer` or `floor-redis` is the bare server answering only once a 0 ms timer has
// fired or Redis holds the body (the real writer): what waiting for Redis costs with no other work.
import Redis from 'ioredis'
import { createEnricher } from '../internal/enrich/enrich.ts'
import { createEventParser, type Event } from '../internal/event/event.ts'
import { checkBody, createDeadlines, parseJson } from '../internal/http/body.ts'
import { createWriter } from '../internal/queue/writer.ts'

const [port = '0', stepArg = '0', redisUrl = 'redis://127.0.0.1:6379', stream = 'ladder:events'] = process.argv.slice(2)
const floor = stepArg === 'floor-timer' || stepArg === 'floor-redis' ? stepArg : null
const step = floor ? 0 : Number(stepArg)
const redis = new Redis(redisUrl)
const writer = createWriter(redis, { stream })
const deadlines = createDeadlines(10_000)
const parseEvent = createEventParser({ maxFutureMs: 5 * 60_000 })
const enricher = createEnricher()
const HEADERS = new Headers({ 'Content-Type': 'application/json', 'Access-Control-Allow-Origin': '*' })

/**
 * Coalesces like the real writer (one flush per event-loop turn, events JSON-encoded) but
 * answers its callers without Redis: at once in that turn, or after a 0 ms timer.
 */
function writerWithout(redisWait: 'none' | 'timer') {
  let waiting: { events: Event[]; resolve: () => void }[] = []
  let scheduled = false
  async function flush() {
    const batch = waiting
    waiting = []
    scheduled = false
    JSON.stringify(batch.flatMap((w) => w.events))
    if (redisWait === 'timer') await new Promise((resolve) => setTimeout(resolve, 0))
    for (const w of batch) w.resolve()
  }
  return (events: Event[]) =>
    new Promise<void>((resolve) => {
      waiting.push({ events, resolve })
      if (!scheduled) {
        scheduled = true
        setImmediate(flush)
      }
    })
}
const sameTurn = writerWithout('none')
const laterTurn = writerWithout('timer')

const server = Bun.serve({
  port: Number(port),
  hostname: '127.0.0.1',
  routes: {
    '/event': {
      POST: async (req, srv) => {
        if (floor) {
          // The body goes to Redis unchecked: the floor measures the wait, not the event's validation.
          const body = (await req.json()) as Event
          if (floor === 'floor-timer') await laterTurn([body])
          else {
            const [written] = await writer.enqueue([body], req.signal)
            if (!written?.ok) return new Response('{"error":"queue_unavailable"}', { status: 503, headers: HEADERS })
          }
          return new Response('{"status":"accepted"}', { status: 202, headers: HEADERS })
        }
        checkBody(req, 64 * 1024)
        const bytes = step >= 2 ? await deadlines.track(req.bytes()) : await req.bytes()
        const body = parseJson(bytes) as { event_id?: string }
        if (step < 4) {
          if (step >= 3) srv.requestIP(req)
          return new Response(`{"status":"accepted","event_id":"${body.event_id}"}`, { status: 202, headers: HEADERS })
        }
        const ip = srv.requestIP(req)?.address ?? ''
        const r = parseEvent(body)
        if (!r.ok) return new Response('{"error":"invalid_event"}', { status: 400, headers: HEADERS })
        if (step >= 5) {
          const agent = enricher.agent(req.headers.get('user-agent'))
          if (agent.browser) r.event.browser = agent.browser
          const country = enricher.country(ip)
          if (country) r.event.country = country
          const src = enricher.source({ referrer: null, utm_source: null, utm_medium: null, utm_campaign: null, path: r.event.path })
          r.event.source = src.source
          r.event.channel = src.channel
        }
        if (step === 6) await sameTurn([r.event])
        else if (step === 7) await laterTurn([r.event])
        else if (step >= 8) {
          const [written] = await writer.enqueue([r.event], req.signal)
          if (!written?.ok) return new Response('{"error":"queue_unavailable"}', { status: 503, headers: HEADERS })
        }
        return new Response(`{"status":"accepted","event_id":"${r.event.event_id}"}`, { status: 202, headers: HEADERS })
      },
    },
  },
})
console.log(`ladder step ${stepArg} listening on ${server.port}`)
