#!/usr/bin/env bash
# Self-test of tests/testbox/testbox: a box is reachable over real ssh, what
# it changes stays in its overlay, several run at once, kill-sessions drops
# connections, and down leaves nothing behind. Runs as root.
# Most checks run `sh -c '...' _ ARGS`, whose $1.. expand in that inner sh:
# shellcheck disable=SC2016
set -eu

here=$(cd "$(dirname "$0")" && pwd)
tb=$here/testbox/testbox
a=t10-$(($$ % 100000))-a
b=t10-$(($$ % 100000))-b
work=$(mktemp -d)
passed=0
failed=0
n=0
echo "1..38"

ok() {
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then
		passed=$((passed + 1))
		echo "ok $n - $2"
	else
		failed=$((failed + 1))
		echo "not ok $n - $2"
	fi
}
# check DESCRIPTION CMD...: one test line for CMD's exit status.
check() {
	local d=$1 rc=0
	shift
	"$@" >"$work/out" 2>&1 || rc=$?
	ok "$rc" "$d"
	if [ "$rc" -ne 0 ]; then sed 's/^/#   /' "$work/out"; fi
	return 0
}
cleanup() {
	local rc=$?
	[ -n "${bgpid-}" ] && kill "$bgpid" 2>/dev/null
	"$tb" down "$a" >/dev/null 2>&1 || true
	"$tb" down "$b" >/dev/null 2>&1 || true
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# load NAME: read a box's KEY=value lines into A_* or B_* variables.
load() {
	local k v
	# shellcheck disable=SC2034 # v is read by the eval
	while IFS='=' read -r k v; do eval "$1_${k#TESTBOX_}=\$v"; done <"$work/$1.env"
}
# sshto PREFIX CMD...: real ssh with the printed key and known_hosts only.
sshto() {
	local key=$1_KEY kh=$1_KNOWN_HOSTS port=$1_PORT user=$1_USER host=$1_HOST
	shift
	ssh -F /dev/null -i "${!key}" -o IdentitiesOnly=yes -o BatchMode=yes \
		-o UserKnownHostsFile="${!kh}" -o GlobalKnownHostsFile=/dev/null \
		-o StrictHostKeyChecking=yes -o ConnectTimeout=5 -o LogLevel=ERROR \
		-p "${!port}" -- "${!user}@${!host}" "$@"
}
host_sums() { md5sum /etc/passwd /etc/shadow /etc/group /etc/hosts /etc/hostname; ls /etc/sudoers.d; hostname; }

host_sums >"$work/host-before"

# --- up ---
t0=$(date +%s%N)
rc=0
"$tb" up "$a" >"$work/A.env" 2>"$work/up.err" || rc=$?
t1=$(date +%s%N)
ok "$rc" "up $a ($(((t1 - t0) / 1000000)) ms)"
if [ "$rc" -ne 0 ]; then
	sed 's/^/#   /' "$work/up.err"
	exit 1
fi
load A
check "up prints exactly the 12 KEY=value lines (FRONT empty)" \
	test "$(grep -cE '^TESTBOX_(NAME|HOST|HOST6|PORT|USER|KEY|KNOWN_HOSTS|HOST_KEY_SHA256|GATEWAY|UPPER|STATE)=.' "$work/A.env")" = 11 -a \
	"$(grep -cx 'TESTBOX_FRONT=' "$work/A.env")" = 1 -a \
	"$(wc -l <"$work/A.env")" = 12
check "key is mode 0600, known_hosts is 'host ssh-ed25519 ...'" \
	sh -c '[ "$(stat -c %a "$1")" = 600 ] && grep -qx "$2 ssh-ed25519 AAAA[^ ]*" "$3"' _ \
	"$A_KEY" "$A_HOST" "$A_KNOWN_HOSTS"
check "TESTBOX_HOST_KEY_SHA256 is the fingerprint of known_hosts' key" \
	sh -c 'ssh-keygen -lf "$1" | grep -qF " $2 "' _ "$A_KNOWN_HOSTS" "$A_HOST_KEY_SHA256"
check "real ssh login as builder with StrictHostKeyChecking=yes" \
	sh -c '[ "$1" = "builder $2" ]' _ "$(sshto A 'echo $(whoami) $(hostname)')" "$a"
check "builder has passwordless sudo" sshto A sudo -n true
"$tb" up "$a" >"$work/A2.env" 2>/dev/null || true
check "up again is idempotent (same lines)" cmp "$work/A.env" "$work/A2.env"
"$tb" env "$a" >"$work/A3.env" 2>/dev/null || true
check "env reprints the same lines" cmp "$work/A.env" "$work/A3.env"
check "box starts with empty /nix and /tmp, only builder in /home" \
	sh -c '[ -z "$("$1" exec "$2" -- ls -A /nix /tmp | grep -v "^/\|^$")" ] &&
		[ "$("$1" exec "$2" -- ls -A /home)" = builder ]' _ "$tb" "$a"
check "upper starts empty" sh -c '[ -z "$(ls -A "$1")" ]' _ "$A_UPPER"
check "box has no default route" sh -c '! "$1" exec "$2" -- ip route | grep -q default' _ "$tb" "$a"

# The box can reach a server on TESTBOX_GATEWAY (perl-base is Essential).
perl -MIO::Socket::INET -e '$| = 1; alarm 10; my $s = IO::Socket::INET->new(LocalAddr => $ARGV[0],
	LocalPort => 47010, Listen => 1, ReuseAddr => 1) or die $!; print "listening\n";
	my $c = $s->accept; print $c "hello-from-host\n"; close $c' "$A_GATEWAY" \
	>"$work/gw.out" 2>&1 &
