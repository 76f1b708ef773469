#!/bin/sh
# tests/fuzz/build.sh: builds the libFuzzer harnesses into build/fuzz/.
#
#   tests/fuzz/build.sh            build every harness
#   tests/fuzz/build.sh run [SECS] [NAME]
#                                  build, then fuzz NAME (manifest, the
#                                  default, or one of HARNESSES below) for
#                                  SECS seconds (default 60) from the seed
#                                  corpus tests/fuzz/corpus/NAME (new inputs
#                                  go to build/fuzz/corpus/NAME)
#   tests/fuzz/build.sh run-all SECS
#                                  build, then fuzz every harness for SECS
#                                  seconds each (make check runs this with a
#                                  short bound: tests/t0980-fuzz-bounded.sh)
#
# Needs clang with libFuzzer (Debian 12: clang-14 libclang-rt-14-dev).
set -eu
cd "$(dirname "$0")/../.."

HARNESSES="manifest narinfo tap known_hosts redact nartar"

CC=${FUZZ_CC:-}
if [ -z "$CC" ]; then
	for c in clang clang-14; do
		if command -v "$c" >/dev/null 2>&1; then CC=$c; break; fi
	done
fi
if [ -z "$CC" ]; then
	echo "fuzz: clang not found (apt-get install clang libclang-rt-14-dev)" >&2
	exit 1
fi

PKGS="yaml-0.1 libcurl libssh2 libsodium libpq libcrypto liblzma libzstd"
FLAGS="-std=c11 -g -O1 -D_GNU_SOURCE -fno-omit-frame-pointer \
-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
-Wall -Wextra -Wno-unused-parameter -iquote provisioner $(pkg-config --cflags $PKGS)"
OUT=build/fuzz

objs=""
for src in provisioner/*/*.c; do
	case $src in provisioner/cmd/main.c) continue ;; esac
	obj=$OUT/obj/${src#provisioner/}
	obj=${obj%.c}.o
	mkdir -p "${obj%/*}"
	# shellcheck disable=SC2086
	$CC $FLAGS -c "$src" -o "$obj"
	objs="$objs $obj"
done
for h in $HARNESSES; do
	mkdir -p "$OUT/corpus/$h"
	# shellcheck disable=SC2086
	$CC $FLAGS -fsanitize=fuzzer "tests/fuzz/fuzz_$h.c" $objs \
		$(pkg-config --libs $PKGS) -lbz2 -o "$OUT/fuzz_$h"
	echo "built $OUT/fuzz_$h"
done

# fuzz NAME SECS: one bounded run; exit status non-zero on a finding.
fuzz() {
	case $1 in
	manifest) extra="-max_len=65536 -dict=tests/fuzz/manifest.dict" ;;
	narinfo) extra="-max_len=70000 -dict=tests/fuzz/narinfo.dict" ;;
	tap) extra="-max_len=65536 -dict=tests/fuzz/tap.dict" ;;
	known_hosts) extra="-max_len=65536 -dict=tests/fuzz/known_hosts.dict" ;;
	redact) extra="-max_len=4096 -dict=tests/fuzz/redact.dict" ;;
	nartar) extra="-max_len=65536 -dict=tests/fuzz/nartar.dict" ;;
	*) echo "fuzz: unknown harness '$1'" >&2; exit 2 ;;
	esac
	# shellcheck disable=SC2086
	ASAN_OPTIONS=detect_leaks=1 "$OUT/fuzz_$1" \
		-max_total_time="$2" -timeout=10 -rss_limit_mb=2048 $extra \
		"$OUT/corpus/$1" "tests/fuzz/corpus/$1"
}

case ${1:-} in
run) fuzz "${3:-manifest}" "${2:-60}" ;;
run-all)
	for h in $HARNESSES; do
		echo "== fuzz_$h for ${2:-10} s"
		fuzz "$h" "${2:-10}"
	done
	;;
esac
