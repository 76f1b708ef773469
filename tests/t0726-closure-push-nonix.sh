#!/usr/bin/env bash
# The closure step in push mode to a box WITHOUT Nix: /nix starts empty in
# the test box and the Nix tools are removed from the box's /usr (its
# overlay; the host keeps them), so nix: auto detects no Nix. Pull mode
# and nix: present fail naming the cause, nix: absent with pull is an
# invalid manifest; plan reports the copy and writes nothing. Push
# installs the PostgreSQL 15 bundle as tar: the paths have the store's
# modes (0444, 0555, dirs 0555), mtime 1 and root as owner; stagehand's
# records under /nix/var/stagehand/paths hold the signed NarHashes and are
# exactly what `stagehand closure --registration` prints; the profile is a
# generation chain of symlinks owned by postgres; postgres runs from it
# (initdb, pg_ctl start, select 1); a second run is ok, and a path whose
# record is gone is pushed again. The 13 bundle becomes generation 2, the
# alias links follow it, a rollback of the link chain to generation 1
# brings 15 back (and the alias links with it) and a re-run of the 15
# manifest is ok. A NAR changed by one byte, a truncated NAR and a validly
# signed NAR with an entry name 'a/b' are refused (77) with nothing
# visible: no path, no record, no temporary directory; SIGKILL of
# stagehand mid-push leaves nothing and the re-run completes.
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/push-lib.sh
. "$TOP/tests/push-lib.sh"
t_plan 56

NIXCACHE=$TOP/tests/nixcache
CACHES=${STAGEHAND_NIXCACHE:-/tmp/stagehand-nixcache}
PROF=/var/lib/postgresql/.nix-profile
REC=/nix/var/stagehand/paths

"$NIXCACHE/make-caches.sh" "$CACHES" >"$T/paths.env" 2>"$T/caches.err" || {
	cat "$T/caches.err" >&2
	t_not "the test caches are built"
	t_done
	exit 1
}
# shellcheck disable=SC1091
. "$T/paths.env"

box_up "$(box_name cn)" || { t_not "the test box comes up"; t_done; exit 1; }
box_exec sh -c 'rm -f /usr/bin/nix /usr/bin/nix-*'
t_fail "the box has no nix-store and no /nix/store" \
	box_exec sh -c 'command -v nix-store || test -e /nix/store'

push_corpus || { t_done; exit 1; }
push_serve || { t_done; exit 1; }
store_list() { box_exec sh -c 'ls -a /nix/store /nix/var/stagehand/paths 2>/dev/null | sort'; }
in_box() { "$TESTBOX" exec "$TESTBOX_NAME" -- "$@"; }

PG_EXTRA="      profile: $PROF
      user: postgres"
ALIAS="  - name: postgres binaries
    alias:
      src: $PROF/bin
      dest: /usr/local/t726/bin"

# ---- without Nix: pull and nix: present say why they cannot work
manifest "$T/pull.yml" "$BUNDLE_ROOT" "$URL/cache1" pull "$PG_EXTRA"
run pull "$T/pull.yml"
t_ok "pull mode fails on a box without Nix" \
	sh -c 'test "$1" != 0' _ "$RC"
t_ok "the error says Nix is missing and that pull needs it" \
	sh -c 'grep -F "nix is not installed on the target" "$1" | grep -qF "mode: pull has the target"' _ "$T/out"
manifest "$T/present.yml" "$BUNDLE_ROOT" "$URL/cache1" "push
      nix: present" "$PG_EXTRA"
run present "$T/present.yml"
t_ok "nix: present fails naming it" \
	sh -c 'test "$1" != 0 && grep -qF "nix: present says" "$2"' _ "$RC" "$T/out"
manifest "$T/absent-pull.yml" "$BUNDLE_ROOT" "$URL/cache1" "pull
      nix: absent"
sh_run check "$T/absent-pull.yml"
t_ok "nix: absent with mode: pull is an invalid manifest" rc_is 65
t_ok "and the error says why" err_has "nix: absent needs mode: push"
manifest "$T/nixbad.yml" "$BUNDLE_ROOT" "$URL/cache1" "push
      nix: maybe"
