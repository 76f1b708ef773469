-- Init script 2: the extensions schema and the extensions every project
-- gets. Only extensions the bundle has (Debian's PostgreSQL 15 contrib).
-- migrate:up
CREATE SCHEMA IF NOT EXISTS extensions;
GRANT USAGE ON SCHEMA extensions TO PUBLIC;

CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA extensions;
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA extensions;
CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA extensions;

-- migrate:down
DROP SCHEMA IF EXISTS extensions CASCADE;
