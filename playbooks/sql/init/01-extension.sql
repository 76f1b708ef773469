-- Init SQL, part 2 (stage 2 task 11 in docs/supabase-mapping.md): the extensions schema and
-- the extensions every project gets. Only extensions the bundle has
-- (Debian's PostgreSQL 15 contrib). Safe to run again.
CREATE SCHEMA IF NOT EXISTS extensions;
GRANT USAGE ON SCHEMA extensions TO PUBLIC;

CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA extensions;
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA extensions;
CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA extensions;
