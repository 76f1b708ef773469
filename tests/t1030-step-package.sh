#!/usr/bin/env bash
# The package step kind on the VM tier (tests/vm/vm): a real Debian 12
# guest whose apt reaches Debian's archive through QEMU's user network.
# plan lists what it would install and installs nothing; run installs
# (updating the empty package lists first), a second run is ok; a pinned
# version that is installed counts as present; hold and unhold; absent
# removes; fresh lists are not updated again, update_cache_age 0 updates
# them; a package that does not exist fails naming it with apt's line and
# installs nothing of its transaction; a pinned version that does not
# exist fails with apt's line; a virtual package fails. A local
# repository (two versions of a package with a config file, built in the
# guest) shows a new source updating fresh lists, a held package moved
# between pinned versions and held again, the local config file kept,
# apt's refusal of an unmanaged hold, remove leaving config files (which
# counts as absent) and purge. The times are printed as comments only.
. "$(dirname "$0")/lib.sh"
t_plan 51

VM=$TOP/tests/vm/vm
vm_name=tpk$(printf '%04x' $(($$ % 65536)))
now() { date +%s; }

t0=$(now)
if ! vm_up "$vm_name" 2>"$T/up.err"; then
	t_not "the VM comes up" "$T/up.err"
	t_done
	exit 1
fi
echo "# boot to SSH + cloud-init: $(($(now) - t0)) s"

gssh() { "$VM" ssh "$vm_name" -- "$@" 2>/dev/null; }
# status PKG: dpkg's status of PKG ("ii" installed, "un" known but not
# installed, "rc" config files only), empty when dpkg has none.
status() { gssh "dpkg-query -W -f='\${db:Status-Abbrev}' $1" | tr -d ' '; }
changes() { jr "$T/$1" '.steps[0].changes[]'; }
err_of() { jr "$T/$1" '.steps[0].error.message'; }
# manifest FILE BODY: one package step whose body is BODY.
manifest() {
	printf 'stagehand: 1\nstage: package\nsteps:\n  - name: packages\n    package: %s\n' "$2" >"$T/$1"
}
# timed NAME CMD...: runs CMD and prints its time as a comment.
timed() {
	local t1
	t1=$(now)
	"${@:2}"
	echo "# $1: $(($(now) - t1)) s"
}

t_ok "tree and jq are not in the base image" \
	test "$(status tree)$(status jq)" = ""

# ---- plan, then install
manifest tree.yml '{names: tree}'
before=$(gssh 'ls /var/lib/apt/lists; ls -l /var/lib/dpkg/status')
timed "plan (install tree)" sh_run plan "$T/tree.yml" "${SSH_ARGS[@]}" --report "$T/p1"
t_ok "plan succeeds" rc_is 0
t_ok "plan reports would_change" test "$(jr "$T/p1" '.steps[0].status')" = would_change
t_ok "plan lists the update of the empty lists and the install" \
	test "$(changes p1 | tr '\n' '|')" = "update the package lists (none yet)|install tree|"
t_ok "plan installs nothing and updates nothing" \
	test "$(status tree):$(gssh 'ls /var/lib/apt/lists; ls -l /var/lib/dpkg/status')" = ":$before"

timed "run (apt-get update + install tree)" run r1 "$T/tree.yml"
t_ok "the first run succeeds" rc_is 0
t_ok "it reports changed with the same lines" \
	test "$(jr "$T/r1" '.steps[0].status'):$(changes r1 | tr '\n' '|')" = \
	"changed:update the package lists (none yet)|install tree|"
t_ok "tree is installed" test "$(status tree)" = ii
t_ok "apt's output is the step's output" \
	has_text "Setting up tree" jr "$T/r1" '.steps[0].output'
t_ok "the update left its stamp" gssh test -f /var/lib/apt/periodic/update-success-stamp

timed "run again" run r2 "$T/tree.yml"
t_ok "the second run succeeds" rc_is 0
t_ok "the second run reports ok, no changes" \
	test "$(jr "$T/r2" '.steps[0].status'):$(changes r2 | wc -l)" = "ok:0"

# ---- a pinned version: present only at that version
v=$(gssh "dpkg-query -W -f='\${Version}' tree")
manifest pin.yml "{names: [\"tree=$v\"]}"
run r3 "$T/pin.yml"
t_ok "the installed version, pinned, is ok" \
	test "$RC:$(jr "$T/r3" '.steps[0].status')" = "0:ok"
manifest badpin.yml '{names: ["tree=0.0.1-0stagehand"]}'
sh_run plan "$T/badpin.yml" "${SSH_ARGS[@]}" --report "$T/p4"
t_ok "another pinned version is a change" \
	test "$(changes p4)" = "tree: $v -> 0.0.1-0stagehand"
