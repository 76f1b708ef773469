-- Comments users read in their dashboards; the texts hold the characters
-- a naive splitter trips on: semicolons, quotes, backslashes.
-- migrate:up
COMMENT ON SCHEMA auth IS 'Auth: users; sessions; the request''s helpers';
COMMENT ON TABLE auth.users IS E'One row per user.\nEmail is unique; "email" may be NULL; a \\ is a backslash.';
COMMENT ON SCHEMA storage IS $c$Storage: buckets and objects; 'public' is readable by anon$c$;
/* A block comment with a ; and a ' in it, /* nested */ as PostgreSQL allows. */
COMMENT ON FUNCTION auth.uid() IS 'the user of the request (NULL for anon)';

-- migrate:down
COMMENT ON SCHEMA auth IS NULL;
COMMENT ON TABLE auth.users IS NULL;
COMMENT ON SCHEMA storage IS NULL;
COMMENT ON FUNCTION auth.uid() IS NULL;
