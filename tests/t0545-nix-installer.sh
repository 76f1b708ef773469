#!/usr/bin/env bash
# playbooks/nix-installer.yml against the test box, with a STAND-IN for the
# official Nix installer tarball: this machine cannot download the real one.
# The stand-in has the real tarball's layout (one nix-VERSION-SYSTEM/
# directory with an `install` script, a store/ directory and .reginfo), but
# its `install` only records how it was called and creates the file the
# real multi-user installer leaves behind (nix-store in the default
# profile), inside the box. So this proves the playbook's mechanics (digest
# check before the upload, unpack, the installer's arguments and user, the
# skip once Nix exists, the cleanup), not that the real installer works.
. "$(dirname "$0")/lib.sh"
t_plan 17

box_up "$(box_name nx)" || { t_not "test box comes up"; t_done; exit 1; }

count() { jr "$T/$1" "[.steps[] | select(.status == \"$2\")] | length"; }
W=/root/nix-installer
MARK=/nix/var/nix/profiles/default/bin/nix-store
LOG=/var/tmp/t0545-install.log

# ---- the stand-in tarball
S=$T/src/nix-9.9-x86_64-linux
mkdir -p "$S/store/aaaa-nix-9.9/bin"
: >"$S/.reginfo"
cat >"$S/install" <<'SH'
#!/bin/sh
# Stand-in for the Nix installer (t0545): records its call, then creates
# what the real multi-user install leaves in the default profile.
set -e
self=$(dirname "$0")
[ -e "$self/.reginfo" ] && [ -d "$self/store" ] || { echo "incomplete installer" >&2; exit 1; }
echo "args=$* user=$(id -un) home=$HOME" >>/var/tmp/t0545-install.log
mkdir -p /nix/var/nix/profiles/default/bin
printf '#!/bin/sh\necho "nix-store (stand-in) 9.9"\n' >/nix/var/nix/profiles/default/bin/nix-store
chmod 0755 /nix/var/nix/profiles/default/bin/nix-store
SH
chmod 0755 "$S/install"
tar -C "$T/src" -cJf "$T/nix-9.9-x86_64-linux.tar.xz" nix-9.9-x86_64-linux
sha=$(sha256sum "$T/nix-9.9-x86_64-linux.tar.xz" | cut -d' ' -f1)
printf 'not the installer\n' >"$T/other.tar.xz"

# stage FILE TARBALL DIGEST: a stage that includes the playbook
stage() {
	cat >"$1" <<YML
stagehand: 1
stage: nix-installer
vars:
  nix_installer_tarball: $2
  nix_installer_sha256: $3
steps:
  - include: $TOP/playbooks/nix-installer.yml
YML
}
stage "$T/good.yml" "$T/nix-9.9-x86_64-linux.tar.xz" "$sha"
# the wrong file under the right digest: what a swapped download looks like
stage "$T/wrong.yml" "$T/other.tar.xz" "$sha"
nix() { run "$1" "$2" --include-root "$TOP"; }

# ---- a digest mismatch fails before anything is uploaded
nix r0 "$T/wrong.yml"
t_ok "a tarball that does not match its sha256 fails the run" rc_is 1
t_ok "the upload step fails with the mismatch, and no remote command ran for it" \
	test "$(jr "$T/r0" '[.steps[1].status, (.steps[1].error.message | contains("other.tar.xz: sha256 mismatch: expected '"$sha"'")), .steps[1].exit_status] | join(" ")')" = "failed true "
t_ok "nothing was uploaded, unpacked or installed" \
	test "$(box_exec sh -c "ls -A $W; ls $LOG $MARK 2>/dev/null; true")" = ""

# ---- plan, run, run again
before=$(box_snapshot)
sh_run plan "$T/good.yml" "${SSH_ARGS[@]}" --report "$T/p1" --include-root "$TOP"
t_ok "plan succeeds" rc_is 0
t_ok "plan changes nothing on the box" test "$before" = "$(box_snapshot)"

nix r1 "$T/good.yml"
t_ok "the first run succeeds" rc_is 0
t_ok "every step changes something" test "$(count r1 changed)" = 5
t_ok "the installer ran once, as root, with the multi-user arguments" \
	test "$(box_exec cat $LOG)" = "args=--daemon --yes --no-channel-add user=root home=/root"
t_ok "nix-store exists in the default profile" box_exec $MARK
t_ok "the work directory, tarball and unpacked tree are gone" box_exec test ! -e $W
t_ok "no stagehand temp file is left under /root" \
	test -z "$(box_exec find /root -name '.stagehand*')"

nix r2 "$T/good.yml"
t_ok "the second run succeeds" rc_is 0
t_ok "the second run changes nothing" test "$(count r2 changed)" = 0
t_ok "the installer did not run again" test "$(box_exec cat $LOG | wc -l)" = 1
t_ok "the upload was skipped because nix-store exists" \
	test "$(jr "$T/r2" '.steps[1].details.skipped_by')" = creates
t_ok "every step but the cleanup was skipped by creates" \
	test "$(jr "$T/r2" '[.steps[].details.skipped_by] | join(" ")')" = "creates creates creates creates unless"

# the digest is checked even when Nix is there: a wrong tarball is a
# broken manifest, whatever the target holds
nix r3 "$T/wrong.yml"
t_ok "a mismatch fails also once Nix is installed" rc_is 1

t_done
