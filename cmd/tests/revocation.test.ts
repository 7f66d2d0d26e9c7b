import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { type Binary, freePort, pipeline, spawnBinary, waitForReady } from '../../internal/testkit/testkit.ts'

// Three real API processes on one database, as replicas behind a load balancer: a token
// created through one works on all of them within REGISTRY_REFRESH_MS, and once revoked
// through one it fails on every one within that delay plus the reload.

const REFRESH_MS = 1000
const ADMIN = 'replica-admin'
const stack = pipeline({ STATS_TOKEN: 'replica-stats', ADMIN_TOKEN: ADMIN, REGISTRY_REFRESH_MS: String(REFRESH_MS) })
const others: { base: string; api: Binary }[] = []

beforeAll(async () => {
  for (let i = 0; i < 2; i++) {
    const port = await freePort()
    const api = spawnBinary('api', { ...stack.env, PORT: String(port) })
    others.push({ base: `http://127.0.0.1:${port}`, api })
  }
  await Promise.all(others.map((o) => waitForReady(`${o.base}/readyz`, o.api)))
}, 60_000)
afterAll(async () => {
  await Promise.all(others.map((o) => o.api.stop()))
}, 30_000)

const admin = async (method: string, path: string, body?: unknown) =>
  (await (
    await fetch(`${stack.base}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      ...(body ? { body: JSON.stringify(body) } : {}),
    })
  ).json()) as Record<string, string>
const queryInit = (token: string): RequestInit => ({
  method: 'POST',
  headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
  body: JSON.stringify({ site_id: 'replica-site', date_range: 'day', metrics: ['events'] }),
})
const status = async (base: string, token: string) => (await fetch(`${base}/v1/query`, queryInit(token))).status

describe('API replicas', () => {
  test('all refuse a revoked token within REGISTRY_REFRESH_MS of its revocation', async () => {
    const bases = [stack.base, ...others.map((o) => o.base)]
    await admin('POST', '/v1/admin/sites', { site_id: 'replica-site' })
    const token = await admin('POST', '/v1/admin/tokens', { kind: 'read', site_id: 'replica-site' })
    await Bun.sleep(REFRESH_MS + 300)
    expect(await Promise.all(bases.map((b) => status(b, token.token!)))).toEqual([200, 200, 200])
    await admin('DELETE', `/v1/admin/tokens/${token.id}`)
    const revoked = performance.now()
    const after = await Promise.all(
      bases.map(async (b) => {
        while ((await status(b, token.token!)) !== 401) await Bun.sleep(25)
        return performance.now() - revoked
      }),
    )
    for (const ms of after) expect(ms).toBeLessThan(REFRESH_MS + 500)
    expect(await Promise.all(bases.map((b) => status(b, token.token!)))).toEqual([401, 401, 401])
  }, 60_000)

  test('refuses a revoked token on time even while every Postgres connection of its requests is busy', async () => {
    const [busy] = others
    await admin('POST', '/v1/admin/sites', { site_id: 'replica-site' }).catch(() => null)
    const token = await admin('POST', '/v1/admin/tokens', { kind: 'read', site_id: 'replica-site' })
    await Bun.sleep(REFRESH_MS + 300)
    expect(await status(busy!.base, token.token!)).toBe(200)
    // Queries of that process wait on a lock the test holds: all 4 of its connections, and more in line.
    const held = stack.db.sql.reserve()
    const lock = await held
    await lock`begin`
    await lock`lock table events in access exclusive mode`
    const stuck = Array.from({ length: 6 }, () => status(busy!.base, token.token!).catch(() => 0))
    try {
      await Bun.sleep(300)
      await admin('DELETE', `/v1/admin/tokens/${token.id}`)
      const revoked = performance.now()
      // A request the stale registry lets through waits on the lock too: it counts as not refused.
      const refused = async () =>
        (await fetch(`${busy!.base}/v1/query`, { ...queryInit(token.token!), signal: AbortSignal.timeout(200) }).catch(() => null))?.status === 401
      while (!(await refused()) && performance.now() - revoked < 10_000) await Bun.sleep(25)
      expect(performance.now() - revoked).toBeLessThan(REFRESH_MS + 500)
    } finally {
      await lock`rollback`
      lock.release()
      await Promise.all(stuck)
    }
  }, 60_000)
})
