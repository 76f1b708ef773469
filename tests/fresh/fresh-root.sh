#!/usr/bin/env bash
# tests/fresh/fresh-root.sh: `make check-fresh`. Proves the README's promise
# ("on a fresh Debian 12 machine, as root, `make demo` and `make check` do
# all the set-up") on a machine that has never seen the project:
#
#   1. builds a minimal Debian root with mmdebstrap (--variant=minbase plus
#      only make, git and ca-certificates: the README's commands start with
#      `make`, and a user gets the code with git) from this machine's own
#      apt sources, into a new directory under /var/tmp;
#   2. copies a clean `git clone` of this checkout (committed HEAD only)
#      into it, at /root/stagehand;
#   3. runs `make demo`, then `make check`, inside it, exactly as the README
#      writes them, from a clean environment (no LANG: a minimal machine has
#      no locale configured), in a private mount namespace with /proc, /sys,
#      /dev and a tmpfs /run, whose root is the new root (pivot_root);
#   4. prints both commands' exit codes and wall times and exits non-zero if
#      either failed.
#
#   tests/fresh/fresh-root.sh [--keep]    --keep leaves the root in place
#
# Run as root (it builds a chroot). It installs mmdebstrap on this machine
# if missing; nothing else on the host changes. Downloaded .debs (the root's
# and those that tests/deps.sh installs inside it) are kept in
# /var/cache/stagehand-fresh/debs (FRESH_CACHE) between runs, so a second
# run downloads only the package lists.
#
# The root shares this machine's network (apt needs it) but not its
# services: a policy-rc.d refuses every service start, as a container
# would, so no test can lean on a running sshd, nginx or PostgreSQL. Test
# boxes started inside use the host's box lock (/run/stagehand-testbox.lock)
# so they never pick the same subnet as boxes started outside.
#
# Time on the project's 2-core machine: see tests/fresh/README.md.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cache=${FRESH_CACHE:-/var/cache/stagehand-fresh}
keep=0
case ${1:-} in
--keep) keep=1 ;;
'') ;;
*) echo "usage: tests/fresh/fresh-root.sh [--keep]" >&2; exit 2 ;;
esac

die() { echo "fresh-root: $*" >&2; exit 1; }
say() { printf '\n== fresh-root: %s\n' "$*"; }
now() { date +%s; }

[ "$(id -u)" = 0 ] || die "must run as root (sudo make check-fresh): it builds a chroot with mmdebstrap"
if ! command -v mmdebstrap >/dev/null; then
	say "installing mmdebstrap"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null ||
		die "cannot install mmdebstrap: apt-get install mmdebstrap"
fi
# shellcheck disable=SC1091
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$suite" ] || die "no VERSION_CODENAME in /etc/os-release"
sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
	[ -s "$f" ] && sources+=("$f")
done
[ ${#sources[@]} -gt 0 ] || die "no apt sources in /etc/apt/sources.list{,.d}"

mkdir -p "$cache/debs"
root=$(mktemp -d /var/tmp/stagehand-fresh.XXXXXX)
nsfile=$root.mntns
t_start=$(now)
cleanup() {
	kill_inside
	rm -f "$nsfile"
	if [ "$keep" = 1 ]; then
		echo "fresh-root: root kept in $root"
	else
		rm -rf --one-file-system "$root"
	fi
}
# Whatever a command left running in the root (a daemon the tests forgot):
# only processes in the mount namespace that inside() made, held by a sleep.
kill_inside() {
	local p ns pids=""
	p=$(cat "$nsfile" 2>/dev/null) || return 0
	ns=$(readlink "/proc/$p/ns/mnt" 2>/dev/null) || return 0
	[ "$(cat "/proc/$p/comm" 2>/dev/null)" = sleep ] || return 0
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns" ] && pids="$pids ${p#/proc/}"
	done
	# shellcheck disable=SC2086
	[ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
}
trap cleanup EXIT

say "building a $suite minbase root in $root (debs cached in $cache/debs)"
# The cached .debs go in as hard links (as copies across filesystems); apt
# finds the ones it needs there and downloads only the others, which are
# the only ones with a single link, and which go back to the cache.
t0=$(now)
mmdebstrap --quiet --variant=minbase --include=make,git,ca-certificates \
	--skip=essential/unlink \
	--setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
	--setup-hook="find '$cache/debs' -maxdepth 1 -name '*.deb' -exec cp -l -t \"\$1/var/cache/apt/archives/\" {} + 2>/dev/null ||
		find '$cache/debs' -maxdepth 1 -name '*.deb' -exec cp -t \"\$1/var/cache/apt/archives/\" {} +" \
	--customize-hook="find \"\$1/var/cache/apt/archives\" -maxdepth 1 -name '*.deb' -links 1 -exec cp -t '$cache/debs' {} +" \
	--customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb' \
	"$suite" "$root" "${sources[@]}"
# A service start inside would land on this machine's network: refuse them.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$root/etc/resolv.conf"
echo "root built in $(($(now) - t0)) s"

say "cloning $top (HEAD $(git -C "$top" rev-parse --short HEAD)) into /root/stagehand"
git clone -q --no-hardlinks "$top" "$root/root/stagehand"
git -C "$root/root/stagehand" log --oneline -1

# inside CMD: runs CMD with sh in the root, cwd /root/stagehand, in a
# private mount namespace (everything mounted here goes away with it). A
# `sleep` holds the namespace (so its id cannot be reused by another's)
# until kill_inside; its pid goes to $nsfile. The root is bound onto itself
# and pivot_root'ed to, not merely chroot'ed into: `ip -n` makes "/" a
# slave mount (EINVAL on a plain directory), and the kernel refuses a new
# user namespace, which Nix's build sandbox needs, to a chrooted process.
inside() {
	touch /run/stagehand-testbox.lock
	unshare --mount --propagation private -- sh -c '
		r=$1; c=$2
		sleep infinity </dev/null >/dev/null 2>&1 &
		echo $! >"$4" &&
		mount --bind "$r" "$r" &&
		mount --rbind /dev "$r/dev" && mount --make-rslave "$r/dev" &&
		mount -t proc proc "$r/proc" &&
		mount --rbind /sys "$r/sys" && mount --make-rslave "$r/sys" &&
		mount -t tmpfs -o mode=0755 fresh-run "$r/run" &&
		mount --bind "$3/debs" "$r/var/cache/apt/archives" &&
		touch "$r/run/stagehand-testbox.lock" &&
		mount --bind /run/stagehand-testbox.lock "$r/run/stagehand-testbox.lock" &&
		mkdir "$r/run/oldroot" && cd "$r" && pivot_root . run/oldroot &&
		umount -l /run/oldroot && rmdir /run/oldroot &&
		exec /usr/sbin/chroot . /usr/bin/env -i HOME=/root TERM=dumb \
			PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			sh -c "cd /root/stagehand && $c"' _ "$root" "$1" "$cache" "$nsfile"
}

results=()
failed=0
# TIER (make check-fresh TIER=box) leaves the VM tier out of the check.
for cmd in "make demo" "make check TIER=${TIER:-all}"; do
	say "$cmd (inside the fresh root)"
	t0=$(now)
	rc=0
	inside "$cmd" || rc=$?
	kill_inside
	results+=("$cmd: exit $rc, $(($(now) - t0)) s")
	[ "$rc" = 0 ] || failed=1
done

say "results"
printf '%s\n' "${results[@]}"
echo "total (root, clone, both commands): $(($(now) - t_start)) s"
exit "$failed"
