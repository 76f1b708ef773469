#!/bin/sh
# packer/stagehand-provision.sh: runs one stagehand stage against the
# instance Packer booted. Called by the templates' shell-local provisioner;
# usable by hand too.
#
#   stagehand-provision.sh --manifest FILE --report DIR --host HOST
#       [--port N] [--user USER] [--mode run|plan] [--stagehand BIN]
#       [--key-file FILE] [--known-hosts FILE | --accept-new-host-key]
#       [--bastion-host HOST [--bastion-port N] [--bastion-user USER]
#        [--bastion-key-file FILE]] [--wait-for-host SECS]
#       [-- MORE STAGEHAND ARGS...]
#
# The key: if STAGEHAND_SSH_KEY holds key text (the templates put
# build.SSHPrivateKey there), stagehand reads it with
# --identity-env STAGEHAND_SSH_KEY, so it never goes on a command line.
# Otherwise --key-file is passed as --identity FILE; with neither,
# stagehand asks the ssh-agent. This script never prints the key.
#
# The host key: --known-hosts FILE checks it against FILE. Without it the
# host key is accepted as presented (--accept-new-host-key), which must be
# asked for explicitly; the fingerprint is recorded in the report.
#
# The bastion: with --bastion-host, stagehand reaches the host through it
# (--jump ssh://USER@HOST:PORT), as Packer's communicator does with its
# ssh_bastion_* settings. Its user defaults to the host's, its key to
# --bastion-key-file (--jump-identity), else the host's key. Its host key
# is checked like the host's: against --known-hosts, or accepted as
# presented with --accept-new-host-key.
#
# The first connection is retried while the host is unreachable, for
# --wait-for-host SECS (default 120; 0: one try): Packer starts this
# script as soon as its own SSH connection works, and on a fresh instance
# cloud-init may restart sshd right then (cc_set_passwords does, when it
# changes PasswordAuthentication), refusing a new connection for a moment.
#
# Before the run, the report files of an earlier run in DIR are removed,
# so the post-processor gate can never read a stale "passed".
#
# Exit status: stagehand's (0 ok, 1 step failed, 65 invalid manifest,
# 69 unreachable, 77 trust failure), or 2 for a usage error here.
set -eu

prog="stagehand-provision"
die() {
	echo "$prog: $*" >&2
	exit 2
}

stagehand=stagehand
mode=run
manifest=""
report=""
host=""
port=22
user=""
key_file=""
known_hosts=""
accept_new=0
bastion_host=""
bastion_port=22
bastion_user=""
bastion_key_file=""
wait_host=120

while [ $# -gt 0 ]; do
	case $1 in
	--stagehand | --mode | --manifest | --report | --host | --port | \
		--user | --key-file | --known-hosts | --bastion-host | \
		--bastion-port | --bastion-user | --bastion-key-file | \
		--wait-for-host)
		[ $# -ge 2 ] || die "$1 needs a value"
		case $1 in
		--stagehand) stagehand=$2 ;;
		--mode) mode=$2 ;;
		--manifest) manifest=$2 ;;
		--report) report=$2 ;;
		--host) host=$2 ;;
		--port) port=$2 ;;
		--user) user=$2 ;;
		--key-file) key_file=$2 ;;
		--known-hosts) known_hosts=$2 ;;
		--bastion-host) bastion_host=$2 ;;
		--bastion-port) bastion_port=$2 ;;
		--bastion-user) bastion_user=$2 ;;
		--bastion-key-file) bastion_key_file=$2 ;;
		--wait-for-host) wait_host=$2 ;;
		esac
		shift 2
		;;
	--accept-new-host-key)
		accept_new=1
		shift
		;;
	--)
		shift
		break
		;;
	*) die "unknown option '$1'" ;;
	esac
done

