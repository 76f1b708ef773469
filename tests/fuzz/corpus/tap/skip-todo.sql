-- Skipped and TODO assertions do not fail the file.
SELECT plan(4);
SELECT pass('plain pass');
SELECT skip('no replica in the test box', 1);
SELECT todo('not implemented yet', 1);
SELECT is(2, 3, 'known bug');
SELECT pass('last');
SELECT * FROM finish();
