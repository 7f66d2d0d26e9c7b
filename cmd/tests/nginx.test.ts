import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startLoad } from '../../internal/testkit/load.ts'
import {
  createTestDatabase,
  createTestRedis,
  envFor,
  eventually,
  freePort,
  spawnBinary,
  waitForReady,
  type Binary,
  type TestDatabase,
  type TestRedis,
} from '../../internal/testkit/testkit.ts'

// deploy/nginx/nginx.conf, unchanged, in front of three real API processes and a worker.
// Only the two included files differ from compose: the replicas' addresses and the port.

const NGINX = '/usr/sbin/nginx'
let db: TestDatabase
let r: TestRedis
let dir: string
let nginx: Bun.Subprocess
let logFile: string
let base: string
const apis: { port: number; proc: Binary }[] = []
let worker: Binary

beforeAll(async () => {
  ;[db, r] = await Promise.all([createTestDatabase(), createTestRedis()])
  const env = (port: number) => envFor(db, r, { PORT: String(port), STATS_TOKEN: 't', TRUST_PROXY: 'true', WORKER_BLOCK_MS: '100' })
  for (let i = 0; i < 3; i++) {
    const port = await freePort()
    apis.push({ port, proc: spawnBinary('api', env(port)) })
  }
  worker = spawnBinary('worker', env(0))
  await Promise.all(apis.map(({ port, proc }) => waitForReady(`http://127.0.0.1:${port}/readyz`, proc)))

  dir = mkdtempSync(join(tmpdir(), 'sluice-nginx-'))
  copyFileSync(join(import.meta.dir, '../../deploy/nginx/nginx.conf'), join(dir, 'nginx.conf'))
  writeFileSync(join(dir, 'sluice-upstream.conf'), apis.map(({ port }) => `server 127.0.0.1:${port} max_fails=3 fail_timeout=5s;\n`).join(''))
  const port = await freePort()
  writeFileSync(join(dir, 'sluice-listen.conf'), `listen 127.0.0.1:${port};\n`)
  base = `http://127.0.0.1:${port}`
  // The access log goes to /dev/stdout, which must be a file or pipe (in Docker it is).
  logFile = join(dir, 'stdout.log')
  nginx = Bun.spawn([NGINX, '-p', dir, '-c', join(dir, 'nginx.conf'), '-g', `daemon off; pid ${join(dir, 'nginx.pid')};`], {
    stdin: 'ignore',
    stdout: Bun.file(logFile),
    stderr: Bun.file(join(dir, 'stderr.log')),
  })
  const up = await eventually(
    () =>
      fetch(`${base}/healthz`).then(
        (res) => res.ok,
        () => false,
      ),
    { timeoutMs: 10_000 },
  )
  if (!up) throw new Error(`nginx did not start: ${readFileSync(join(dir, 'stderr.log'), 'utf8')}`)
}, 60_000)

