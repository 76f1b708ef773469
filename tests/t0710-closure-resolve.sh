#!/usr/bin/env bash
# t0710-closure-resolve: `stagehand closure` resolves and verifies closures
# from real signed binary caches served by nginx (and by a faulty server
# for retries and hangs), on the controller only; the same paths as
# `nix path-info -r`; every tampered cache refused with the path and the
# reason. The caches come from tests/nixcache/make-caches.sh (shared,
# built once, in $STAGEHAND_NIXCACHE or /tmp/stagehand-nixcache); the API
# itself is also driven through tests/integration/closuredrive.c for what
# the command does not expose (retries, parallelism, nix-cache-info).
# --mode push also fetches every NAR and checks it (a NAR changed by one
# byte is exit 77 naming the path, the URL and both hashes).
. "$(dirname "$0")/lib.sh"
t_plan 45

NIXCACHE=$TOP/tests/nixcache
CACHES=${STAGEHAND_NIXCACHE:-/tmp/stagehand-nixcache}
"$NIXCACHE/make-caches.sh" "$CACHES" >"$T/paths.env" 2>"$T/caches.err" || {
	cat "$T/caches.err"
	t_not "the test caches are built"
	t_done
	exit 1
}
. "$T/paths.env"

# Our own web root (symlinks into the shared caches), so `serve stop`
# stops only this test's servers.
WWW=$T/www
mkdir -p "$WWW"
ln -s "$CACHES/cache1" "$WWW/cache1"
ln -s "$CACHES/cache2" "$WWW/cache2"
"$NIXCACHE/tamper.sh" "$CACHES/cache1" "$WWW/tamper" >"$T/cases.txt" 2>&1 || {
	cat "$T/cases.txt"
	t_not "the tampered-cache corpus is built"
	t_done
	exit 1
}
. "$WWW/tamper/victim.env"
cleanup_servers() { "$NIXCACHE/serve" stop "$WWW" >/dev/null 2>&1 || true; }
trap 'cleanup_servers; _t_cleanup' EXIT
PORT=$("$NIXCACHE/serve" port)
FPORT=$("$NIXCACHE/serve" port)
"$NIXCACHE/serve" start "$WWW" 127.0.0.1 "$PORT" &&
	"$NIXCACHE/serve" faulty "$WWW" 127.0.0.1 "$FPORT" ||
	{ t_not "the caches are served"; t_done; exit 1; }
U=http://127.0.0.1:$PORT
F=http://127.0.0.1:$FPORT
K1=(--trusted-key "$KEY1_PUB")
K12=(--trusted-key "$KEY1_PUB" --trusted-key "$KEY2_PUB")

# Nix itself, offline, with its own narinfo cache.
mkdir -p "$T/nixconf"
printf 'experimental-features = nix-command\nsubstituters =\n' \
	>"$T/nixconf/nix.conf"
nix_paths() { # URL ROOT: the closure as nix path-info -r lists it, sorted
	rm -rf "$T/xdg"
	NIX_CONF_DIR=$T/nixconf XDG_CACHE_HOME=$T/xdg \
		nix path-info -r --store "$1" "$2" | sort
}

