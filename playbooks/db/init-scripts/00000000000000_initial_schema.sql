-- Init script 1: run by postgres (made by stage 2's bootstrap step as
-- supabase_admin, the cluster's bootstrap superuser), on the server
-- started with initdb's configuration; recorded in
-- supabase_migrations.init_scripts. dbmate layout.
-- migrate:up
-- pgbouncer looks passwords up through a SECURITY DEFINER function, so it
-- needs no access to pg_shadow itself.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgbouncer') THEN
    CREATE USER pgbouncer;
  END IF;
END
$$;
CREATE SCHEMA IF NOT EXISTS pgbouncer AUTHORIZATION pgbouncer;

CREATE OR REPLACE FUNCTION pgbouncer.get_auth(p_usename text)
RETURNS TABLE (username text, password text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog
AS $$
BEGIN
  RAISE DEBUG 'PgBouncer auth request: %', p_usename;
  RETURN QUERY
  SELECT usename::text, passwd::text FROM pg_catalog.pg_shadow
  WHERE usename = p_usename;
END;
$$;
REVOKE ALL ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO pgbouncer;

-- migrate:down
DROP SCHEMA IF EXISTS pgbouncer CASCADE;
DROP ROLE IF EXISTS pgbouncer;
