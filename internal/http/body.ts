import type { Context } from 'hono'
import { ApiError } from './errors.ts'

const ACCEPTED_TYPES = new Set(['application/json', 'text/plain'])
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false })

/**
 * Reads a JSON body sent as application/json or as text/plain (what navigator.sendBeacon
 * sends for a string). Invalid UTF-8 and invalid JSON are 400s; other types are 415s.
 * The size limit is enforced before this by the body-limit middleware.
 */
export async function readJsonBody(c: Context): Promise<unknown> {
  const type = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase()
  if (!ACCEPTED_TYPES.has(type)) {
    throw new ApiError(
      415,
      'unsupported_media_type',
      `Content-Type must be application/json or text/plain, not ${type ? JSON.stringify(type) : 'missing'}`,
    )
  }
  const bytes = await c.req.arrayBuffer()
  let text: string
  try {
    text = utf8.decode(bytes)
  } catch {
    throw new ApiError(400, 'invalid_utf8', 'body is not valid UTF-8')
  }
  if (text.trim() === '') throw new ApiError(400, 'empty_body', 'body is empty; send a JSON event')
  try {
    return JSON.parse(text)
  } catch (err) {
    const reason = err instanceof RangeError ? 'it is nested too deeply' : (err as Error).message
    throw new ApiError(400, 'invalid_json', `body is not valid JSON: ${reason}`)
  }
}
