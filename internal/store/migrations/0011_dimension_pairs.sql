-- Pairs of dimensions kept together (store/dimensions.ts PAIRS: for now source with
-- country), so that a breakdown by one filtered by the other is answered from rollups for
-- any range, not only from raw events. They live in rollup_<g>_dims: each country is the
-- dimension 'source&country=<country>' whose values are sources, capped like any other.
-- Installs upgraded from before counted no pairs: pairs_since says from when.
alter table rollup_state add column pairs_since timestamptz;
update rollup_state set pairs_since = now() where xid_watermark <> '0'::xid8;