# closure ARGS...: stdout in $T/o, stderr in $T/e, exit code in $RC
closure() {
	RC=0
	"$STAGEHAND" closure "$@" >"$T/o" 2>"$T/e" || RC=$?
}
# expect CODE TEXT...: the last run exited CODE and stderr has every TEXT
expect() {
	local want=$1 t
	shift
	if [ "$RC" != "$want" ]; then
		echo "exit $RC, wanted $want; stderr:"
		cat "$T/e"
		return 1
	fi
	for t in "$@"; do
		grep -qF -- "$t" "$T/e" || {
			echo "stderr lacks '$t':"
			cat "$T/e"
			return 1
		}
	done
}
json_paths() { jq -r '.paths[].path' "$T/o" | sort; }
# "PATH NARSIZE FILESIZE" for each path nix path-info -r lists, from the
# narinfo files in the cache's directory: numbers stagehand did not make.
cache_sizes() { # ROOT
	local p h
	nix_paths "$U/cache1" "$1" >"$T/nix" || return 1
	while read -r p; do
		h=${p#/nix/store/}
		printf '%s %s %s\n' "$p" \
			"$(sed -n 's/^NarSize: //p' "$CACHES/cache1/${h:0:32}.narinfo")" \
			"$(sed -n 's/^FileSize: //p' "$CACHES/cache1/${h:0:32}.narinfo")"
	done <"$T/nix"
}
# The sizes in the JSON ($T/o) are the cache's, path by path and in total.
sizes_are_the_caches() { # ROOT
	cache_sizes "$1" >"$T/want-sizes" &&
		[ "$(grep -c ' [0-9][0-9]* [0-9][0-9]*$' "$T/want-sizes")" = "$(wc -l <"$T/nix")" ] &&
		jq -r '.paths[] | "\(.path) \(.nar_size) \(.file_size)"' "$T/o" | sort >"$T/got-sizes" &&
		diff "$T/want-sizes" "$T/got-sizes" &&
		[ "$(jq .nar_size "$T/o")" = "$(awk '{ s += $2 } END { print s }' "$T/want-sizes")" ] &&
		[ "$(jq .file_size "$T/o")" = "$(awk '{ s += $3 } END { print s }' "$T/want-sizes")" ]
}

# ------------------------------------------------------- good closures

ok_small() {
	closure "$SMALL_ROOT" --from "$U/cache1" "${K1[@]}" &&
		expect 0 && grep -q "4 paths" "$T/o" &&
		grep -q "signed by stagehand-test-1: 4 paths" "$T/o"
}
t_ok "a small closure with self and shared references is trusted" ok_small

json_small() {
	closure "$SMALL_ROOT" --from "$U/cache1" "${K1[@]}" --json &&
		expect 0 &&
		[ "$(jq -r '.root' "$T/o")" = "$SMALL_ROOT" ] &&
		[ "$(jq -r '.paths[0].path' "$T/o")" = "$SMALL_ROOT" ] &&
		[ "$(jq '.paths | length' "$T/o")" = 4 ] &&
		sizes_are_the_caches "$SMALL_ROOT" &&
		[ "$(jq -r '[.paths[].signer] | unique | join(",")' "$T/o")" = stagehand-test-1 ] &&
		[ "$(jq -r '.paths[0].substituter' "$T/o")" = "$U/cache1" ] &&
		jq -e '.paths[0].references | index("'"${SMALL_ROOT#/nix/store/}"'")' "$T/o" >/dev/null &&
		jq -e 'all(.paths[]; .nar_hash | test("^sha256:[0-9a-z]{52}$"))' "$T/o" >/dev/null ||
		{ jq . "$T/o"; return 1; }
}
t_ok "--json lists root first, the cache's sizes, nar hashes, references, signers" json_small

same_as_nix() { # ROOT COUNT
	closure "$1" --from "$U/cache1" "${K1[@]}" --json && expect 0 &&
		[ "$(jq '.paths | length' "$T/o")" = "$2" ] &&
		nix_paths "$U/cache1" "$1" >"$T/nix" &&
		json_paths >"$T/ours" && diff "$T/nix" "$T/ours"
}
t_ok "the small closure is the one nix path-info -r lists" same_as_nix "$SMALL_ROOT" 4
t_ok "the PostgreSQL bundle closure (3 paths) matches nix path-info -r" \
	same_as_nix "$BUNDLE_ROOT" 3
t_ok "the second bundle closure matches nix path-info -r" \
	same_as_nix "$BUNDLE2_ROOT" 3
t_ok "the 1,000-path closure matches nix path-info -r" same_as_nix "$BIG_ROOT" 1000

big_timed() {
	local t0 t1
	t0=$(date +%s%N)
	closure "$BIG_ROOT" --from "$U/cache1" "${K1[@]}" && expect 0 || return 1
	t1=$(date +%s%N)
	echo "# 1,000-path closure resolved in $(((t1 - t0) / 1000000)) ms" >&3
}
exec 3>&1
t_ok "the 1,000-path closure resolves (time noted, not asserted)" big_timed

bundle_sizes() {
	closure "$BUNDLE_ROOT" --from "$U/cache1" "${K1[@]}" --json && expect 0 &&
		[ "$(jq .nar_size "$T/o")" -gt 30000000 ] && sizes_are_the_caches "$BUNDLE_ROOT" &&
		[ "$(jq -r '.paths[] | select(.path | endswith("-postgresql-15-lib")) | .signer' "$T/o")" = stagehand-test-1 ]
}
t_ok "the bundle's NarSize total counts the real PostgreSQL binaries" bundle_sizes

# ------------------------------------------------ two caches, two keys

split_ok() {
	closure "$SPLIT_ROOT" --from "$U/cache1" --from "$U/cache2" "${K12[@]}" \
		--json && expect 0 &&
		[ "$(jq '.paths | length' "$T/o")" = 3 ] &&
		[ "$(jq -r '.paths[0].signer + " " + .paths[0].substituter' "$T/o")" = "stagehand-test-1 $U/cache1" ] &&
		[ "$(jq -r '[.paths[1:][] | .signer + " " + .substituter] | unique | join(",")' "$T/o")" = "stagehand-test-2 $U/cache2" ]
}
t_ok "paths only in the second cache come from it, signed by the second key" split_ok

split_one_key() {
	closure "$SPLIT_ROOT" --from "$U/cache1" --from "$U/cache2" "${K1[@]}"
	expect 77 "-split-mid" "signed by unknown key 'stagehand-test-2'" "$U/cache2/"
}
t_ok "without the second key the second cache's paths are refused (77)" split_one_key

split_one_cache() {
	closure "$SPLIT_ROOT" --from "$U/cache1" "${K12[@]}"
	expect 1 "-split-mid" "not in any substituter" "referenced by $SPLIT_ROOT" "HTTP 404"
}
t_ok "a path in no cache fails (1), naming it, its referrer and each 404" split_one_cache

order_matters() {
	closure "$BUNDLE_ROOT" --from "$U/cache2" --from "$U/cache1" "${K1[@]}" --json &&
		expect 0 &&
		[ "$(jq -r '[.paths[].substituter] | unique | join(",")' "$T/o")" = "$U/cache1" ]
}
t_ok "a 404 from the first substituter moves on to the next one" order_matters

double_signed() {
	closure "$BUNDLE_LIB" --from "$U/cache1" --trusted-key "$KEY2_PUB" --json
	expect 0 && [ "$(jq -r '.paths[0].signer' "$T/o")" = stagehand-test-2 ] ||
		return 1
	closure "$BUNDLE_ROOT" --from "$U/cache1" --trusted-key "$KEY2_PUB"
	expect 77 "$BUNDLE_ROOT" "signed by unknown key 'stagehand-test-1'"
}
t_ok "a path with two Sig lines is trusted under either key alone" double_signed

# ----------------------------------------------------- tampered caches

reason_for() {
	case $1 in
	no-sig) echo "no signature" ;;
	unknown-key) echo "signed by unknown key 'stagehand-evil-1'" ;;
	wrong-key | nar-size | nar-hash | references | bad-sig-size)
		echo "bad signature by 'stagehand-test-1'" ;;
	store-path) echo "StorePath is /nix/store/" ;;
	missing-ref) echo "not in any substituter" ;;
	truncated) echo "truncated (no newline at the end)" ;;
	oversized) echo "narinfo larger than 65536 bytes" ;;
	*) echo "?" ;;
	esac
}
while read -r c code _; do
	url=$U/tamper/$c
	t_ok "tampered cache '$c' is refused ($code), naming the path and why" \
		eval 'closure "$SMALL_ROOT" --from "$url" "${K1[@]}";
		expect "$code" "$VICTIM" "$(reason_for "$c")" "$url/"'
