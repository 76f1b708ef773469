#!/usr/bin/env bash
# The closure step in push mode against the real test box: the signed test
# caches are served on the controller's loopback, which the box cannot
# reach (pull mode fails there: exit 69 naming the cache), and push
# installs the PostgreSQL 15 bundle (zstd NARs) from the controller over
# the run's SSH session: the paths are
# valid in the box's store (nix-store --verify-path, --verify
# --check-contents, -qR give the closure), canonical (read-only, mtime 1),
# in the profile, and postgres runs; a second run moves nothing. A NAR
# changed by one byte (same size) and a truncated NAR (the small closure,
# xz) stop with exit 77 naming the path and the hashes, and leave nothing
# in the box's store: no path of that closure, no temporary directory.
# SIGKILL of stagehand while a push holds restored paths leaves nothing in
# the store, a NAR that stalls fails as an unreachable cache (69); SIGKILL
# while the box registers the renamed paths leaves no unregistered path;
# an unregistered leftover (a box that died there) is replaced and the
# re-run completes. A validly signed NAR holding an entry name with '/' is
# refused by the box's nix-store before anything is visible, and so is
# a NAR that ends early inside forged stream records. A mode other than
# pull or push is an invalid manifest.
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/push-lib.sh
. "$TOP/tests/push-lib.sh"
t_plan 47

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

box_up "$(box_name cp)" || { t_not "the test box comes up"; t_done; exit 1; }

push_corpus || { t_done; exit 1; }
push_serve || { t_done; exit 1; }
store_list() { box_exec sh -c 'ls -a /nix/store 2>/dev/null | sort'; }

PG_EXTRA="      profile: $PROF
      user: postgres"
manifest "$T/pull.yml" "$BUNDLE_ROOT" "$URL/cache1" pull "$PG_EXTRA"
manifest "$T/push.yml" "$BUNDLE_ROOT" "$URL/cache1" push "$PG_EXTRA"

# ---- the air gap: pull cannot work
run pull "$T/pull.yml"
t_ok "pull mode fails as unreachable: the box cannot reach the cache (69)" \
	rc_is 69
t_ok "the error names the cache and the reason" \
	sh -c 'grep -F "cannot reach the cache: $1/cache1 (" "$2" | grep -q "Couldn.t connect"' \
	_ "$URL" "$T/out"
t_fail "and the bundle is not in the box" box_exec test -e "$BUNDLE_ROOT"

# ---- push installs it
run r1 "$T/push.yml"
t_ok "push mode installs the bundle" rc_is 0
t_ok "the step reports changed" test "$(jr "$T/r1" '.steps[0].status')" = changed
t_ok "3 paths were missing and copied" \
	test "$(jr "$T/r1" '.closure.paths_missing')" = 3
for p in "$BUNDLE_ROOT" "$BUNDLE_LIB" "$BUNDLE_SHARE"; do
	t_ok "nix-store --verify-path ${p#/nix/store/} passes in the box" \
		box_exec nix-store --verify-path "$p"
done
t_ok "nix-store --verify --check-contents passes in the box" \
	box_exec nix-store --verify --check-contents
t_ok "nix-store -qR gives the closure" test \
	"$(box_exec nix-store -qR "$BUNDLE_ROOT" | sort | tr '\n' ' ')" = \
	"$(printf '%s\n' "$BUNDLE_ROOT" "$BUNDLE_LIB" "$BUNDLE_SHARE" | sort | tr '\n' ' ')"
jr "$T/r1" '.closure.paths[] | .path + " " + .nar_hash' | sort >"$T/want-hashes"
box_exec sh -c "for p in $BUNDLE_ROOT $BUNDLE_LIB $BUNDLE_SHARE; do echo \"\$p \$(nix-store -q --hash \$p)\"; done" |
	sort >"$T/got-hashes"
t_ok "the box registered the signed NarHashes" cmp "$T/want-hashes" "$T/got-hashes"
t_ok "the references are registered" \
	sh -c "'$TESTBOX' exec '$TESTBOX_NAME' -- nix-store -q --references '$BUNDLE_ROOT' | grep -qxF '$BUNDLE_LIB'"
t_ok "the paths are canonical: nothing writable, mtime 1" \
	test -z "$(box_exec find "$BUNDLE_ROOT" "$BUNDLE_LIB" \( -perm -u+w -a ! -type l \) -o ! -newermt @0 -o -newermt @2)"
