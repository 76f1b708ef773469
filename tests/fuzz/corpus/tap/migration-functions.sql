-- migrate:up
CREATE FUNCTION people_count() RETURNS bigint
LANGUAGE plpgsql AS $body$
BEGIN
	-- a dollar quote with a tag; semicolons inside stay inside
	RETURN (SELECT count(*) FROM people);
END;
$body$;

CREATE FUNCTION people_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.name := trim(NEW.name);
	RETURN NEW;
END $$;

CREATE TRIGGER people_touch BEFORE INSERT OR UPDATE ON people
	FOR EACH ROW EXECUTE FUNCTION people_touch();

-- migrate:down
DROP TRIGGER people_touch ON people;
DROP FUNCTION people_touch();
DROP FUNCTION people_count();
