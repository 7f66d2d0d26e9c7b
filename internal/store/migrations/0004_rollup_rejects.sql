-- Raw events the rollup could not count (for example a value too large for a rollup
-- index), set aside so that one bad row never stops the rollup of every other event.
-- The raw row is kept whole as JSON; `bun run sluice -- rollup-replay` puts it back into
-- events, where the next rollup counts it (or sets it aside again, with the new error).
create table rollup_rejects (
  event_id     uuid primary key,
  row          jsonb not null,
  code         text not null,
  error        text not null,
  set_aside_at timestamptz not null default now()
);
