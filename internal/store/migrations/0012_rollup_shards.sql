-- Rollup shards: the rollup job counts the sites of each shard in a transaction of its own,
-- several at once (ROLLUP_SHARDS), so it uses more than one core of Postgres. Every rollup
-- row is keyed by site (caps, visits and sketches included), so shards never touch the
-- same rows. Each shard keeps its own watermark: its sites' raw rows below it are counted,
-- those at or above it are not, and queries read a site's rollups with the raw rows above
-- its shard's watermark (sluice_rollup_watermark). Retention drops raw rows only below the
-- lowest watermark of all.
--
-- A site's shard is hashtextextended(site_id, 0) modulo the number of shards: the hash
-- Postgres's own hash partitioning uses, which must stay the same across pg_upgrade.
-- Changing the number of shards (store/rollup.ts reshard) first brings every shard to one
-- watermark, then replaces them all in one transaction.
--
-- Upgrading: a cron of the previous version may be counting a chunk right now. This lock
-- waits for its transaction (it holds rollup_state's row) before the watermark is copied,
-- and holds off its next chunk until this migration commits; that chunk then fails on the
-- dropped column and counts nothing. An API of the previous version answers stats with an
-- error, not a wrong number, until it is replaced.
lock table rollup_state in exclusive mode;

create function sluice_shard(site text, shards int) returns int
language sql immutable parallel safe
as $$ select abs(hashtextextended(site, 0) % shards)::int $$;

create table rollup_shards (
  shard int primary key,
  shards int not null check (shards between 1 and 64),
  xid_watermark xid8 not null,
  rolled_at timestamptz,
  check (shard >= 0 and shard < shards)
);
insert into rollup_shards (shard, shards, xid_watermark, rolled_at) select 0, 1, xid_watermark, rolled_at from rollup_state;

-- The watermark of the shard that holds `site`.
create function sluice_rollup_watermark(site text) returns xid8
language sql stable strict parallel safe
as $$ select xid_watermark from rollup_shards where shard = sluice_shard(site, shards) $$;

-- The lowest watermark of all shards: every raw row below it is counted.
create function sluice_rollup_low_watermark() returns xid8
language sql stable parallel safe
as $$ select min(xid_watermark) from rollup_shards $$;

-- The function of 0006, now reading the lowest watermark.
create or replace function sluice_drop_partition_if_rolled(name text, older_than timestamptz) returns text
language plpgsql as $$
declare
  upper_bound timestamptz;
  watermark xid8;
  unrolled boolean;
begin
  if name !~ '^events_p[0-9]{10}$' then
    raise exception 'not an hourly events partition: %', name;
  end if;
  upper_bound := to_timestamp(substr(name, 9), 'YYYYMMDDHH24') at time zone 'UTC' + interval '1 hour';
  if upper_bound > older_than then
    return 'kept: not expired';
  end if;
  watermark := sluice_rollup_low_watermark();
  execute format('select exists (select 1 from %I where xid >= $1)', name) into unrolled using watermark;
  if unrolled then
    return 'kept: not rolled up yet';
  end if;
  execute format('drop table %I', name);
  update rollup_state set raw_dropped_before = greatest(raw_dropped_before, upper_bound);
  return 'dropped';
end $$;

alter table rollup_state drop column xid_watermark, drop column rolled_at;
