#!/usr/bin/env bash
# The closure step's progress line, against the real test box and the real
# signed caches of t0720: under a terminal (a pseudo-terminal from
# util-linux `script`) the copy of the 1,000-path closure redraws
# "copy [###   ] N/TOTAL paths, X/Y MiB" once per missing path as Nix
# starts it, from 0 up to the total, and the step's end line follows;
# without a terminal (plain redirects, and --json) no progress line reaches
# stdout, stderr, run.log or the NDJSON, and the copy still happens.
. "$(dirname "$0")/lib.sh"
t_plan 23

NIXCACHE=$TOP/tests/nixcache
CACHES=${STAGEHAND_NIXCACHE:-/tmp/stagehand-nixcache}

"$NIXCACHE/make-caches.sh" "$CACHES" >"$T/paths.env" 2>"$T/caches.err" || {
	cat "$T/caches.err" >&2
	t_not "the test caches are built"
	t_done
	exit 1
}
# shellcheck disable=SC1091
. "$T/paths.env"

box_up "$(box_name cp)" || { t_not "the test box comes up"; t_done; exit 1; }

# Our own web root (a symlink into the shared caches), so `serve stop`
# stops only this test's server.
WWW=$T/www
mkdir -p "$WWW"
ln -s "$CACHES/cache1" "$WWW/cache1"
_t730_cleanup() {
	"$NIXCACHE/serve" stop "$WWW" >/dev/null 2>&1 || true
	_t_cleanup
}
trap _t730_cleanup EXIT
PORT=$("$NIXCACHE/serve" port)
"$NIXCACHE/serve" start "$WWW" "$TESTBOX_GATEWAY" "$PORT" || {
	t_not "the cache is served"
	t_done
	exit 1
}
URL=http://$TESTBOX_GATEWAY:$PORT/cache1

manifest() { # FILE ROOT
	cat >"$1" <<EOF
stagehand: 1
stage: closure
steps:
  - name: a closure
    closure:
      path: $2
      substituters: [$URL]
      trusted_keys: ["$KEY1_PUB"]
EOF
}
# Lines that only a progress redraw prints.
no_progress() { # FILE...: each exists, and grep searched all, finding none
	local f rc=0
	for f; do [ -e "$f" ] || { echo "$f: missing"; return 1; }; done
	grep -aE 'copy \[|[0-9]+/[0-9]+ paths' "$@" || rc=$?
	[ "$rc" = 1 ]
}

# ---- under a terminal: the 1,000-path closure
manifest "$T/big.yml" "$BIG_ROOT"
cmd=$(printf '%q ' "$STAGEHAND" run "$T/big.yml" "${SSH_ARGS[@]}" --report "$T/r1")
RC=0
SHELL=/bin/bash script -qec "$cmd" /dev/null </dev/null >"$T/tty.out" 2>&1 || RC=$?
t_ok "the run under a terminal succeeds" test "$RC" = 0
N=$(jr "$T/r1" '.closure.paths_missing')
t_ok "the box lacked the whole closure: 1,000 paths, all now in its store" \
	sh -c '[ "$1" = 1000 ] && [ "$2" = 1000 ]' _ "$N" "$(box_exec sh -c 'ls /nix/store | wc -l')"
# Each redraw starts with "\r\033[K"; one per line from here on.
tr '\r' '\n' <"$T/tty.out" | sed 's/\x1b\[K//g' | grep -a '^ *copy \[' >"$T/prog" || true
t_ok "a progress line is drawn with paths and MiB" \
	grep -qE '^ +copy \[[# ]{24}\] [0-9]+/[0-9]+ paths, [0-9.]+/[0-9.]+ MiB$' "$T/prog"
t_ok "the count reaches the total" grep -q " $N/$N paths, " "$T/prog"
t_ok "every redraw counts one more path, from 0 to the total" \
	test "$(sed -E 's/.*\] ([0-9]+)\/.*/\1/' "$T/prog" | tr '\n' ' ')" = "$(seq -s ' ' 0 "$N") "
t_ok "the bar is full at the end" grep -q '\[########################\] '"$N/$N" "$T/prog"
# The NarSize of what was copied, as the box's Nix counts it.
bytes=$(box_exec sh -c "nix-store -q --requisites '$BIG_ROOT' | xargs nix-store -q --size" |
	awk '{ s += $1; n++ } END { if (n == 1000) print s }')
mib=$(awk -v b="$bytes" 'BEGIN { if (b > 0) printf "%.1f", b / 1048576 }')
t_ok "the report's bytes are the box's NarSize of the closure" \
	test "$(jr "$T/r1" '.closure.bytes_missing')" = "${bytes:-none}"
t_ok "the bytes reach the missing paths' NarSize" \
	grep -qF " $N/$N paths, ${mib:-none}/${mib:-none} MiB" "$T/prog"
t_ok "the step's end line follows the progress" \
	sh -c "tr '\r' '\n' <'$T/tty.out' | grep -a -A1 ' $N/$N paths' | grep -q 'changed .*a closure'"
t_ok "run.log has no progress line" no_progress "$T/r1/run.log"
t_ok "the closure is in the box" box_exec test -e "$BIG_ROOT"

# ---- plain redirects: a fresh closure, no terminal
manifest "$T/bundle.yml" "$BUNDLE_ROOT"
run r2 "$T/bundle.yml"
t_ok "the run without a terminal succeeds" rc_is 0
t_ok "it copied the bundle's paths" test "$(jr "$T/r2" '.closure.paths_missing')" = 3
t_ok "stdout has no progress line" no_progress "$T/out"
t_ok "stderr has no progress line" no_progress "$T/err"
t_ok "stdout has no carriage return" sh -c "! grep -q \$'\r' '$T/out'"
t_ok "run.log has no progress line" no_progress "$T/r2/run.log"

# ---- --json: NDJSON on stdout, human lines on stderr, neither a terminal
manifest "$T/small.yml" "$SMALL_ROOT"
run r3 "$T/small.yml" --json
t_ok "the --json run succeeds" rc_is 0
t_ok "it copied the small closure" test "$(jr "$T/r3" '.closure.paths_missing')" = 4
t_ok "every stdout line is JSON" jq -s -e 'length > 0' "$T/out"
t_ok "the NDJSON has no progress line" no_progress "$T/out"
t_ok "stderr has no progress line" no_progress "$T/err"
t_ok "run.log has no progress line" no_progress "$T/r3/run.log"

t_done