t_ok "the profile is generation 1 pointing at the bundle" \
	test "$(box_exec readlink "$PROF-1-link")" = "$BUNDLE_ROOT"
t_ok "the bundle's postgres runs in the box from the profile" \
	sh -c "'$TESTBOX' exec '$TESTBOX_NAME' -- '$PROF/bin/postgres' --version | grep -q 'PostgreSQL) 15'"
t_ok "no temporary directory is left in the store" no_tmp

run r2 "$T/push.yml"
t_ok "a second push run is ok and moves nothing" \
	test "$RC $(jr "$T/r2" '.steps[0].status') $(jr "$T/r2" '.closure.paths_missing')" = "0 ok 0"

# ---- tampered NARs stop before anything is visible
s0=$(store_list)
manifest "$T/flip.yml" "$SMALL_ROOT" "$URL/flip" push
run f1 "$T/flip.yml"
t_ok "a NAR changed by one byte: exit 77" rc_is 77
t_ok "the error names the path" err_has "$VICTIM"
t_ok "the error names the cache" err_has "$URL/flip"
t_ok "the error names the signed NarHash" err_has "$VHASH"
t_ok "the error names the NAR's real hash" err_has "the NAR hashes to sha256:"
t_ok "nothing of the small closure is in the box's store" test "$s0" = "$(store_list)"

manifest "$T/cut.yml" "$SMALL_ROOT" "$URL/cut" push
run c1 "$T/cut.yml"
t_ok "a truncated NAR: exit 77" rc_is 77
t_ok "the truncated NAR's error names the path and the cut" \
	sh -c 'grep -F -- "$1" "$2" | grep -qF "the xz stream is truncated"' _ "$VICTIM" "$T/out"
t_ok "and the box's store is unchanged, no temporary directory" \
	sh -c 'test "$1" = "$2"' _ "$s0" "$(store_list)"

# ---- SIGKILL in the middle: nothing partial is visible, a re-run completes
# The victim's narinfo (its URL is not signed) points its NAR at the faulty
# server's /hang/, so the push stops inside the closure with the paths
# before it restored in the box's temporary directory.
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
restored() { # the push is unpacking paths in its temp dir (a batch began)
	box_exec sh -c 'cat /nix/store/.stagehand-push.*/.batch 2>/dev/null' | grep -q .
}
for _ in $(seq 1 600); do
	restored && break
	kill -0 "$spid" 2>/dev/null || break
	sleep 0.1
done
t_ok "the push holds paths arriving in its temporary directory" restored
kill -9 "$spid" 2>/dev/null
wait "$spid" 2>/dev/null
for _ in $(seq 1 300); do
	no_tmp && break
	sleep 0.1
done
t_ok "after SIGKILL of stagehand the box's temporary directory goes" no_tmp
t_ok "and the box's store is as before the push" \
	sh -c 'test "$1" = "$2"' _ "$s0" "$(store_list)"
# The same cache, not killed: the stalled NAR fails after cache_timeout
# (5 s without a byte) as an unreachable cache, and leaves nothing.
run st "$T/slow.yml"
t_ok "a NAR that never comes: exit 69" rc_is 69
t_ok "the error names the NAR's URL and the path" \
	sh -c 'grep -F -- "$1" "$3" | grep -qF "$2"' _ "/hang/cache1/$VNAR" "$VICTIM" "$T/out"
t_ok "and the box's store is as before, no temporary directory" \
	sh -c 'test "$1" = "$2"' _ "$s0" "$(store_list)"
manifest "$T/small.yml" "$SMALL_ROOT" "$URL/cache1" push

# ---- SIGKILL between the renames and the registration: a nix-store in
# front of the box's (the box's /usr is its own overlay) holds
# --load-db until the file /tmp/t0725-go exists, which it never does here;
# the killed run's trap removes the renamed paths, which are not valid.
box_exec sh -c 'cat >/usr/local/bin/nix-store <<"W"
#!/bin/sh
if [ "$1" = --load-db ]; then
	: >/tmp/t0725-load-db
	while [ ! -e /tmp/t0725-go ]; do sleep 0.1; done
fi
exec /usr/bin/nix-store "$@"
W
chmod 755 /usr/local/bin/nix-store'
"$STAGEHAND" run "$T/small.yml" "${SSH_ARGS[@]}" >"$T/kill2.out" 2>&1 &
spid=$!
for _ in $(seq 1 600); do
	box_exec test -e /tmp/t0725-load-db && break
	kill -0 "$spid" 2>/dev/null || break
	sleep 0.1
