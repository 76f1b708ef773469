-- The application schema: one transaction (the step wraps the file).
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');

CREATE TABLE people (
	id serial PRIMARY KEY,
	name text NOT NULL,
	feeling mood,
	tags text[],
	extra jsonb
);

-- A function with semicolons inside its dollar-quoted body.
CREATE FUNCTION people_count() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
	SELECT count(*) INTO n FROM people;
	RETURN n;
END;
$$;
