-- Sites, access tokens and shared dashboard links.
--
-- sites: the registry. domains feed ingest's origin check for the site's events; timezone
-- (an IANA name) decides where its days, months and years start in /v1/query; public
-- serves its stats without a token. Ingest reads it from a cache in each API process
-- (internal/sites/registry.ts), never per request.
create table sites (
  site_id    text primary key,
  domains    text[] not null default '{}',
  timezone   text not null default 'UTC',
  public     boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- API tokens and shared links, stored only as the SHA-256 of the secret. kind read reads
-- stats, admin also manages sites and tokens, link is a shared dashboard link (read, one
-- site). site_id null means every site. A revoked token keeps its row (revoked_at).
create table access_tokens (
  id         text primary key,
  hash       bytea not null unique,
  kind       text not null check (kind in ('read', 'admin', 'link')),
  site_id    text references sites (site_id) on delete cascade,
  name       text not null default '',
  created_at timestamptz not null default now(),
  revoked_at timestamptz,
  check (kind <> 'link' or site_id is not null)
);

-- Every change to sites or access_tokens bumps version; each API process polls it
-- (REGISTRY_REFRESH_MS) and reloads its cache when it moved.
create table registry_state (
  id      int primary key default 1 check (id = 1),
  version bigint not null
);
insert into registry_state (version) values (0);

create function sluice_registry_changed() returns trigger
language plpgsql as $$
begin
  update registry_state set version = version + 1;
  return null;
end $$;
create trigger sites_changed after insert or update or delete or truncate on sites
  for each statement execute function sluice_registry_changed();
create trigger access_tokens_changed after insert or update or delete or truncate on access_tokens
  for each statement execute function sluice_registry_changed();

-- A removed site: for a day after its removal the retention job deletes again whatever is
-- stored under its id (events that were still queued when it was removed). Adding the
-- site again ends that.
create table site_removals (
  site_id    text primary key,
  removed_at timestamptz not null default now()
);

-- The site of each remembered event id, so that removing a site forgets its ids too (a
-- site added again must not have its events taken for duplicates). Null for ids
-- remembered before this migration; those age out within DEDUP_WINDOW_HOURS.
alter table event_ids add column site_id text;
