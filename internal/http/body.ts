import { isUtf8 } from 'node:buffer'
import { ApiError } from './errors.ts'

const ACCEPTED_TYPES = new Set(['application/json', 'text/plain'])
const decoder = new TextDecoder()
const SMALL_BODY = 16 * 1024

/**
 * Reads a body sent as application/json or as text/plain (what navigator.sendBeacon sends
 * for a string). Other types are 415s; a body over `limit` bytes is a 413 (checked from
 * Content-Length first, and while reading when there is none); a body that has not arrived
 * within `timeoutMs` is a 408, so a client trickling bytes cannot hold a request open.
 */
export async function readBody(req: Request, limit: number, timeoutMs = 10_000): Promise<Uint8Array> {
  const type = (req.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase()
  if (!ACCEPTED_TYPES.has(type)) {
    throw new ApiError(415, 'unsupported_media_type', `Content-Type must be application/json or text/plain, not ${type ? JSON.stringify(type) : 'missing'}`)
  }
  const tooLarge = () => new ApiError(413, 'body_too_large', `body is larger than the ${limit}-byte limit`)
  const declared = req.headers.get('content-length')
  if (declared !== null && Number(declared) > limit) throw tooLarge()
  // A small declared body arrives with the headers; a timer per request would cost more than it guards.
  if (declared !== null && Number(declared) <= SMALL_BODY) return req.bytes()
  let timer: ReturnType<typeof setTimeout> | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ApiError(408, 'body_timeout', `the body did not arrive within ${timeoutMs / 1000} s`)), timeoutMs)
  })
  try {
    const bytes = await Promise.race([declared !== null ? req.bytes() : readLimited(req, limit, tooLarge), deadline])
    if (bytes.length > limit) throw tooLarge()
    return bytes
  } finally {
    clearTimeout(timer)
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

/** Reads a body of unknown length, giving up as soon as it passes `limit`. */
async function readLimited(req: Request, limit: number, tooLarge: () => Error): Promise<Uint8Array> {
  if (!req.body) return new Uint8Array()
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of req.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.length
    if (size > limit) throw tooLarge()
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}