done <"$WWW/tamper/cases.txt"
t_ok "the tampered corpus has every case the issue lists" \
	test "$(wc -l <"$WWW/tamper/cases.txt")" -ge 11

tamper_json_quiet() {
	closure "$SMALL_ROOT" --from "$U/tamper/nar-size" "${K1[@]}" --json
	expect 77 && [ ! -s "$T/o" ]
}
t_ok "a refused closure prints nothing on stdout, even with --json" tamper_json_quiet

root_itself_tampered() {
	closure "$VICTIM" --from "$U/tamper/store-path" "${K1[@]}"
	expect 77 "$VICTIM" "not the path asked for"
}
t_ok "a root whose narinfo is another path's is refused" root_itself_tampered

# ------------------------------------------------------ faulty caches

flaky() {
	closure "$SMALL_ROOT" --from "$F/fail500-2/cache1" "${K1[@]}" --json &&
		expect 0 && [ "$(jq '.paths | length' "$T/o")" = 4 ] &&
		grep -q '"GET /fail500-2/cache1/.* 500' "$WWW/.serve/faulty-$FPORT.log" &&
		grep -q '"GET /fail500-2/cache1/.* 200' "$WWW/.serve/faulty-$FPORT.log"
}
t_ok "a cache that answers 500 twice per path then recovers succeeds" flaky

