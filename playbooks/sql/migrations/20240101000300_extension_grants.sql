-- Who may call the crypto helpers: service_role and authenticated may,
-- anon may not (the image's check does the same for pgsodium).
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

INSERT INTO supabase_migrations.schema_migrations (version, name)
VALUES ('20240101000300', 'extension_grants');
