-- Helpers that read the request's JWT claims, as PostgREST sets them.
-- A nested dollar quote: the function's body holds a quoted string.
-- migrate:up
CREATE OR REPLACE FUNCTION auth.role() RETURNS text
LANGUAGE sql STABLE
AS $body$
  SELECT coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$body$;

CREATE OR REPLACE FUNCTION auth.email() RETURNS text
LANGUAGE plpgsql STABLE
AS $outer$
DECLARE
  q text := $inner$SELECT nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email'$inner$;
  r text;
BEGIN
  EXECUTE q INTO r;
  RETURN r;
END;
$outer$;

GRANT EXECUTE ON FUNCTION auth.role(), auth.email()
  TO anon, authenticated, service_role;

-- migrate:down
DROP FUNCTION IF EXISTS auth.email();
DROP FUNCTION IF EXISTS auth.role();
