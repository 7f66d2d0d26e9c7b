-- The registry's reload reads the tokens and links not revoked, and each creation counts a
-- site's tokens: both by index, so revoked rows (kept 90 days, at most 1,000 a site with
-- those not revoked) do not make every API process's reload scan the whole table.
create index if not exists access_tokens_active on access_tokens (site_id) where revoked_at is null;
create index if not exists access_tokens_site on access_tokens (site_id, created_at desc);
