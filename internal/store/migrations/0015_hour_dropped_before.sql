-- Hourly rollups older than ROLLUP_HOUR_RETENTION_DAYS are deleted by the retention job. The
-- API refused hourly detail before the setting's own bound only, so raising the setting (or
-- setting it to 0) made hours already deleted read as zero. The retention job now records,
-- before it deletes, the bound it deletes below; queries refuse hourly detail before the
-- later of the two.
--
-- An install that has deleted hourly rows already: day rows older than the oldest hour row
-- left say so (both are written by the same rollup), and every hour before that row is gone;
-- with no hour row left, every hour up to the end of the last day counted. Worked out before
-- the ALTER below locks rollup_state (which every query reads), since it reads both tables.
create temp table hour_bound on commit drop as
select case when exists (select 1 from rollup_day d where d.bucket < coalesce(date_trunc('day', h.first, 'UTC'), 'infinity'))
            then coalesce(h.first, (select max(bucket) from rollup_day) + interval '1 day') end as dropped_before
from (select min(bucket) as first from rollup_hour) h;

alter table rollup_state add column hour_dropped_before timestamptz;
update rollup_state set hour_dropped_before = (select dropped_before from hour_bound);
