#!/usr/bin/env bash
# tests/nixcache/make-caches.sh OUTDIR: builds the signed Nix binary caches
# the closure tests and benchmarks use, offline, with Debian's nix (2.8).
#
#   make-caches.sh OUTDIR     build (or reuse) the caches; prints OUTDIR/paths.env
#
# Output (all under OUTDIR):
#   cache1/            file:// binary cache: every closure below except the
#                      split closure's dependencies; signed by key 1 (the
#                      bundle's lib and share paths carry a key 2 Sig too)
#   cache2/            split closure's dependencies only, signed by key 2
#   keys/key{1,2}.{sec,pub}  the signing keys (names stagehand-test-1/-2)
#   paths.env          sourceable KEY=value lines:
#       SMALL_ROOT     4-path closure, references between all, self reference
#       BUNDLE_ROOT    PostgreSQL 15 bundle (3 paths: root with
#                      lib/postgresql/15/bin, bin -> it; lib; share);
#                      $BUNDLE_ROOT/bin/postgres runs on this machine
#       BUNDLE2_ROOT   a second bundle root sharing lib and share (upgrades)
#       BROKEN_ROOT    a bundle whose bin/postgres exits 1 (rollback tests)
#       BUNDLE13_ROOT  PostgreSQL 13 bundle from Debian 11's packages
#                      (tests/pg13/fetch.sh), the 15 bundle's layout, one
#                      path (major-upgrade tests)
#       BUNDLE_LIB, BUNDLE_SHARE  the bundle's dependency paths
#       BIG_ROOT       synthetic 1,000-path closure (tree of depth 3)
#       SPLIT_ROOT     root in cache1 (key 1), its 2 dependencies only in
#                      cache2 (key 2): needs both caches, in that order
#       KEY1_PUB, KEY2_PUB   "name:base64" public keys (trusted-public-keys)
#       KEY1_SEC, KEY2_SEC   secret key file paths
#       STORE          the private nix store root the paths were built in
#                      (a chroot store: nix --store "$STORE")
#   nix.conf/ xdg/ store/    the private Nix configuration, cache, store
#
# Reuse: when OUTDIR/paths.env exists and is newer than this script and
# caches.nix, and the host's PostgreSQL 15 files and the unpacked 13 ones
# are those it was built from, nothing is done (about 60 ms, most of it
# tests/pg13/fetch.sh finding its cache complete). Parallel callers with
# the same OUTDIR serialise on OUTDIR.lock. Needs root (the chroot store builds in
# Nix's sandbox). The bundle's NARs are zstd-compressed, the rest xz.
set -euo pipefail

[ $# = 1 ] || {
	echo "usage: $0 OUTDIR" >&2
	exit 2
}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)

exec 9>"$OUT.lock"
flock 9

# What the bundle copies from the host: when Debian's PostgreSQL files
# change (an update, pgTAP installed later), the caches are rebuilt. The
# same digest goes into the derivations (caches.nix), so the store paths
# change with it rather than reusing an old build.
inputs_id() {
	ls -l --time-style=+%s /usr/lib/postgresql/15/bin \
		/usr/lib/postgresql/15/lib /usr/share/postgresql/15/extension \
		2>/dev/null | sha256sum | cut -c1-32
}
# PostgreSQL 13 from Debian 11 (downloaded once, then cached by fetch.sh).
PG13_DIR=/var/cache/stagehand-pg13
"$HERE/../pg13/fetch.sh" "$PG13_DIR" >/dev/null || {
	echo "make-caches.sh: tests/pg13/fetch.sh failed" >&2
	exit 1
}
pg13_id() {
	ls -l --time-style=+%s "$PG13_DIR/root/usr/lib/postgresql/13/bin" \
		"$PG13_DIR/root/usr/lib/postgresql/13/lib" | sha256sum | cut -c1-32
}
INPUTS_ID=$(inputs_id)-$(pg13_id)
export INPUTS_ID
fresh() {
	[ -f "$OUT/paths.env" ] &&
		[ "$OUT/paths.env" -nt "$HERE/make-caches.sh" ] &&
		[ "$OUT/paths.env" -nt "$HERE/caches.nix" ] &&
		[ "$(cat "$OUT/inputs.id" 2>/dev/null)" = "$INPUTS_ID" ]
}
if fresh; then
	cat "$OUT/paths.env"
	exit 0
fi

