-- A typo on line 4: the whole file rolls back.
CREATE TABLE will_vanish (a int);
INSERT INTO will_vanish VALUES (1);
INSERT INTO no_such_table VALUES (1);
