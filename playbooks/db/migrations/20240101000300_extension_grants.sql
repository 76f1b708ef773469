-- Who may call the crypto helpers: service_role and authenticated may,
-- anon may not (the image's check does the same for pgsodium).
-- migrate:up
REVOKE EXECUTE ON FUNCTION
  extensions.crypt(text, text),
  extensions.gen_salt(text),
  extensions.digest(text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
  extensions.crypt(text, text),
  extensions.gen_salt(text),
  extensions.digest(text, text)
TO service_role, authenticated, postgres;

-- migrate:down
REVOKE USAGE ON SCHEMA extensions FROM anon, authenticated, service_role;
