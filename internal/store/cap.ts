import type postgres from 'postgres'
import type { Sql } from '../clients/clients.ts'

type Fragment = postgres.PendingQuery<postgres.Row[]>

/**
 * A rollup keyed by (site_id, dim, bucket, value) whose values are capped per (site, dim,
 * bucket), with a remainder table keyed by (site_id, dim, bucket): the dimension rollups and
 * the visit rollups. `sums` are its counted columns; `users` is its visitor sketch.
 */
export type CappedRollup = { table: string; other: string; sums: readonly string[] }

/** `col = r.col + excluded.col` for every counted column, and the sketches' union: the upsert of one more row of counts. */
export function addCounts(tx: Sql, sums: readonly string[], alias = 'r'): Fragment {
  return [...sums.map((c) => tx`${tx(c)} = ${tx(alias)}.${tx(c)} + excluded.${tx(c)}`), tx`users = hll_union(${tx(alias)}.users, excluded.users)`].reduce(
    (a, b) => tx`${a}, ${b}`,
  )
}

/**
 * Keeps the `cap` values with the largest `rankBy` (then the smallest value) in each
 * (site, dim, bucket) that `touched` names (a query of those three columns) and holds more
 * than `cap`; folds the rest, counts and sketch, into the remainder table.
 */
export async function foldBeyondCap(tx: Sql, { table, other, sums }: CappedRollup, touched: Fragment, rankBy: string, cap: number): Promise<void> {
  const t = tx(table)
  const columns = sums.map((c) => tx`${tx(c)}`).reduce((a, b) => tx`${a}, ${b}`)
  const totals = sums.map((c) => tx`sum(${tx(c)})`).reduce((a, b) => tx`${a}, ${b}`)
  await tx`
    with crowded as (
      select r.site_id, r.dim, r.bucket from ${t} r join (${touched}) x using (site_id, dim, bucket)
      group by 1, 2, 3 having count(*) > ${cap}
    ),
    ranked as (
      select r.site_id, r.dim, r.bucket, r.value,
             row_number() over (partition by r.site_id, r.dim, r.bucket order by r.${tx(rankBy)} desc, r.value) as rank
      from ${t} r join crowded c using (site_id, dim, bucket)
    ),
    trimmed as (
      delete from ${t} r using ranked k
      where k.rank > ${cap} and r.site_id = k.site_id and r.dim = k.dim and r.bucket = k.bucket and r.value = k.value
      returning r.*
    )
    insert into ${tx(other)} as o (site_id, dim, bucket, ${columns}, users)
    select site_id, dim, bucket, ${totals}, sluice_hll_union(users) from trimmed group by 1, 2, 3
    on conflict (site_id, dim, bucket) do update set ${addCounts(tx, sums, 'o')}`
}
