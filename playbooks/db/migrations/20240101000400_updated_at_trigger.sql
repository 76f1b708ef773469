-- auth.users keeps its own updated_at: a trigger function (dollar-quoted,
-- with a nested tagged quote in its comment) and the trigger.
-- migrate:up
ALTER TABLE auth.users ADD COLUMN IF NOT EXISTS updated_at timestamptz;

CREATE OR REPLACE FUNCTION auth.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql
AS $fn$
BEGIN
  -- A ';' or a '$$' in a comment inside the body ends nothing.
  NEW.updated_at := now();
  RETURN NEW;
END;
$fn$;

CREATE TRIGGER users_touch_updated_at
  BEFORE UPDATE ON auth.users
  FOR EACH ROW EXECUTE FUNCTION auth.touch_updated_at();

-- migrate:down
DROP TRIGGER IF EXISTS users_touch_updated_at ON auth.users;
DROP FUNCTION IF EXISTS auth.touch_updated_at();
ALTER TABLE auth.users DROP COLUMN IF EXISTS updated_at;