gwpid=$!
for _ in $(seq 50); do grep -q listening "$work/gw.out" && break; sleep 0.1; done
check "box reaches a server on TESTBOX_GATEWAY" sh -c '[ "$1" = hello-from-host ]' _ \
	"$(sshto A "exec 3<>/dev/tcp/$A_GATEWAY/47010 && head -n1 <&3")"
wait "$gwpid" || true

# --- exec ---
check "exec: root inside the box, hostname is the box name" \
	sh -c '[ "$("$1" exec "$2" -- sh -c "id -u; hostname" | tr "\n" " ")" = "0 $2 " ]' _ "$tb" "$a"
check "exec passes stdin and stdout" sh -c '[ "$(echo hi | "$1" exec "$2" -- cat)" = hi ]' _ "$tb" "$a"
rc=0
"$tb" exec "$a" -- sh -c 'exit 3' || rc=$?
ok "$([ "$rc" = 3 ] && echo 0 || echo 1)" "exec passes the exit status (got $rc)"

# --- isolation: changes made in the box stay in its overlay ---
check "box: useradd, files under /usr/lib/postgresql and /etc" sshto A \
	'sudo useradd probeuser && sudo mkdir -p /usr/lib/postgresql/probe &&
	sudo touch /usr/lib/postgresql/probe/file && echo x | sudo tee /etc/probe-file >/dev/null'
check "box sees its own changes" "$tb" exec "$a" -- sh -c \
	'getent passwd probeuser && test -f /usr/lib/postgresql/probe/file && grep -qx x /etc/probe-file'
check "host: no user probeuser" sh -c '! getent passwd probeuser'
check "host: no /usr/lib/postgresql/probe, no /etc/probe-file" \
	sh -c '! test -e /usr/lib/postgresql/probe && ! test -e /etc/probe-file'
host_sums >"$work/host-after"
check "host: /etc/passwd, shadow, group, hosts, hostname, sudoers.d unchanged" \
	cmp "$work/host-before" "$work/host-after"
check "upper shows what the box changed" sh -c 'grep -q "^probeuser:" "$1/etc/passwd" &&
	test -f "$1/usr/lib/postgresql/probe/file" && grep -qx x "$1/etc/probe-file"' _ "$A_UPPER"

