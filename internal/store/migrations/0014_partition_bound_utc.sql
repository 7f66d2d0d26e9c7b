-- An hourly partition's name is its UTC hour (events_pYYYYMMDDHH). The function of 0012 read
-- the name with to_timestamp, which reads it in the session's TimeZone: on a server whose
-- TimeZone is east of UTC (Debian's initdb copies the system's), a partition was dropped
-- hours early, and raw_dropped_before recorded an instant before what was really gone, so
-- queries that need raw events were answered for hours whose rows were dropped. The bound
-- is now built in UTC whatever the session's setting (and the binaries' connections also
-- set TimeZone to UTC).
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
  upper_bound := make_timestamptz(
    substr(name, 9, 4)::int, substr(name, 13, 2)::int, substr(name, 15, 2)::int, substr(name, 17, 2)::int, 0, 0, 'UTC'
  ) + interval '1 hour';
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

-- Repair what the old function may have recorded: once partitions have been dropped, every
-- hour before the oldest hourly partition left is gone.
update rollup_state set raw_dropped_before = greatest(raw_dropped_before, (
  select min(make_timestamptz(
    substr(c.relname, 9, 4)::int, substr(c.relname, 13, 2)::int, substr(c.relname, 15, 2)::int, substr(c.relname, 17, 2)::int, 0, 0, 'UTC'))
  from pg_inherits i join pg_class c on c.oid = i.inhrelid
  where i.inhparent = 'events'::regclass and c.relname ~ '^events_p[0-9]{10}$'
))
where raw_dropped_before is not null;
