#!/usr/bin/env bash
# t0990-mutation-check: the suite keeps its teeth. Plants one known bug at
# a time in a private copy of the source (provisioner/, Makefile,
# tests/unit/) under $T, rebuilds it, runs the one test that must notice
# against the mutant binary, and reports
#   ok N - mutant "<bug>" was caught by <test>
# only when that test prints a "not ok" line matching the expected
# assertion (so a test failing for another reason does not count).
#
# A mutant is a sed script that must change exactly one line of its file
# and mark it MUTANT; when it no longer does (the target line moved or was
# rewritten), or the mutant does not build, that is a "not ok" asking to
# update this file, never a silent pass. The copy is built once; each
# mutant rebuilds one object and the link. The tests are this checkout's
# scripts (tests/tNNNN-*.sh) with STAGEHAND pointing at the mutant; the
# binary under test ($STAGEHAND) is not used. Runtime: about 1.5 to 2.5 min on
# 2 cores (most of it t0860 and t0710), noted, not asserted.
. "$(dirname "$0")/lib.sh"
t_plan 12

M=$T/src
n=0
t0=$(date +%s)
mkdir -p "$M/tests" &&
	cp -R "$TOP/provisioner" "$TOP/Makefile" "$M/" &&
	cp -R "$TOP/tests/unit" "$M/tests/" ||
	{ t_not "the source is copied"; t_done; exit 1; }
if ! make -C "$M" -s -j2 stagehand >"$T/build.log" 2>&1; then
	t_not "the unmutated copy builds" "$T/build.log"
	t_done
	exit 1
fi

# plant FILE SED-SCRIPT: applies the mutant; fails unless exactly one line
# changed and it carries the MUTANT mark.
plant() {
	cp "$M/$1" "$T/orig" && sed -i -e "$2" "$M/$1" || return 1
	[ "$(grep -c MUTANT "$M/$1")" = 1 ] &&
		[ "$(diff "$T/orig" "$M/$1" | grep -c '^>')" = 1 ] &&
		[ "$(diff "$T/orig" "$M/$1" | grep -c '^<')" = 1 ]
}
# unplant FILE: the original back; its object is rebuilt by the next make.
unplant() {
	cp "$T/orig" "$M/$1"
	rm -f "$M/build/${1%.c}.o"
}
# caught LOG PATTERN: LOG has a failed assertion matching PATTERN.
caught() {
	grep -qE "^not ok [0-9]+ - .*($2)" "$1"
}

# mutant DESC FILE SED-SCRIPT TEST PATTERN [UNIT-TEST...]
#   TEST is a tests/ script name or unit:test_NAME (built in the copy);
#   the UNIT-TESTs are built from the mutant too, for scripts that run
#   them (t0410 runs test_report from $UNIT_DIR).
mutant() {
	local desc=$1 file=$2 script=$3 test=$4 pat=$5 log target=(stagehand)
	shift 5
	target+=("${@/#/build/tests/}")
	n=$((n + 1))
	log=$T/mutant-$n.log
	if ! plant "$file" "$script"; then
		{ diff "$T/orig" "$M/$file" || true; } >"$log" 2>&1
		[ -s "$log" ] || echo "the sed script changed no line" >"$log"
		t_not "mutant \"$desc\": its patch no longer applies to $file (the target line moved or changed): update t0990" "$log"
		unplant "$file"
		return
	fi
	case $test in unit:*) target=("build/tests/${test#unit:}") ;; esac
	rm -f "$M/build/${file%.c}.o"
	if ! make -C "$M" -s -j2 "${target[@]}" >"$log" 2>&1; then
		t_not "mutant \"$desc\" does not build: update t0990" "$log"
		unplant "$file"
		return
	fi
	case $test in
	unit:*) CMOCKA_MESSAGE_OUTPUT=TAP "$M/${target[0]}" >"$log" 2>&1 ;;
	*) STAGEHAND=$M/stagehand UNIT_DIR=$M/build/tests \
		bash "$TOP/tests/$test" >"$log" 2>&1 ;;
	esac
	unplant "$file"
	if caught "$log" "$pat"; then
		t_pass "mutant \"$desc\" was caught by ${test#unit:}"
		grep -m1 -E "^not ok [0-9]+ - .*($pat)" "$log" | sed 's/^/#   by: /'
	else
		echo "survived: no 'not ok' line of $test matches /$pat/" >>"$log"
		t_not "mutant \"$desc\" survived ${test#unit:}" "$log"
	fi
}

