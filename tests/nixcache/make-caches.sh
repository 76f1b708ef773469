#!/usr/bin/env bash
# tests/nixcache/make-caches.sh OUTDIR: builds the signed Nix binary caches
# the closure tests and benchmarks use, offline, with Debian's nix (2.8).
#
#   make-caches.sh OUTDIR     build (or reuse) the caches; prints OUTDIR/paths.env
#   make-caches.sh --aarch64 OUTDIR
#                             the same, with an aarch64-linux bundle too
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
#       BUNDLE_ROOT_AARCH64  (--aarch64 only) the same bundle for
#                      aarch64-linux, from Debian's arm64 packages
#                      (postgresql-15, postgresql-client-15,
#                      postgresql-15-pgtap of the host's apt sources,
#                      fetched with a private apt state: the host's
#                      dpkg gains no architecture); built on any host
#                      (the builder only copies files), runs on arm64
#       BIG_ROOT       synthetic 1,000-path closure (tree of depth 3)
#       SPLIT_ROOT     root in cache1 (key 1), its 2 dependencies only in
#                      cache2 (key 2): needs both caches, in that order
#       KEY1_PUB, KEY2_PUB   "name:base64" public keys (trusted-public-keys)
#       KEY1_SEC, KEY2_SEC   secret key file paths
#       STORE          the private nix store root the paths were built in
#                      (a chroot store: nix --store "$STORE")
#   nix.conf/ xdg/ store/    the private Nix configuration, cache, store
#   arm64/             (--aarch64) the apt state, the .debs, their files
#
# Reuse: when OUTDIR/paths.env exists and is newer than this script and
# caches.nix (and has the aarch64 bundle if asked for), and the host's
# PostgreSQL 15 files and the unpacked 13 ones are those it was built
# from, nothing is done (about 60 ms, most of it tests/pg13/fetch.sh
# finding its cache complete). Parallel callers with the same OUTDIR
# serialise on OUTDIR.lock. Needs root (the chroot store builds in
# Nix's sandbox). The bundle's NARs are zstd-compressed, the rest xz.
set -euo pipefail

aarch64=0
if [ "${1:-}" = --aarch64 ]; then
	aarch64=1
	shift
fi
[ $# = 1 ] || {
	echo "usage: $0 [--aarch64] OUTDIR" >&2
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
		[ "$(cat "$OUT/inputs.id" 2>/dev/null)" = "$INPUTS_ID" ] &&
		{ [ "$aarch64" = 0 ] || grep -q '^BUNDLE_ROOT_AARCH64=' "$OUT/paths.env"; }
}
if fresh; then
	cat "$OUT/paths.env"
	exit 0
fi

# arm64_files: Debian's arm64 PostgreSQL 15 files in $OUT/arm64/root, from
# the host's apt sources through a private apt state (its own lists; no
# dpkg status). Only the three packages: the target's stage 1 installs
# the bundle's Debian libraries. Sets ARM64_ID, a digest
# of the .debs' names (their versions).
arm64_files() {
	local a=$OUT/arm64 apt d
	mkdir -p "$a/lists/partial" "$a/archives/partial"
	apt=(-q -o APT::Architecture=arm64 -o APT::Architectures::=arm64
		-o Dir::State::Lists="$a/lists" -o Dir::State::status=/dev/null
		-o Dir::Cache::Archives="$a/archives" -o Dir::Cache::pkgcache=
		-o Dir::Cache::srcpkgcache= -o Debug::NoLocking=1)
	apt-get "${apt[@]}" update >>"$OUT/build.log" 2>&1 || fail
	rm -f "$a"/archives/*.deb
	(cd "$a/archives" && apt-get "${apt[@]}" download postgresql-15 \
		postgresql-client-15 postgresql-15-pgtap) >>"$OUT/build.log" 2>&1 || fail
	rm -rf "$a/root"
	mkdir -p "$a/root"
	for d in "$a"/archives/postgresql-15_*_arm64.deb "$a"/archives/postgresql-client-15_*_arm64.deb \
		"$a"/archives/postgresql-15-pgtap_*.deb; do
		[ -f "$d" ] || { echo "make-caches: no $d after apt-get download" >&2; fail; }
		dpkg-deb -x "$d" "$a/root"
	done
	[ -x "$a/root/usr/lib/postgresql/15/bin/postgres" ] || fail
	ARM64_ID=$(cd "$a/archives" && ls postgresql-15_*_arm64.deb postgresql-client-15_*_arm64.deb \
		postgresql-15-pgtap_*.deb | sha256sum | cut -c1-32)
}

rm -rf "$OUT/cache1" "$OUT/cache2" "$OUT/keys" "$OUT/paths.env" "$OUT/xdg"
mkdir -p "$OUT/nix.conf" "$OUT/keys" "$OUT/xdg" "$OUT/arm64/root"
# The chroot store forces Nix's sandbox; /bin/sh and the PostgreSQL files
# come from the host's /usr, the arm64 ones from /arm64pg. The aarch64
# derivations run the host's /bin/sh too (they only copy files), which
# extra-platforms allows.
cat >"$OUT/nix.conf/nix.conf" <<EOF
build-users-group =
sandbox = true
sandbox-paths = /bin=/usr/bin /usr /lib=/usr/lib /lib64=/usr/lib64 /arm64pg=$OUT/arm64/root
extra-platforms = aarch64-linux
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
ARM64_ID=none
drv() { # NAME: builds caches.nix's derivation NAME, prints its path
	nix-build --store "$STORE" --no-out-link "$HERE/caches.nix" -A "$1" \
		--argstr inputsId "$INPUTS_ID" --argstr pg13Root "$PG13_DIR/root" \
		--argstr arm64Id "$ARM64_ID" \
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
BUNDLE_ROOT_AARCH64=
if [ "$aarch64" = 1 ]; then
	arm64_files
	BUNDLE_ROOT_AARCH64=$(drv bundle-aarch64)
fi
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
	"$BROKEN_ROOT" "$BUNDLE13_ROOT" ${BUNDLE_ROOT_AARCH64:+"$BUNDLE_ROOT_AARCH64"}
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
	[ -z "$BUNDLE_ROOT_AARCH64" ] || echo "BUNDLE_ROOT_AARCH64=$BUNDLE_ROOT_AARCH64"
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
