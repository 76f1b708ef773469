#!/usr/bin/env bash
# The VM tier (tests/vm/vm): a real Debian 12 guest under QEMU, booted from
# the cloud-like base image with a NoCloud seed. The build user exists only
# because cloud-init made it, SSH works with strict host-key checking from
# the first connection, systemd is PID 1, a reboot and a stop + start come
# back (the disk kept), down is idempotent, and stagehand runs a small
# manifest against the guest twice (the second run changes nothing).
# The times (image, boot, reboot, start) are printed as comments only.
. "$(dirname "$0")/lib.sh"
t_plan 28

VM=$TOP/tests/vm/vm
vm_name=tvm$(printf '%04x' $(($$ % 65536)))
trap '"$VM" down "$vm_name" >/dev/null 2>&1; _t_cleanup' EXIT
now() { date +%s; }
# gone PID: no such process (a zombie not yet reaped counts as gone).
gone() { ! grep -qs '^State:[[:space:]]*[^Z[:space:]]' "/proc/$1/status"; }

# vm_lines FILE: exports the KEY=value lines of an up/env/wait output.
vm_lines() {
	local line
	while IFS= read -r line; do
		case $line in TESTBOX_[A-Z_0-9]*=* | VM_[A-Z_0-9]*=*) export "${line?}" ;; esac
	done <"$1"
}

# gssh CMD...: plain ssh as the build user, strict host-key checking
# against the known_hosts file `vm up` wrote, nothing else trusted.
gssh() {
	ssh -F /dev/null -i "$TESTBOX_KEY" -o IdentitiesOnly=yes \
		-o UserKnownHostsFile="$TESTBOX_KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null \
		-o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10 -o LogLevel=ERROR \
		-p "$TESTBOX_PORT" "$TESTBOX_USER@$TESTBOX_HOST" "$@"
}

t0=$(now)
if ! "$VM" image >"$T/image" 2>"$T/image.err"; then
	t_not "the base image builds" "$T/image.err"
	t_done
	exit 1
fi
echo "# image (build or reuse): $(($(now) - t0)) s"
vm_lines "$T/image"
t_pass "the base image builds"

t0=$(now)
if ! "$VM" up "$vm_name" >"$T/up1" 2>"$T/up1.err"; then
	t_not "the VM comes up" "$T/up1.err"
	t_done
	exit 1
fi
echo "# boot to SSH + cloud-init done: $(($(now) - t0)) s ($(sed -n 's/^VM_ACCEL=//p' "$T/up1"))"
t_pass "the VM comes up"
vm_lines "$T/up1"
t_ok "up prints testbox's lines and the VM's" \
	sh -c 'test "$TESTBOX_HOST" = 127.0.0.1 && test -n "$TESTBOX_PORT" &&
		test -s "$TESTBOX_KEY" && test -s "$TESTBOX_KNOWN_HOSTS" &&
		test -f "$VM_DISK" && test -d "/proc/$VM_PID" && test -n "$VM_BOOT_ID" &&
		test "$VM_NAME" = "$1"' _ "$vm_name"
SSH_ARGS=(--target "ssh://$TESTBOX_USER@$TESTBOX_HOST:$TESTBOX_PORT"
	--identity "$TESTBOX_KEY" --known-hosts "$TESTBOX_KNOWN_HOSTS")

# ---- the guest, as cloud-init left it
t_ok "ssh as the build user with strict host-key checking" \
	test "$(gssh id -un)" = "$TESTBOX_USER"
: >"$T/empty_known_hosts"
t_fail "ssh refuses the guest with an empty known_hosts" \
	env TESTBOX_KNOWN_HOSTS="$T/empty_known_hosts" babash -c "$(declare -f gssh); gssh true"
t_ok "cloud-init has finished" bash -c "$(declare -f gssh); gssh cloud-init status | grep -qx 'status: done'"
t_ok "cloud-init created the build user" \
	bash -c "$(declare -f gssh); gssh sudo -n grep -q \"'Adding user $TESTBOX_USER'\" /var/log/cloud-init.log"
# The base image itself (read with debugfs from a raw copy, no mount): no
# user but root, no host keys, like a cloud image.
qemu-img convert -O raw "$VM_IMAGE" "$T/base.raw" 2>"$T/.log"
t_ok "the base image has no build user" \
	sh -c '! debugfs -R "cat /etc/passwd" "$1" 2>/dev/null | grep -q "^$2:" &&
		debugfs -R "cat /etc/passwd" "$1" 2>/dev/null | grep -q "^root:"' _ "$T/base.raw" "$TESTBOX_USER"
