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
# Every run is checked: resolution must list 1,000 paths; after a copy the
# box's store must hold them (nix-store --check-validity). It prints the
# median seconds of each, the ratio (nix / stagehand for resolve, stagehand
# / nix for copy) and the targets (resolve >= 3x faster than nix path-info
# -r; the closure step within 1.2x plain nix copy) as information: no timing
# decides the exit status. Exit 0 when the bench ran; 1 when a tool failed to
# do the work or the setup failed; 2 on usage.
#
# Until `stagehand closure` exists (exit 2 "not implemented"), "resolve"
# falls back to `stagehand plan` of the closure step against a box that
# already has the closure (resolve + one query round trip + the SSH
# connection), and says so.
#
# Environment:
#   STAGEHAND=PATH         binary to measure (default ./stagehand, built with
#                          `make` if missing)
#   BENCH_RUNS=N           runs per measurement (default 5 resolve, 3 copy)
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
# manifest URL: the closure step installing BIG_ROOT from URL
manifest() {
	cat >"$TMP/big.yml" <<EOF
stagehand: 1
stage: bench-closure
steps:
  - name: the 1,000-path closure
    closure:
      path: $BIG_ROOT
      substituters: [$1]
      trusted_keys: ["$KEY1_PUB"]
EOF
}
box_gone() {
	caches_stop "$SDIR" || true
	box_down "$BOX" || true
}
box_has_closure() { # the box's store holds all of BIG_ROOT's closure
	local n
	n=$(box_exec sh -c \
		"nix-store -qR '$BIG_ROOT' | xargs nix-store --check-validity && nix-store -qR '$BIG_ROOT' | wc -l") || return 1
	[[ $n == 1000 ]] || { say "box $BOX holds $n paths of the closure"; return 1; }
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

S_COPY=() N_COPY=() N_SSH=()
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

# -------------------------------------------------------------- report

sr=$(median "${S_RES[@]}") nr=$(median "${N_RES[@]}")
sc=$(median "${S_COPY[@]}") nc=$(median "${N_COPY[@]}") ns=$(median "${N_SSH[@]}")
rr=$(ratio "$nr" "$sr") rc=$(ratio "$sc" "$nc") rs=$(ratio "$sc" "$ns")
label=$([[ $resolve_mode == closure ]] && echo "stagehand closure" || echo "stagehand plan (fallback)")
printf '\nclosure bench: 1,000-path closure (%s), median seconds\n\n' "$BIG_ROOT"
printf '%-34s %9s   %s\n' "task / tool" seconds "runs"
printf '%-34s %9s   %s\n' "resolve: $label" "$sr" "${S_RES[*]}"
printf '%-34s %9s   %s\n' "resolve: nix path-info -r" "$nr" "${N_RES[*]}"
printf '%-34s %9s   %s\n' "copy: stagehand closure step" "$sc" "${S_COPY[*]}"
printf '%-34s %9s   %s\n' "copy: nix copy --from (in the box)" "$nc" "${N_COPY[*]}"
printf '%-34s %9s   %s\n' "copy: ssh + sudo nix copy --from" "$ns" "${N_SSH[*]}"
printf '\nresolve: stagehand is %sx faster than nix path-info -r (target >= 3x)\n' "$rr"
printf 'copy: the closure step takes %sx plain nix copy in the box, %sx nix copy over ssh (target <= 1.2x)\n' "$rc" "$rs"
