#!/usr/bin/env bash
# The closure step against the real test box and real signed binary caches
# served by nginx on the box's gateway: plan on a fresh box changes nothing;
# the first run installs the PostgreSQL 15 bundle into
# /var/lib/postgresql/.nix-profile (owned by postgres) and its postgres runs
# in the box; results.json and stagehand.env carry the closure; a second run
# copies nothing and makes no generation; an upgrade adds one generation;
# two caches with two keys; a profile that links to a per-user profile; no
# profile (a GC root); every tampered cache, a hanging cache, a missing key,
# too little free space, a missing nix and a system missing from the path
# map all fail before anything reaches the box's /nix; a cache that answers
# 500 before it recovers is retried.
. "$(dirname "$0")/lib.sh"
t_plan 129

NIXCACHE=$TOP/tests/nixcache
CACHES=${STAGEHAND_NIXCACHE:-/tmp/stagehand-nixcache}
PROF=/var/lib/postgresql/.nix-profile

"$NIXCACHE/make-caches.sh" "$CACHES" >"$T/paths.env" 2>"$T/caches.err" || {
	cat "$T/caches.err" >&2
	t_not "the test caches are built"
	t_done
	exit 1
}
# shellcheck disable=SC1091
. "$T/paths.env"

# Two boxes: A gets installed into, B stays pristine for the refusals.
box_up "$(box_name cb)" || { t_not "test box B comes up"; t_done; exit 1; }
B_NAME=$TESTBOX_NAME B_UPPER=$TESTBOX_UPPER B_SSH=("${SSH_ARGS[@]}")
B_GW=$TESTBOX_GATEWAY
box_up "$(box_name ca)" || { t_not "test box A comes up"; t_done; exit 1; }

# Our own web root (symlinks into the shared caches), so `serve stop`
# stops only this test's servers.
WWW=$T/www
mkdir -p "$WWW"
ln -s "$CACHES/cache1" "$WWW/cache1"
ln -s "$CACHES/cache2" "$WWW/cache2"
"$NIXCACHE/tamper.sh" "$CACHES/cache1" "$WWW/tamper" >"$T/cases.txt" 2>&1 || {
	cat "$T/cases.txt" >&2
	t_not "the tampered-cache corpus is built"
	t_done
	exit 1
}
# shellcheck disable=SC1091
. "$WWW/tamper/victim.env"
_t720_cleanup() {
	"$NIXCACHE/serve" stop "$WWW" >/dev/null 2>&1 || true
	_t_cleanup
}
trap _t720_cleanup EXIT
PORT=$("$NIXCACHE/serve" port)
B_PORT=$("$NIXCACHE/serve" port)
HPORT=$("$NIXCACHE/serve" port)
if ! { "$NIXCACHE/serve" start "$WWW" "$TESTBOX_GATEWAY" "$PORT" &&
	"$NIXCACHE/serve" start "$WWW" "$B_GW" "$B_PORT" &&
	"$NIXCACHE/serve" faulty "$WWW" "$B_GW" "$HPORT"; }; then
	t_not "the caches are served"
	t_done
	exit 1
fi
URL=http://$TESTBOX_GATEWAY:$PORT
B_URL=http://$B_GW:$B_PORT

case $(uname -m) in
x86_64) SYS=x86_64-linux OTHER=aarch64-linux ;;
aarch64) SYS=aarch64-linux OTHER=x86_64-linux ;;
*) SYS=$(uname -m)-linux OTHER=x86_64-linux ;;
esac

# The run's error message (the UI prints it on stdout, main.c on stderr).
err_has() { cat "$T/out" "$T/err" | grep -qF -- "$1" || { cat "$T/out" "$T/err"; return 1; }; }
# manifest FILE ROOT-YAML SUBSTITUTERS KEYS [EXTRA-YAML-LINES]
manifest() {
	cat >"$1" <<EOF
stagehand: 1
stage: closure
steps:
  - name: postgres bundle
    closure:
      path: $2
      substituters: $3
      trusted_keys: $4
$5
EOF
}
run_a() { # cmd report manifest
	sh_run "$1" "$3" "${SSH_ARGS[@]}" --report "$T/$2"
}
run_b() {
	sh_run "$1" "$3" "${B_SSH[@]}" --report "$T/$2"
}
snap() { # UPPER: the box's changes so far
	(cd "$1" && find . -printf '%p %y %m %u:%g %s %l %T@\n' | LC_ALL=C sort)
}
b_exec() { "$TESTBOX" exec "$B_NAME" -- "$@"; }
nix_empty() { test "$(b_exec find /nix -mindepth 1 | wc -l)" = 0; }
gen_links() { box_exec sh -c "ls -d $PROF-*-link 2>/dev/null | wc -l"; }

