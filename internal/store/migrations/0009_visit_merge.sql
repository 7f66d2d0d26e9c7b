-- Concatenates arrays across rows: the rollup's visit merge gathers a visit's paths and
-- event types in the same pass as its other figures (internal/visits).
create aggregate sluice_array_cat_agg(anycompatiblearray) (
  sfunc = array_cat,
  stype = anycompatiblearray,
  initcond = '{}'
);
