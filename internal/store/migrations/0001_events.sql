-- Raw events, one row per event_id: the primary key makes a redelivery a no-op.
create table if not exists events (
  event_id    uuid primary key,
  site_id     text not null,
  event_type  text not null,
  path        text,
  user_id     text,
  ts          timestamptz not null,
  received_at timestamptz not null,
  inserted_at timestamptz not null default now()
);

create index if not exists events_site_ts on events (site_id, ts);
