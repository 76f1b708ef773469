-- No BEGIN: the step wraps it in BEGIN .. ROLLBACK, so the table vanishes.
SELECT plan(1);
CREATE TABLE left_behind (a int);
SELECT has_table('left_behind');
