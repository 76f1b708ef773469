-- Cannot run inside a transaction block: needs transaction: none.
CREATE DATABASE t0810_extra;