PG_MAP="{ $SYS: $BUNDLE_ROOT, $OTHER: /nix/store/00000000000000000000000000000000-not-this-one }"
PG_EXTRA="      profile: $PROF
      user: postgres"
manifest "$T/pg.yml" "$PG_MAP" "[$URL/cache1]" "[\"$KEY1_PUB\"]" "$PG_EXTRA"

# ---- plan on a fresh box: read-only, reports what would move
before=$(box_snapshot)
run_a plan p1 "$T/pg.yml"
after=$(box_snapshot)
t_ok "plan on a fresh box succeeds" rc_is 0
t_ok "plan reports would_change" test "$(jr "$T/p1" '.steps[0].status')" = would_change
t_ok "plan reports the 3 missing paths" test "$(jr "$T/p1" '.closure.paths_missing')" = 3
# The NarSize of paths as the cache's own narinfo files give it.
cache_nar_size() { # PATH...
	local p h v s=0
	for p; do
		h=${p#/nix/store/}
		v=$(sed -n 's/^NarSize: //p' "$CACHES/cache1/${h:0:32}.narinfo")
		[ -n "$v" ] || return 1
		s=$((s + v))
	done
	echo "$s"
}
BUNDLE_NAR=$(cache_nar_size "$BUNDLE_ROOT" "$BUNDLE_LIB" "$BUNDLE_SHARE")
t_ok "plan reports the bytes that would move: the cache's NarSize of the 3 paths" \
	sh -c '[ "$1" -gt 30000000 ] && [ "$2" = "$1" ] && [ "$3" = "$1" ]' _ "$BUNDLE_NAR" \
	"$(jr "$T/p1" '.closure.bytes_missing')" "$(jr "$T/p1" '.closure.nar_size')"
t_ok "plan lists the copy and the new profile" \
	sh -c "jq -r '.steps[0].changes[]' '$T/p1/results.json' | grep -q '^copy 3 paths (.* MiB) from $URL/cache1\$' &&
		jq -r '.steps[0].changes[]' '$T/p1/results.json' | grep -qF 'profile $PROF: new, generation 1 ($BUNDLE_ROOT)'"
t_ok "plan changes nothing on the box" test "$before" = "$after"
t_ok "plan leaves the box's /nix empty" test "$(box_exec find /nix -mindepth 1 | wc -l)" = 0

# ---- the first run installs the bundle
run_a run r1 "$T/pg.yml"
t_ok "the first run succeeds" rc_is 0
t_ok "the step reports changed" test "$(jr "$T/r1" '.steps[0].status')" = changed
for p in "$BUNDLE_ROOT" "$BUNDLE_LIB" "$BUNDLE_SHARE"; do
	t_ok "the box's store has ${p#/nix/store/}" box_exec test -d "$p"
done
t_ok "the profile is generation 1" test "$(box_exec readlink "$PROF")" = .nix-profile-1-link
t_ok "the generation points at the bundle" \
	test "$(box_exec readlink "$PROF-1-link")" = "$BUNDLE_ROOT"
t_ok "the profile links belong to postgres" \
	test "$(box_exec stat -c %U "$PROF" "$PROF-1-link" | sort -u)" = postgres
t_ok "the bundle's postgres runs in the box from the profile" \
	sh -c "'$TESTBOX' exec '$TESTBOX_NAME' -- '$PROF/bin/postgres' --version | grep -q 'PostgreSQL) 15'"
t_ok "the postgres user runs it too" \
	sh -c "'$TESTBOX' exec '$TESTBOX_NAME' -- su -s /bin/sh postgres -c '$PROF/bin/postgres --version' | grep -q 'PostgreSQL) 15'"
t_ok "the profile is a GC root in the box" \
	sh -c "'$TESTBOX' exec '$TESTBOX_NAME' -- nix-store --gc --print-roots | grep -qF '$PROF-1-link'"
t_ok "the change lines name the copy and the generation" \
	sh -c "jq -r '.steps[0].changes[]' '$T/r1/results.json' | grep -q '^copy 3 paths' &&
		jq -r '.steps[0].changes[]' '$T/r1/results.json' | grep -qF 'profile $PROF: new, generation 1'"
t_ok "results.json has the closure root and system" \
	test "$(jr "$T/r1" '.closure.root + " " + .closure.system')" = "$BUNDLE_ROOT $SYS"
t_ok "results.json counts the closure's paths and the copied ones" \
	test "$(jr "$T/r1" '[.closure.path_count, .closure.paths_missing] | join(" ")')" = "3 3"
t_ok "results.json records the generations" \
	test "$(jr "$T/r1" '[.closure.generation_before, .closure.generation_after] | join(" ")')" = "-1 1"
t_ok "results.json names signer and cache of every path" \
	test "$(jr "$T/r1" '[.closure.paths[] | .signer + " " + .substituter] | unique | join(",")')" = "stagehand-test-1 $URL/cache1"
jr "$T/r1" '.closure.paths[] | .path + " " + .nar_hash' | sort >"$T/want-hashes"
box_exec sh -c "for p in $BUNDLE_ROOT $BUNDLE_LIB $BUNDLE_SHARE; do echo \"\$p \$(nix-store -q --hash \$p)\"; done" |
	sort >"$T/got-hashes"
t_ok "the box's NarHashes are the reported ones" cmp "$T/want-hashes" "$T/got-hashes"
t_ok "the box's NarSizes of the 3 paths add up to the bytes the run copied" \
	test "$(box_exec nix-store -q --size "$BUNDLE_ROOT" "$BUNDLE_LIB" "$BUNDLE_SHARE" |
		awk '{ s += $1; n++ } END { if (n == 3) print s }')" = "$(jr "$T/r1" '.closure.bytes_missing')"
