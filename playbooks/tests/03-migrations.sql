-- The migrations ran, once each, and left what they promise.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(10);

SELECT results_eq(
  'SELECT version FROM supabase_migrations.schema_migrations ORDER BY version',
  ARRAY['20240101000000', '20240101000100', '20240101000200', '20240101000300',
        '20240101000400', '20240101000500', '20240101000600', '20240101000700',
        '20240101000800', '20240101000900']::varchar[],
  'every migration is recorded once, in order'
);
SELECT has_table('auth', 'users', 'table auth.users exists');
SELECT col_is_pk('auth', 'users', 'id', 'auth.users has the primary key id');
SELECT has_table('storage', 'buckets', 'table storage.buckets exists');
SELECT has_table('storage', 'objects', 'table storage.objects exists');
SELECT ok((SELECT relrowsecurity FROM pg_class WHERE oid = 'storage.objects'::regclass),
  'storage.objects has row level security');
SELECT table_privs_are('auth', 'users', 'anon', ARRAY[]::text[],
  'anon cannot touch auth.users');
SELECT table_privs_are('storage', 'buckets', 'anon', ARRAY['SELECT'],
  'anon can only read storage.buckets');
SELECT is((SELECT count(*)::int FROM storage.buckets WHERE id = 'public'), 1,
  'the public bucket exists');
SELECT lives_ok(
  $$INSERT INTO auth.users (email) VALUES ('pgtap@example.com')$$,
  'a user can be added (rolled back)');

SELECT * FROM finish();
ROLLBACK;
