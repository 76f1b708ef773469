#!/usr/bin/env bash
# tests/nixcache/make-fixtures.sh CACHES FIXDIR: refreshes the committed
# fixtures of tests/unit/test_narinfo.c from a make-caches.sh output dir.
#
#   make-fixtures.sh build/nixcache tests/fixtures/narinfo
#
# Writes into FIXDIR (run it once, by hand, and commit the result; the unit
# tests never run nix):
#   key1.pub key2.pub         the public keys ("name:base64")
#   small-root.narinfo        refers to itself and two other paths
#   small-c.narinfo           two references
#   small-a.narinfo           no references, CA field
#   bundle-lib.narinfo        zstd, Sig lines by key 1 and key 2
#   split-mid.narinfo         signed by key 2 only (cache2)
#   big-root.narinfo          31 references
#   vectors.txt               hash vectors printed by this machine's nix:
#                             "TYPE HEX NIX32 SRI" per line (sha256, sha1,
#                             md5 of a few inputs, via nix-hash and
#                             `nix hash to-base32/to-sri`)
#   narhash-forms.txt         small-c's NarHash as nix32, base16 and SRI,
#                             one per line, as nix converts it
set -euo pipefail

[ $# = 2 ] || {
	sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}
C=$(cd "$1" && pwd)
mkdir -p "$2"
F=$(cd "$2" && pwd)
export NIX_CONF_DIR=$C/nix.conf XDG_CACHE_HOME=$C/xdg

one() { # SUFFIX DIR OUTNAME: the narinfo whose StorePath ends in SUFFIX
	local f
	f=$(grep -l "^StorePath: .*$1\$" "$C/$2"/*.narinfo | head -n1)
	cp "$f" "$F/$3"
}
cp "$C/keys/key1.pub" "$F/key1.pub"
cp "$C/keys/key2.pub" "$F/key2.pub"
one -small-root cache1 small-root.narinfo
one -small-c cache1 small-c.narinfo
one -small-a cache1 small-a.narinfo
one -postgresql-15-lib cache1 bundle-lib.narinfo
one -split-mid cache2 split-mid.narinfo
one -big-root cache1 big-root.narinfo

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
: >"$F/vectors.txt"
i=0
for input in "" "abc" "hello world" "$(head -c 1000 /dev/zero | tr '\0' x)"; do
	i=$((i + 1))
	printf '%s' "$input" >"$W/in$i"
	for t in sha256 sha1 md5; do
		hex=$(nix-hash --flat --type "$t" "$W/in$i")
		b32=$(nix-hash --type "$t" --to-base32 "$hex")
		sri=$(nix hash to-sri --type "$t" "$hex")
		[ "$(nix hash to-base32 --type "$t" "$hex")" = "$b32" ]
		echo "$t $hex $b32 $sri" >>"$F/vectors.txt"
	done
done

h=$(sed -n 's/^NarHash: sha256://p' "$F/small-c.narinfo")
{
	echo "sha256:$h"
	echo "sha256:$(nix hash to-base16 --type sha256 "$h")"
	nix hash to-sri --type sha256 "$h"
} >"$F/narhash-forms.txt"
ls "$F"
