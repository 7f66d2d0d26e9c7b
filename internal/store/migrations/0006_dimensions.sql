-- Dimensions: where visitors come from (source, referrer host, channel, UTM tags), who they
-- are (country, browser, OS, device) and custom properties. The API derives them at ingest;
-- the raw IP and the raw user agent are never stored. props holds a flat object whose
-- values are all strings (numbers in their JSON form, booleans as "true"/"false").
alter table events
  add column referrer     text,
  add column source       text,
  add column channel      text,
  add column utm_source   text,
  add column utm_medium   text,
  add column utm_campaign text,
  add column utm_content  text,
  add column utm_term     text,
  add column country      text,
  add column browser      text,
  add column os           text,
  add column device       text,
  add column props        jsonb;

-- Per day, month and year, one row per (site, bucket, dimension, value): every event
-- (events), page views (pageviews: event_type pageview or page_view) and an hll sketch of
-- visitors. dim is a dimension name (source, country, path, event_type, ...) or
-- props:<key>. A value that was absent is '' (the API shows it as "(none)"). At most
-- ROLLUP_DIM_CAP values are kept per (site, bucket, dim); the rest fold into
-- rollup_*_dim_other, sketch included. There are no hourly dimension rollups: hours are
-- answered from raw events, which are kept for RAW_RETENTION_HOURS (see docs/query.md).
create table rollup_day_dims (
  site_id text not null, bucket timestamptz not null, dim text not null, value text not null,
  events bigint not null, pageviews bigint not null, users hll not null,
  primary key (site_id, dim, bucket, value)
);
create table rollup_day_dim_other (
  site_id text not null, bucket timestamptz not null, dim text not null,
  events bigint not null, pageviews bigint not null, users hll not null,
  primary key (site_id, dim, bucket)
);
create table rollup_month_dims (like rollup_day_dims including all);
create table rollup_month_dim_other (like rollup_day_dim_other including all);
create table rollup_year_dims (like rollup_day_dims including all);
create table rollup_year_dim_other (like rollup_day_dim_other including all);

-- Events rolled up before this migration were never counted by dimension. dims_since is
-- null when there were none (a new install); otherwise the dimension rollups are complete
-- only for events timestamped after it (plus the most an event may be ahead of the clock),
-- and a query that needs them for an earlier range is refused rather than answered short.
-- raw_dropped_before: raw rows inserted before it may be gone (retention), so queries that
-- need raw rows (two dimensions at once) are answered only for ranges after it.
alter table rollup_state
  add column dims_since timestamptz,
  add column raw_dropped_before timestamptz;
update rollup_state set dims_since = now() where xid_watermark <> '0'::xid8;

-- The function of 0002, now also recording in rollup_state, in the same transaction as the
-- drop, the end of the hour whose raw rows are gone: a crash between the two could otherwise
-- leave raw queries answering for a range with rows missing.
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
  select xid_watermark into watermark from rollup_state;
  execute format('select exists (select 1 from %I where xid >= $1)', name) into unrolled using watermark;
  if unrolled then
    return 'kept: not rolled up yet';
  end if;
  execute format('drop table %I', name);
  update rollup_state set raw_dropped_before = greatest(raw_dropped_before, upper_bound);
  return 'dropped';
end $$;
