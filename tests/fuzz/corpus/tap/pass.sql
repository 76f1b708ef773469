-- Passing: plan(4) and four assertions, in the file's own transaction.
BEGIN;
SELECT plan(4);
SELECT has_table('people');
SELECT has_column('people', 'feeling');
SELECT is(people_count(), 100::bigint, 'one hundred people');
SELECT ok(EXISTS (SELECT 1 FROM people WHERE name = 'ada'), 'ada is there');
SELECT * FROM finish();
ROLLBACK;
