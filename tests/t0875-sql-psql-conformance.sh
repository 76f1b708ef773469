#!/usr/bin/env bash
# The SQL splitter against psql itself: a corpus of tricky files (nested
# and tagged dollar quotes, E'' strings, standard_conforming_strings,
# BEGIN ATOMIC bodies, nested comments, ';' inside quoted identifiers and
# parentheses, DO blocks) applied by psql -f to one database and by
# stagehand statement by statement (sql `transaction: none`, migrations
# `transaction:false`) and file by file (sql `per_file`) to three others
# in the box's PostgreSQL; their pg_dump --schema-only must be identical.
# shellcheck disable=SC2016 # $ in single quotes is for SQL or the box
. "$(dirname "$0")/lib.sh"
t_plan 10

CORPUS=$TOP/tests/fixtures/psql-corpus
[ -x "$BOX_PGBIN/initdb" ] || { t_not "PostgreSQL 15 is installed ($BOX_PGBIN)"; t_done; exit 1; }

box_up "$(box_name psqlc)" || { t_not "test box comes up"; t_done; exit 1; }
t_ok "a PostgreSQL 15 cluster starts in the box" box_pg_start
mkdbs() {
	for db in corpus_psql corpus_sql corpus_mig corpus_txn; do
		box_psql postgres "CREATE DATABASE $db" || return 1
	done
}
t_ok "four empty databases" mkdbs

# ---- psql, file by file, stopping at the first error
files=()
for f in "$CORPUS"/*.sql; do files+=("$(basename "$f")"); done
psql_all() {
	box_exec sh -c 'mkdir -p /tmp/corpus && chmod 755 /tmp/corpus' &&
		for f in "${files[@]}"; do
			box_exec sh -c 'cat >"/tmp/corpus/$0" && chmod 644 "/tmp/corpus/$0"' "$f" \
				<"$CORPUS/$f" || return 1
		done &&
		for f in "${files[@]}"; do
			box_exec su postgres -s /bin/sh -c \
				"$BOX_PGBIN/psql -X -q -h /tmp/pg/sock -p 5433 -d corpus_psql -v ON_ERROR_STOP=1 -f \"/tmp/corpus/\$0\"" \
				"$f" || return 1
		done
}
t_ok "psql applies the corpus" psql_all

# ---- stagehand: sql transaction: none, migrations transaction:false
mkdir -p "$T/m/corpus" "$T/m/mig"
{
	cat <<'YML'
stagehand: 1
stage: psql-conformance
steps:
  - name: The corpus statement by statement (sql)
    become: postgres
    sql:
      host: /tmp/pg/sock
      port: 5433
      database: corpus_sql
      transaction: none
      files:
YML
	for f in "${files[@]}"; do
		cp "$CORPUS/$f" "$T/m/corpus/$f"
		echo "        - corpus/$f"
		# NN-name.sql -> NN_name.sql, under a transaction:false header
		{ echo '-- migrate:up transaction:false'; cat "$CORPUS/$f"; } \
			>"$T/m/mig/${f%%-*}_${f#*-}"
	done
	cat <<'YML'
  - name: The corpus file by file, each in a transaction (sql per_file)
    become: postgres
    sql:
      host: /tmp/pg/sock
      port: 5433
      database: corpus_txn
      files:
YML
	for f in "${files[@]}"; do echo "        - corpus/$f"; done
	cat <<'YML'
  - name: The corpus as transaction:false migrations
    become: postgres
    migrations:
      host: /tmp/pg/sock
      port: 5433
      database: corpus_mig
      dir: mig
      table: meta.schema_migrations
YML
} >"$T/m/corpus.yml"
run r1 "$T/m/corpus.yml"
t_ok "stagehand applies the corpus three ways" rc_is 0
t_ok "every corpus file ran as a migration" \
	test "$(jr "$T/r1" '[.steps[2].tests[] | select(.status == "passed")] | length')" = "${#files[@]}"

# (the migrations' own schema aside, and pg_dump's per-run \restrict key)
dump() {
	box_exec su postgres -s /bin/sh -c \
		"$BOX_PGBIN/pg_dump -h /tmp/pg/sock -p 5433 --schema-only --no-owner --exclude-schema=meta -d \"\$0\"" "$1" |
		grep -v '^\\\(un\)\?restrict ' >"$T/$1.dump"
}
dump corpus_psql && dump corpus_sql && dump corpus_mig && dump corpus_txn
t_ok "the psql dump holds every file's last object" \
	sh -c "for t in after_dollar strings_after comments_after atomic_after parens_after do_after scs_on; do
		grep -q \"CREATE TABLE public.\$t \" '$T/corpus_psql.dump' || { echo \"no \$t\"; exit 1; }; done"
t_ok "the corpus's quoting survived (psql's view)" \
	grep -qF "COMMENT ON TABLE public.scs_off IS 'back\\slash; ''quoted''';" "$T/corpus_psql.dump"
t_ok "sql transaction: none: the schema is psql's" diff -u "$T/corpus_psql.dump" "$T/corpus_sql.dump"
t_ok "migrations transaction:false: the schema is psql's" diff -u "$T/corpus_psql.dump" "$T/corpus_mig.dump"
t_ok "sql per_file (the server splits; a file that sets standard_conforming_strings goes statement by statement): the schema is psql's" \
	diff -u "$T/corpus_psql.dump" "$T/corpus_txn.dump"

t_done
