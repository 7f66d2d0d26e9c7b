-- Rollups and retention.
--
-- Raw events become a table partitioned by ingestion time (inserted_at, hourly partitions
-- made ahead of time by the retention job), so that retention drops whole partitions.
-- A partitioned table cannot hold a primary key on event_id alone, so uniqueness moves to
-- event_ids, which remembers every event_id for DEDUP_WINDOW_HOURS.
--
-- Every raw row records the id of the transaction that inserted it (xid). The rollup job
-- counts rows whose xid lies between the watermark and the oldest transaction still
-- running (pg_snapshot_xmin), so a row that commits late is never skipped, and it moves
-- the watermark in the same transaction as the rollup upserts: each event is counted once.

create extension if not exists hll;

alter table events rename to events_v1;
alter index events_site_ts rename to events_v1_site_ts;

create table event_ids (
  event_id uuid primary key,
  seen_at  timestamptz not null default now()
);
create index event_ids_seen_at on event_ids using brin (seen_at);

create table events (
  event_id    uuid not null,
  site_id     text not null,
  event_type  text not null,
  path        text,
  user_id     text,
  ts          timestamptz not null,
  received_at timestamptz not null,
  inserted_at timestamptz not null default now(),
  xid         xid8 not null default pg_current_xact_id()
) partition by range (inserted_at);

-- Catches rows when no hourly partition exists yet (the job that makes them was down).
create table events_default partition of events default;
create index events_xid on events (xid);
create index events_site_ts on events (site_id, ts);

insert into event_ids (event_id, seen_at) select event_id, inserted_at from events_v1;
insert into events (event_id, site_id, event_type, path, user_id, ts, received_at, inserted_at)
  select event_id, site_id, event_type, path, user_id, ts, received_at, inserted_at from events_v1;
drop table events_v1;

create table rollup_state (
  id            int primary key default 1 check (id = 1),
  xid_watermark xid8 not null,
  rolled_at     timestamptz
);
insert into rollup_state (xid_watermark) values ('0');

-- One table per granularity (bucket = start of the UTC hour, day, month or year).
-- users is a HyperLogLog sketch: log2m 14, regwidth 5, explicit (exact) up to 1280 users.
-- other_path_views counts the views of paths trimmed from the matching _paths table.
create table rollup_hour (
  site_id text not null, bucket timestamptz not null, event_type text not null,
  views bigint not null, users hll not null, other_path_views bigint not null default 0,
  primary key (site_id, bucket, event_type)
);
create table rollup_hour_paths (
  site_id text not null, bucket timestamptz not null, event_type text not null, path text not null,
  views bigint not null,
  primary key (site_id, bucket, event_type, path)
);
create table rollup_day (like rollup_hour including all);
create table rollup_day_paths (like rollup_hour_paths including all);
create table rollup_month (like rollup_hour including all);
create table rollup_month_paths (like rollup_hour_paths including all);
create table rollup_year (like rollup_hour including all);
create table rollup_year_paths (like rollup_hour_paths including all);

-- Makes the hourly partition of events that starts at hour_start, unless it exists.
-- Returns false when it exists already, or when rows for that hour already sit in
-- events_default (the partition cannot be made then; they stay there until retention).
create function sluice_ensure_partition(hour_start timestamptz) returns boolean
language plpgsql as $$
declare
  start timestamptz := date_trunc('hour', hour_start, 'UTC');
  name text := 'events_p' || to_char(start at time zone 'UTC', 'YYYYMMDDHH24');
begin
  if to_regclass(name) is not null then
    return false;
  end if;
  execute format('create table %I partition of events for values from (%L) to (%L)', name, start, start + interval '1 hour');
  return true;
exception
  when duplicate_table or check_violation then
    return false;
end $$;

-- Drops one hourly partition of events if it ended before older_than and every row in it
-- is counted in the rollups (its xid is below the watermark). Says what it did.
create function sluice_drop_partition_if_rolled(name text, older_than timestamptz) returns text
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
  select xid_watermark into watermark from rollup_state;
  execute format('select exists (select 1 from %I where xid >= $1)', name) into unrolled using watermark;
  if unrolled then
    return 'kept: not rolled up yet';
  end if;
  execute format('drop table %I', name);
  return 'dropped';
end $$;
