import { describe, expect, test } from 'bun:test'
import { eventually, freePort, pipeline, spawnBinary, waitForReady } from '../../internal/testkit/testkit.ts'

// Two real API processes on one Redis (one key prefix) and one database: a browser's events
// sent to either get the same visitor id, so replicas behind a load balancer count it once.

const CHROME = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'
const stack = pipeline({ STATS_TOKEN: 'identity', TRUST_PROXY: 'true' })

describe('visitor ids across API processes', () => {
  test('the same browser gets the same user_id from two API processes, another site another one, and a sent user_id is kept', async () => {
    const port = await freePort()
    const other = spawnBinary('api', { ...stack.env, PORT: String(port) })
    try {
      await waitForReady(`http://127.0.0.1:${port}/readyz`, other)
      const send = (base: string, body: Record<string, unknown>) =>
        fetch(`${base}/event`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-forwarded-for': '81.2.69.142', 'user-agent': CHROME },
          body: JSON.stringify({ event_type: 'pageview', path: '/', timestamp: new Date().toISOString(), ...body }),
        })
      const answers = await Promise.all([
        send(stack.base, { site_id: 'replica-site', path: '/a' }),
        send(`http://127.0.0.1:${port}`, { site_id: 'replica-site', path: '/b' }),
        send(`http://127.0.0.1:${port}`, { site_id: 'other-site', path: '/c' }),
        send(stack.base, { site_id: 'replica-site', path: '/d', user_id: 'signed-in-42' }),
      ])
      expect(answers.map((a) => a.status)).toEqual([202, 202, 202, 202])
      const rows = await eventually(async () => {
        const got = await stack.db.sql`select path, user_id from events order by path`
        return got.length === 4 ? got : null
      })
      const id = Object.fromEntries((rows ?? []).map((x) => [x.path, x.user_id]))
      expect(id['/a']).toMatch(/^[A-Za-z0-9_-]{22}$/)
      expect(id['/b']).toBe(id['/a'])
      expect(id['/c']).not.toBe(id['/a'])
      expect(id['/d']).toBe('signed-in-42')
    } finally {
      expect(await other.stop()).toBe(0)
    }
  }, 60_000)
})
