# tests/push-lib.sh: what the closure push tests (t0725, t0726) share.
# Sourced after lib.sh, the caches' paths.env and box_up:
#
#   push_corpus   our own web root $WWW: cache1, and two copies of it
#                 whose NAR of the victim (the small closure's -small-c
#                 path, $VICTIM, xz; $vh its hash part, $VNAR its NAR
#                 file, $VHASH its NarHash) is tampered with: "flip" (one byte
#                 changed, same size) and "cut" (truncated to half);
#                 badnar CASE makes more such copies
#   push_serve    serves $WWW on the controller's loopback, which the box
#                 cannot reach, at $URL; stopped on exit
#   manifest FILE ROOT URL MODE [EXTRA-YAML-LINES]
#   err_has TEXT  $T/out or $T/err holds TEXT (else both are shown)
#   no_tmp        the box's store holds no push temporary directory
#   signed_nar CACHE STOREPATH NAR [HONEST]
#                 a narinfo for STOREPATH in $WWW/CACHE, whose URL is
#                 nar/NAR (uncompressed, FileHash and FileSize its own),
#                 NarHash and NarSize those of HONEST (default: the NAR
#                 itself), signed with the test caches' key 1
#   evil_cache    $WWW/evil: a validly signed NAR for $EVP whose entry
#                 name holds '/' ("a/b")
# shellcheck shell=bash disable=SC2034 # the sourcing tests read what it sets

badnar() { # CASE: a copy of cache1 whose victim NAR the caller replaces
	local d=$WWW/$1 f
	mkdir -p "$d/nar"
	cp -al "$CACHES"/cache1/*.narinfo "$CACHES/cache1/nix-cache-info" "$d/"
	for f in "$CACHES"/cache1/nar/*; do ln -s "$f" "$d/nar/"; done
	rm -f "$d/$VNAR"
	echo "$d/$VNAR"
}

push_corpus() {
	local f
	WWW=$T/www
	mkdir -p "$WWW"
	ln -s "$CACHES/cache1" "$WWW/cache1"
	VICTIM=$(grep -h '^StorePath: .*-small-c$' "$CACHES"/cache1/*.narinfo | head -n1)
	VICTIM=${VICTIM#StorePath: }
	vh=${VICTIM#/nix/store/}
	vh=${vh%%-*}
	VNAR=$(sed -n 's/^URL: //p' "$CACHES/cache1/$vh.narinfo")
	VHASH=$(sed -n 's/^NarHash: //p' "$CACHES/cache1/$vh.narinfo")
	case $VNAR in
	*.xz) ;;
	*)
		t_not "the victim's NAR is xz-compressed ($VNAR)"
		return 1
		;;
	esac
	f=$(badnar flip)
	xz -dc "$CACHES/cache1/$VNAR" | python3 -c '
import sys
d = bytearray(sys.stdin.buffer.read())
d[len(d) // 2] ^= 1
sys.stdout.buffer.write(d)' | xz -c >"$f"
	f=$(badnar cut)
	head -c "$(($(stat -c %s "$CACHES/cache1/$VNAR") / 2))" "$CACHES/cache1/$VNAR" >"$f"
}

_push_cleanup() {
	"$NIXCACHE/serve" stop "$WWW" >/dev/null 2>&1 || true
	_t_cleanup
}

push_serve() {
	trap _push_cleanup EXIT
	PORT=$("$NIXCACHE/serve" port)
	"$NIXCACHE/serve" start "$WWW" 127.0.0.1 "$PORT" || {
		t_not "the caches are served"
		return 1
	}
	URL=http://127.0.0.1:$PORT
}

err_has() { cat "$T/out" "$T/err" | grep -qF -- "$1" || { cat "$T/out" "$T/err"; return 1; }; }

manifest() {
	cat >"$1" <<EOM
stagehand: 1
stage: closure
steps:
  - name: postgres bundle
    closure:
      path: $2
      substituters: [$3]
      trusted_keys: ["$KEY1_PUB"]
      mode: $4
      cache_timeout: 5
      cache_retries: 0
${5:-}
EOM
}

no_tmp() { test -z "$(box_exec find /nix/store -maxdepth 1 -name '.stagehand-push*')"; }

nix32() { # FILE: its sha256 in Nix's base32
	NIX_CONF_DIR=$T/nixconf nix hash to-base32 --type sha256 \
		"$(sha256sum "$1" | cut -d' ' -f1)"
}

signed_nar() {
	local d=$WWW/$1 sp=$2 nar=$WWW/$1/nar/$3 honest=${4:-$WWW/$1/nar/$3} h
	mkdir -p "$T/nixconf"
	printf 'experimental-features = nix-command\nsubstituters =\n' >"$T/nixconf/nix.conf"
	cp "$CACHES/cache1/nix-cache-info" "$d/"
	h=${sp#/nix/store/}
	printf '%s\n' "StorePath: $sp" "URL: nar/$3" "Compression: none" \
		"FileHash: sha256:$(nix32 "$nar")" "FileSize: $(stat -c %s "$nar")" \
		"NarHash: sha256:$(nix32 "$honest")" "NarSize: $(stat -c %s "$honest")" \
		"References: " >"$d/${h%%-*}.narinfo"
	NIX_CONF_DIR=$T/nixconf XDG_CACHE_HOME=$T/xdg nix store sign \
		--store "file://$d" --key-file "$KEY1_SEC" "$sp" >/dev/null 2>&1
}

evil_cache() {
	EVP=/nix/store/0123456789abcdfghijklmnpqrsvwxyz-evil
	mkdir -p "$WWW/evil/nar"
	python3 - "$WWW/evil/nar/evil.nar" <<'PY'
import struct, sys
def s(b):
    b = b.encode() if isinstance(b, str) else b
    return struct.pack("<Q", len(b)) + b + b"\0" * (-len(b) % 8)
parts = ["nix-archive-1", "(", "type", "directory", "entry", "(", "name",
         "a/b", "node", "(", "type", "regular", "contents", "evil\n", ")",
         ")", ")"]
open(sys.argv[1], "wb").write(b"".join(s(x) for x in parts))
PY
	signed_nar evil "$EVP" evil.nar
}