run r4 "$T/badpin.yml"
t_ok "a pinned version that does not exist fails the step" rc_is 1
t_ok "the error is apt's line, naming version and package" \
	test "$(err_of r4)" = "apt-get install: exit 100: E: Version '0.0.1-0stagehand' for 'tree' was not found"
t_ok "tree is still installed at its version" \
	test "$(status tree):$(gssh "dpkg-query -W -f='\${Version}' tree")" = "ii:$v"

# ---- hold and unhold
manifest hold.yml '{names: tree, hold: true}'
run r5 "$T/hold.yml"
t_ok "hold: true holds it" \
	test "$RC:$(changes r5):$(gssh apt-mark showhold)" = "0:hold tree:tree"
run r6 "$T/hold.yml"
t_ok "holding again is ok" test "$RC:$(jr "$T/r6" '.steps[0].status')" = "0:ok"
manifest unhold.yml '{names: tree, hold: false}'
run r7 "$T/unhold.yml"
t_ok "hold: false unholds it" \
	test "$RC:$(changes r7):$(gssh apt-mark showhold)" = "0:unhold tree:"
run r8 "$T/unhold.yml"
t_ok "unholding again is ok" test "$RC:$(jr "$T/r8" '.steps[0].status')" = "0:ok"

# ---- fresh lists are not updated again; no recommends by default
# (laptop-detect recommends dmidecode, which the base image lacks)
manifest jq.yml '{names: [jq, laptop-detect]}'
timed "run (install jq laptop-detect, fresh lists)" run r9 "$T/jq.yml"
t_ok "another install with fresh lists does not update them" \
	test "$RC:$(changes r9 | tr '\n' '|')" = "0:install jq|install laptop-detect|"
t_ok "jq and laptop-detect are installed" test "$(status jq)$(status laptop-detect)" = iiii
t_ok "without install_recommends the recommended package is not" \
	test "$(status dmidecode)" != ii

# ---- absent
manifest absent.yml '{names: [tree, jq, laptop-detect], state: absent}'
sh_run plan "$T/absent.yml" "${SSH_ARGS[@]}" --report "$T/p10"
t_ok "plan of absent lists the removals" \
	test "$RC:$(changes p10 | tr '\n' '|')" = "0:remove tree|remove jq|remove laptop-detect|"
t_ok "plan removed nothing" test "$(status tree)$(status jq)" = iiii
timed "run (remove tree jq laptop-detect)" run r10 "$T/absent.yml"
t_ok "state absent removes them" \
	test "$RC:$(jr "$T/r10" '.steps[0].status')" = "0:changed"
t_ok "tree, jq and laptop-detect are gone" \
	sh -c 'case "$1" in *ii*) exit 1 ;; esac' _ "$(status tree):$(status jq):$(status laptop-detect)"
run r11 "$T/absent.yml"
t_ok "removing again is ok" test "$RC:$(jr "$T/r11" '.steps[0].status')" = "0:ok"

# ---- a package that does not exist: apt's line, and nothing installed
manifest missing.yml '{names: [tree, stagehand-no-such-package]}'
run r12 "$T/missing.yml"
t_ok "a package that does not exist fails the step" rc_is 1
t_ok "the error is apt's line naming it" \
	test "$(err_of r12)" = "apt-get install: exit 100: E: Unable to locate package stagehand-no-such-package"
t_ok "one transaction: tree was not installed either" \
	sh -c 'case "$1" in ii*) exit 1 ;; esac' _ "$(status tree)"

# ---- update_cache_age 0: update before every install; recommends
manifest age0.yml '{names: [tree, laptop-detect], update_cache_age: 0, install_recommends: true}'
timed "run (update + install tree laptop-detect)" run r13 "$T/age0.yml"
t_ok "update_cache_age 0 updates fresh lists before installing" \
	sh -c 'test "$1" = 0 && printf "%s\n" "$2" | grep -q "^update the package lists (last update [0-9]* s ago)|install tree|install laptop-detect|$"' \
	_ "$RC" "$(changes r13 | tr '\n' '|')"
t_ok "tree is installed again" test "$(status tree)" = ii
t_ok "install_recommends brought the recommended package" test "$(status dmidecode)" = ii
run r14 "$T/age0.yml"
t_ok "with nothing to install there is no update" \
	test "$RC:$(jr "$T/r14" '.steps[0].status')" = "0:ok"

