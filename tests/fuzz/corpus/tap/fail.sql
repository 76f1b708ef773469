-- Fails: the second assertion is wrong; pgTAP explains why.
SELECT plan(3);
SELECT pass('this one passes');
SELECT is(1 + 1, 3, 'arithmetic is broken');
SELECT ok(true, 'after the failure');
SELECT * FROM finish();
