#!/bin/sh
# tests/fuzz/build.sh: builds the libFuzzer harnesses into build/fuzz/.
#
#   tests/fuzz/build.sh            build
#   tests/fuzz/build.sh run [SECS] [NAME]
#                                  build, then fuzz NAME (manifest, the
#                                  default, narinfo, tap or redact) for SECS seconds
#                                  (default 60) from the seed corpus
#                                  tests/fuzz/corpus/NAME (new inputs go to
#                                  build/fuzz/corpus/NAME)
#
# Needs clang with libFuzzer (Debian 12: clang-14 libclang-rt-14-dev).
set -eu
cd "$(dirname "$0")/../.."

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

PKGS="yaml-0.1 libcurl libssh2 libsodium libpq"
FLAGS="-std=c11 -g -O1 -D_GNU_SOURCE -fno-omit-frame-pointer \
-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
-Wall -Wextra -Wno-unused-parameter $(pkg-config --cflags $PKGS)"
OUT=build/fuzz
mkdir -p "$OUT/obj/steps" "$OUT/corpus/manifest" "$OUT/corpus/narinfo" \
	"$OUT/corpus/tap" "$OUT/corpus/redact"

objs=""
for src in provisioner/*.c provisioner/steps/*.c; do
	case $src in provisioner/main.c) continue ;; esac
	obj=$OUT/obj/${src#provisioner/}
	obj=${obj%.c}.o
	# shellcheck disable=SC2086
	$CC $FLAGS -c "$src" -o "$obj"
	objs="$objs $obj"
done
# shellcheck disable=SC2086
$CC $FLAGS -fsanitize=fuzzer -Iprovisioner tests/fuzz/fuzz_manifest.c $objs \
	$(pkg-config --libs $PKGS) -o "$OUT/fuzz_manifest"
echo "built $OUT/fuzz_manifest"
# shellcheck disable=SC2086
$CC $FLAGS -fsanitize=fuzzer -Iprovisioner tests/fuzz/fuzz_narinfo.c $objs \
	$(pkg-config --libs $PKGS) -o "$OUT/fuzz_narinfo"
echo "built $OUT/fuzz_narinfo"
# shellcheck disable=SC2086
$CC $FLAGS -fsanitize=fuzzer -Iprovisioner tests/fuzz/fuzz_tap.c $objs \
	$(pkg-config --libs $PKGS) -o "$OUT/fuzz_tap"
echo "built $OUT/fuzz_tap"
# shellcheck disable=SC2086
$CC $FLAGS -fsanitize=fuzzer -Iprovisioner tests/fuzz/fuzz_redact.c $objs \
	$(pkg-config --libs $PKGS) -o "$OUT/fuzz_redact"
echo "built $OUT/fuzz_redact"

if [ "${1:-}" = run ]; then
	secs=${2:-60}
	name=${3:-manifest}
	case $name in
	manifest) extra="-max_len=65536 -dict=tests/fuzz/manifest.dict" ;;
	narinfo) extra="-max_len=70000 -dict=tests/fuzz/narinfo.dict" ;;
	tap) extra="-max_len=65536 -dict=tests/fuzz/tap.dict" ;;
	redact) extra="-max_len=4096 -dict=tests/fuzz/redact.dict" ;;
	*) echo "fuzz: unknown harness '$name'" >&2; exit 2 ;;
	esac
	# shellcheck disable=SC2086
	ASAN_OPTIONS=detect_leaks=1 "$OUT/fuzz_$name" \
		-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 $extra \
		"$OUT/corpus/$name" "tests/fuzz/corpus/$name"
fi