sh_run check "$T/nixbad.yml"
t_ok "nix: maybe is an invalid manifest" rc_is 65
t_ok "the error says what nix takes" err_has "nix: expected auto, present or absent, not 'maybe'"
t_ok "nothing was written to the box's /nix" \
	test -z "$(box_exec find /nix -mindepth 1 -maxdepth 1)"

# ---- push installs the bundle as tar
manifest "$T/push.yml" "$BUNDLE_ROOT" "$URL/cache1" push "$PG_EXTRA
$ALIAS"
sh_run plan "$T/push.yml" "${SSH_ARGS[@]}" --report "$T/p1"
t_ok "plan without Nix reports the copy and the new generation" \
	has_text "$RC copy 3 paths|profile $PROF: new, generation 1 ($BUNDLE_ROOT)" \
	sh -c "echo $RC \$(jq -r '.steps[0].changes[]' '$T/p1/results.json' | sed 's/ (.*) from .*//' | paste -sd'|')"
t_ok "and writes nothing to the box's /nix" \
	test -z "$(box_exec find /nix -mindepth 1 -maxdepth 1)"
run r1 "$T/push.yml"
t_ok "push mode installs the bundle without Nix" rc_is 0
t_ok "the step reports changed" test "$(jr "$T/r1" '.steps[0].status')" = changed
t_ok "3 paths were missing and copied" \
	test "$(jr "$T/r1" '.closure.paths_missing')" = 3
t_ok "no Nix database was made" box_exec test ! -e /nix/var/nix/db
t_ok "the three paths are in the store" \
	box_exec test -d "$BUNDLE_ROOT" -a -d "$BUNDLE_LIB" -a -d "$BUNDLE_SHARE"
t_ok "files 0444, executables 0555, directories 0555" \
	test "$(box_exec stat -c %a "$BUNDLE_ROOT/VARIANT" "$BUNDLE_ROOT/bin/initdb" "$BUNDLE_ROOT/lib" "$BUNDLE_ROOT")" = \
	"$(printf '444\n555\n555\n555')"
t_ok "nothing writable, every mtime 1, everything root's" \
	test -z "$(box_exec find "$BUNDLE_ROOT" "$BUNDLE_LIB" "$BUNDLE_SHARE" \( -perm -u+w -a ! -type l \) -o ! -newermt @0 -o -newermt @2 -o ! -user root -o ! -group root)"
jr "$T/r1" '.closure.paths[] | .path + " " + .nar_hash' | sort >"$T/want-hashes"
box_exec sh -c "for p in $BUNDLE_ROOT $BUNDLE_LIB $BUNDLE_SHARE; do echo \"\$p \$(sed -n 2p $REC/\${p##*/})\"; done" |
	sort >"$T/got-hashes"
t_ok "the records hold the signed NarHashes" cmp "$T/want-hashes" "$T/got-hashes"
"$STAGEHAND" closure "$BUNDLE_ROOT" --from "$URL/cache1" --trusted-key "$KEY1_PUB" \
	--registration >"$T/reginfo" 2>"$T/reginfo.err"
t_ok "stagehand closure --registration works" test -s "$T/reginfo"
jr "$T/r1" '.closure.paths[].path' | while read -r p; do box_exec cat "$REC/${p##*/}"; done >"$T/records"
t_ok "the records are what --registration prints, in closure order" cmp "$T/reginfo" "$T/records"
t_ok "the registration is what nix-store --load-db takes" \
	sh -c 'mkdir -p "$1/s" && nix-store --store "$1/s" --load-db <"$2" &&
		test "$(nix-store --store "$1/s" -q --references "$3" | sort | tr "\n" " ")" = "$(printf "%s\n" "$4" "$5" | sort | tr "\n" " ")"' \
	_ "$T/adopt" "$T/reginfo" "$BUNDLE_ROOT" "$BUNDLE_LIB" "$BUNDLE_SHARE"
t_ok "the profile is generation 1 pointing at the bundle" \
	test "$(box_exec readlink "$PROF") $(box_exec readlink "$PROF-1-link")" = ".nix-profile-1-link $BUNDLE_ROOT"
t_ok "the profile links belong to postgres" \
	test "$(box_exec stat -c %U "$PROF" "$PROF-1-link" | sort -u)" = postgres