# 1. The migration fingerprint hashes '' for every row: only the row
#    count is left to compare.
mutant "the fingerprints compare only row counts" \
	provisioner/pg/fingerprint.c \
	's|"string_agg(ROW(x\.\*)::text, |"string_agg(/* MUTANT */ '"''"'::text, |' \
	t0860-migration-test.sh 'only table public\.|keeps (5000|10) rows'

# 2. sh_quote forgets to escape a single quote inside the value.
mutant "sh_quote leaves single quotes unescaped" provisioner/util/util.c \
	"s|if (\*s == '\\\\'') {|if (0 /* MUTANT */ \&\& *s == '\\\\'') {|" \
	t0540-step-line.sh 'arrives verbatim'

# 3. The alias script assigns one dest without sh_quote.
mutant "alias puts a dest into its script unquoted" provisioner/steps/alias.c \
	'/buf_addf(s, "d_%zu=", i + 1);/{n;s|(void)sh_quote(s, c->dests\.v\[i\]);|(void)buf_adds(s, c->dests.v[i]); /* MUTANT */|}' \
	t0620-step-alias.sh 'nothing in the names ran'

# 4. A narinfo signature is good whatever crypto_sign_verify_detached says.
mutant "narinfo signature check always passes" provisioner/nix/narinfo.c \
	's|if (crypto_sign_verify_detached(raw,|if (1 /* MUTANT */ \|\| crypto_sign_verify_detached(raw,|' \
	t0710-closure-resolve.sh "tampered cache '(wrong-key|nar-size|nar-hash|references)'"

# 5. Redaction returns its input.
mutant "redaction disabled" provisioner/util/redact.c \
	'/^redact_any(/,/^}/s|if (r == NULL \|\| r->n == 0)|if (1 /* MUTANT */ \|\| r == NULL \|\| r->n == 0)|' \
	t0330-run-secrets.sh 'redaction marker|secret is in no output'

# 6. A reconnect accepts whatever host key the server now shows.
mutant "any host key accepted on reconnect" provisioner/transport/trust.c \
	's|if (strcmp(c->fp\.data, fp) == 0)|if (1 /* MUTANT */ \|\| strcmp(c->fp.data, fp) == 0)|' \
	t0305-run-host-keys.sh 'host key swapped before the reconnect exits 77'

# 7. The permission audit passes every row.
mutant "permissions audit passes everything" provisioner/pg/permcheck.c \
	's|^\tr->passed = passed;$|\tr->passed = passed = true; /* MUTANT */|' \
	unit:test_permcheck 'test_permcheck_'

# 8. The closure step counts FileSize (compressed) as the bytes to copy
#    when the box has none of the closure.
mutant "closure counts FileSize as the bytes to copy" provisioner/steps/closure.c \
	's|^\t\tst->bytes_missing += st->cl.paths\[i\]\.info\.nar_size;$|\t\tst->bytes_missing += st->cl.paths[i].info.file_size; /* MUTANT */|' \
	t0730-closure-progress.sh "the report's bytes are the box's NarSize"

# 9. The report counts an ok step as changed too (results.json and
#    stagehand.env agree with each other, and are both wrong).
mutant "report counts ok steps as changed" provisioner/report/report.c \
	'/^count_steps(/,/^}/s|^\t\t\tc->ok++;$|\t\t\tc->ok++, c->changed++; /* MUTANT */|' \
	t0410-report-schema.sh "known counts" test_report

# 10. The runner runs a step that is not retry-safe again after a
#     reconnect (a dropped `shell` step would run twice).
mutant "runner reruns an unsafe step after a reconnect" provisioner/run/runner.c \
	's|if (((k->flags \& STEP_RETRY_SAFE) \|\| ctx->opts->plan) \&\&|if ((1 /* MUTANT */ \|\| (k->flags \& STEP_RETRY_SAFE) \|\| ctx->opts->plan) \&\&|' \
	unit:test_runner 'test_runner_does_not_rerun_an_unsafe_step'

# 11. The migrations step takes every applied file as unchanged.
mutant "migrations never see drift" provisioner/steps/migrations.c \
	's|if (sum == NULL \|\| strcmp(sum, g->sha) == 0) {|if (1 /* MUTANT */ \|\| sum == NULL \|\| strcmp(sum, g->sha) == 0) {|' \
	t0870-migrations-step.sh 'a changed file fails the run'

# 12. The SQL splitter ignores a file's standard_conforming_strings.
mutant "splitter ignores standard_conforming_strings" provisioner/pg/pgscript.c \
	"s|return lex_quoted(l, '\\\\'', l->scs_off);|return lex_quoted(l, '\\\\'', false); /* MUTANT */|" \
	unit:test_tap 'test_script_follows_standard_conforming_strings'

echo "# mutation check took $(($(date +%s) - t0)) s"
t_done
