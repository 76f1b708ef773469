-- A type for bucket kinds, made in a DO block so that a database that
-- already has it (made by hand, say) does not stop the migration.
-- migrate:up
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                 WHERE n.nspname = 'storage' AND t.typname = 'bucket_kind') THEN
    CREATE TYPE storage.bucket_kind AS ENUM ('standard', 'analytics');
  END IF;
END
$$;
ALTER TABLE storage.buckets
  ADD COLUMN IF NOT EXISTS kind storage.bucket_kind NOT NULL DEFAULT 'standard';

-- migrate:down
ALTER TABLE storage.buckets DROP COLUMN IF EXISTS kind;
DROP TYPE IF EXISTS storage.bucket_kind;
