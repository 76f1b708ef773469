#!/bin/sh
# tests/deps.sh: installs what building, testing and the demo need on
# Debian 12. Run as root; does nothing when everything is present. `make
# check`, `make demo`, `make asan` and `make bench` run it before they
# build (in a sub-make, so pkg-config sees the -dev packages). The list is
# checked on a bare minbase root by tests/fresh/fresh-root.sh (make
# check-fresh): whatever a test needs and Debian's minbase lacks is here
# (e.g. groff-base, which t0120 renders the man page with).
set -eu

PKGS="build-essential pkg-config libyaml-dev libcurl4-openssl-dev
libssh2-1-dev libsodium-dev libpq-dev libcmocka-dev liblzma-dev libzstd-dev
libbz2-dev openssh-server
openssh-client sudo iproute2 util-linux procps jq python3 python3-jsonschema
ca-certificates tar coreutils postgresql-15 nix-bin locales xz-utils
nginx-light cpp packer yamllint shellcheck postgresql-15-pgtap groff-base libssl-dev
libxml2-utils clang libclang-rt-14-dev clang-format
qemu-system-x86 qemu-utils mtools dosfstools mmdebstrap e2fsprogs
qemu-system-arm qemu-user-static binfmt-support arch-test"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "deps.sh: missing packages:$missing (run as root to install)" >&2
	exit 1
fi
echo "deps.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
