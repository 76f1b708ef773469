SELECT 1;

SELECT 10 / (SELECT count(*) - count(*) FROM people);
SELECT 2;
