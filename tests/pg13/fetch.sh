#!/usr/bin/env bash
# tests/pg13/fetch.sh [DIR]: PostgreSQL 13 server binaries from Debian 11
# (bullseye), for the cross-major migration test (13 -> 15).
#
# The archive location comes from this machine's own apt sources: the URI
# that serves the `bookworm` suite (one-line sources.list / *.list, or
# deb822 *.sources), used with suite `bullseye`. No host name is written
# here. apt runs with a private configuration (sources list, state and
# cache all in DIR), so the machine's own apt state is not touched, and it
# verifies the Release file with Debian's archive keyring as usual.
#
# The .deb files are unpacked with `dpkg-deb -x` into DIR/root (nothing is
# installed). Besides postgresql-13 (server + contrib, so pgcrypto too) and
# postgresql-client-13 (pg_dump), the libraries whose sonames bookworm no
# longer ships are fetched; the result is checked with ldd.
#
# Prints on stdout:
#   OLD_BIN=DIR/root/usr/lib/postgresql/13/bin
#   OLD_LIB=DIR/root/usr/lib/<multiarch>
# Cached: a second call with a complete DIR downloads nothing.
#
# DIR defaults to /var/cache/stagehand-pg13: it must be visible inside the
# test box, whose /tmp and /home are empty (the box's root is an overlay
# of the host's /). Needs root (apt's private lists dir) only for the
# first call.
set -euo pipefail

DIR=${1:-/var/cache/stagehand-pg13}
PKGS=(postgresql-13 postgresql-client-13 libicu67 libssl1.1 libldap-2.4-2)
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null ||
	gcc -print-multiarch 2>/dev/null || echo "$(uname -m)-linux-gnu")
OLD_BIN=$DIR/root/usr/lib/postgresql/13/bin
OLD_LIB=$DIR/root/usr/lib/$arch

say() { echo "fetch.sh: $*" >&2; }
die() { say "$*"; exit 1; }

print_result() {
	echo "OLD_BIN=$OLD_BIN"
	echo "OLD_LIB=$OLD_LIB"
}

if [ -f "$DIR/.complete" ] && [ -x "$OLD_BIN/postgres" ]; then
	print_result
	exit 0
fi

# The URI of the first source that serves the bookworm suite.
bookworm_uri() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		# deb [options] URI SUITE COMPONENTS...
		awk '$1 == "deb" {
			i = 2
			if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
			if ($(i + 1) == "bookworm") { print $i; exit }
		}' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		# deb822 stanzas separated by blank lines
		awk 'BEGIN { RS = ""; FS = "\n" }
		{
			uri = ""; suites = ""; deb = 0
			for (i = 1; i <= NF; i++) {
				if ($i ~ /^URIs:/) { uri = $i; sub(/^URIs:[ \t]*/, "", uri); sub(/[ \t].*/, "", uri) }
				if ($i ~ /^Suites:/) { suites = " " $i " " }
				if ($i ~ /^Types:.*(^|[ \t])deb([ \t]|$)/) deb = 1
			}
			if (deb && uri != "" && suites ~ /[ \t]bookworm[ \t]/) { print uri; exit }
		}' "$f"
	done
}

uri=$(bookworm_uri | head -n 1)
[ -n "$uri" ] || die "no apt source for suite bookworm in /etc/apt/sources.list{,.d}"
[ -r "$KEYRING" ] || die "$KEYRING missing (package debian-archive-keyring)"
say "archive: $uri (suite bullseye)"

umask 022
mkdir -p "$DIR/apt/lists/partial" "$DIR/apt/cache/archives/partial" \
	"$DIR/apt/etc/sources.list.d" "$DIR/apt/etc/preferences.d" "$DIR/debs"
echo "deb [signed-by=$KEYRING] $uri bullseye main" >"$DIR/apt/etc/sources.list"
: >"$DIR/apt/status"

APT=(apt-get -q
	-o "Dir::Etc::sourcelist=$DIR/apt/etc/sources.list"
	-o "Dir::Etc::sourceparts=$DIR/apt/etc/sources.list.d"
	-o "Dir::Etc::preferencesparts=$DIR/apt/etc/preferences.d"
	-o "Dir::State::lists=$DIR/apt/lists"
	-o "Dir::State::status=$DIR/apt/status"
	-o "Dir::Cache=$DIR/apt/cache"
	-o "Acquire::Languages=none"
	-o "APT::Sandbox::User=root"
	-o "APT::Get::List-Cleanup=false")

"${APT[@]}" update >&2 || die "apt-get update (bullseye) failed"
(cd "$DIR/debs" && "${APT[@]}" download "${PKGS[@]}" >&2) ||
	die "apt-get download ${PKGS[*]} failed"

rm -rf "$DIR/root.new"
mkdir -p "$DIR/root.new"
for deb in "$DIR"/debs/*.deb; do
	dpkg-deb -x "$deb" "$DIR/root.new"
done
rm -rf "$DIR/root"
mv "$DIR/root.new" "$DIR/root"

# Every binary the migration test runs must find all its libraries.
for exe in postgres initdb pg_ctl pg_dump pg_dumpall pg_controldata \
	pg_resetwal; do
	[ -x "$OLD_BIN/$exe" ] || die "$OLD_BIN/$exe missing"
	missing=$(LD_LIBRARY_PATH=$OLD_LIB ldd "$OLD_BIN/$exe" | grep 'not found' || true)
	[ -z "$missing" ] || die "$exe: libraries not found: $missing"
done
for so in pgcrypto plpgsql; do
	f=$DIR/root/usr/lib/postgresql/13/lib/$so.so
	missing=$(LD_LIBRARY_PATH=$OLD_LIB ldd "$f" | grep 'not found' || true)
	[ -z "$missing" ] || die "$so.so: libraries not found: $missing"
done
LD_LIBRARY_PATH=$OLD_LIB "$OLD_BIN/postgres" --version >&2 ||
	die "$OLD_BIN/postgres does not run"
touch "$DIR/.complete"
print_result
