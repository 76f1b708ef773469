-- The bootstrap step of stage 2 (as the distribution's migrate.sh does
-- first): supabase_admin, initdb's superuser, makes the role the init
-- scripts run as, and gives it the database. Safe to run again.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'postgres') THEN
    CREATE ROLE postgres SUPERUSER LOGIN;
  END IF;
END
$$;
ALTER DATABASE postgres OWNER TO postgres;
