#!/usr/bin/env bash
# bench/closure.sh: the closure work side by side with plain Nix, on the
# synthetic 1,000-path closure (tests/nixcache/make-caches.sh's BIG_ROOT)
# served by nginx (keep-alive) from a local signed binary cache.
#
#   bench/closure.sh        (or `make bench`; run as root: the test box needs it)
#
# Work measured:
#   "resolve"  walk and verify the whole closure from the HTTP cache on the
#              controller:
#                stagehand  `stagehand closure BIG_ROOT --from URL
#                           --trusted-key K --json` (every narinfo fetched
#                           and its signature checked)
#                nix        `nix path-info -r --store URL BIG_ROOT` with a
#                           fresh XDG_CACHE_HOME each run (Nix caches
#                           narinfos on disk) and a private NIX_CONF_DIR
#   "copy"     put the closure into an empty store: a fresh test box per run
#              (its /nix starts empty), the cache on the box's gateway:
#                stagehand  `stagehand run` of one `closure` step (connect,
#                           resolve + verify on the controller, query the
#                           box, nix-store --realise in the box, attest, GC
#                           root); wall clock of the whole command
#                nix        `nix copy --from URL BIG_ROOT` run in the box,
#                           timed inside the box (no transport cost at all:
#                           the floor for stagehand's copy), and the same
#                           over OpenSSH as the box user with sudo, timed on
#                           the controller (what a Packer shell provisioner
#                           running nix copy costs)
#                push       the same step with `mode: push` (the
#                           controller fetches, checks and sends the
#                           NARs), wall clock and peak RSS
#                           (/usr/bin/time %M) of the whole command
#   "large"    the same copy for a closure of about 300 MB of xz NARs (6
#              paths of one 50 MB random file each and a root;
#              bench/large.nix, built once by Nix in the bench's own store
#              and cache, $BENCH_NIXCACHE/bench-large, signed with key 1;
#              building it takes some minutes the first time):
#                stagehand  the closure step with `mode: push`, wall
#                           clock and peak RSS
#                nix        `nix copy --from URL LARGE_ROOT` in the box
# Every run is checked: resolution must list 1,000 paths; after a copy the
# box's store must hold them (nix-store --check-validity). It prints the
# median seconds of each, the ratio (nix / stagehand for resolve, stagehand
# / nix for copy) and the targets (resolve >= 3x faster than nix path-info
# -r; the closure step within 1.2x plain nix copy; push at most 0.8x nix
# copy on 1,000 paths and 1.0x on the large closure, peak RSS under 64
# MiB) as information: no timing decides the exit status. Exit 0 when the
# bench ran; 1 when a tool failed to do the work or the setup failed; 2 on
# usage.
#
# Until `stagehand closure` exists (exit 2 "not implemented"), "resolve"
# falls back to `stagehand plan` of the closure step against a box that
# already has the closure (resolve + one query round trip + the SSH
# connection), and says so.
#
# Environment:
#   STAGEHAND=PATH         binary to measure (default ./stagehand, built with
#                          `make` if missing)
#   BENCH_RUNS=N           runs per measurement (default 5 resolve, 3 copy
#                          and large)
#   BENCH_NIXCACHE=DIR     where make-caches.sh keeps the caches
#                          (default /tmp/stagehand-nixcache, shared with
#                          the tests)
#   BENCH_KEEP=1           keep the temp dir (manifests, reports, logs)
set -euo pipefail
export LC_ALL=C.UTF-8 NO_COLOR=1

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$TOP"
STAGEHAND=${STAGEHAND:-$TOP/stagehand}
case $STAGEHAND in /*) ;; *) STAGEHAND=$TOP/$STAGEHAND ;; esac
STAGEHAND_NIXCACHE=${BENCH_NIXCACHE:-${STAGEHAND_NIXCACHE:-/tmp/stagehand-nixcache}}
# shellcheck source=tests/box.sh
. "$TOP/tests/box.sh"
CACHES=$BOX_CACHES
RESOLVE_RUNS=${BENCH_RUNS:-5}
COPY_RUNS=${BENCH_RUNS:-3}

say() { echo "bench: $*" >&2; }
die() {
	echo "bench: $*" >&2
	exit 1
}
[[ $RESOLVE_RUNS =~ ^[1-9][0-9]{0,3}$ ]] || {
	echo "bench: BENCH_RUNS must be a positive integer" >&2
	exit 2
}
(($# == 0)) || {
	sed -n 's/^#   bench/bench/p' "$0" >&2
	exit 2
}
((EUID == 0)) || die "run as root (the test box and the caches need it)"
for c in nix nix-store nginx jq; do
	command -v "$c" >/dev/null || die "missing $c (make deps)"
done
if [[ ! -x $STAGEHAND ]]; then
	say "building stagehand"
	make -C "$TOP" stagehand >&2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stagehand-bench-closure.XXXXXX")
cleanup() {
	box_teardown
	if [[ ${BENCH_KEEP:-} == 1 ]]; then say "kept $TMP"; else rm -rf "$TMP"; fi
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "building or reusing the caches in $CACHES"
caches_make "$TMP/paths.env" ||
	die "make-caches.sh failed"
# shellcheck disable=SC1091
. "$TMP/paths.env"
mkdir -p "$TMP/nixconf"
printf 'build-users-group =\nsandbox = false\nsubstituters =\nexperimental-features = nix-command\n' \
	>"$TMP/nixconf/nix.conf"

median() { # numbers...: the median (lower middle for an even count)
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
elapsed() { # START: seconds since START ($EPOCHREALTIME)
	awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

BOXN=0
fresh_box() { # sets BOX, the TESTBOX_* and SSH_ARGS of a new, empty box
	BOXN=$((BOXN + 1))
	BOX=bc$$
	BOX=${BOX:0:9}$BOXN
	box_up "$BOX" || die "test box $BOX did not come up"
}
# serve_on ADDR: nginx serving cache1 on ADDR (its own web root and port,
# so it can be stopped alone); sets SDIR and URL (the cache's URL).
SERVEN=0
serve_on() {
	SERVEN=$((SERVEN + 1))
	SDIR=$TMP/www$SERVEN
	caches_serve "$SDIR" "$1" || die "nginx did not start on $1"
	URL=$CACHE_URL/cache1
}
# manifest URL [MODE [ROOT [FILE]]]: the closure step installing ROOT
# (default BIG_ROOT) from URL in mode MODE (default pull) into FILE
# (default $TMP/big.yml)
manifest() {
	cat >"${4:-$TMP/big.yml}" <<EOF
stagehand: 1
stage: bench-closure
steps:
  - name: the closure
    closure:
      path: ${3:-$BIG_ROOT}
      substituters: [$1]
      trusted_keys: ["$KEY1_PUB"]
      mode: ${2:-pull}
EOF
}
# timed_run REPORT MANIFEST: stagehand run into the box, wall clock into
# T_RUN and its peak RSS (MiB, /usr/bin/time) into T_RSS
timed_run() {
	local t
	t=$EPOCHREALTIME
	/usr/bin/time -f %M -o "$TMP/rss" "$STAGEHAND" run "$2" "${TGT[@]}" \
		--report "$1" -q || return 1
	T_RUN=$(elapsed "$t")
	T_RSS=$(awk '{ printf "%.1f", $1 / 1024 }' "$TMP/rss")
}
box_gone() {
	caches_stop "$SDIR" || true
	box_down "$BOX" || true
}
box_has_closure() { # [ROOT N]: the box's store holds all of ROOT's closure
	local n r=${1:-$BIG_ROOT} want=${2:-1000}
	n=$(box_exec sh -c \
		"nix-store -qR '$r' | xargs nix-store --check-validity && nix-store -qR '$r' | wc -l") || return 1
	[[ $n == "$want" ]] || { say "box $BOX holds $n paths of the closure"; return 1; }
}

# The large closure: bench/large.nix, built once by Nix in the bench's own
# chroot store and copied (xz) into the bench's own cache, signed with
# the test caches' key 1; kept in $LARGE while paths.env is newer than
# large.nix. Sets LARGE_ROOT.
LARGE=$CACHES/bench-large
large_make() {
	if [[ -f $LARGE/paths.env && $LARGE/paths.env -nt $TOP/bench/large.nix ]]; then
		. "$LARGE/paths.env"
		# make-caches.sh made new keys since: sign again (seconds, not
		# the minutes of a rebuild)
		[[ $CACHES/keys/key1.pub -nt $LARGE/paths.env ]] || return 0
		sed -i '/^Sig:/d' "$LARGE"/cache/*.narinfo &&
			NIX_CONF_DIR=$LARGE/nix.conf XDG_CACHE_HOME=$LARGE/xdg \
				nix --extra-experimental-features nix-command store sign \
				--store "file://$LARGE/cache" --key-file "$KEY1_SEC" -r \
				"$LARGE_ROOT" 2>>"$LARGE/build.log" &&
			touch "$LARGE/paths.env"
		return
	fi
	rm -rf "$LARGE"
	mkdir -p "$LARGE/nix.conf" "$LARGE/xdg"
	cat >"$LARGE/nix.conf/nix.conf" <<EOF
build-users-group =
sandbox = true
sandbox-paths = /bin=/usr/bin /usr /lib=/usr/lib /lib64=/usr/lib64
substituters =
experimental-features = nix-command
EOF
	local r
	r=$(NIX_CONF_DIR=$LARGE/nix.conf XDG_CACHE_HOME=$LARGE/xdg \
		nix-build --store "$LARGE/store" --no-out-link "$TOP/bench/large.nix" \
		--argstr seed "$EPOCHREALTIME" 2>>"$LARGE/build.log") || return 1
	NIX_CONF_DIR=$LARGE/nix.conf XDG_CACHE_HOME=$LARGE/xdg \
		nix copy --store "$LARGE/store" \
		--to "file://$LARGE/cache?secret-key=$KEY1_SEC&compression=xz&parallel-compression=true" \
		"$r" 2>>"$LARGE/build.log" || return 1
	echo "LARGE_ROOT=$r" >"$LARGE/paths.env"
	LARGE_ROOT=$r
}
# serve_large ADDR: nginx serving the large cache; sets SDIR and URL.
serve_large() {
	local port
	SERVEN=$((SERVEN + 1))
	SDIR=$TMP/www$SERVEN
	mkdir -p "$SDIR"
	ln -sfn "$LARGE/cache" "$SDIR/large"
	_box_webroots="$_box_webroots $SDIR"
	port=$("$BOX_NIXCACHE/serve" port) &&
		"$BOX_NIXCACHE/serve" start "$SDIR" "$1" "$port" >/dev/null ||
		die "nginx did not start on $1"
	URL=http://$1:$port/large
}

# ------------------------------------------------------------ resolve

serve_on 127.0.0.1
LURL=$URL

resolve_mode=closure
"$STAGEHAND" closure "$BIG_ROOT" --from "$LURL" --trusted-key "$KEY1_PUB" \
	--json >"$TMP/closure.json" 2>"$TMP/closure.err" || resolve_mode=plan
if [[ $resolve_mode == closure ]]; then
	n=$(jq '.paths | length' "$TMP/closure.json" 2>/dev/null || echo 0)
	[[ $n == 1000 ]] || die "stagehand closure listed $n paths, not 1000"
else
	say "stagehand closure is not usable yet ($(head -c 200 "$TMP/closure.err")): timing 'stagehand plan' of a closure step instead"
fi

if [[ $resolve_mode == plan ]]; then
	fresh_box
	serve_on "$TESTBOX_GATEWAY"
	manifest "$URL"
	TGT=("${SSH_ARGS[@]}")
	"$STAGEHAND" run "$TMP/big.yml" "${TGT[@]}" --report "$TMP/r-prep" -q ||
		die "could not install the closure for the plan fallback"
fi

resolve_stagehand() {
	if [[ $resolve_mode == closure ]]; then
		"$STAGEHAND" closure "$BIG_ROOT" --from "$LURL" --trusted-key "$KEY1_PUB" \
			--json >"$TMP/closure.json" || return 1
		[[ $(jq '.paths | length' "$TMP/closure.json") == 1000 ]]
	else
		"$STAGEHAND" plan "$TMP/big.yml" "${TGT[@]}" --report "$TMP/r-plan" -q || return 1
		[[ $(jq '.closure.path_count' "$TMP/r-plan/results.json") == 1000 ]]
	fi
}
resolve_nix() {
	local x
	x=$(mktemp -d "$TMP/xdg.XXXXXX")
	NIX_CONF_DIR=$TMP/nixconf XDG_CACHE_HOME=$x \
		nix path-info -r --store "$LURL" "$BIG_ROOT" >"$TMP/path-info.out" || return 1
	rm -rf "$x"
	[[ $(wc -l <"$TMP/path-info.out") == 1000 ]]
}

S_RES=() N_RES=()
say "resolve: $RESOLVE_RUNS runs each"
for ((i = 0; i < RESOLVE_RUNS; i++)); do
	t=$EPOCHREALTIME
	resolve_stagehand || die "stagehand resolution failed"
	S_RES+=("$(elapsed "$t")")
	t=$EPOCHREALTIME
	resolve_nix || die "nix path-info -r failed"
	N_RES+=("$(elapsed "$t")")
done
[[ $resolve_mode == closure ]] || box_gone
caches_stop "$TMP/www1" || true

# --------------------------------------------------------------- copy

S_COPY=() N_COPY=() N_SSH=() P_COPY=() P_RSS=()
nix_copy_cmd() { # URL: the plain nix copy, as a shell command line
	echo "nix --extra-experimental-features nix-command copy --from '$1' \
		--option trusted-public-keys '$KEY1_PUB' '$BIG_ROOT' >/dev/null 2>&1"
}
say "copy: $COPY_RUNS runs each, a fresh box per run"
for ((i = 0; i < COPY_RUNS; i++)); do
	fresh_box
	serve_on "$TESTBOX_GATEWAY"
	manifest "$URL"
	TGT=("${SSH_ARGS[@]}")
	t=$EPOCHREALTIME
	"$STAGEHAND" run "$TMP/big.yml" "${TGT[@]}" --report "$TMP/r-copy-$i" -q ||
		die "the closure step failed (report: $TMP/r-copy-$i)"
	S_COPY+=("$(elapsed "$t")")
	box_has_closure || die "the closure step left an incomplete store"
	box_gone

	fresh_box
	serve_on "$TESTBOX_GATEWAY"
	manifest "$URL" push
	TGT=("${SSH_ARGS[@]}")
	timed_run "$TMP/r-push-$i" "$TMP/big.yml" ||
		die "the closure step in push mode failed (report: $TMP/r-push-$i)"
	P_COPY+=("$T_RUN")
	P_RSS+=("$T_RSS")
	box_has_closure || die "the push left an incomplete store"
	box_gone

	fresh_box
	serve_on "$TESTBOX_GATEWAY"
	s=$(box_exec sh -c "a=\$(date +%s.%N) &&
		$(nix_copy_cmd "$URL") && b=\$(date +%s.%N) && echo \"\$a \$b\"") ||
		die "nix copy failed"
	N_COPY+=("$(awk -v a="${s% *}" -v b="${s#* }" 'BEGIN { printf "%.3f", b - a }')")
	box_has_closure || die "nix copy left an incomplete store"
	box_gone

	fresh_box
	serve_on "$TESTBOX_GATEWAY"
	t=$EPOCHREALTIME
	ssh -F /dev/null -i "$TESTBOX_KEY" -o BatchMode=yes -o StrictHostKeyChecking=yes \
		-o UserKnownHostsFile="$TESTBOX_KNOWN_HOSTS" -p "$TESTBOX_PORT" \
		"$TESTBOX_USER@$TESTBOX_HOST" "sudo -n sh -c \"$(nix_copy_cmd "$URL")\"" ||
		die "nix copy over ssh failed"
	N_SSH+=("$(elapsed "$t")")
	box_has_closure || die "nix copy over ssh left an incomplete store"
	box_gone
done

# -------------------------------------------------- the large closure

say "large closure: building or reusing it in $LARGE"
large_make || die "building the large closure failed (see $LARGE/build.log)"
L_SIZE=$(awk '/^FileSize:/ { s += $2 } END { printf "%.0f", s / 1048576 }' "$LARGE"/cache/*.narinfo)
L_PUSH=() L_RSS=() L_NIX=()
say "large closure (${L_SIZE} MiB xz): $COPY_RUNS runs each, a fresh box per run"
for ((i = 0; i < COPY_RUNS; i++)); do
	fresh_box
	serve_large "$TESTBOX_GATEWAY"
	manifest "$URL" push "$LARGE_ROOT" "$TMP/large.yml"
	TGT=("${SSH_ARGS[@]}")
	timed_run "$TMP/r-large-$i" "$TMP/large.yml" ||
		die "the large push failed (report: $TMP/r-large-$i)"
	L_PUSH+=("$T_RUN")
	L_RSS+=("$T_RSS")
	box_has_closure "$LARGE_ROOT" 7 || die "the large push left an incomplete store"
	box_gone

	fresh_box
	serve_large "$TESTBOX_GATEWAY"
	s=$(box_exec sh -c "a=\$(date +%s.%N) &&
		nix --extra-experimental-features nix-command copy --from '$URL' \
		--option trusted-public-keys '$KEY1_PUB' '$LARGE_ROOT' >/dev/null 2>&1 &&
		b=\$(date +%s.%N) && echo \"\$a \$b\"") || die "nix copy of the large closure failed"
	L_NIX+=("$(awk -v a="${s% *}" -v b="${s#* }" 'BEGIN { printf "%.3f", b - a }')")
	box_has_closure "$LARGE_ROOT" 7 || die "nix copy left an incomplete store"
	box_gone
done

# -------------------------------------------------------------- report

sr=$(median "${S_RES[@]}") nr=$(median "${N_RES[@]}")
sc=$(median "${S_COPY[@]}") nc=$(median "${N_COPY[@]}") ns=$(median "${N_SSH[@]}")
rr=$(ratio "$nr" "$sr") rc=$(ratio "$sc" "$nc") rs=$(ratio "$sc" "$ns")
pc=$(median "${P_COPY[@]}") lp=$(median "${L_PUSH[@]}") ln=$(median "${L_NIX[@]}")
rp=$(ratio "$pc" "$nc") rl=$(ratio "$lp" "$ln")
label=$([[ $resolve_mode == closure ]] && echo "stagehand closure" || echo "stagehand plan (fallback)")
printf '\nclosure bench: 1,000-path closure (%s), median seconds\n\n' "$BIG_ROOT"
printf '%-34s %9s   %s\n' "task / tool" seconds "runs"
printf '%-34s %9s   %s\n' "resolve: $label" "$sr" "${S_RES[*]}"
printf '%-34s %9s   %s\n' "resolve: nix path-info -r" "$nr" "${N_RES[*]}"
printf '%-34s %9s   %s\n' "copy: stagehand closure step" "$sc" "${S_COPY[*]}"
printf '%-34s %9s   %s\n' "copy: nix copy --from (in the box)" "$nc" "${N_COPY[*]}"
printf '%-34s %9s   %s\n' "copy: ssh + sudo nix copy --from" "$ns" "${N_SSH[*]}"
printf '%-34s %9s   %s\n' "copy: closure step, mode push" "$pc" "${P_COPY[*]}"
printf '\nlarge closure: %s (7 paths, %s MiB of xz NARs), median seconds\n\n' "$LARGE_ROOT" "$L_SIZE"
printf '%-34s %9s   %s\n' "copy: closure step, mode push" "$lp" "${L_PUSH[*]}"
printf '%-34s %9s   %s\n' "copy: nix copy --from (in the box)" "$ln" "${L_NIX[*]}"
printf '\nresolve: stagehand is %sx faster than nix path-info -r (target >= 3x)\n' "$rr"
printf 'copy: the closure step takes %sx plain nix copy in the box, %sx nix copy over ssh (target <= 1.2x)\n' "$rc" "$rs"
printf 'push, 1,000 paths: %sx plain nix copy in the box (target <= 0.8x); peak RSS %s MiB (runs: %s; target < 64)\n' \
	"$rp" "$(median "${P_RSS[@]}")" "${P_RSS[*]}"
printf 'push, large closure: %sx plain nix copy in the box (target <= 1.0x); peak RSS %s MiB (runs: %s; target < 64)\n' \
	"$rl" "$(median "${L_RSS[@]}")" "${L_RSS[*]}"
