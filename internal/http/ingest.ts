import { Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { createEventParser, type Event, type Problem } from '../event/event.ts'
import type { Queue } from '../queue/queue.ts'
import { readJsonBody } from './body.ts'
import { ApiError, queueUnavailable, RETRY_AFTER_SECONDS } from './errors.ts'

export type IngestOptions = { bodyLimitBytes: number; batchMax: number; maxFutureMs: number }

export type ItemResult =
  | { index: number; status: 'accepted'; event_id: string }
  | { index: number; status: 'rejected'; code: 'invalid_event'; details: Problem[] }
  | { index: number; status: 'failed'; code: 'queue_unavailable'; error: string }

/** POST /event and POST /events: validate, put on the queue, and answer 202 only once Redis has the events. */
export function ingestRoutes(queue: Queue, { bodyLimitBytes, batchMax, maxFutureMs }: IngestOptions) {
  const parse = createEventParser({ maxFutureMs })
  const limit = bodyLimit({
    maxSize: bodyLimitBytes,
    onError: (c) => c.json({ error: `body is larger than the ${bodyLimitBytes}-byte limit`, code: 'body_too_large' }, 413),
  })

  return new Hono()
    .post('/event', limit, async (c) => {
      const result = parse(await readJsonBody(c))
      if (!result.ok) throw new ApiError(400, 'invalid_event', 'event is invalid', result.problems)
      const [written] = await queue.enqueue([result.event])
      if (!written?.ok) throw queueUnavailable()
      return c.json({ status: 'accepted', event_id: result.event.event_id }, 202)
    })
    .post('/events', limit, async (c) => {
      const items = batchItems(await readJsonBody(c), batchMax)
      const results: ItemResult[] = new Array(items.length)
      const valid: { index: number; event: Event }[] = []
      items.forEach((item, index) => {
        const r = parse(item)
        if (r.ok) valid.push({ index, event: r.event })
        else results[index] = { index, status: 'rejected', code: 'invalid_event', details: r.problems }
      })
      const written = valid.length ? await queue.enqueue(valid.map((v) => v.event)) : []
      valid.forEach(({ index, event }, i) => {
        results[index] = written[i]?.ok
          ? { index, status: 'accepted', event_id: event.event_id }
          : { index, status: 'failed', code: 'queue_unavailable', error: 'the event queue cannot take writes right now; retry this event' }
      })
      const accepted = results.filter((r) => r.status === 'accepted').length
      const failed = results.filter((r) => r.status === 'failed').length
      const rejected = items.length - accepted - failed
      const status = accepted === items.length ? 202 : accepted > 0 ? 207 : failed > 0 ? 503 : 400
      const summary = accepted === items.length ? 'accepted' : accepted > 0 ? 'partial' : failed > 0 ? 'unavailable' : 'rejected'
      const headers = failed > 0 ? { 'Retry-After': RETRY_AFTER_SECONDS } : undefined
      return c.json({ status: summary, accepted, rejected, failed, results }, status, headers)
    })
}

function batchItems(body: unknown, max: number): unknown[] {
  const items = Array.isArray(body) ? body : (body as { events?: unknown } | null)?.events
  if (!Array.isArray(items)) {
    throw new ApiError(400, 'invalid_batch', 'body must be a JSON array of events, or an object {"events": [...]}')
  }
  if (items.length === 0) throw new ApiError(400, 'empty_batch', 'batch has no events')
  if (items.length > max) {
    throw new ApiError(413, 'batch_too_large', `batch has ${items.length} events; the limit is ${max}`)
  }
  return items
}
