-- Hourly rollups older than ROLLUP_HOUR_RETENTION_DAYS are deleted by the retention job. The
-- API refused hourly detail before the setting's own bound only, so raising the setting (or
-- setting it to 0) made hours already deleted read as zero. The retention job now records,
-- before it deletes, the bound it deletes below; queries refuse hourly detail before the
-- later of the two.
alter table rollup_state add column hour_dropped_before timestamptz;

-- An install that has deleted hourly rows already: day rows older than the oldest hour row
-- left say so (both are written by the same rollup), and every hour before that row is gone.
update rollup_state set hour_dropped_before = coalesce(h.first, now())
from (select min(bucket) as first from rollup_hour) h
where exists (select 1 from rollup_day d where d.bucket < coalesce(date_trunc('day', h.first, 'UTC'), 'infinity'));
