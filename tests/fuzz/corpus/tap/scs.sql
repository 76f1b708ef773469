-- psql follows the server's standard_conforming_strings: with it off, a
-- backslash escapes a quote in a plain '' string.
SET standard_conforming_strings = off;
CREATE TABLE scs_off (a text DEFAULT 'it\'s; escaped');
COMMENT ON TABLE scs_off IS 'back\\slash; \'quoted\'';
SET standard_conforming_strings TO on;
CREATE TABLE scs_on (a text DEFAULT 'C:\');
RESET standard_conforming_strings;
