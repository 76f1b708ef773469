#!/usr/bin/env bash
# make on a machine whose pkg-config cannot find the libraries (the -dev
# packages are not installed yet) stops before compiling, naming the
# missing pkg-config modules, the Debian packages that provide them and
# tests/deps.sh, instead of a compiler error such as "libpq-fe.h: No such
# file or directory". PKG_CONFIG_LIBDIR pointing at an empty directory is
# such a machine, for pkg-config.
. "$(dirname "$0")/lib.sh"
t_plan 5

# A copy of what make needs, so the checkout's build/ is left alone.
mkdir -p "$T/src" "$T/empty"
cp -r "$TOP/Makefile" "$TOP/provisioner" "$T/src/"
rc=0
PKG_CONFIG_LIBDIR=$T/empty make -C "$T/src" stagehand >"$T/make.out" 2>&1 || rc=$?
t_ok "make fails" test "$rc" != 0
t_ok "it names the modules pkg-config cannot find" \
	grep -q 'pkg-config cannot find yaml-0.1 libcurl libssh2 libsodium libpq' "$T/make.out"
t_ok "it names the Debian packages and tests/deps.sh" \
	sh -c 'grep -q "apt-get install pkg-config libyaml-dev libcurl4-openssl-dev libssh2-1-dev libsodium-dev libpq-dev" "$1" &&
		grep -q "tests/deps.sh" "$1"' _ "$T/make.out"
t_ok "no compiler ran (no missing header error)" \
	sh -c '! grep -q "No such file or directory" "$1" && ! test -d "$2/build/provisioner"' _ "$T/make.out" "$T/src"
t_ok "with the packages found, the same copy builds" \
	make -C "$T/src" -s stagehand

t_done