rm -rf "$OUT/cache1" "$OUT/cache2" "$OUT/keys" "$OUT/paths.env" "$OUT/xdg"
mkdir -p "$OUT/nix.conf" "$OUT/keys" "$OUT/xdg"
# The chroot store forces Nix's sandbox; /bin/sh and the PostgreSQL files
# come from the host's /usr.
cat >"$OUT/nix.conf/nix.conf" <<'EOF'
build-users-group =
sandbox = true
sandbox-paths = /bin=/usr/bin /usr /lib=/usr/lib /lib64=/usr/lib64
substituters =
experimental-features = nix-command
EOF
export NIX_CONF_DIR=$OUT/nix.conf XDG_CACHE_HOME=$OUT/xdg
STORE=$OUT/store

for k in 1 2; do
	nix-store --generate-binary-cache-key "stagehand-test-$k" \
		"$OUT/keys/key$k.sec" "$OUT/keys/key$k.pub"
done

fail() {
	cat "$OUT/build.log" >&2
	return 1
}
drv() { # NAME: builds caches.nix's derivation NAME, prints its path
	nix-build --store "$STORE" --no-out-link "$HERE/caches.nix" -A "$1" \
		--argstr inputsId "$INPUTS_ID" --argstr pg13Root "$PG13_DIR/root" \
		2>>"$OUT/build.log" || fail
}
file() { # NAME: adds caches.nix's builtins.toFile NAME, prints its path
	nix eval --store "$STORE" --raw -f "$HERE/caches.nix" "$1" \
		2>>"$OUT/build.log" || fail
}
: >"$OUT/build.log"
SMALL_ROOT=$(drv small-root)
BUNDLE_ROOT=$(drv bundle)
BUNDLE2_ROOT=$(drv bundle2)
BROKEN_ROOT=$(drv bundle-broken)
BUNDLE13_ROOT=$(drv bundle13)
BUNDLE_LIB=$(drv pg-lib)
BUNDLE_SHARE=$(drv pg-share)
BIG_ROOT=$(file big-root)
SPLIT_ROOT=$(file split-root)
SPLIT_DEPS=("$(file split-mid)" "$(file split-dep)")

# Key 2 signs the bundle's lib and share in the store, so cache1's narinfos
# for them carry two Sig lines.
nix store sign --store "$STORE" --key-file "$OUT/keys/key2.sec" \
	"$BUNDLE_LIB" "$BUNDLE_SHARE" >>"$OUT/build.log" 2>&1 || fail

to() { # URL-PARAMS PATHS...: nix copy into a file:// cache
	local params=$1
	shift
	nix copy --store "$STORE" --to "file://$params" "$@" 2>>"$OUT/build.log"
}
K1=$OUT/keys/key1.sec
K2=$OUT/keys/key2.sec
to "$OUT/cache1?secret-key=$K1&compression=zstd" "$BUNDLE_ROOT" "$BUNDLE2_ROOT" \
	"$BROKEN_ROOT" "$BUNDLE13_ROOT"
to "$OUT/cache1?secret-key=$K1" "$SMALL_ROOT" "$BIG_ROOT" "$SPLIT_ROOT"
to "$OUT/cache2?secret-key=$K2" "${SPLIT_DEPS[@]}"
# The split dependencies live in cache2 only.
for p in "${SPLIT_DEPS[@]}"; do
	h=${p#/nix/store/}
	h=${h%%-*}
	nar=$(sed -n 's/^URL: //p' "$OUT/cache1/$h.narinfo")
	rm -f "$OUT/cache1/$h.narinfo" "$OUT/cache1/$nar"
done

{
	echo "SMALL_ROOT=$SMALL_ROOT"
	echo "BUNDLE_ROOT=$BUNDLE_ROOT"
	echo "BUNDLE2_ROOT=$BUNDLE2_ROOT"
	echo "BROKEN_ROOT=$BROKEN_ROOT"
	echo "BUNDLE13_ROOT=$BUNDLE13_ROOT"
	echo "BUNDLE_LIB=$BUNDLE_LIB"
	echo "BUNDLE_SHARE=$BUNDLE_SHARE"
	echo "BIG_ROOT=$BIG_ROOT"
	echo "SPLIT_ROOT=$SPLIT_ROOT"
	echo "KEY1_PUB=$(cat "$OUT/keys/key1.pub")"
	echo "KEY2_PUB=$(cat "$OUT/keys/key2.pub")"
	echo "KEY1_SEC=$K1"
	echo "KEY2_SEC=$K2"
	echo "STORE=$STORE"
} >"$OUT/paths.env.tmp"
echo "$INPUTS_ID" >"$OUT/inputs.id"
mv "$OUT/paths.env.tmp" "$OUT/paths.env"
cat "$OUT/paths.env"
