# tests/box.sh: the one way to bring the test box (tests/testbox/testbox)
# and the signed test caches (tests/nixcache) up and down, for the tests
# (through tests/lib.sh), the demo (tests/demo.sh) and the benchmarks
# (bench/*.sh). Source it from bash; it prints nothing of its own (no TAP
# lines) and changes no shell option.
#
#   box_up NAME [--behind FRONT]
#                    starts box NAME (at most 12 characters) and makes it
#                    the current box: exports its TESTBOX_* lines
#                    (TESTBOX_HOST, _PORT, _USER, _KEY, _KNOWN_HOSTS,
#                    _GATEWAY, _UPPER, ...) and TESTBOX_NAME, and sets the
#                    array SSH_ARGS (stagehand's --target, --identity and
#                    --known-hosts for the box). On failure: testbox's
#                    messages on stderr, status 1. Several boxes may be up;
#                    the TESTBOX_* are the last one's. --behind FRONT: a
#                    box only box FRONT reaches (testbox up --behind).
#   vm_up NAME [ARGS...]
#                    boots QEMU VM NAME (tests/vm/vm up NAME ARGS...) and
#                    makes it the current target as box_up does: exports
#                    its TESTBOX_* and VM_* lines and sets SSH_ARGS. On
#                    failure: the vm tool's messages on stderr, status 1.
#                    box_teardown takes it down.
#   box_down [NAME]  tears down NAME (default the current box)
#   box_exec CMD...  runs CMD as root inside the current box
#   box_snapshot     a listing of the current box's overlay upper dir
#                    (paths, modes, owners, sizes, link targets, mtimes):
#                    two snapshots differ iff the box changed
#   box_pg_start     initdb and start a PostgreSQL 15 cluster (BOX_PGBIN)
#                    in the current box: TCP on 127.0.0.1:5433 (password
#                    roles: scram), unix sockets in /tmp/pg/sock (peer),
#                    data in /tmp/pg/data; status 1 when it does not start
#   box_psql DB SQL  psql as the postgres OS user over that socket dir,
#                    ON_ERROR_STOP, one unaligned value per line
#   caches_make FILE [--aarch64]
#                    builds (or reuses) the signed test caches in
#                    BOX_CACHES and writes make-caches.sh's KEY=value lines
#                    (BUNDLE_ROOT, KEY1_PUB, ...) to FILE; errors on stderr;
#                    --aarch64: with the aarch64-linux bundle too
#   caches_serve WWW ADDR
#                    serves BOX_CACHES/cache1 and cache2 with nginx on ADDR
#                    (127.0.0.1, or TESTBOX_GATEWAY for the box) from the
#                    new web root WWW; sets CACHE_URL (http://ADDR:PORT;
#                    the caches are CACHE_URL/cache1 and CACHE_URL/cache2)
#   caches_stop WWW  stops the servers of web root WWW
#   host_addr        prints an address of this machine that both it and a
#                    VM reach it at: the source address of the default
#                    route (QEMU's user network connects a guest to it
#                    from the host). Serving the caches there gives the
#                    controller and the VM one URL, as an S3 cache gives
#                    both in production. Status 1 when there is none.
#   box_teardown     stops every server caches_serve started and tears
#                    down every box box_up and every VM vm_up started (the
#                    VMs last first: a later one may boot an earlier
#                    one's disk): for EXIT traps
#
# BOX_CACHES: where the caches are kept (STAGEHAND_NIXCACHE, default
# /tmp/stagehand-nixcache, shared by the tests, the demo and the benches).
# Everything here needs root (network namespaces, mounts, nginx).

_box_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TESTBOX=$_box_top/tests/testbox/testbox
BOX_VM=$_box_top/tests/vm/vm
BOX_NIXCACHE=$_box_top/tests/nixcache
BOX_CACHES=${STAGEHAND_NIXCACHE:-/tmp/stagehand-nixcache}
BOX_PGBIN=/usr/lib/postgresql/15/bin
_box_names=""
_box_vms=""
_box_webroots=""

