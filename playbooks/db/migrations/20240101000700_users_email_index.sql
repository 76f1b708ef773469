-- A case-insensitive email lookup. CREATE INDEX CONCURRENTLY cannot run
-- inside a transaction block, so this one runs statement by statement.
-- migrate:up transaction:false
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_lower_idx
  ON auth.users (lower(email));

-- migrate:down
DROP INDEX CONCURRENTLY IF EXISTS auth.users_email_lower_idx;
