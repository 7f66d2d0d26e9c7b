import { isUtf8 } from 'node:buffer'
import { ApiError } from './errors.ts'

const ACCEPTED_TYPES = new Set(['application/json', 'text/plain'])
const decoder = new TextDecoder()

/**
 * Checks what can be checked before a byte of the body is read: the type (application/json
 * or text/plain, which navigator.sendBeacon sends for a string; others are 415s) and the
 * declared length (over `limit` is a 413; one that is not a single whole number, a 400).
 * Returns the declared length, or null when the body is sent without one (chunked).
 */
export function checkBody(req: Request, limit: number): number | null {
  const type = (req.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase()
  if (!ACCEPTED_TYPES.has(type)) {
    throw new ApiError(415, 'unsupported_media_type', `Content-Type must be application/json or text/plain, not ${type ? JSON.stringify(type) : 'missing'}`)
  }
  const header = req.headers.get('content-length')
  if (header === null) return null
  // Bun lets through a header sent twice with one value, which reads "33, 33": not a length.
  if (!/^\d{1,15}$/.test(header)) {
    throw new ApiError(400, 'invalid_content_length', `Content-Length must be one whole number of bytes, not ${JSON.stringify(header.slice(0, 40))}`)
  }
  const declared = Number(header)
  if (declared > limit) throw tooLarge(limit)
  return declared
}

/**
 * Reads a body checked by checkBody. One of unknown length is given up as soon as it passes
 * `limit` (413), and `onGrow` hears its size after every chunk (it may throw to refuse it);
 * one that has not fully arrived by its deadline is a 408, so a client trickling bytes
 * cannot hold a request open.
 */
export function readBody(req: Request, declared: number | null, limit: number, deadlines: Deadlines, onGrow?: (size: number) => void): Promise<Uint8Array> {
  // A declared length is checked already, and Bun reads exactly that many bytes.
  return deadlines.track(declared !== null ? req.bytes() : readLimited(req, limit, onGrow))
}

export type Deadlines = ReturnType<typeof createDeadlines>

/**
 * Deadlines for body reads without a timer per request: one shared interval, running only
 * while reads are pending, rejects those past `timeoutMs`. A request pays a Set insertion
 * and deletion, so every body gets the deadline, small ones too. A late body gets its 408
 * within timeoutMs plus one tick (at most 250 ms).
 */
export function createDeadlines(timeoutMs: number) {
  type Pending = { at: number; reject: (err: ApiError) => void }
  const pending = new Set<Pending>()
  const tickMs = Math.max(10, Math.min(250, Math.floor(timeoutMs / 4)))
  let timer: ReturnType<typeof setInterval> | null = null

  function sweep() {
    const now = Date.now()
    for (const p of pending) {
      if (p.at > now) continue
      pending.delete(p)
      p.reject(new ApiError(408, 'body_timeout', `the body did not arrive within ${timeoutMs / 1000} s`, { headers: { Connection: 'close' } }))
    }
    if (pending.size === 0 && timer) {
      clearInterval(timer)
      timer = null
    }
  }

  return {
    /** Settles as `work` does, or rejects with a 408 once the deadline passes. */
    track<T>(work: Promise<T>): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const p: Pending = { at: Date.now() + timeoutMs, reject }
        pending.add(p)
        if (!timer) {
          timer = setInterval(sweep, tickMs)
          timer.unref?.()
        }
        work.then(
          (value) => {
            pending.delete(p)
            resolve(value)
          },
          (err) => {
            pending.delete(p)
            reject(err)
          },
        )
      })
    },
    pending: () => pending.size,
  }
}

/** Decodes a body as UTF-8 JSON: invalid UTF-8, an empty body and invalid JSON are 400s. */
export function parseJson(bytes: Uint8Array): unknown {
  if (!isUtf8(bytes)) throw new ApiError(400, 'invalid_utf8', 'body is not valid UTF-8')
  const text = decoder.decode(bytes)
  try {
    return JSON.parse(text)
  } catch (err) {
    if (text.trim() === '') throw new ApiError(400, 'empty_body', 'body is empty; send a JSON event')
    const reason = err instanceof RangeError ? 'it is nested too deeply' : (err as Error).message
    throw new ApiError(400, 'invalid_json', `body is not valid JSON: ${reason}`)
  }
}

const tooLarge = (limit: number) => new ApiError(413, 'body_too_large', `body is larger than the ${limit}-byte limit`)

/** Reads a body of unknown length, giving up as soon as it passes `limit`. */
async function readLimited(req: Request, limit: number, onGrow?: (size: number) => void): Promise<Uint8Array> {
  if (!req.body) return new Uint8Array()
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of req.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.length
    if (size > limit) throw tooLarge(limit)
    onGrow?.(size)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}
