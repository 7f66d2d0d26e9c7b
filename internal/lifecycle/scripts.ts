import { readFileSync } from 'node:fs'
import { join } from 'node:path'

// Kept apart from run.ts, which pulls in the clients: the supervisor needs only this, and
// loading less before it installs its signal handlers shortens its Ctrl-C window.

/**
 * The command package.json's script `name` runs (e.g. `bun cmd/worker/main.ts`), split
 * into arguments, to be run with `root` as the working directory. The scripts are the one
 * place that says how each binary is started; the supervisor and the tests use them too.
 */
export function scriptCommand(root: string, name: string): string[] {
  const scripts = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts?: Record<string, string> }).scripts ?? {}
  const script = scripts[name]
  if (!script) throw new Error(`package.json has no script named ${name}`)
  return script.trim().split(/\s+/)
}