# --- two boxes at once ---
rc=0
"$tb" up "$b" >"$work/B.env" 2>"$work/up.err" || rc=$?
ok "$rc" "second box $b comes up while $a runs"
if [ "$rc" -eq 0 ]; then
	load B
	check "boxes have different addresses and host keys" \
		test "$A_HOST" != "$B_HOST" -a "$A_GATEWAY" != "$B_GATEWAY" -a "$A_HOST_KEY_SHA256" != "$B_HOST_KEY_SHA256"
	check "ssh into both; each has its own hostname" sh -c '[ "$1 $2" = "$3 $4" ]' _ \
		"$(sshto A hostname)" "$(sshto B hostname)" "$a" "$b"
	check "StrictHostKeyChecking: A's known_hosts does not let ssh into B" \
		sh -c '! ssh -F /dev/null -i "$1" -o BatchMode=yes -o UserKnownHostsFile="$2" \
			-o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes "builder@$3" true' \
		_ "$A_KEY" "$A_KNOWN_HOSTS" "$B_HOST"
	check "B does not see A's changes" "$tb" exec "$b" -- sh -c \
		'! getent passwd probeuser && ! test -e /etc/probe-file'
fi

# --- kill-sessions ---
sshto A sleep 30 >/dev/null 2>&1 &
bgpid=$!
for _ in $(seq 50); do "$tb" exec "$a" -- pgrep -x sleep >/dev/null && break; sleep 0.1; done
listener=$("$tb" exec "$a" -- pgrep -o -x sshd)
check "kill-sessions runs" "$tb" kill-sessions "$a"
gone=1
for _ in $(seq 50); do
	if ! kill -0 "$bgpid" 2>/dev/null; then gone=0; break; fi
	sleep 0.1
done
ok "$gone" "kill-sessions drops the open ssh session (client gone within 5 s)"
rc=0
wait "$bgpid" || rc=$?
bgpid=
ok "$([ "$rc" -ne 0 ] && echo 0 || echo 1)" "the dropped ssh client exits non-zero (got $rc)"
check "a new ssh login works after kill-sessions" sshto A true
check "the listening sshd survived" sh -c '[ "$("$1" exec "$2" -- pgrep -o -x sshd)" = "$3" ]' \
	_ "$tb" "$a" "$listener"

# --- down ---
inodes=$(stat -L -c %i "/run/netns/sh-tb-$a" "/run/netns/sh-tb-$b" 2>/dev/null | tr '\n' ' ')
t0=$(date +%s%N)
check "down $a" "$tb" down "$a"
t1=$(date +%s%N)
check "down $b" "$tb" down "$b"
echo "# down took $(((t1 - t0) / 1000000)) ms"
check "no netns, no veth left" sh -c '! ip netns list | grep -q "sh-tb-$1\|sh-tb-$2" &&
	! ip link show "tb-$1" 2>/dev/null && ! ip link show "tb-$2" 2>/dev/null' _ "$a" "$b"
check "no state dirs, no mounts under them" sh -c '! test -e "$1" && ! test -e "$2" &&
	! grep -qF -e "$1" -e "$2" /proc/self/mountinfo' _ "$A_STATE" "${B_STATE-$A_STATE}"
# A zombie (exited, not yet reaped by pid 1) has no namespace links, so it
# does not count: it holds nothing.
left=
for p in /proc/[0-9]*; do
	i=$(stat -L -c %i "$p/ns/net" 2>/dev/null) || continue
	case " $inodes " in *" $i "*) left="$left ${p#/proc/}" ;; esac
done
ok "$([ -z "$left" ] && echo 0 || echo 1)" "no process left in the boxes' namespaces$left"
check "down again is a no-op" "$tb" down "$a"
check "env of a box that is down exits 1" sh -c '"$1" env "$2"; [ $? = 1 ]' _ "$tb" "$a"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