# _box_target LINES: exports the TESTBOX_* and VM_* lines of LINES (the
# testbox and vm tools print the same TESTBOX_* names) and points SSH_ARGS
# at that target.
_box_target() {
	local line
	while IFS= read -r line; do
		case $line in TESTBOX_[A-Z_0-9]*=* | VM_[A-Z_0-9]*=*) export "${line?}" ;; esac
	done <<<"$1"
	SSH_ARGS=(--target "ssh://$TESTBOX_USER@$TESTBOX_HOST:$TESTBOX_PORT"
		--identity "$TESTBOX_KEY" --known-hosts "$TESTBOX_KNOWN_HOSTS")
}

box_up() {
	local name=$1 err out rc=0
	shift
	err=$(mktemp "${TMPDIR:-/tmp}/stagehand-box.XXXXXX") || return 1
	# Recorded first: a box that failed half-way is torn down too.
	_box_names="$_box_names $name"
	out=$("$TESTBOX" up "$name" "$@" 2>"$err") || rc=$?
	if [ "$rc" != 0 ]; then
		cat "$err" >&2
		rm -f "$err"
		return 1
	fi
	rm -f "$err"
	_box_target "$out"
	if [ -z "${TESTBOX_HOST:-}" ] || [ -z "${TESTBOX_KEY:-}" ]; then
		echo "box_up: testbox up $name printed no TESTBOX_HOST/TESTBOX_KEY" >&2
		return 1
	fi
	export TESTBOX_NAME=$name
}

vm_up() {
	local name=$1 out
	shift
	# Recorded first: a VM that failed half-way is taken down too.
	_box_vms="$_box_vms $name"
	out=$("$BOX_VM" up "$name" "$@") || return 1
	_box_target "$out"
}

box_down() {
	"$TESTBOX" down "${1:-$TESTBOX_NAME}" >/dev/null 2>&1
}

box_exec() {
	"$TESTBOX" exec "$TESTBOX_NAME" -- "$@"
}

box_pg_start() {
	box_exec sh -c "
	mkdir -p /tmp/pg/sock && chown -R postgres:postgres /tmp/pg &&
	su postgres -s /bin/sh -c '$BOX_PGBIN/initdb -D /tmp/pg/data -U postgres \
		-A peer --auth-host=scram-sha-256 >/tmp/pg/initdb.log 2>&1' &&
	su postgres -s /bin/sh -c \"$BOX_PGBIN/pg_ctl -D /tmp/pg/data -l /tmp/pg/log -w \
		-o '-c listen_addresses=127.0.0.1 -c port=5433 -c unix_socket_directories=/tmp/pg/sock' \
		start >/dev/null\""
}

box_psql() {
	box_exec su postgres -s /bin/sh -c \
		"$BOX_PGBIN/psql -X -h /tmp/pg/sock -p 5433 -d \"\$0\" -Atq -v ON_ERROR_STOP=1 -c \"\$1\"" "$1" "$2"
}

box_snapshot() {
	(cd "$TESTBOX_UPPER" && find . -printf '%p %y %m %u:%g %s %l %T@\n' |
		LC_ALL=C sort)
}

caches_make() {
	local file=$1
	shift
	"$BOX_NIXCACHE/make-caches.sh" "$@" "$BOX_CACHES" >"$file"
}

caches_serve() {
	local www=$1 addr=$2 port
	mkdir -p "$www" || return 1
	ln -sfn "$BOX_CACHES/cache1" "$www/cache1"
	ln -sfn "$BOX_CACHES/cache2" "$www/cache2"
	_box_webroots="$_box_webroots $www"
	port=$("$BOX_NIXCACHE/serve" port) || return 1
	"$BOX_NIXCACHE/serve" start "$www" "$addr" "$port" >/dev/null || return 1
	CACHE_URL=http://$addr:$port
}

host_addr() {
	local a
	a=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
	[ -n "$a" ] || {
		echo "host_addr: no default route, so no address a VM reaches this machine at" >&2
		return 1
	}
	echo "$a"
}

caches_stop() {
	"$BOX_NIXCACHE/serve" stop "$1" >/dev/null 2>&1
}

box_teardown() {
	local w b
	for w in $_box_webroots; do caches_stop "$w" || true; done
	for b in $_box_names; do box_down "$b" || true; done
	for b in $(printf '%s\n' $_box_vms | tac); do
		"$BOX_VM" down "$b" >/dev/null 2>&1 || true
	done
	_box_webroots=""
	_box_names=""
	_box_vms=""
}
