-- Runs once, when the data volume is first initialised.
create extension if not exists hll;
