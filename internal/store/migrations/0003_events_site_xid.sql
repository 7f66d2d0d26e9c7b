-- Stats read raw rows only above the rollup watermark: index them by site and xid, so a
-- query reads just that site's rows not yet rolled up. (site_id, ts) served nothing else.
create index events_site_xid on events (site_id, xid);
drop index events_site_ts;