hang() {
	RC=0
	timeout 60 "$STAGEHAND" closure "$SMALL_ROOT" --from "$F/hang/cache1" \
		"${K1[@]}" --timeout 1 >"$T/o" 2>"$T/e" || RC=$?
	expect 69 "$F/hang/cache1/${SMALL_ROOT:11:32}.narinfo" "timed out" \
		"attempts"
}
t_ok "a cache that never answers fails (69) with its URL after the timeout" hang

hang_then_good() {
	closure "$SMALL_ROOT" --from "$F/hang/cache1" --from "$U/cache1" "${K1[@]}" \
		--timeout 1 --json && expect 0 &&
		[ "$(jq -r '[.paths[].substituter] | unique | join(",")' "$T/o")" = "$U/cache1" ]
}
t_ok "a hanging first cache is given up on and the next one serves" hang_then_good

refused() {
	closure "$SMALL_ROOT" --from "http://127.0.0.1:$("$NIXCACHE/serve" port)/c" "${K1[@]}"
	expect 69 "Couldn't connect to server"
}
t_ok "a cache that refuses connections fails with 69" refused

redirect() {
	closure "$SMALL_ROOT" --from "$F/redirect/cache1" "${K1[@]}"
	expect 69 "redirect refused" "ftp"
}
t_ok "a redirect to another scheme is not followed" redirect

# -------------------------------------------------------------- usage

t_exit 2 "no --from is a usage error" \
	"$STAGEHAND" closure "$SMALL_ROOT" "${K1[@]}"
t_exit 2 "a trusted key with a '%' after its padding is refused" \
	"$STAGEHAND" closure "$SMALL_ROOT" --from "$U/cache1" --trusted-key "$KEY1_PUB%"
t_exit 2 "a root that is not a store path is a usage error" \
	"$STAGEHAND" closure /usr/bin --from "$U/cache1" "${K1[@]}"
t_exit 2 "a file:// substituter is refused" \
	"$STAGEHAND" closure "$SMALL_ROOT" --from "file://$CACHES/cache1" "${K1[@]}"

# ---------------------------------------- the API through closuredrive

