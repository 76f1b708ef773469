#!/usr/bin/env bash
# t0980: every libFuzzer harness (manifest, narinfo, tap, known_hosts,
# redact, nartar) builds and runs for a short bounded time from its seed
# corpus without a finding. `make fuzz` builds them; tests/fuzz/build.sh run NAME
# SECS fuzzes one for longer. FUZZ_SECS sets the bound (default 8 s each).
. "$(dirname "$0")/lib.sh"
t_plan 8

secs=${FUZZ_SECS:-8}
harnesses=$(sed -n 's/^HARNESSES="\(.*\)"$/\1/p' "$TOP/tests/fuzz/build.sh")

t_ok "the harness list is read from tests/fuzz/build.sh" test -n "$harnesses"
t_ok "every harness builds (clang, libFuzzer, ASan, UBSan)" \
	"$TOP/tests/fuzz/build.sh"
for h in $harnesses; do
	log=$T/fuzz-$h.log
	rc=0
	"$TOP/tests/fuzz/build.sh" run "$secs" "$h" >"$log" 2>&1 || rc=$?
	if [ "$rc" = 0 ] && grep -q 'Done [0-9]* runs' "$log"; then
		t_pass "fuzz_$h ran $secs s without a finding ($(grep -o 'Done [0-9]* runs' "$log"))"
	else
		echo "exit $rc" >>"$log"
		t_not "fuzz_$h ran $secs s without a finding" "$log"
	fi
done
t_done
