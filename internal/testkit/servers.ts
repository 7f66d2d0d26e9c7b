import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { eventually, freePort } from './testkit.ts'

const PG_BIN = '/usr/lib/postgresql/15/bin'
const asRoot = process.getuid?.() === 0

/** A redis-server of the test's own, on a free port, that the test may kill and restart. */
export async function startRedis({ aof = true, replicaOf }: { aof?: boolean; replicaOf?: number } = {}) {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'sluice-redis-'))
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', aof ? 'yes' : 'no', '--appendfsync', 'everysec']
  if (replicaOf) args.push('--replicaof', '127.0.0.1', String(replicaOf))
  let proc: Bun.Subprocess | null = null
  const url = `redis://127.0.0.1:${port}`
  const server = {
    port,
    url,
    async start() {
      proc = Bun.spawn(['redis-server', ...args], { stdout: 'ignore', stderr: 'ignore' })
      const up = await eventually(
        async () => (await Bun.spawn(['redis-cli', '-p', String(port), 'ping'], { stdout: 'ignore', stderr: 'ignore' }).exited) === 0,
        { timeoutMs: 10_000 },
      )
      if (!up) throw new Error(`redis-server on ${port} did not start`)
    },
    /** Freezes the server (SIGSTOP): connections stay open and nothing answers. */
    freeze: () => void proc?.kill('SIGSTOP'),
    thaw: () => void proc?.kill('SIGCONT'),
    /** SIGKILL by default: a crash, so only what AOF had written survives. */
    async stop(signal: NodeJS.Signals = 'SIGKILL') {
      proc?.kill(signal)
      await proc?.exited
      proc = null
    },
    async destroy() {
      await server.stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
  await server.start()
  return server
}

/** A PostgreSQL server of the test's own (initdb in a temp dir), on a free port. */
export async function startPostgres() {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'sluice-pg-'))
  const data = join(dir, 'data')
  const user = (cmd: string[]) => (asRoot ? ['runuser', '-u', 'postgres', '--', ...cmd] : cmd)
  if (asRoot)
    chownSync(
      dir,
      Number(Bun.spawnSync(['id', '-u', 'postgres']).stdout.toString().trim()),
      Number(Bun.spawnSync(['id', '-g', 'postgres']).stdout.toString().trim()),
    )
  const init = Bun.spawnSync(user([`${PG_BIN}/initdb`, '-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']))
  if (init.exitCode !== 0) throw new Error(`initdb failed: ${init.stderr.toString()}`)
  const ctl = (...args: string[]) => {
    const r = Bun.spawnSync(user([`${PG_BIN}/pg_ctl`, '-D', data, '-w', '-t', '30', ...args]))
    if (r.exitCode !== 0) throw new Error(`pg_ctl ${args[0]} failed: ${r.stderr.toString()}${r.stdout.toString()}`)
  }
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`
  const server = {
    port,
    url: (db = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${db}`,
    start: () => ctl('start', '-o', opts, '-l', join(dir, 'log')),
    /** immediate: a crash, no checkpoint; committed transactions survive through the WAL. */
    stop: (mode: 'fast' | 'immediate' = 'immediate') => ctl('stop', '-m', mode),
    async destroy() {
      try {
        ctl('stop', '-m', 'immediate')
      } catch {}
      rmSync(dir, { recursive: true, force: true })
    },
  }
  server.start()
  return server
}

/** A real Redis Cluster of `masters` masters (no replicas) on free ports, made with redis-cli --cluster create. */
export async function startRedisCluster(masters = 3) {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-cluster-'))
  const ports: number[] = []
  const procs: Bun.Subprocess[] = []
  const cli = (port: number, ...args: string[]) => Bun.spawnSync(['redis-cli', '-p', String(port), ...args]).stdout.toString()
  // freePort() only says a port was free a moment ago: another socket can take it before
  // redis-server binds it. A server that exits at start is tried again on another port.
  for (let i = 0, attempt = 1; i < masters; attempt++) {
    const port = await freePort()
    const log = join(dir, `redis-${port}.log`)
    const proc = Bun.spawn(
      [
        'redis-server',
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        `nodes-${port}.conf`,
        '--save',
        '',
        '--appendonly',
        'no',
        '--logfile',
        log,
      ],
      { stdout: 'ignore', stderr: 'ignore' },
    )
    const up = await eventually(async () => proc.exitCode !== null || cli(port, 'ping').trim() === 'PONG', { timeoutMs: 10_000 })
    if (up && proc.exitCode === null) {
      ports.push(port)
      procs.push(proc)
      i++
      attempt = 0
      continue
    }
    proc.kill('SIGKILL')
    if (attempt >= 5) throw new Error(`redis-server on ${port} did not start (exit ${proc.exitCode}): ${readFileSync(log, 'utf8').slice(-2000)}`)
  }
  const create = Bun.spawnSync(['redis-cli', '--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'])
  if (create.exitCode !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout.toString()}${create.stderr.toString()}`)
  const ok = await eventually(async () => ports.every((p) => cli(p, 'cluster', 'info').includes('cluster_state:ok')), { timeoutMs: 20_000 })
  if (!ok) throw new Error('the cluster never reached cluster_state:ok')
  return {
    ports,
    nodes: ports.map((p) => `127.0.0.1:${p}`).join(','),
    /** Keys on one node matching a glob. */
    keys: (port: number, pattern: string) => cli(port, '--scan', '--pattern', pattern).split('\n').filter(Boolean),
    async destroy() {
      for (const p of procs) p.kill('SIGKILL')
      await Promise.all(procs.map((p) => p.exited))
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