DRIVE=$T/closuredrive
build_driver() {
	local f
	f=(-std=c11 -Wall -Wextra -Werror -Wshadow -Wconversion -Wsign-conversion
		-Wstrict-prototypes -Wvla -Wformat=2 -Wimplicit-fallthrough
		-Wwrite-strings -O2 -g -D_GNU_SOURCE -iquote "$TOP/provisioner")
	# Under `make asan` the driver is sanitized too.
	case $STAGEHAND in *-asan) f+=(-fsanitize=address,undefined
		-fno-omit-frame-pointer -fno-sanitize-recover=undefined) ;; esac
	# shellcheck disable=SC2046 # pkg-config prints several words
	${CC:-cc} "${f[@]}" $(pkg-config --cflags libcurl libsodium libcrypto liblzma libzstd) -o "$DRIVE" \
		"$TOP/tests/integration/closuredrive.c" "$TOP"/provisioner/nix/*.c \
		"$TOP/provisioner/util/json.c" "$TOP/provisioner/util/util.c" \
		$(pkg-config --libs libcurl libsodium libcrypto liblzma libzstd) -lbz2
}
t_ok "the closure API test driver builds with the project's warning flags" build_driver

drive() {
	RC=0
	"$DRIVE" "$@" >"$T/o" 2>"$T/e" || RC=$?
}
no_retries() {
	drive "$SMALL_ROOT" --from "$F/fail503-1/cache1" "${K1[@]}" --retries 0
	expect 69 "HTTP 503" "$F/fail503-1/cache1/"
}
t_ok "without retries a 503 leaves the cache down (69)" no_retries

deterministic() {
	drive "$BIG_ROOT" --from "$U/cache1" "${K1[@]}" --json --parallel 1 &&
		mv "$T/o" "$T/p1" &&
		drive "$BIG_ROOT" --from "$U/cache1" "${K1[@]}" --json --parallel 64 &&
		cmp "$T/p1" "$T/o"
}
t_ok "the result is the same, in the same order, at any parallelism" deterministic

cache_info() {
	drive --info "$U/cache1" && expect 0 || return 1
	drive --info "$U/tamper"
	expect 1 "$U/tamper/nix-cache-info: HTTP 404"
}
t_ok "nix-cache-info is read, and its absence reported with the URL" cache_info

fetched_once() {
	local before after
	before=$(wc -l <"$WWW/.serve/nginx-$PORT.access.log")
	drive "$BIG_ROOT" --from "$U/cache1" "${K1[@]}" --quiet && expect 0 &&
		after=$(wc -l <"$WWW/.serve/nginx-$PORT.access.log") &&
		[ $((after - before)) = 1000 ]
}
t_ok "each path's narinfo is fetched exactly once" fetched_once

# --mode push: every NAR fetched (several at once) and checked here.
push_big() {
	local before after
	before=$(wc -l <"$WWW/.serve/nginx-$PORT.access.log")
	closure "$BIG_ROOT" --from "$U/cache1" "${K1[@]}" --mode push --json &&
		expect 0 &&
		[ "$(jq -r '.mode + " " + (.nars_checked | tostring)' "$T/o")" = "push 1000" ] &&
		after=$(wc -l <"$WWW/.serve/nginx-$PORT.access.log") &&
		[ "$(tail -n $((after - before)) "$WWW/.serve/nginx-$PORT.access.log" | grep -c '/nar/')" = 1000 ]
}
t_ok "--mode push fetches and checks the 1,000 NARs, each once" push_big
push_small() {
	closure "$SMALL_ROOT" --from "$U/cache1" "${K1[@]}" --mode push &&
		expect 0 && grep -q '^  NARs fetched and checked: 4, NarSize' "$T/o" &&
		closure "$SMALL_ROOT" --from "$U/cache1" "${K1[@]}" --mode pull --json &&
		expect 0 && [ "$(jq -r '.mode + " " + (.nars_checked // "none" | tostring)' "$T/o")" = "pull none" ]
}
t_ok "--mode push prints the NARs it checked; --mode pull fetches none" push_small
# A NAR changed by one byte (same size), in a copy of cache1.
push_flip() {
	local v h n d=$WWW/flip f
	v=$(grep -h '^StorePath: .*-small-c$' "$CACHES"/cache1/*.narinfo | head -n1)
	v=${v#StorePath: }
	h=${v#/nix/store/}
	h=${h%%-*}
	n=$(sed -n 's/^URL: //p' "$CACHES/cache1/$h.narinfo")
	mkdir -p "$d/nar"
	cp "$CACHES"/cache1/*.narinfo "$CACHES/cache1/nix-cache-info" "$d/"
	for f in "$CACHES"/cache1/nar/*; do ln -s "$f" "$d/nar/"; done
	rm -f "$d/$n"
	xz -dc "$CACHES/cache1/$n" | python3 -c '
import sys
d = bytearray(sys.stdin.buffer.read())
d[len(d) // 2] ^= 1
sys.stdout.buffer.write(d)' | xz -c >"$d/$n"
	closure "$SMALL_ROOT" --from "$U/flip" "${K1[@]}" --mode push
	expect 77 "$v from $U/flip/$n: NarHash mismatch" "the NAR hashes to sha256:" &&
		[ ! -s "$T/o" ]
}
t_ok "--mode push: a NAR changed by one byte is exit 77 naming path, URL, hashes" push_flip
push_usage() {
	closure "$SMALL_ROOT" --from "$U/cache1" "${K1[@]}" --mode copy
	expect 2 "--mode: expected pull or push, not 'copy'" || return 1
	RC=0
	"$STAGEHAND" check /dev/null --mode push >/dev/null 2>"$T/e" || RC=$?
	expect 2 "--mode is for 'closure'"
}
t_ok "--mode takes pull or push, and only on closure" push_usage

t_done
