import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'

const FILE = join(import.meta.dir, 'results.json')

/** Merges one benchmark's figures into bench/results.json under its name, with when and where it ran. */
export async function record(name: string, figures: Record<string, unknown>): Promise<void> {
  const file = Bun.file(FILE)
  const all = (await file.exists()) ? ((await file.json()) as Record<string, unknown>) : {}
  all[name] = {
    ran_at: new Date().toISOString(),
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, memory_gib: Math.round(totalmem() / 2 ** 30), bun: Bun.version },
    ...figures,
  }
  await Bun.write(FILE, `${JSON.stringify(all, null, 2)}\n`)
}
