-- The upgrade's health check: the server answers through libpq, runs the
-- image's configuration, and the data of stage 2 is there.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(6);

SELECT ok(version() LIKE 'PostgreSQL 15%', 'the server answers: ' || version());
SELECT is(current_setting('config_file'), '/etc/postgresql/postgresql.conf',
  'the server reads /etc/postgresql/postgresql.conf');
SELECT lives_ok('SELECT count(*) FROM extensions.pg_stat_statements',
  'pg_stat_statements is preloaded and collects statistics');
SELECT is((SELECT count(*)::int FROM supabase_migrations.schema_migrations), 10,
  'the migrations are still recorded');
SELECT has_table('auth', 'users', 'table auth.users is still there');
SELECT is((SELECT count(*)::int FROM storage.buckets WHERE id = 'public'), 1,
  'the public bucket is still there');

SELECT * FROM finish();
ROLLBACK;
