#!/bin/sh
# packer/release-matrix.sh: the release workflow's matrix, from the one
# versions file (packer/versions.json), as GITHUB_OUTPUT lines:
#
#   matrix={"include":[{"arch":..,"postgres_major":..,"postgres_version":..,
#           "bundle_var":..,"bundle":..,"runner":..},...]}
#   packer_version=1.10.3
#   region=us-east-1
#
#   release-matrix.sh [--release] [FILE]
#
# One entry per arch x Postgres major. arm64 builds on an arm64 runner
# (ubuntu-24.04-arm), x86_64 on ubuntu-24.04: stagehand runs on the
# runner, built for it. bundle_var is the stage 2 variable that takes the
# bundle's store path (bundle_x86_64_linux, bundle_aarch64_linux).
# --release (a release branch) refuses an entry without a version or a
# bundle, or with the all-zero placeholder store path.
#
# Exit status: 0, 1 for a versions file that is not usable, 2 for a
# usage error.
set -eu

prog="release-matrix"
release=0
if [ "${1:-}" = --release ]; then
	release=1
	shift
fi
[ $# -le 1 ] || {
	echo "usage: $prog [--release] [FILE]" >&2
	exit 2
}
file=${1:-"$(dirname "$0")/versions.json"}

matrix=$(jq -ce '
	. as $v
	| [ $v.arches[] as $a
	    | $v.postgres | to_entries[]
	    | { arch: $a,
	        postgres_major: .key,
	        postgres_version: (.value.version // ""),
	        bundle_var: (if $a == "arm64" then "bundle_aarch64_linux" else "bundle_x86_64_linux" end),
	        bundle: (.value.bundle[$a] // ""),
	        runner: (if $a == "arm64" then "ubuntu-24.04-arm" else "ubuntu-24.04" end) } ]
	| select(length > 0)
	| { include: . }' "$file") || {
	echo "$prog: $file: no arches or no Postgres majors" >&2
	exit 1
}
bad=$(printf '%s' "$matrix" | jq -r '.include[]
	| select(.postgres_version == "" or (.bundle | test("^/nix/store/[0-9a-z]{32}-") | not))
	| "pg\(.postgres_major) \(.arch)"')
if [ -n "$bad" ]; then
	echo "$prog: $file: no version or no bundle store path for: $bad" >&2
	exit 1
fi
if [ "$release" = 1 ]; then
	bad=$(printf '%s' "$matrix" | jq -r '.include[]
		| select(.bundle | startswith("/nix/store/00000000000000000000000000000000-"))
		| "pg\(.postgres_major) \(.arch)"')
	if [ -n "$bad" ]; then
		echo "$prog: $file: placeholder bundle store path on a release branch for: $bad" >&2
		exit 1
	fi
fi
echo "matrix=$matrix"
echo "packer_version=$(jq -r '.packer_version // "1.10.3"' "$file")"
echo "region=$(jq -r '.region // "us-east-1"' "$file")"