case $mode in run | plan) ;; *) die "--mode must be run or plan, not '$mode'" ;; esac
[ -n "$manifest" ] || die "--manifest is required"
[ -n "$report" ] || die "--report is required"
[ -n "$host" ] || die "--host is required (Packer gave no build.Host)"
case $port in '' | *[!0-9]*) die "--port must be a number, not '$port'" ;; esac
case $wait_host in '' | *[!0-9]*) die "--wait-for-host must be a number of seconds, not '$wait_host'" ;; esac
if [ -n "$known_hosts" ] && [ "$accept_new" = 1 ]; then
	die "--known-hosts and --accept-new-host-key exclude each other"
fi
if [ -z "$known_hosts" ] && [ "$accept_new" = 0 ]; then
	die "give --known-hosts FILE, or --accept-new-host-key to trust the key the host presents"
fi

# An IPv6 address (Packer gives it bare) goes in brackets.
bracket() { case $1 in *:*) echo "[$1]" ;; *) echo "$1" ;; esac; }
target="ssh://$(bracket "$host"):$port"
[ -z "$user" ] || target="ssh://$user@$(bracket "$host"):$port"

bastion=""
if [ -n "$bastion_host" ]; then
	case $bastion_port in '' | *[!0-9]*) die "--bastion-port must be a number, not '$bastion_port'" ;; esac
	[ -n "$bastion_user" ] || bastion_user=$user
	[ -n "$bastion_user" ] || die "--bastion-host needs --bastion-user (or --user)"
	bastion="ssh://$bastion_user@$(bracket "$bastion_host"):$bastion_port"
	if [ -n "$bastion_key_file" ]; then
		set -- --jump-identity "$bastion_key_file" "$@"
	fi
	# Before the --jump-identity above: it belongs to this --jump.
	set -- --jump "$bastion" "$@"
elif [ -n "$bastion_key_file" ] || [ -n "$bastion_user" ]; then
	die "--bastion-user and --bastion-key-file need --bastion-host"
fi

# Which key. The text wins: Packer fills it only when it made the key.
if [ -n "${STAGEHAND_SSH_KEY:-}" ]; then
	export STAGEHAND_SSH_KEY
	set -- --identity-env STAGEHAND_SSH_KEY "$@"
	keydesc="key from \$STAGEHAND_SSH_KEY"
elif [ -n "$key_file" ]; then
	unset STAGEHAND_SSH_KEY
	set -- --identity "$key_file" "$@"
	keydesc="key file $key_file"
else
	unset STAGEHAND_SSH_KEY
	keydesc="ssh-agent"
fi

if [ -n "$known_hosts" ]; then
	set -- --known-hosts "$known_hosts" "$@"
	hostkey="host key checked against $known_hosts"
else
	# An empty known_hosts of our own: a stale entry for a reused IP in
	# ~/.ssh/known_hosts must not fail (or pass) the check.
	empty_known=$(mktemp "${TMPDIR:-/tmp}/stagehand-known_hosts.XXXXXX")
	trap 'rm -f "$empty_known"' EXIT
	set -- --known-hosts "$empty_known" --accept-new-host-key "$@"
	hostkey="host key accepted as presented (--accept-new-host-key)"
fi

mkdir -p "$report"
for f in results.json junit.xml stagehand.env run.log; do
	rm -f "$report/$f"
done

echo "$prog: stagehand $mode $manifest -> $target${bastion:+ via $bastion} ($keydesc; $hostkey); report $report"
rc=0
"$stagehand" "$mode" "$manifest" --target "$target" --report "$report" \
	--wait-for-host "$wait_host" "$@" || rc=$?
[ "$rc" = 0 ] && exit 0

# Name the failed step last, where Packer's error summary is read.
# stagehand.env is written by stagehand with every value sh-quoted.
if [ -f "$report/stagehand.env" ]; then
	(
		# shellcheck disable=SC1091
		. "$report/stagehand.env"
		at=""
		[ -z "${STAGEHAND_FAILED_STEP:-}" ] ||
			at=" at step '$STAGEHAND_FAILED_STEP'"
		echo "$prog: stage ${STAGEHAND_STAGE:-?} ${STAGEHAND_STATUS:-failed}$at (stagehand exit $rc); report $report" >&2
	)
else
	echo "$prog: stagehand exited $rc before writing a report" >&2
fi
exit "$rc"
