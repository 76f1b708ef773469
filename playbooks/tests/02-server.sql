-- The server runs the image's configuration: the config files of
-- /etc/postgresql, the preloaded libraries, the roles of the init SQL.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(14);

SELECT is(current_setting('server_version_num')::int / 10000, 15,
  'the server is PostgreSQL 15');
SELECT is(current_setting('config_file'), '/etc/postgresql/postgresql.conf',
  'the server reads /etc/postgresql/postgresql.conf');
SELECT is(current_setting('hba_file'), '/etc/postgresql/pg_hba.conf',
  'the server reads /etc/postgresql/pg_hba.conf');
SELECT is(current_setting('ident_file'), '/etc/postgresql/pg_ident.conf',
  'the server reads /etc/postgresql/pg_ident.conf');
SELECT is(current_setting('data_directory'), '/var/lib/postgresql/data',
  'the data directory is /var/lib/postgresql/data');
SELECT ok('pg_stat_statements' = ANY (string_to_array(
    replace(current_setting('shared_preload_libraries'), ' ', ''), ',')),
  'pg_stat_statements is preloaded');
SELECT lives_ok('SELECT count(*) FROM extensions.pg_stat_statements',
  'pg_stat_statements collects statistics');
SELECT ok(
  (SELECT extensions.crypt('secret', h) = h
   FROM (SELECT extensions.crypt('secret', extensions.gen_salt('bf')) AS h) s),
  'pgcrypto checks a bcrypt password');

SELECT is_superuser('supabase_admin');
SELECT is_superuser('postgres');
SELECT isnt_superuser('authenticator');
SELECT is(
  (SELECT r.rolname::text FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba
   WHERE d.datname = 'postgres'),
  'postgres', 'database postgres belongs to role postgres');
SELECT is_member_of('anon', 'authenticator');
SELECT is_member_of('service_role', 'authenticator');

SELECT * FROM finish();
ROLLBACK;