afterAll(async () => {
  nginx?.kill('SIGQUIT')
  await nginx?.exited
  await Promise.all([...apis.map((a) => (a.proc.proc.exitCode === null && a.proc.proc.signalCode === null ? a.proc.stop() : null)), worker?.stop()])
  await r.cleanup()
  await db.drop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

const logLines = () =>
  readFileSync(logFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, string | number>)

describe('nginx in front of three API replicas', () => {
  test('answers an oversized body with JSON, and logs JSON lines that name no client address', async () => {
    const res = await fetch(`${base}/event`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': '198.51.100.9' },
      body: JSON.stringify({ site_id: 's', event_type: 'pageview', timestamp: new Date().toISOString() }),
    })
    expect(res.status).toBe(202)
    const big = await fetch(`${base}/event`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'x'.repeat(2 * 1024 * 1024) })
    expect(big.status).toBe(413)
    expect(await big.json()).toEqual({ error: 'body is larger than the 1048576-byte limit', code: 'body_too_large' })
    await eventually(async () => logLines().length >= 2)
    const line = logLines().find((l) => l.status === 202)!
    expect(line).toMatchObject({ method: 'POST', uri: '/event', status: 202 })
    expect(String(line.upstream)).toMatch(/^127\.0\.0\.1:\d+$/)
    // The upstream field is a replica's address; nothing else in a line is an address.
    const text = logLines()
      .map(({ upstream, ...rest }) => JSON.stringify(rest))
      .join('\n')
    expect(text).not.toContain('198.51.100.9')
    expect(text).not.toContain('127.0.0.1')
    expect(readFileSync(join(dir, 'stderr.log'), 'utf8')).not.toContain('198.51.100.9')
  })

  test('answers every one of several requests pipelined in one TCP write, and stores each once (Bun alone answers none)', async () => {
    const ids = Array.from({ length: 3 }, () => crypto.randomUUID())
    const raw = ids
      .map((event_id, i) => {
        const body = JSON.stringify({ event_id, site_id: 'pipelined', event_type: 'pageview', path: `/${i}`, timestamp: new Date().toISOString() })
        return `POST /event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
      })
      .join('')
    const pipelined = (port: number) =>
      new Promise<string[]>((resolve) => {
        let text = ''
        const done = () => resolve(text.match(/HTTP\/1\.1 \d+/g) ?? [])
        Bun.connect({
          hostname: '127.0.0.1',
          port,
          socket: {
            open: (sock) => void sock.write(raw),
            data: (sock, chunk) => {
              text += chunk.toString()
              if ((text.match(/HTTP\/1\.1 \d+/g) ?? []).length === ids.length && text.trimEnd().endsWith('}')) sock.end()
            },
            close: done,
            error: done,
          },
        })
        setTimeout(done, 3000)
      })
    expect(await pipelined(Number(new URL(base).port))).toEqual(Array(3).fill('HTTP/1.1 202'))
    await eventually(async () => (await db.sql`select count(*)::int as n from events where site_id = 'pipelined'`)[0]!.n === 3)
    const rows = await db.sql`select event_id::text as id from events where site_id = 'pipelined' order by path`
    expect(rows.map((row) => row.id)).toEqual(ids)
    // The same bytes straight to an API replica: recorded, not asserted (a Bun fix would change it).
    console.log(`pipelined straight to the API on Bun ${Bun.version}: ${JSON.stringify(await pipelined(apis[0]!.port))}`)
  })

  test('spreads load over every replica, and a replica SIGKILLed mid-load loses no accepted event', async () => {
    const load = startLoad(() => base, { clients: 8, pauseMs: 1 })
    await Bun.sleep(1500)
    const victim = apis[1]!
    victim.proc.proc.kill('SIGKILL')
    await victim.proc.proc.exited
    const killedAt = Date.now()
    await Bun.sleep(2000)
    await load.stop()

    await eventually(async () => (await r.redis.xlen(r.queue.stream)) === 0, { timeoutMs: 30_000 })
    const rows = await db.sql`select event_id::text as id from events where site_id = 'fault-site'`
    const stored = new Set(rows.map((row) => row.id as string))
    const lost = [...load.accepted.keys()].filter((id) => !stored.has(id))
    const storedWithoutA202 = [...stored].filter((id) => !load.accepted.has(id))
    const perUpstream = new Map<string, number>()
    for (const l of logLines()) if (l.uri === '/event') for (const u of String(l.upstream).split(', ')) perUpstream.set(u, (perUpstream.get(u) ?? 0) + 1)
    const errors = Object.fromEntries([...load.statuses].filter(([s]) => s !== 202))
    console.log(
      `nginx: ${load.accepted.size} answered 202, ${stored.size} stored, ${lost.length} lost, ${storedWithoutA202.length} stored that the client saw fail; other answers ${JSON.stringify(errors)}; requests per replica ${JSON.stringify(Object.fromEntries(perUpstream))}`,
    )

    for (const { port } of apis) expect(perUpstream.get(`127.0.0.1:${port}`) ?? 0).toBeGreaterThan(100)
    expect(lost).toEqual([])
    expect(rows.length).toBe(stored.size) // no duplicates
    // nginx retries a request on another replica only if it never reached the dead one
    // (proxy_next_upstream error timeout, no non_idempotent); requests that were inside the
    // dead replica fail with 502. There are at most as many as requests in flight: 8 clients.
    expect(Object.keys(errors).every((s) => s === '502')).toBe(true)
    expect(load.failed.size).toBeLessThanOrEqual(8)
    for (const id of storedWithoutA202) expect(load.failed.get(id)).toBe(502)
    // After the kill, nginx stops sending to the dead replica.
    expect(load.accepted.size).toBeGreaterThan(0)
    expect([...load.accepted.values()].some((t) => t > killedAt + 500)).toBe(true)
  }, 60_000)
})
