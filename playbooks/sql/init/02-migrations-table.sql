-- Init SQL, part 3: where the migrations record themselves. Each
-- migration inserts its version in the same transaction as its changes,
-- and stage 2 runs a migration only when its version is missing.
CREATE SCHEMA IF NOT EXISTS supabase_migrations;
CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (
  version text PRIMARY KEY,
  name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);
