import { createHash, timingSafeEqual } from 'node:crypto'
import type { Context, MiddlewareHandler } from 'hono'
import type { Grant, Registry } from '../sites/registry.ts'
import { ApiError } from './errors.ts'

/** Who is asking: a grant from a token (STATS_TOKEN and ADMIN_TOKEN included), or null for no token. */
export type Caller = Grant | null

export type AuthOptions = {
  /** STATS_TOKEN: reads every site. Null with `statsPublic`. */
  statsToken: string | null
  /** Stats of every site need no token (STATS_PUBLIC=true). */
  statsPublic?: boolean
  /** ADMIN_TOKEN: manages every site. */
  adminToken?: string | null
}

export type Auth = {
  /** Middleware: reads a Bearer token if one is sent; 400 for another scheme, 401 for a token that is unknown or revoked. */
  identify: MiddlewareHandler
  /** Throws 401/403 unless the caller may read `siteId`'s stats (its token's site, every site, or a public site). */
  read(c: Context, siteId: string): Caller
  /** Throws 401/403 unless the caller holds an admin token for `siteId` (null: for every site; absent: for any site). */
  admin(c: Context, siteId?: string | null): Grant
}

const sha256 = (s: string) => createHash('sha256').update(s).digest()
const WWW = { 'WWW-Authenticate': 'Bearer realm="sluice"' }
/** `Authorization: Bearer <token>`: the scheme in any case (RFC 9110), spaces or tabs around the token. */
export const BEARER = /^Bearer[ \t]+([A-Za-z0-9._~+/=-]+)[ \t]*$/i

/**
 * Tokens: STATS_TOKEN (read, every site), ADMIN_TOKEN (admin, every site), and the
 * registry's tokens and shared links, looked up by the hash of what is presented in the
 * registry's in-memory cache (no query per request). A public site is read without a token.
 */
export function createAuth(registry: Pick<Registry, 'grant' | 'site'> | null, { statsToken, statsPublic = false, adminToken = null }: AuthOptions): Auth {
  const env: [Buffer, Grant][] = []
  if (statsToken) env.push([sha256(statsToken), { kind: 'read', siteId: null, tokenId: 'STATS_TOKEN' }])
  if (adminToken) env.push([sha256(adminToken), { kind: 'admin', siteId: null, tokenId: 'ADMIN_TOKEN' }])

  const grantOf = (secret: string): Grant | null => {
    const h = sha256(secret)
    let found: Grant | null = null
    // Every comparison runs, in constant time, whichever matches.
    for (const [hash, grant] of env) if (timingSafeEqual(h, hash)) found = grant
    return found ?? registry?.grant(secret) ?? null
  }

  const identify: MiddlewareHandler = async function identifyCaller(c, next) {
    const header = c.req.header('authorization')
    if (header !== undefined) {
      const m = BEARER.exec(header)
      if (!m) throw new ApiError(400, 'bad_authorization', 'Authorization must be "Bearer <token>"')
      const grant = grantOf(m[1]!)
      if (!grant) throw new ApiError(401, 'unauthorized', 'the token is wrong, or it was revoked', { headers: WWW })
      c.set('caller' as never, grant as never)
    }
    await next()
  }
  const callerOf = (c: Context): Caller => (c.get('caller' as never) as Grant | undefined) ?? null

  function read(c: Context, siteId: string): Caller {
    const caller = callerOf(c)
    if (!caller) {
      if (statsPublic || registry?.site(siteId)?.public) return null
      throw new ApiError(401, 'unauthorized', 'stats need a token: send Authorization: Bearer <STATS_TOKEN or an API token>', { headers: WWW })
    }
    if (caller.siteId !== null && caller.siteId !== siteId) {
      throw new ApiError(403, 'forbidden', `this ${caller.kind === 'link' ? 'link' : 'token'} reads only site ${JSON.stringify(caller.siteId)}`)
    }
    return caller
  }

  function admin(c: Context, siteId?: string | null): Grant {
    const caller = callerOf(c)
    if (!caller) throw new ApiError(401, 'unauthorized', 'the admin API needs an admin token: send Authorization: Bearer <token>', { headers: WWW })
    if (caller.kind !== 'admin')
      throw new ApiError(
        403,
        'forbidden',
        `the admin API needs an admin token; this one is ${caller.kind === 'link' ? 'a shared link' : `a ${caller.kind} token`}`,
      )
    if (siteId !== undefined && caller.siteId !== null && caller.siteId !== siteId) {
      const only = `this token manages only site ${JSON.stringify(caller.siteId)}`
      throw new ApiError(403, 'forbidden', siteId === null ? `only an admin token of every site may do this; ${only}` : only)
    }
    return caller
  }

  return { identify, read, admin }
}