t_ok "postgres runs from the profile: initdb, pg_ctl start, select 1" \
	sh -c "'$TESTBOX' exec '$TESTBOX_NAME' -- su -s /bin/sh postgres -c '
		set -e; rm -rf /tmp/t726; mkdir -p /tmp/t726
		$PROF/bin/initdb -D /tmp/t726/data -U postgres -A trust >/tmp/t726/initdb.log
		$PROF/bin/pg_ctl -D /tmp/t726/data -l /tmp/t726/log -w \
			-o \"-k /tmp/t726 -c listen_addresses=\" start >/dev/null
		r=\$($PROF/bin/psql -h /tmp/t726 -U postgres -Atc \"select 1\" postgres)
		$PROF/bin/pg_ctl -D /tmp/t726/data -w stop >/dev/null
		test \"\$r\" = 1'"
t_ok "the alias links go through the profile" \
	test "$(box_exec readlink /usr/local/t726/bin/postgres)" = "$PROF/bin/postgres"
t_ok "no temporary directory is left in the store" no_tmp

run r2 "$T/push.yml"
t_ok "a second push run is ok and moves nothing" \
	test "$RC $(jr "$T/r2" '.steps[0].status') $(jr "$T/r2" '.closure.paths_missing')" = "0 ok 0"

# A path without its record (a run stopped between the rename and the
# record) counts as missing and is installed again.
box_exec rm "$REC/${BUNDLE_LIB##*/}"
run rr "$T/push.yml"
t_ok "a path without its record is pushed again" \
	test "$RC $(jr "$T/rr" '.closure.paths_missing') $(box_exec sed -n 1p "$REC/${BUNDLE_LIB##*/}")" = "0 1 $BUNDLE_LIB"

# ---- generation 2, rollback to 1
manifest "$T/push13.yml" "$BUNDLE13_ROOT" "$URL/cache1" push "$PG_EXTRA
$ALIAS"
run g2 "$T/push13.yml"
t_ok "the 13 bundle installs" rc_is 0
t_ok "it is generation 2" \
	test "$(box_exec readlink "$PROF") $(box_exec readlink "$PROF-2-link")" = ".nix-profile-2-link $BUNDLE13_ROOT"
t_ok "the change line says generation 1 -> 2" \
	has_text "profile $PROF: generation 1 -> 2 ($BUNDLE13_ROOT)" jr "$T/g2" '.steps[0].changes[]'
t_ok "generation 1 is kept" test "$(box_exec readlink "$PROF-1-link")" = "$BUNDLE_ROOT"
t_ok "the alias link now runs 13" \
	sh -c "'$TESTBOX' exec '$TESTBOX_NAME' -- /usr/local/t726/bin/postgres --version | grep -q 'PostgreSQL) 13'"
cat >"$T/rollback.yml" <<EOF
stagehand: 1
stage: rollback
steps:
  - name: roll the profile back one generation
    shell: ln -sfn .nix-profile-1-link $PROF.new && chown -h postgres $PROF.new && mv -Tf $PROF.new $PROF
EOF
run rb "$T/rollback.yml"
t_ok "the rollback of the link chain runs" rc_is 0
t_ok "the profile is generation 1 again" test "$(box_exec readlink "$PROF")" = .nix-profile-1-link
t_ok "the alias link runs 15 again" \
	sh -c "'$TESTBOX' exec '$TESTBOX_NAME' -- /usr/local/t726/bin/postgres --version | grep -q 'PostgreSQL) 15'"
run r3 "$T/push.yml"
t_ok "the 15 manifest after the rollback is ok, no new generation" \
	has_text "0 ok 2" echo "$RC $(jr "$T/r3" '.steps[0].status') $(box_exec sh -c "ls -d $PROF-*-link | wc -l")"

# ---- tampered NARs stop before anything is visible
s0=$(store_list)
manifest "$T/flip.yml" "$SMALL_ROOT" "$URL/flip" push
run f1 "$T/flip.yml"
t_ok "a NAR changed by one byte: exit 77" rc_is 77
t_ok "the error names the path and the mismatch" \
	sh -c 'grep -F -- "$1" "$2" | grep -qF "NarHash mismatch"' _ "$VICTIM" "$T/out"
t_ok "nothing of the small closure is in the store or the records" \
	test "$s0" = "$(store_list)"
manifest "$T/cut.yml" "$SMALL_ROOT" "$URL/cut" push
run c1 "$T/cut.yml"
t_ok "a truncated NAR: exit 77" rc_is 77
t_ok "the error names the path and the cut" \
	sh -c 'grep -F -- "$1" "$2" | grep -qF "the xz stream is truncated"' _ "$VICTIM" "$T/out"
t_ok "and the store and records are unchanged, no temporary directory" \
	sh -c 'test "$1" = "$2"' _ "$s0" "$(store_list)"

# ---- a validly signed NAR with an entry name holding '/'
evil_cache
manifest "$T/evil.yml" "$EVP" "$URL/evil" push
run ev "$T/evil.yml"
t_ok "a signed NAR with an entry name 'a/b' is refused: exit 77" rc_is 77
t_ok "the error names the path and the invalid name" \
	sh -c 'grep -F -- "$1" "$2" | grep -qF "an invalid entry name"' _ "$EVP" "$T/out"
t_ok "and the store and records are unchanged, no temporary directory" \
	sh -c 'test "$1" = "$2"' _ "$s0" "$(store_list)"

# ---- SIGKILL in the middle: nothing partial is visible, a re-run completes
mkdir -p "$WWW/slow"
cp "$CACHES"/cache1/*.narinfo "$CACHES/cache1/nix-cache-info" "$WWW/slow/"
sed -i "s|^URL: |URL: ../../hang/cache1/|" "$WWW/slow/$vh.narinfo"
ln -s "$CACHES/cache1/nar" "$WWW/slow/nar"
HPORT=$("$NIXCACHE/serve" port)
"$NIXCACHE/serve" faulty "$WWW" 127.0.0.1 "$HPORT" || {
	t_not "the faulty server is served"
	t_done
	exit 1
}
manifest "$T/slow.yml" "$SMALL_ROOT" "http://127.0.0.1:$HPORT/ok/slow" push
"$STAGEHAND" run "$T/slow.yml" "${SSH_ARGS[@]}" >"$T/kill.out" 2>&1 &
spid=$!
restored() { # the push holds at least one unpacked path in its temp dir
	box_exec sh -c 'ls -d /nix/store/.stagehand-push.*/1/p 2>/dev/null' | grep -q .
}
for _ in $(seq 1 600); do
	restored && break
	kill -0 "$spid" 2>/dev/null || break
	sleep 0.1
done
t_ok "the push holds unpacked paths in its temporary directory" restored
kill -9 "$spid" 2>/dev/null
wait "$spid" 2>/dev/null
for _ in $(seq 1 300); do
	no_tmp && break
	sleep 0.1
done
t_ok "after SIGKILL of stagehand the temporary directory goes" no_tmp
t_ok "and the store and records are as before the push" \
	sh -c 'test "$1" = "$2"' _ "$s0" "$(store_list)"

# What a push whose target died (no trap ran) leaves: its temporary
# directory, and a path renamed into the store but never recorded, of a
# closure that will never be pushed again. The next push sweeps both and
# keeps every recorded path.
box_exec ls /nix/store | sort >"$T/store.before"
ORPHAN=/nix/store/0000000000000000000000000000t726-orphan
box_exec sh -c "mkdir -p /nix/store/.stagehand-push.dead01/1/p $ORPHAN/bin &&
	echo x >/nix/store/.stagehand-push.dead01/1/p/f && echo x >$ORPHAN/bin/f &&
	chmod -R a-w /nix/store/.stagehand-push.dead01 $ORPHAN"
manifest "$T/small.yml" "$SMALL_ROOT" "$URL/cache1" push
run k2 "$T/small.yml"
box_exec ls /nix/store | sort >"$T/store.after"
t_ok "the next push removed the temporary directory a dead push left" no_tmp
t_ok "and the store entry it renamed but never recorded" box_exec test ! -e "$ORPHAN"
t_ok "every path recorded before is still there" \
	test -z "$(comm -23 "$T/store.before" "$T/store.after")"
t_ok "no store entry is without its record" \
	box_exec sh -c 'for d in /nix/store/*; do test -f "/nix/var/stagehand/paths/${d##*/}" || exit 1; done'
t_ok "the re-run installs the small closure from the good cache" rc_is 0
t_ok "with a record for each of its 4 paths" \
	test "$(jr "$T/k2" '.closure.paths[].path' | while read -r p; do box_exec test -f "$REC/${p##*/}" && echo y; done | wc -l)" = 4

t_done