t_ok "stagehand.env names the closure root" \
	grep -qx "STAGEHAND_CLOSURE_ROOT='$BUNDLE_ROOT'" "$T/r1/stagehand.env"

# ---- the second run: nothing to do
store_before=$(cd "$TESTBOX_UPPER" && find nix/store -maxdepth 1 | sort)
t_ok "the box's store holds the bundle before the second run" \
	grep -qxF "nix/store/${BUNDLE_ROOT#/nix/store/}" <<<"$store_before"
run_a run r2 "$T/pg.yml"
t_ok "the second run succeeds" rc_is 0
t_ok "the second run reports ok" test "$(jr "$T/r2" '.steps[0].status')" = ok
t_ok "the second run copies nothing" test "$(jr "$T/r2" '.closure.paths_missing')" = 0
t_ok "the second run makes no generation" test "$(gen_links)" = 1
t_ok "the store is unchanged" \
	test "$store_before" = "$(cd "$TESTBOX_UPPER" && find nix/store -maxdepth 1 | sort)"

# ---- an upgrade: one more path, one more generation
manifest "$T/pg2.yml" "$BUNDLE2_ROOT" "[$URL/cache1]" "[\"$KEY1_PUB\"]" "$PG_EXTRA"
run_a run r3 "$T/pg2.yml"
t_ok "the upgrade succeeds" rc_is 0
t_ok "the upgrade copies only the new root" test "$(jr "$T/r3" '.closure.paths_missing')" = 1
t_ok "and its bytes are that root's NarSize in the cache" \
	test "$(jr "$T/r3" '.closure.bytes_missing')" = "$(cache_nar_size "$BUNDLE2_ROOT")"
t_ok "the upgrade switches generation 1 -> 2" \
	sh -c "jq -r '.steps[0].changes[]' '$T/r3/results.json' | grep -qxF 'profile $PROF: generation 1 -> 2 ($BUNDLE2_ROOT)'"
t_ok "the profile points at the new bundle" \
	test "$(box_exec readlink -f "$PROF")" = "$BUNDLE2_ROOT"
t_ok "the previous generation is kept for rollback" \
	test "$(box_exec readlink "$PROF-1-link")" = "$BUNDLE_ROOT"
t_ok "results.json records generation 1 -> 2" \
	test "$(jr "$T/r3" '[.closure.generation_before, .closure.generation_after] | join(" ")')" = "1 2"
