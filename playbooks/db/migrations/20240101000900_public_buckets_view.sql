-- What anon may list: a security-barrier view over the public buckets,
-- and the grants that go with it.
-- migrate:up
CREATE OR REPLACE VIEW storage.public_buckets WITH (security_barrier = true) AS
  SELECT id, name, created_at FROM storage.buckets WHERE public;
ALTER VIEW storage.public_buckets OWNER TO postgres;
GRANT SELECT ON storage.public_buckets TO anon, authenticated, service_role;
REVOKE INSERT, UPDATE, DELETE ON storage.public_buckets FROM anon, authenticated;

-- migrate:down
DROP VIEW IF EXISTS storage.public_buckets;
