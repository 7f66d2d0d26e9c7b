-- Hourly rollups are kept for ROLLUP_HOUR_RETENTION_DAYS. Retention deletes them by bucket;
-- rows arrive roughly in bucket order, so a BRIN index finds old ones at almost no upkeep.
create index rollup_hour_bucket on rollup_hour using brin (bucket);
create index rollup_hour_paths_bucket on rollup_hour_paths using brin (bucket);
