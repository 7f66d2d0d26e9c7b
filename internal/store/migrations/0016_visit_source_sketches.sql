-- Visits now keep a visitor sketch per source, referrer, channel and UTM tag, so that
-- `visit:source` and the like count visitors (docs/visits.md). Visits closed before this
-- upgrade were counted without one: visit_sketches_since says from when, and a query for
-- visitors by those dimensions over an earlier range is refused (as visits_since does).
alter table rollup_state add column visit_sketches_since timestamptz;
update rollup_state set visit_sketches_since = now() where exists (select 1 from rollup_day_visits);