done
t_ok "a push waits in --load-db with its paths renamed into place" \
	box_exec sh -c "test -e /tmp/t0725-load-db && test -e '$VICTIM' &&
		! nix-store --check-validity '$VICTIM' 2>/dev/null"
kill -9 "$spid" 2>/dev/null
wait "$spid" 2>/dev/null
for _ in $(seq 1 300); do
	no_tmp && ! box_exec test -e "$VICTIM" && break
	sleep 0.1
done
t_ok "after SIGKILL no renamed, unregistered path is left" \
	sh -c 'test "$1" = "$2"' _ "$s0" "$(store_list)"
box_exec rm -f /usr/local/bin/nix-store /tmp/t0725-load-db
# A target that died there could not run the trap: the path stays,
# invalid (here: junk at the victim's name). The next push replaces it.
# Nor could it remove its temporary directory: the next push does.
box_exec sh -c "mkdir '$VICTIM' && echo junk >'$VICTIM/junk' &&
	mkdir -p /nix/store/.stagehand-push.dead02/p/1 && chmod -R a-w /nix/store/.stagehand-push.dead02"
t_fail "a dead push's temporary directory is planted" no_tmp
run k2 "$T/small.yml"
t_ok "the re-run completes" rc_is 0
t_ok "and removed the temporary directory the dead push left" no_tmp
t_ok "and the small closure is valid in the box" \
	box_exec nix-store --verify-path "$SMALL_ROOT" "$VICTIM"
contents_ok() {
	box_exec nix-store --verify --check-contents &&
		! box_exec test -e "$VICTIM/junk"
}
t_ok "the unregistered leftover was replaced: --check-contents passes" \
	contents_ok

# ---- a validly signed NAR with an entry name holding '/': the box's
# nix-store --restore refuses it, and nothing becomes visible
evil_cache
manifest "$T/evil.yml" "$EVP" "$URL/evil" push
e0=$(store_list)
run ev "$T/evil.yml"
t_ok "a signed NAR with an entry name 'a/b' fails" \
	sh -c 'test "$1" != 0 && test "$1" != 77' _ "$RC"
t_ok "the error names the path and the invalid name" \
	sh -c 'grep -qF -- "$1" "$2" && grep -qF "invalid file name" "$2"' _ "$EVP" "$T/out"
t_ok "and the box's store is unchanged, no temporary directory" \
	sh -c 'test "$1" = "$2"' _ "$e0" "$(store_list)"

# ---- a NAR that ends before its record does, the rest of the record
# full of forged records ("V ok", "E 0") at every 4 KiB: the target must
# read the whole record (a restore that stops early does not leave the
# NAR's own bytes to be read as the controller's), so nothing becomes
# visible and the controller's NarHash check decides (77)
EA=$WWW/early
EAH=1123456789abcdfghijklmnpqrsvwxy0
EAP=/nix/store/$EAH-early
mkdir -p "$EA/nar"
python3 - "$T/honest.nar" "$EA/nar/early.nar" <<'PY'
import struct, sys
def s(b):
    b = b.encode() if isinstance(b, str) else b
    return struct.pack("<Q", len(b)) + b + b"\0" * (-len(b) % 8)
def nar(content):
    return b"".join(s(x) for x in ["nix-archive-1", "(", "type", "regular",
                                   "contents", content, ")"])
honest = nar(b"\0" * (3 << 19))
early = bytearray(nar(b"x"))
start = len(early)
early += b"#" * (len(honest) - len(early))
forged = b"V ok\nE 0\n"
for off in range(4096, len(early) - len(forged), 4096):
    if off >= start:
        early[off:off + len(forged)] = forged
open(sys.argv[1], "wb").write(honest)
open(sys.argv[2], "wb").write(early)
PY
signed_nar early "$EAP" early.nar "$T/honest.nar"
manifest "$T/early.yml" "$EAP" "$URL/early" push
e0=$(store_list)
run ea "$T/early.yml"
t_ok "a NAR that ends early inside forged records: exit 77 (NarHash)" rc_is 77
t_ok "and the box's store is unchanged, no temporary directory" \
	sh -c 'test "$1" = "$2"' _ "$e0" "$(store_list)"

# ---- offline validation
manifest "$T/bad.yml" "$SMALL_ROOT" "$URL/cache1" copy
sh_run check "$T/bad.yml"
t_ok "mode: copy is an invalid manifest" rc_is 65
t_ok "the error says what mode takes" err_has "mode: expected pull or push, not 'copy'"

t_done
