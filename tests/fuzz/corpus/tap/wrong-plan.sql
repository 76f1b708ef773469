-- Plans three, runs two.
SELECT plan(3);
SELECT pass('one');
SELECT pass('two');
SELECT * FROM finish();