# Nix opens its database to answer --check-validity; SQLite creates and
# removes its WAL files, which moves the db directory's mtime: nothing else.
nodb() { grep -v '^\./nix/var/nix/db d '; }
before=$(box_snapshot | nodb)
run_a plan p2 "$T/pg.yml"
t_ok "plan back to the first bundle: nothing to copy, generation 2 -> 3" \
	sh -c "[ '$RC' = 0 ] && [ \"\$(jq -r .closure.paths_missing '$T/p2/results.json')\" = 0 ] &&
		jq -r '.steps[0].changes[]' '$T/p2/results.json' | grep -qxF 'profile $PROF: generation 2 -> 3 ($BUNDLE_ROOT)'"
t_ok "that plan changes nothing on the box (but the db dir's mtime)" \
	test "$before" = "$(box_snapshot | nodb)"

# ---- two caches, two keys: the split closure needs both
manifest "$T/split.yml" "$SPLIT_ROOT" "[$URL/cache1, $URL/cache2]" \
	"[\"$KEY1_PUB\", \"$KEY2_PUB\"]" "      profile: /srv/t720/split-profile"
run_a run r4 "$T/split.yml"
t_ok "a closure from two caches with two keys installs" rc_is 0
t_ok "both signers and both caches are reported" \
	test "$(jr "$T/r4" '[.closure.paths[] | .signer + "@" + .substituter] | unique | join(",")')" = \
	"stagehand-test-1@$URL/cache1,stagehand-test-2@$URL/cache2"
t_ok "the split root is in the profile" \
	test "$(box_exec readlink -f /srv/t720/split-profile)" = "$SPLIT_ROOT"

# ---- a profile that is a link to a per-user profile
box_exec sh -c 'mkdir -p /srv/t720/home && ln -s /nix/var/nix/profiles/per-user/postgres/profile /srv/t720/home/.nix-profile'
manifest "$T/peruser.yml" "$SMALL_ROOT" "[$URL/cache1]" "[\"$KEY1_PUB\"]" \
	"      profile: /srv/t720/home/.nix-profile
      user: postgres"
run_a run r5 "$T/peruser.yml"
t_ok "installing through ~/.nix-profile -> per-user profile succeeds" rc_is 0
t_ok "the per-user profile got the generation" \
	test "$(box_exec readlink /nix/var/nix/profiles/per-user/postgres/profile)" = profile-1-link
t_ok "the home .nix-profile still links to it and resolves to the root" \
	test "$(box_exec readlink -f /srv/t720/home/.nix-profile)" = "$SMALL_ROOT"
t_ok "the per-user profile dir and links belong to postgres" \
	test "$(box_exec stat -c %U /nix/var/nix/profiles/per-user/postgres \
		/nix/var/nix/profiles/per-user/postgres/profile \
		/nix/var/nix/profiles/per-user/postgres/profile-1-link | sort -u)" = postgres
run_a run r6 "$T/peruser.yml"
t_ok "and a second run is ok" test "$RC $(jr "$T/r6" '.steps[0].status')" = "0 ok"

