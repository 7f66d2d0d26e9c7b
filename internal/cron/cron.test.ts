import { describe, expect, test } from 'bun:test'
import pino from 'pino'
import { createMetrics } from '../metrics/metrics.ts'
import { createShardedQueue, shardNames } from '../queue/shards.ts'
import { createStore } from '../store/store.ts'
import { incompressibleCjk, isolated, metricValue } from '../testkit/testkit.ts'
import { createJobs, registerCronGauges } from './cron.ts'

const env = isolated()

const noQueue = { depth: async () => ({ length: 0, pending: 0, undelivered: 0, oldestPendingAgeMs: 0, oldestEntryAgeMs: 0, deadLetters: 0 }) }

describe('the rollup job', () => {
  test('counts events it sets aside in its metric, logs them as an error, and the gauges show them waiting', async () => {
    const store = createStore(env.db.sql)
    const metrics = createMetrics('cron')
    registerCronGauges(metrics, noQueue, store)
    const logged: { level: number; msg: string; set_aside?: number }[] = []
    const log = pino({ level: 'info' }, { write: (s: string) => void logged.push(JSON.parse(s)) })
    const jobs = createJobs({ queue: noQueue, store, log, metrics })

    const event = (path: string) => ({
      event_id: crypto.randomUUID(),
      site_id: 'cron',
      event_type: 'pageview',
      path,
      user_id: 'u',
      timestamp: '2025-11-14T10:00:00.000Z',
      received_at: Date.now(),
    })
    // A path too large for a rollup index row, and incompressible: the API refuses it, a hand-written insert does not.
    const poison = `/${incompressibleCjk(2047)}`
    await store.insertEvents([event('/'), event(poison), event('/b')])
    const before = await metrics.scrape()
    expect(metricValue(before, 'sluice_rollup_watermark_age_seconds')).toBeGreaterThan(0)
    expect(metricValue(before, 'sluice_rollup_unrolled_events')).toBe(3)

    await jobs.rollup!.run(new AbortController().signal)
    const after = await metrics.scrape()
    expect(metricValue(after, 'sluice_rollup_events_total')).toBe(2)
    expect(metricValue(after, 'sluice_rollup_set_aside_events_total')).toBe(1)
    expect(metricValue(after, 'sluice_rollup_rejected_events')).toBe(1)
    expect(metricValue(after, 'sluice_rollup_watermark_age_seconds')).toBe(0)
    expect(logged.find((l) => l.level === 50)).toMatchObject({ set_aside: 1, msg: expect.stringContaining('set aside') })
  })

  test('holds back closing a visit while an older event waits in a shard of an earlier QUEUE_SHARDS', async () => {
    const store = createStore(env.db.sql)
    const queue = createShardedQueue(env.r.redis, { stream: env.r.queue.stream, group: env.r.queue.group, shards: 1, cluster: false })
    const jobs = createJobs({ queue, store, log: pino({ level: 'silent' }) }, { rollup: { visitCloseAfterMs: 5 * 60_000 } })
    const event = { site_id: 'cron-stranded', event_type: 'pageview', path: '/', user_id: 'a', timestamp: new Date(Date.now() - 15 * 60_000).toISOString() }
    await store.insertEvents([{ ...event, event_id: crypto.randomUUID(), received_at: Date.now() - 15 * 60_000 }])
    // Received 20 minutes ago, still in shard 0 of 2 after QUEUE_SHARDS went from 2 to 1: it could extend the visit.
    const old = shardNames(env.r.queue.stream, 2, false)[0]!.stream
    await env.r.redis.xadd(
      old,
      `${Date.now() - 20 * 60_000}-0`,
      'n',
      '1',
      'b',
      JSON.stringify([{ ...event, event_id: crypto.randomUUID(), received_at: Date.now() - 20 * 60_000 }]),
    )
    const open = async () => (await env.db.sql`select count(*)::int as n from visits_open where site_id = 'cron-stranded'`)[0]!.n as number
    await jobs.rollup!.run(new AbortController().signal)
    expect(await open()).toBe(1)
    await env.r.redis.del(old)
    await jobs.rollup!.run(new AbortController().signal)
    expect(await open()).toBe(0)
  })
})
