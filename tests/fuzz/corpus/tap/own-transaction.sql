-- Manages its own transactions: never wrapped, runs statement by statement.
BEGIN;
CREATE TABLE own_txn (a int);
COMMIT;
BEGIN;
INSERT INTO own_txn VALUES (1), (2);
COMMIT;