# ---- no profile: a GC root keeps the closure
manifest "$T/noprof.yml" "$SMALL_ROOT" "[$URL/cache1]" "[\"$KEY1_PUB\"]" ""
run_a run r7 "$T/noprof.yml"
t_ok "without a profile the root gets a GC root link" \
	test "$(box_exec readlink "/nix/var/nix/gcroots/stagehand/${SMALL_ROOT#/nix/store/}")" = "$SMALL_ROOT"
run_a run r8 "$T/noprof.yml"
t_ok "and a second run is ok" test "$RC $(jr "$T/r8" '.steps[0].status')" = "0 ok"

# ---- refusals on the pristine box B: nothing may reach its /nix
b0=$(snap "$B_UPPER")
# refused WANT-EXIT DESC MANIFEST [GREP]: run, then the box is untouched
refused() {
	local want=$1 desc=$2 m=$3 grep=${4:-}
	run_b run rb "$m"
	t_ok "$desc: exit $want" rc_is "$want"
	[ -z "$grep" ] || t_ok "$desc: the error names $grep" err_has "$grep"
	t_ok "$desc: the box's /nix stays empty" nix_empty
	t_ok "$desc: nothing changed in the box" test "$b0" = "$(snap "$B_UPPER")"
}
SMALL_YML() { # FILE URL [EXTRA]
	manifest "$1" "$SMALL_ROOT" "[$2]" "[\"$KEY1_PUB\"]" "${3:-}"
}
while read -r c want _; do
	SMALL_YML "$T/t-$c.yml" "$B_URL/tamper/$c"
	refused "$want" "tampered cache '$c'" "$T/t-$c.yml" "$VICTIM"
done <"$WWW/tamper/cases.txt"

SMALL_YML "$T/hang.yml" "http://$B_GW:$HPORT/hang/cache1" \
	"      cache_timeout: 2
      cache_retries: 0"
refused 69 "a cache that never answers" "$T/hang.yml" "http://$B_GW:$HPORT/hang/cache1"

manifest "$T/onekey.yml" "$SPLIT_ROOT" "[$B_URL/cache1, $B_URL/cache2]" \
	"[\"$KEY1_PUB\"]" ""
refused 77 "paths signed only by a key that is not trusted" "$T/onekey.yml" stagehand-test-2
manifest "$T/onecache.yml" "$SPLIT_ROOT" "[$B_URL/cache1]" \
	"[\"$KEY1_PUB\", \"$KEY2_PUB\"]" ""
refused 1 "a dependency that no cache has" "$T/onecache.yml" "$B_URL/cache1"

manifest "$T/nosys.yml" "{ $OTHER: $BUNDLE_ROOT }" "[$B_URL/cache1]" "[\"$KEY1_PUB\"]" ""
refused 1 "a path map without the target's system" "$T/nosys.yml" "'$SYS'"

SMALL_YML "$T/margin.yml" "$B_URL/cache1" "      free_space_margin: 1000T"
refused 1 "a free-space margin larger than the disk" "$T/margin.yml" "not enough free space"

# A small tmpfs as the box's /nix: the bundle does not fit.
b_exec mount -t tmpfs -o size=1m tmpfs /nix
manifest "$T/tiny.yml" "$BUNDLE_ROOT" "[$B_URL/cache1]" "[\"$KEY1_PUB\"]" ""
run_b run rb "$T/tiny.yml"
t_ok "a 1 MiB /nix: the bundle is refused" rc_is 1
t_ok "the error names what is free and what is needed" \
	sh -c "cat '$T/out' '$T/err' | grep -q 'not enough free space.*available under /nix.*needed'"
t_ok "nothing was copied into the small /nix" nix_empty
b_exec umount /nix

# nix missing on the target: hide nix-store and nix-env in box B.
b_exec mount --bind /dev/null /usr/bin/nix-store
b_exec mount --bind /dev/null /usr/bin/nix-env
SMALL_YML "$T/nonix.yml" "$B_URL/cache1"
run_b run rb "$T/nonix.yml"
t_ok "no nix on the target: the step fails" rc_is 1
t_ok "the error says nix is not installed" err_has "nix is not installed on the target"
t_ok "and how to install it" err_has "install it on the image before this step (Debian: apt-get install nix-bin)"
b_exec umount /usr/bin/nix-env
b_exec umount /usr/bin/nix-store
t_ok "box B's /nix is still empty after all refusals" nix_empty

# A cache that answers 500 to the first request for every file: the
# controller retries and verifies, Nix in the box retries too.
SMALL_YML "$T/flaky.yml" "http://$B_GW:$HPORT/fail500-1/cache1" \
	"      cache_retries: 2"
run_b run rf "$T/flaky.yml"
t_ok "a cache that fails once per file and recovers: the step succeeds" rc_is 0
t_ok "the closure is in box B's store" b_exec test -e "$SMALL_ROOT"

# ---- offline validation: bad manifests never reach a target
bad() { # DESC YAML-BODY-LINES
	cat >"$T/bad.yml" <<EOF
stagehand: 1
stage: closure
steps:
  - name: bad
    closure:
$2
EOF
	sh_run check "$T/bad.yml"
	t_ok "$1 is an invalid manifest" rc_is 65
}
bad "a closure without trusted_keys" "      path: $SMALL_ROOT
      substituters: [$URL/cache1]"
bad "a malformed trusted key" "      path: $SMALL_ROOT
      substituters: [$URL/cache1]
      trusted_keys: [\"stagehand-test-1:not-base64\"]"
bad "a path that is not a store path" "      path: /usr/bin
      substituters: [$URL/cache1]
      trusted_keys: [\"$KEY1_PUB\"]"
bad "a substituter that is not a URL" "      path: $SMALL_ROOT
      substituters: [\"cache one\"]
      trusted_keys: [\"$KEY1_PUB\"]"
bad "an unknown field" "      path: $SMALL_ROOT
      substituters: [$URL/cache1]
      trusted_keys: [\"$KEY1_PUB\"]
      colour: blue"

t_done
