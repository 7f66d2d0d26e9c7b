-- Visits: one visitor's events on one site where each gap (by event time) is under 30
-- minutes. The rollup job merges each raw event, exactly once (with the xid watermark), into
-- visits_open; a visit to which no event has arrived for VISIT_IDLE_MINUTES (30, by the
-- API's clock) is closed: deleted from visits_open and counted into rollup_<g>_visits.
-- An event that arrives after its visit was closed starts a visit of its own (docs/visits.md).
create table visits_open (
  site_id text not null,
  visitor text not null,
  started_at timestamptz not null,
  ended_at timestamptz not null,
  -- When the latest of its events was received (the API's clock): what closes the visit.
  last_received_at timestamptz not null,
  events bigint not null,
  pageviews bigint not null,
  -- The first page view (earliest time, then smallest path) and the last (latest, then largest).
  entry_at timestamptz, entry_page text,
  exit_at timestamptz, exit_page text,
  -- The visit's attributes are those of its first event (earliest time, then smallest event_id).
  first_event_id uuid not null,
  referrer text, source text, channel text, utm_source text, utm_medium text, utm_campaign text,
  utm_content text, utm_term text, country text, browser text, os text, device text,
  -- Every path viewed and every event type sent in the visit, distinct.
  paths text[] not null,
  event_types text[] not null,
  primary key (site_id, visitor, started_at)
);
create index visits_open_received on visits_open (last_received_at);

-- Closed visits counted per (site, bucket of the visit's start, dim, value). dim '' (value
-- '') holds the totals; the others are the visit's attributes (source ... device),
-- entry_page and exit_page, and path and event_type (visits that viewed that path or sent
-- that event type). users is an hll sketch of the visitors. Hourly rows hold only dim ''.
-- At most ROLLUP_DIM_CAP values are kept per (site, bucket, dim); the rest fold into
-- rollup_<g>_visit_other.
create table rollup_hour_visits (
  site_id text not null, bucket timestamptz not null, dim text not null, value text not null,
  visits bigint not null, bounces bigint not null, duration_ms bigint not null,
  pageviews bigint not null, events bigint not null, users hll not null,
  primary key (site_id, dim, bucket, value)
);
create table rollup_hour_visit_other (
  site_id text not null, bucket timestamptz not null, dim text not null,
  visits bigint not null, bounces bigint not null, duration_ms bigint not null,
  pageviews bigint not null, events bigint not null, users hll not null,
  primary key (site_id, dim, bucket)
);
create table rollup_day_visits (like rollup_hour_visits including all);
create table rollup_day_visit_other (like rollup_hour_visit_other including all);
create table rollup_month_visits (like rollup_hour_visits including all);
create table rollup_month_visit_other (like rollup_hour_visit_other including all);
create table rollup_year_visits (like rollup_hour_visits including all);
create table rollup_year_visit_other (like rollup_hour_visit_other including all);

-- Installs upgraded from before visits existed have counted events in no visit: queries of
-- visit metrics for earlier ranges are refused (as dims_since does for dimensions).
alter table rollup_state add column visits_since timestamptz;
update rollup_state set visits_since = now() where xid_watermark <> '0'::xid8;