# ---- a virtual package that one package provides
manifest virtual.yml '{names: architecture-is-64-bit}'
run r15 "$T/virtual.yml"
t_ok "a virtual package fails: it would be installed again on every run" \
	test "$RC:$(err_of r15)" = "1:architecture-is-64-bit is not installed after apt-get install (a virtual package? name the one that provides it)"

# ---- a local repository: two versions of a package with a config file
gssh 'sudo -n sh -s' <<'SH'
set -eu
mkdir -p /srv/stagehand-repo
cd /srv/stagehand-repo
for v in 1.0-1 2.0-1; do
	d=$(mktemp -d)
	mkdir -p "$d/DEBIAN" "$d/etc"
	printf 'Package: stagehand-test\nVersion: %s\nArchitecture: all\nMaintainer: stagehand tests <root@localhost>\nDescription: a package for the stagehand tests\n' "$v" >"$d/DEBIAN/control"
	echo /etc/stagehand-test.conf >"$d/DEBIAN/conffiles"
	echo "shipped by $v" >"$d/etc/stagehand-test.conf"
	dpkg-deb --root-owner-group --build "$d" "stagehand-test_${v}_all.deb" >/dev/null
	rm -rf "$d"
done
for f in *.deb; do
	dpkg-deb -f "$f"
	echo "Filename: ./$f"
	echo "Size: $(stat -c %s "$f")"
	echo "SHA256: $(sha256sum "$f" | cut -d' ' -f1)"
	echo
done >Packages
echo 'deb [trusted=yes] file:/srv/stagehand-repo ./' >/etc/apt/sources.list.d/stagehand-test.list
SH
tver() { gssh "dpkg-query -W -f='\${Version}' stagehand-test"; }
manifest l1.yml '{names: ["stagehand-test=1.0-1"], hold: true}'
run l1 "$T/l1.yml"
t_ok "a new source makes fresh lists stale; the pinned version is installed, then held" \
	test "$RC:$(changes l1 | tr '\n' '|')" = "0:update the package lists (sources changed since the last update)|install stagehand-test=1.0-1|hold stagehand-test|"
t_ok "it is at 1.0-1 and held" test "$(tver):$(gssh apt-mark showhold)" = "1.0-1:stagehand-test"
gssh 'echo changed here | sudo -n tee /etc/stagehand-test.conf >/dev/null'
manifest l2.yml '{names: ["stagehand-test=2.0-1"], hold: true}'
run l2 "$T/l2.yml"
t_ok "a held package moves to another pinned version" \
	test "$RC:$(changes l2)" = "0:stagehand-test: 1.0-1 -> 2.0-1"
t_ok "it is at 2.0-1 and held again" test "$(tver):$(gssh apt-mark showhold)" = "2.0-1:stagehand-test"
t_ok "the changed config file is kept, the new one set aside (confold)" \
	test "$(gssh cat /etc/stagehand-test.conf /etc/stagehand-test.conf.dpkg-dist)" = "changed here
shipped by 2.0-1"
run l3 "$T/l2.yml"
t_ok "the same pin again is ok" test "$RC:$(jr "$T/l3" '.steps[0].status')" = "0:ok"
manifest l4.yml '{names: ["stagehand-test=1.0-1"]}'
run l4 "$T/l4.yml"
t_ok "changing a held package without managing its hold fails with apt's line" \
	test "$RC:$(err_of l4)" = "1:apt-get install: exit 100: E: Held packages were changed and -y was used without --allow-change-held-packages."
manifest l5.yml '{names: stagehand-test, state: absent, hold: false}'
run l5 "$T/l5.yml"
t_ok "absent with hold: false unholds, then removes" \
	test "$RC:$(changes l5 | tr '\n' '|')" = "0:unhold stagehand-test|remove stagehand-test|"
t_ok "remove leaves the config file (dpkg status rc)" \
	test "$(status stagehand-test):$(gssh cat /etc/stagehand-test.conf)" = "rc:changed here"
run l6 "$T/l5.yml"
t_ok "only config files left counts as absent" test "$RC:$(jr "$T/l6" '.steps[0].status')" = "0:ok"
manifest l7.yml '{names: stagehand-test, state: absent, purge: true}'
run l7 "$T/l7.yml"
t_ok "purge removes what is left" \
	test "$RC:$(changes l7):$(status stagehand-test)" = "0:purge stagehand-test:"
t_ok "the config file is gone" gssh '! ls /etc/stagehand-test.conf*'
run l8 "$T/l7.yml"
t_ok "purging again is ok" test "$RC:$(jr "$T/l8" '.steps[0].status')" = "0:ok"

t_ok "down removes the VM" "$VM" down "$vm_name"

t_done
