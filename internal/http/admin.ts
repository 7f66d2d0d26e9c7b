import { type Context, Hono, type MiddlewareHandler } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { SITE_ID_PATTERN } from '../event/event.ts'
import { isDataError } from '../store/errors.ts'
import { SitesError } from '../sites/errors.ts'
import type { Sites } from '../sites/sites.ts'
import { TOKEN_KINDS, type TokenKind, type Tokens } from '../sites/tokens.ts'
import type { Auth } from './auth.ts'
import { parseJson } from './body.ts'
import { ApiError } from './errors.ts'
import { routeDocs } from './openapi.ts'

const ADMIN_BODY_LIMIT = 64 * 1024

export type AdminDeps = { sites: Sites; tokens: Tokens; auth: Auth }

/**
 * The admin API, the operator command's `sites`, `tokens` and `links` over HTTP, for admin
 * tokens only (ADMIN_TOKEN, or a registry token of kind admin). An all-sites admin manages
 * everything; a site's admin token shows and updates its site and manages its site's tokens
 * and links, but adds and removes no site. Answers are JSON; a site's removal deletes all
 * of its data.
 */
export function adminRoutes({ sites, tokens, auth }: AdminDeps) {
  const tooLarge = () => {
    throw new ApiError(413, 'body_too_large', `an admin body is at most ${ADMIN_BODY_LIMIT} bytes`)
  }
  const body = async (c: Context) => parseJson(new Uint8Array(await c.req.arrayBuffer()))
  const sizeLimit = bodyLimit({ maxSize: ADMIN_BODY_LIMIT, onError: tooLarge })
  /**
   * For a route with a body: the caller must be an admin of `site` (null: of every site;
   * undefined: of any) before the body's size is even looked at, so a caller without a token
   * always gets 401, never 413.
   */
  const adminBody =
    (site: (c: Context) => string | null | undefined): MiddlewareHandler =>
    async (c, next) => {
      auth.admin(c, site(c))
      return sizeLimit(c, next)
    }
  const app = new Hono()

  app.get('/v1/admin/sites', routeDocs.admin('List sites'), async (c) => {
    const asked = c.req.query('site_id')
    const caller = auth.admin(c, asked)
    const mine = caller.siteId ?? asked
    const all = await registryCall(sites.list)
    return c.json(mine === undefined ? all : all.filter((s) => s.site_id === mine))
  })
  app.post(
    '/v1/admin/sites',
    routeDocs.admin('Register a site', 'Body: {site_id, domains?, timezone?, public?}.'),
    adminBody(() => null),
    async (c) => {
      return c.json(await registryCall(sites.add, await body(c)), 201)
    },
  )
  app.get('/v1/admin/sites/:site', routeDocs.admin('Show a site'), async (c) => {
    auth.admin(c, c.req.param('site'))
    return c.json(await registryCall(sites.show, c.req.param('site')))
  })
  app.patch(
    '/v1/admin/sites/:site',
    routeDocs.admin('Change a site', 'Body: {domains?, timezone?, public?}.'),
    adminBody((c) => c.req.param('site')),
    async (c) => {
      return c.json(await registryCall(sites.update, c.req.param('site'), await body(c)))
    },
  )
  app.delete(
    '/v1/admin/sites/:site',
    routeDocs.admin('Remove a site and delete all its data', 'Raw events, event ids, every rollup, set-aside rows, tokens and links. No undo.'),
    async (c) => {
      auth.admin(c, null)
      return c.json(await registryCall(sites.remove, c.req.param('site')))
    },
  )

  app.get(
    '/v1/admin/tokens',
    routeDocs.admin('List tokens and links', 'Never their secrets. ?site_id= and ?kind=read|admin|link narrow the list.'),
    async (c) => {
      const site = c.req.query('site_id') ?? null
      const kind = c.req.query('kind') ?? null
      if (site !== null && !SITE_ID_PATTERN.test(site)) throw new ApiError(400, 'invalid_query', 'site_id must be 1-128 characters of A-Z a-z 0-9 . _ : -')
      if (kind !== null && !(TOKEN_KINDS as readonly string[]).includes(kind)) {
        throw new ApiError(400, 'invalid_query', `kind must be one of ${TOKEN_KINDS.join(', ')}`)
      }
      const caller = auth.admin(c, site ?? undefined)
      return c.json(await registryCall(tokens.list, { siteId: caller.siteId ?? site, kind: kind as TokenKind | null }))
    },
  )
  app.post(
    '/v1/admin/tokens',
    routeDocs.admin(
      'Create a token or shared link',
      'Body: {kind: read|admin|link, site_id?, name?}. The answer holds the secret, shown only here; a link also its path.',
    ),
    // Any admin first: a caller without a token learns nothing from how its body is read.
    adminBody(() => undefined),
    async (c) => {
      const input = await body(c)
      const site = (input as { site_id?: unknown } | null)?.site_id
      auth.admin(c, typeof site === 'string' ? site : null)
      return c.json(await registryCall(tokens.create, input), 201)
    },
  )
  app.delete('/v1/admin/tokens/:id', routeDocs.admin('Revoke a token or link', 'Every API process refuses it within REGISTRY_REFRESH_MS.'), async (c) => {
    auth.admin(c)
    const token = await registryCall(tokens.show, c.req.param('id'))
    auth.admin(c, token.site_id)
    return c.json(await registryCall(tokens.revoke, token.id))
  })
  return app
}

/**
 * Runs a registry operation, turning its SitesError into the matching API error, and a
 * value Postgres refuses (a data exception the checks above missed) into a 400, not a 500.
 */
async function registryCall<A extends unknown[], R>(op: (...args: A) => Promise<R>, ...args: A): Promise<R> {
  try {
    return await op(...args)
  } catch (err) {
    if (err instanceof SitesError) throw apiError(err)
    if (isDataError(err)) throw new ApiError(400, 'bad_request', `Postgres refused a value of the request: ${(err as Error).message}`)
    throw err
  }
}

/** A registry error as an API answer: bad input 400, already there (or a limit reached) 409, not there 404. */
function apiError(err: SitesError): ApiError {
  const status =
    err.code === 'site_exists' || err.code === 'too_many_tokens' ? 409 : err.code === 'site_not_found' || err.code === 'token_not_found' ? 404 : 400
  return new ApiError(status, err.code, err.message, err.details ? { details: err.details } : {})
}
