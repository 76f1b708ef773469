#!/usr/bin/env bash
# tests/run.sh: runs the unit tests (cmocka, TAP output) and the
# integration tests (tests/t*.sh), counts every "ok"/"not ok" line and ends
# with one line "N passed, N failed, N skipped". An "ok" line with a TAP
# "# SKIP" directive (lib.sh's t_skip, cmocka's skip()) counts as skipped,
# not passed, and is listed under "skipped:". Exit status 0 only when
# nothing failed and at least one test ran.
#
#   tests/run.sh --stagehand ./stagehand --unit-dir build/tests
#       [--unit-only] [--only PATTERN] [--skip PATTERN]
#       [--tier all|check|box|vm|arm64]
#
# Tiers: tests/t0*.sh run on the namespace test box (seconds each);
# tests/t1*.sh run on QEMU VMs (tests/vm/vm: a kernel, systemd, reboots;
# minutes each under TCG): t10* the step kinds that need one, t11* the
# stages and the boot proof, t12* the local Packer (qemu) pipeline, t13*
# the same pipeline for aarch64 (emulated: the slowest). --tier vm runs
# t10* to t12* (no unit tests, no lint); arm64 only t13*; box everything
# but t1*; check (what `make check` runs) the box tier and the boot proof
# (t11*); all (the default) everything.
# --skip leaves out the scripts whose path contains PATTERN.
set -u
cd "$(dirname "$0")/.."

stagehand=./stagehand
unit_dir=build/tests
unit_only=0
only=""
skip_pat=""
tier=all
while [ $# -gt 0 ]; do
	case $1 in
	--stagehand) stagehand=$2; shift 2 ;;
	--unit-dir) unit_dir=$2; shift 2 ;;
	--unit-only) unit_only=1; shift ;;
	--only) only=$2; shift 2 ;;
	--skip) skip_pat=$2; shift 2 ;;
	--tier) tier=$2; shift 2 ;;
	*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
# The integration tests bring up test boxes (network namespaces, mounts):
# without root every one of them would fail the same way, so stop here.
if [ "$unit_only" = 0 ] && [ "$(id -u)" != 0 ]; then
	echo "run.sh: the integration tests need root (the test box makes network namespaces and mounts): run sudo make check, or make unit for the unit tests alone" >&2
	exit 2
fi
export STAGEHAND=$PWD/${stagehand#./}
case $stagehand in /*) STAGEHAND=$stagehand ;; esac
export CMOCKA_MESSAGE_OUTPUT=TAP

out=$(mktemp -d /tmp/stagehand-run.XXXXXX)
trap 'rm -rf "$out"' EXIT
pass=0
fail=0
skip=0
failed_files=""
skipped_lines=""

# TAP: "ok N - desc # SKIP reason" (the directive is case-insensitive).
skip_re='^ok [0-9]+[^#]*# *[Ss][Kk][Ii][Pp]'

count() { # name logfile rc
	local p f s planned
	p=$(grep -cE '^ok [0-9]+' "$2" || true)
	s=$(grep -cE "$skip_re" "$2" || true)
	p=$((p - s))
	f=$(grep -cE '^not ok [0-9]+' "$2" || true)
	# A script that died without reporting counts as one failure.
	if [ "$3" != 0 ] && [ "$f" = 0 ]; then
		f=1
		echo "not ok - $1 exited $3 without reporting a failure" >>"$2"
	fi
	if [ "$p" = 0 ] && [ "$f" = 0 ] && [ "$s" = 0 ]; then
		f=1
		echo "not ok - $1 ran no test" >>"$2"
	fi
	# A script declares its checks up front (TAP "1..N": t_plan, cmocka);
	# one that stops early, even with exit 0, has lost checks.
	planned=$(sed -n 's/^1\.\.\([0-9][0-9]*\)$/\1/p' "$2" | head -n 1)
	if [ -z "$planned" ]; then
		f=$((f + 1))
		echo "not ok - $1 declares no plan (t_plan N)" >>"$2"
	elif [ $((p + f + s)) -lt "$planned" ]; then
		echo "not ok - $1 planned $planned checks but ran $((p + f + s))" >>"$2"
		f=$((f + 1))
	fi
	pass=$((pass + p))
	fail=$((fail + f))
	skip=$((skip + s))
	[ "$f" = 0 ] || failed_files="$failed_files $1"
	[ "$s" = 0 ] || skipped_lines="$skipped_lines$(grep -E "$skip_re" "$2" |
		sed "s|^|    $1: |")
"
	printf '%-44s %4d passed %3d failed %3d skipped\n' "$1" "$p" "$f" "$s"
}

run_one() { # name cmd...
	local name=$1 log rc=0
	shift
	log=$out/$(basename "$name").log
	"$@" >"$log" 2>&1 </dev/null || rc=$?
	count "$name" "$log" "$rc"
	if grep -qE '^not ok' "$log"; then
		grep -E -A40 '^not ok' "$log" | head -n 80 | sed 's/^/    /'
	fi
}

case $tier in all | check | box | vm | arm64) ;; *) echo "run.sh: --tier all, check, box, vm or arm64" >&2; exit 2 ;; esac
for t in "$unit_dir"/test_*; do
	[ "$tier" != vm ] && [ "$tier" != arm64 ] || break
	[ -x "$t" ] || continue
	case $t in *"$only"*) ;; *) continue ;; esac
	run_one "$t" "$t"
done

if [ "$unit_only" = 0 ]; then
	[ "$tier" = vm ] || [ "$tier" = arm64 ] || run_one tests/lint.sh tests/lint.sh
	for t in tests/t[0-9]*.sh; do
		case $t in *"$only"*) ;; *) continue ;; esac
		[ -z "$skip_pat" ] || case $t in *"$skip_pat"*) continue ;; esac
		case $tier:$t in
		box:tests/t1* | check:tests/t1[023]* | vm:tests/t0* | vm:tests/t13*) continue ;;
		arm64:tests/t13*) ;;
		arm64:*) continue ;;
		esac
		run_one "$t" bash "$t"
	done
fi

[ -z "$skipped_lines" ] || printf 'skipped:\n%s' "$skipped_lines"
[ -z "$failed_files" ] || echo "failed:$failed_files"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ] && [ "$pass" -gt 0 ]
