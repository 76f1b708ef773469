-- The image's unit test (stage 2 task 16 in docs/supabase-mapping.md): the installed
-- extensions are exactly these, the schemas exist, and who may run the
-- crypto functions. Rolled back: it leaves nothing behind.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(12);

SELECT set_eq(
  'SELECT extname::text FROM pg_extension',
  ARRAY['plpgsql', 'pg_stat_statements', 'pgtap', 'pgcrypto', 'uuid-ossp'],
  'the installed extensions are exactly the expected ones'
);

SELECT has_schema('public');
SELECT has_schema('extensions');
SELECT has_schema('pgbouncer');
SELECT has_schema('auth');
SELECT has_schema('storage');
SELECT has_schema('supabase_migrations');

SELECT function_privs_are('extensions', 'crypt', ARRAY['text', 'text'],
  'service_role', ARRAY['EXECUTE']);
SELECT function_privs_are('extensions', 'gen_salt', ARRAY['text'],
  'service_role', ARRAY['EXECUTE']);
SELECT function_privs_are('extensions', 'digest', ARRAY['text', 'text'],
  'service_role', ARRAY['EXECUTE']);
SELECT function_privs_are('extensions', 'crypt', ARRAY['text', 'text'],
  'anon', ARRAY[]::text[]);
SELECT function_privs_are('pgbouncer', 'get_auth', ARRAY['text'],
  'pgbouncer', ARRAY['EXECUTE']);

SELECT * FROM finish();
ROLLBACK;
