#!/usr/bin/env bash
# tests/nixcache/tamper.sh CACHEDIR OUTDIR [VICTIM]: the tampered-cache
# corpus, made from a good signed cache (make-caches.sh's cache1).
#
# Every case is a binary cache directory OUTDIR/<case>/ holding CACHEDIR's
# nix-cache-info, all its narinfos (hard links) and a nar -> CACHEDIR/nar
# link, with one narinfo changed: VICTIM's (a store path; default: the
# cache's "-small-c" path, a dependency of SMALL_ROOT that references two
# other paths). Resolving a closure that contains VICTIM from
# http://HOST/<case>/ must fail naming VICTIM (store-path names the path
# asked for). OUTDIR/cases.txt lists "CASE EXIT WHAT" lines, EXIT being the
# exit status `stagehand closure` owes (77 trust, 1 missing):
#
#   no-sig        77  every Sig line removed
#   unknown-key   77  only a real signature by an untrusted key name
#                     (stagehand-evil-1)
#   wrong-key     77  only a Sig named stagehand-test-1 made by another key
#   nar-size      77  NarSize edited after signing (+1)
#   nar-hash      77  NarHash edited after signing (one nix32 digit)
#   references    77  References edited after signing (one dropped)
#   store-path    77  VICTIM's <hash>.narinfo is another path's (validly
#                     signed) narinfo: StorePath does not match
#   missing-ref   1   VICTIM's narinfo is absent (404)
#   truncated     77  the narinfo cut in the middle of its NarHash line
#   oversized     77  a 4 MiB narinfo (the good one plus padding Sig lines)
#   bad-sig-size  77  the Sig's base64 decodes to 63 bytes
#
# Idempotent: rebuilds OUTDIR every time (about 0.3 s). Needs nix (signs
# with `nix store sign --store file://...`).
set -euo pipefail

[ $# = 2 ] || [ $# = 3 ] || {
	sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}
SRC=$(cd "$1" && pwd)
mkdir -p "$2"
OUT=$(cd "$2" && pwd)
if [ $# = 3 ]; then
	VICTIM=$3
else
	VICTIM=$(grep -h '^StorePath: .*-small-c$' "$SRC"/*.narinfo | head -n1)
	VICTIM=${VICTIM#StorePath: }
fi
[ -n "$VICTIM" ] || {
	echo "tamper: no victim path found in $SRC" >&2
	exit 1
}
vh=${VICTIM#/nix/store/}
vh=${vh%%-*}
[ -f "$SRC/$vh.narinfo" ] || {
	echo "tamper: $SRC has no narinfo for $VICTIM" >&2
	exit 1
}

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/conf"
printf 'experimental-features = nix-command\nsubstituters =\n' >"$W/conf/nix.conf"
export NIX_CONF_DIR=$W/conf XDG_CACHE_HOME=$W/xdg
nix-store --generate-binary-cache-key stagehand-evil-1 "$W/evil.sec" "$W/evil.pub"
nix-store --generate-binary-cache-key stagehand-test-1 "$W/impostor.sec" \
	"$W/impostor.pub"

rm -rf "${OUT:?}"/*
: >"$OUT/cases.txt"

mkcase() { # CASE EXIT WHAT: a copy of SRC; prints the victim narinfo's path
	local d=$OUT/$1
	mkdir -p "$d"
	cp -al "$SRC"/*.narinfo "$d/"
	cp "$SRC/nix-cache-info" "$d/"
	ln -s "$SRC/nar" "$d/nar"
	# Break the hard link before editing.
	cp --remove-destination "$SRC/$vh.narinfo" "$d/$vh.narinfo"
	echo "$1 $2 $3" >>"$OUT/cases.txt"
	echo "$d/$vh.narinfo"
}
resign() { # CASE KEYFILE: replaces the victim's Sig lines by KEYFILE's
	local f=$OUT/$1/$vh.narinfo
	sed -i '/^Sig: /d' "$f"
	nix store sign --store "file://$OUT/$1" --key-file "$2" "$VICTIM" \
		>/dev/null 2>&1
}

f=$(mkcase no-sig 77 "every Sig line removed")
sed -i '/^Sig: /d' "$f"

mkcase unknown-key 77 "signed only by an untrusted key name" >/dev/null
resign unknown-key "$W/evil.sec"

mkcase wrong-key 77 "Sig with a trusted name made by another key" >/dev/null
resign wrong-key "$W/impostor.sec"

f=$(mkcase nar-size 77 "NarSize edited after signing")
n=$(sed -n 's/^NarSize: //p' "$f")
sed -i "s/^NarSize: .*/NarSize: $((n + 1))/" "$f"

f=$(mkcase nar-hash 77 "NarHash edited after signing")
# Swap the last nix32 digit for another valid one.
sed -i -E '/^NarHash: /{s/0$/X/;s/[1-9a-z]$/0/;s/X$/1/}' "$f"

f=$(mkcase references 77 "one reference dropped after signing")
sed -i -E '/^References: /s/ [^ ]+$//' "$f"

f=$(mkcase store-path 77 "the narinfo of another path, validly signed")
other=$(grep -l '^StorePath: .*-small-b$' "$SRC"/*.narinfo | head -n1)
cat "$other" >"$f"

f=$(mkcase missing-ref 1 "the narinfo is absent (404)")
rm -f "$f"

f=$(mkcase truncated 77 "cut in the middle of the NarHash line")
head -c "$(($(grep -b '^NarHash: ' "$f" | cut -d: -f1) + 20))" \
	"$SRC/$vh.narinfo" >"$f"

f=$(mkcase oversized 77 "a 4 MiB narinfo")
{
	cat "$SRC/$vh.narinfo"
	awk -v s="Sig: pad:$(head -c 64 /dev/zero | base64 -w0)" \
		'BEGIN { for (i = 0; i < 40000; i++) print s }'
} >"$f"

f=$(mkcase bad-sig-size 77 "the Sig decodes to 63 bytes")
sig=$(sed -n 's/^Sig: stagehand-test-1://p' "$f")
short=$(echo "$sig" | base64 -d | head -c 63 | base64 -w0)
sed -i "s|^Sig: stagehand-test-1:.*|Sig: stagehand-test-1:$short|" "$f"

echo "VICTIM=$VICTIM" >"$OUT/victim.env"
cat "$OUT/cases.txt"
