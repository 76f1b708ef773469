-- No assertions at all: a failure, not a pass.
SELECT count(*) FROM people;
