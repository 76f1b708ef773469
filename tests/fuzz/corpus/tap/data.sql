INSERT INTO people (name, feeling, tags, extra) VALUES
	('ada', 'happy', '{math,engines}', '{"born": 1815}'),
	('bob; not a statement end', NULL, NULL, NULL),
	(E'it\'s ok', 'ok', '{}', '[]');
/* a comment; with a semicolon */
INSERT INTO people (name) SELECT 'filler ' || i FROM generate_series(1, 97) i;