t_ok "the base image has no SSH host key" \
	sh -c '! debugfs -R "ls /etc/ssh" "$1" 2>/dev/null | grep -q ssh_host_' _ "$T/base.raw"
rm -f "$T/base.raw"
t_ok "passwordless sudo works" gssh sudo -n true
t_ok "systemd is PID 1" test "$(gssh cat /proc/1/comm)" = systemd
t_ok "the system is running (or degraded)" \
	bash -c "$(declare -f gssh); s=\$(gssh systemctl is-system-running); echo \"\$s\"; [ \"\$s\" = running ] || [ \"\$s\" = degraded ]"
t_ok "the guest runs its own kernel" test "$(gssh uname -r)" != "$(uname -r)"
"$VM" up "$vm_name" >"$T/up2" 2>"$T/.log"
t_ok "up on a running VM reprints the same lines" cmp "$T/up1" "$T/up2"
"$VM" env "$vm_name" >"$T/env" 2>"$T/.log"
t_ok "env prints the same lines" cmp "$T/up1" "$T/env"

# ---- stagehand against the guest
cat >"$T/vm.yml" <<'YML'
stagehand: 1
stage: vm
steps:
  - name: a file written by a shell step
    shell:
      script: mkdir -p /srv/t1000 && echo "written by stagehand" > /srv/t1000/hello
      creates: /srv/t1000/hello
  - name: its mode
    path: { path: /srv/t1000/hello, state: file, mode: "0640" }
YML
sh_run run "$T/vm.yml" "${SSH_ARGS[@]}" --report "$T/r1"
t_ok "stagehand runs the manifest against the VM" rc_is 0
t_ok "the first run changes the guest" test "$(changed_count r1)" = 2
t_ok "the file is there with its mode" \
	test "$(gssh sudo -n stat -c %a /srv/t1000/hello)" = 640
sh_run run "$T/vm.yml" "${SSH_ARGS[@]}" --report "$T/r2"
t_ok "the second run passes" rc_is 0
t_ok "the second run changes nothing" test "$(changed_count r2)" = 0

# ---- reboot: the same disk, a new boot
gssh 'echo before-reboot | sudo -n tee /var/tmp/t1000-marker >/dev/null'
t0=$(now)
gssh sudo -n systemctl reboot >/dev/null 2>&1 || true
"$VM" wait "$vm_name" --new-boot >"$T/wait" 2>"$T/wait.err" || cat "$T/wait.err" >>"$T/wait"
echo "# reboot to SSH + cloud-init: $(($(now) - t0)) s"
old_boot=$VM_BOOT_ID
vm_lines "$T/wait"
t_ok "the VM comes back from a reboot with a new boot id" \
	sh -c 'test -n "$1" && test "$1" != "$2" && test "$(cat /proc/sys/kernel/random/boot_id)" != "$1"' _ "$VM_BOOT_ID" "$old_boot"
t_ok "the boot id is the guest's" test "$(gssh cat /proc/sys/kernel/random/boot_id)" = "$VM_BOOT_ID"

# ---- stop + start: the same disk boots again
gssh 'echo before-stop | sudo -n tee /var/tmp/t1000-marker >/dev/null'
t0=$(now)
t_ok "stop powers the VM off" "$VM" stop "$vm_name"
echo "# stop: $(($(now) - t0)) s"
t_ok "the disk is kept and qemu is gone" \
	bash -c "$(declare -f gone)"'; test -f "$1" && gone "$2" && "$3" env "$4" | grep -qx VM_STATE=stopped' \
	_ "$VM_DISK" "$VM_PID" "$VM" "$vm_name"
t0=$(now)
"$VM" start "$vm_name" >"$T/start" 2>"$T/start.err" || cat "$T/start.err" >>"$T/start"
echo "# start to SSH + cloud-init: $(($(now) - t0)) s"
old_boot=$VM_BOOT_ID
vm_lines "$T/start"
t_ok "start boots the same disk (the file written before is there)" \
	bash -c "$(declare -f gssh); test \"\$(gssh cat /var/tmp/t1000-marker)\" = before-stop && test '$VM_BOOT_ID' != '$old_boot'"

# ---- down, twice
t_ok "down removes the VM" "$VM" down "$vm_name"
t_ok "qemu and the state are gone" \
	bash -c "$(declare -f gone)"'; gone "$1" && ! test -e "$2" && ! "$3" env "$4"' _ "$VM_PID" "$TESTBOX_STATE" "$VM" "$vm_name"
t_ok "down again is a no-op" "$VM" down "$vm_name"

t_done
