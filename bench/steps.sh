#!/usr/bin/env bash
# bench/steps.sh: stagehand side by side with ansible-playbook and with one
# ssh invocation per step, against the real test box. See bench/README.md.
#
#   bench/steps.sh          (or `make bench`; run as root: the test box needs it)
#
# Work measured, each tool doing the same thing on the same box:
#   "100 steps"     100 trivial steps run as root:
#                     stagehand  100 `shell: "true"` steps (become root = sudo -n)
#                     ansible    100 `command: /bin/true` tasks, become: true
#                     ssh        100 x `ssh ... sudo -n true` (a new connection
#                                each, as Packer's shell provisioner does per
#                                script), and again with ControlMaster
#   "100 uploads of 4 KiB"  100 steps that each write a 4 KiB file:
#                     stagehand  100 `upload: { content: ... }` steps
#                     ansible    100 `copy: content=...` tasks, become: true
#   "100 steps of 64 KiB output"  100 steps that each print 64 KiB:
#                     stagehand  100 `shell: cat FILE` steps
#                     ansible    100 `command: cat FILE` tasks, become: true
#   "1000 links"    link 1,000 files of a directory into another one; the
#                   destination is emptied before every run so every tool
#                   creates all 1,000 links:
#                     stagehand  one `alias` step (type: files)
#                     ansible    a `find` task, then a `file: state=link` loop
#                     ssh        1,000 x `ssh ... sudo -n ln -sfn SRC DEST`
#   "1000 links, re-run"  the same again with nothing left to change (what a
#                   re-provision costs).
# Plus a "reference" row per task: one ssh session running the same work as a
# shell loop in the box, i.e. the floor set by sudo/ln themselves.
#
# It prints the seconds of each (median of the runs), the ratio tool /
# stagehand, and the ratios against the targets (>= 100x ansible and <= 2 ms
# a step on the 100 steps, >= 100x on the 1,000 links) as information: no
# timing decides the exit status. Exit 0 when the bench ran; 1 when a tool failed to do the work
# (or the setup failed), 2 on usage.
#
# Environment:
#   STAGEHAND=PATH          binary to measure (default ./stagehand, built
#                           with `make` if missing)
#   BENCH_RUNS=N            runs per measurement for the fast tools (3)
#   BENCH_ANSIBLE_RUNS=N    runs per ansible-playbook measurement (1)
#   BENCH_SSH_LINKS=auto|all|sample   ssh-per-step links: `auto` times the
#                           first 100 and runs the other 900 only when the
#                           whole would take < 120 s, else extrapolates x10
#   BENCH_STEPS=N BENCH_FILES=N   sizes (100, 1000; change only to try the
#                           script quickly: the targets are about 100/1000)
#   BENCH_KEEP=1            keep the temp dir (manifests, playbooks, logs)
# shellcheck disable=SC2317 # functions run from traps and via measure's $prep/$check
set -euo pipefail
export LC_ALL=C.UTF-8 NO_COLOR=1

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$TOP"
STAGEHAND=${STAGEHAND:-$TOP/stagehand}
case $STAGEHAND in /*) ;; *) STAGEHAND=$TOP/$STAGEHAND ;; esac
# shellcheck source=tests/box.sh
. "$TOP/tests/box.sh"
RUNS=${BENCH_RUNS:-3}
ANSIBLE_RUNS=${BENCH_ANSIBLE_RUNS:-1}
SSH_LINKS=${BENCH_SSH_LINKS:-auto}
NSTEPS=${BENCH_STEPS:-100}
NFILES=${BENCH_FILES:-1000}
SSH_LINKS_BUDGET=120 # seconds: above this, ssh-per-step links are extrapolated
SRC_DIR=/srv/stagehand-bench/src
DEST_DIR=/srv/stagehand-bench/dest
UP_DIR=/srv/stagehand-bench/up
BIG_OUT=/srv/stagehand-bench/64k

say() { echo "bench: $*" >&2; }
die() {
	echo "bench: $*" >&2
	exit 1
}

for v in RUNS ANSIBLE_RUNS NSTEPS NFILES; do
	[[ ${!v} =~ ^[1-9][0-9]{0,4}$ ]] || {
		echo "bench: $v must be a positive integer, got '${!v}'" >&2
		exit 2
	}
done
case $SSH_LINKS in auto | all | sample) ;; *)
	echo "bench: BENCH_SSH_LINKS must be auto, all or sample" >&2
	exit 2
	;;
esac
(($# == 0)) || {
	sed -n 's/^#   bench/bench/p' "$0" >&2
	exit 2
}

# ---------------------------------------------------------------- setup

ensure_deps() {
	local missing=() cmd pkg
	for cmd in ansible-playbook:ansible-core ssh:openssh-client jq:jq; do
		command -v "${cmd%%:*}" >/dev/null 2>&1 || missing+=("${cmd#*:}")
	done
	if ((${#missing[@]})); then
		if ((EUID != 0)) || ! command -v apt-get >/dev/null; then
			die "missing: ${missing[*]} (run as root on Debian to install them)"
		fi
		say "installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
	for pkg in ansible-playbook ssh jq; do
		command -v "$pkg" >/dev/null || die "$pkg still missing"
	done
	"$TOP/tests/deps.sh"
}

ensure_stagehand() {
	if [[ ! -x $STAGEHAND ]]; then
		say "building stagehand"
		make -C "$TOP" stagehand >&2
	fi
	[[ -x $STAGEHAND ]] || die "no stagehand binary at $STAGEHAND"
}

((EUID == 0)) || die "run as root (the test box needs it)"
ensure_deps
ensure_stagehand

TMP=$(mktemp -d "${TMPDIR:-/tmp}/stagehand-bench.XXXXXX")
BOX=bench$$
BOX=${BOX:0:12}
MUX_SOCK=$TMP/mux-sock

# Ask the ssh master listening on socket $1 (if any) to exit.
close_master() {
	if [[ -S $1 ]]; then
		ssh -F /dev/null -o ControlPath="$1" -O exit bench >/dev/null 2>&1 || true
	fi
}

cleanup() {
	local s
	# Close ssh masters (ours and ansible's) before the box goes away.
	for s in "$MUX_SOCK" "$TMP"/cp/*; do
		close_master "$s"
	done
	box_teardown
	if [[ ${BENCH_KEEP:-} == 1 ]]; then
		say "kept $TMP"
	else
		rm -rf "$TMP"
	fi
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$TMP/log" "$TMP/cp" "$TMP/ansible-home" "$TMP/ansible-tmp"

say "starting test box $BOX"
box_up "$BOX" || die "test box $BOX did not come up"

box() { box_exec "$@"; }

# The 1,000 source files, made as root in the box.
box sh -c "mkdir -p '$SRC_DIR' '$DEST_DIR' && cd '$SRC_DIR' &&
	seq -f 'f%04g' 1 $NFILES | xargs touch" || die "could not make the source files"

box sh -c "head -c 49152 /dev/urandom | base64 -w0 | head -c 65536 >'$BIG_OUT'" ||
	die "could not make the 64 KiB file"
# Empty the upload directory: every tool then writes all the files.
reset_up() { box sh -c "rm -rf '$UP_DIR' && mkdir -p '$UP_DIR'"; }
reset_up_both() {
	reset_up
	ansible_reset
}
# Are there N files of 4 KiB in the upload directory?
up_ok() {
	local got
	got=$(box sh -c "find '$UP_DIR' -type f -size 4096c | wc -l")
	[[ $got == "$NSTEPS" ]] || {
		say "expected $NSTEPS files of 4096 bytes in $UP_DIR, found $got"
		return 1
	}
}

# Empty the destination: every tool then creates all the links.
reset_dest() { box sh -c "rm -rf '$DEST_DIR' && mkdir -p '$DEST_DIR'"; }

# Are there exactly N links in the destination, each to its source file?
links_ok() {
	local want=${1:-$NFILES} got
	got=$(box sh -c "n=0; for l in '$DEST_DIR'/*; do
		[ -L \"\$l\" ] && [ \"\$(readlink \"\$l\")\" = '$SRC_DIR'/\"\${l##*/}\" ] && n=\$((n+1))
	done; echo \$n")
	[[ $got == "$want" ]] || {
		say "expected $want links in $DEST_DIR, found $got"
		return 1
	}
}

# ------------------------------------------------------------- the tools

# stagehand
cat >"$TMP/steps.yml" <<EOF
stagehand: 1
stage: bench-steps
description: $NSTEPS trivial shell steps (bench/steps.sh)
steps:
EOF
for ((i = 1; i <= NSTEPS; i++)); do
	printf '  - name: step %d\n    shell: "true"\n' "$i" >>"$TMP/steps.yml"
done
# Steps that move bytes: each writes a 4 KiB file (an upload), or prints
# 64 KiB (a cat of a file made in the box).
CONTENT4K=$(head -c 3072 /dev/zero | tr '\0' a | base64 -w0 | head -c 4095)
{
	printf 'stagehand: 1\nstage: bench-upload\nsteps:\n'
	for ((i = 1; i <= NSTEPS; i++)); do
		printf '  - name: upload %d\n    upload: { content: "%s\\n", dest: %s/f%d }\n' \
			"$i" "$CONTENT4K" "$UP_DIR" "$i"
	done
} >"$TMP/upload.yml"
{
	printf 'stagehand: 1\nstage: bench-output\nsteps:\n'
	for ((i = 1; i <= NSTEPS; i++)); do
		printf '  - name: output %d\n    shell: cat %s\n' "$i" "$BIG_OUT"
	done
} >"$TMP/output.yml"
cat >"$TMP/links.yml" <<EOF
stagehand: 1
stage: bench-links
description: link $NFILES files (bench/steps.sh)
steps:
  - name: link the files
    alias:
      src: $SRC_DIR
      dest: $DEST_DIR
      type: files
EOF

RUN_N=0 # set by measure: the run number, for distinct report dirs
stagehand_run() { # MANIFEST [ARGS...]
	local m=$1
	shift
	"$STAGEHAND" run "$m" "${SSH_ARGS[@]}" \
		--report "$TMP/report-${m##*/}-$RUN_N" -q "$@"
}
last_report() { echo "$TMP/report-$1-$RUN_N/results.json"; }
# The re-run must really have had nothing to change.
stagehand_unchanged() {
	local r c
	r=$(last_report links.yml)
	c=$(jq -r 'if .status == "passed" and .counts.total > 0 then .counts.changed
		else "?" end' "$r" 2>/dev/null) || c='?'
	[[ $c == 0 ]] || {
		say "stagehand re-run: $c step(s) changed (expected 0), see $r"
		return 1
	}
}

# ansible-playbook: Debian's ansible-core, pipelining on, Ansible's default
# ssh args (ControlMaster=auto, ControlPersist=60s), everything it writes
# kept in the temp dir.
: >"$TMP/ansible.cfg"
export ANSIBLE_CONFIG=$TMP/ansible.cfg ANSIBLE_HOME=$TMP/ansible-home \
	ANSIBLE_LOCAL_TEMP=$TMP/ansible-tmp ANSIBLE_SSH_CONTROL_PATH_DIR=$TMP/cp \
	ANSIBLE_PIPELINING=1 ANSIBLE_SSH_ARGS="-C -o ControlMaster=auto -o ControlPersist=60s" \
	ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 \
	ANSIBLE_HOST_KEY_CHECKING=1
cat >"$TMP/inventory.yml" <<EOF
all:
  hosts:
    box:
      ansible_host: $TESTBOX_HOST
      ansible_port: $TESTBOX_PORT
      ansible_user: $TESTBOX_USER
      ansible_ssh_private_key_file: $TESTBOX_KEY
      ansible_ssh_common_args: >-
        -o UserKnownHostsFile=$TESTBOX_KNOWN_HOSTS -o GlobalKnownHostsFile=/dev/null
        -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes
      ansible_python_interpreter: /usr/bin/python3
EOF
{
	printf -- '- hosts: box\n  gather_facts: false\n  become: true\n  tasks:\n'
	for ((i = 1; i <= NSTEPS; i++)); do
		printf '    - name: step %d\n      command: /bin/true\n' "$i"
	done
} >"$TMP/steps-playbook.yml"
{
	printf -- '- hosts: box\n  gather_facts: false\n  become: true\n  tasks:\n'
	for ((i = 1; i <= NSTEPS; i++)); do
		printf '    - name: upload %d\n      copy: { content: "%s\\n", dest: %s/f%d }\n' \
			"$i" "$CONTENT4K" "$UP_DIR" "$i"
	done
} >"$TMP/upload-playbook.yml"
{
	printf -- '- hosts: box\n  gather_facts: false\n  become: true\n  tasks:\n'
	for ((i = 1; i <= NSTEPS; i++)); do
		printf '    - name: output %d\n      command: cat %s\n' "$i" "$BIG_OUT"
	done
} >"$TMP/output-playbook.yml"
# with_fileglob would glob on the controller, so the file list comes from
# a `find` task on the box, as a real playbook would do it.
cat >"$TMP/links-playbook.yml" <<EOF
- hosts: box
  gather_facts: false
  become: true
  tasks:
    - name: list the files
      find:
        paths: $SRC_DIR
        file_type: file
      register: found
    - name: link the files
      file:
        src: "{{ item.path }}"
        dest: "$DEST_DIR/{{ item.path | basename }}"
        state: link
      loop: "{{ found.files }}"
      loop_control:
        label: "{{ item.path | basename }}"
EOF

ansible_run() { # PLAYBOOK
	ansible-playbook -i "$TMP/inventory.yml" "$1"
}
# Close ansible's masters so every run pays for its own connection.
ansible_reset() {
	local s
	for s in "$TMP"/cp/*; do
		close_master "$s"
	done
	return 0
}
reset_both() {
	reset_dest
	ansible_reset
}
ansible_unchanged() {
	grep -Eq '^box +: ok=[0-9]+ +changed=0 ' "$LAST_LOG" || {
		say "ansible re-run changed something, see $LAST_LOG"
		return 1
	}
}

# ssh, one invocation per step
SSH=(ssh -F /dev/null -i "$TESTBOX_KEY" -o IdentitiesOnly=yes
	-o UserKnownHostsFile="$TESTBOX_KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null
	-o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR
	-p "$TESTBOX_PORT")
MUX=(-o ControlMaster=auto -o ControlPath="$MUX_SOCK" -o ControlPersist=60s)
DEST=$TESTBOX_USER@$TESTBOX_HOST
mux_reset() {
	close_master "$MUX_SOCK"
	return 0
}
ssh_steps() { # [ssh options]
	local i
	for ((i = 1; i <= NSTEPS; i++)); do
		"${SSH[@]}" "$@" "$DEST" sudo -n true </dev/null
	done
}
ssh_links() { # FIRST LAST [ssh options]
	local i f first=$1 last=$2
	shift 2
	for ((i = first; i <= last; i++)); do
		printf -v f 'f%04d' "$i"
		"${SSH[@]}" "$@" "$DEST" sudo -n ln -sfn "$SRC_DIR/$f" "$DEST_DIR/$f" </dev/null
	done
}
# The floor: one ssh session, the same work as a shell loop in the box.
# floor_steps also prints how long the loop took in the box: "inbox_ns=N".
floor_steps() {
	"${SSH[@]}" "$DEST" "s=\$(date +%s%N); i=0
		while [ \$i -lt $NSTEPS ]; do sudo -n true; i=\$((i+1)); done
		echo inbox_ns=\$((\$(date +%s%N) - s))" </dev/null
}
floor_links() {
	"${SSH[@]}" "$DEST" sudo -n sh -c "'for f in $SRC_DIR/*; do ln -sfn \"\$f\" $DEST_DIR/; done'" </dev/null
}

# ------------------------------------------------------------ measuring

R_TASK=() R_TOOL=() R_RUNS=() R_SECS=() R_NOTE=()
FAILED=0
LAST_LOG=
MEDIAN_RUN=1

record() { # TASK TOOL RUNS SECONDS NOTE
	R_TASK+=("$1") R_TOOL+=("$2") R_RUNS+=("$3") R_SECS+=("$4") R_NOTE+=("$5")
}
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
	if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# measure TASK TOOL RUNS PREP CHECK NOTE -- CMD...
# Runs PREP (untimed), CMD (timed, output to a log), CHECK (untimed), RUNS
# times; records the median. A failing CMD or CHECK records FAILED.
measure() {
	local task=$1 tool=$2 runs=$3 prep=$4 check=$5 note=$6 t0 t1 times=() n
	shift 7
	for ((n = 1; n <= runs; n++)); do
		RUN_N=$n
		LAST_LOG=$TMP/log/$(tr -c 'a-z0-9\n' - <<<"$task-$tool" | head -n 1).$n
		$prep
		say "$task: $tool (run $n/$runs)"
		t0=$EPOCHREALTIME
		if ! "$@" >"$LAST_LOG" 2>&1; then
			say "$tool failed; last lines of $LAST_LOG:"
			tail -n 15 "$LAST_LOG" | sed 's/^/    /' >&2
			record "$task" "$tool" "$n" FAILED "$note"
			FAILED=1
			return 0
		fi
		t1=$EPOCHREALTIME
		if ! $check; then
			record "$task" "$tool" "$n" FAILED "did not do the work; $note"
			FAILED=1
			return 0
		fi
		times+=("$(elapsed "$t0" "$t1")")
	done
	record "$task" "$tool" "$runs" "$(median "${times[@]}")" "$note"
	# The run whose time is the median (the lower middle one of an even count).
	MEDIAN_RUN=$(for n in "${!times[@]}"; do echo "${times[n]} $((n + 1))"; done |
		sort -g | sed -n "$(((runs + 1) / 2))p" | cut -d' ' -f2)
}

# ssh-per-step links: time the first tenth, then either run the rest (all
# NFILES really run) or extrapolate x10, and say which.
measure_ssh_links() { # TOOL NOTE [ssh options]
	local tool=$1 note=$2 t0 t1 t2 tenth=$((NFILES / 10)) part total
	shift 2
	((tenth > 0)) || tenth=1
	reset_dest
	mux_reset
	LAST_LOG=$TMP/log/ssh-links.$tool
	say "$NFILES links: $tool (first $tenth)"
	t0=$EPOCHREALTIME
	if ! ssh_links 1 "$tenth" "$@" >"$LAST_LOG" 2>&1; then
		record "$NFILES links" "$tool" 1 FAILED "$note"
		FAILED=1
		return 0
	fi
	t1=$EPOCHREALTIME
	part=$(elapsed "$t0" "$t1")
	total=$(awk -v p="$part" -v k="$NFILES" -v t="$tenth" 'BEGIN { printf "%.3f", p * k / t }')
	if [[ $SSH_LINKS == all ]] || [[ $SSH_LINKS == auto &&
		$(awk -v x="$total" -v b="$SSH_LINKS_BUDGET" 'BEGIN { print (x < b) }') == 1 ]]; then
		say "$NFILES links: $tool (the other $((NFILES - tenth)), about ${total}s in all)"
		if ! ssh_links $((tenth + 1)) "$NFILES" "$@" >>"$LAST_LOG" 2>&1; then
			record "$NFILES links" "$tool" 1 FAILED "$note"
			FAILED=1
			return 0
		fi
		t2=$EPOCHREALTIME
		if ! links_ok; then
			record "$NFILES links" "$tool" 1 FAILED "did not do the work; $note"
			FAILED=1
			return 0
		fi
		record "$NFILES links" "$tool" 1 "$(elapsed "$t0" "$t2")" "all $NFILES run; $note"
	else
		links_ok "$tenth" || FAILED=1
		record "$NFILES links" "$tool" 1 "$total" \
			"EXTRAPOLATED: first $tenth timed (${part}s) x $((NFILES / tenth)); $note"
	fi
}

# ------------------------------------------------------------- the runs

S="$NSTEPS steps"
L="$NFILES links"
LR="$NFILES links, re-run"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# Warm-up (untimed): page cache for the binaries, sudo's first-use work.
stagehand_run "$TMP/steps.yml" >/dev/null 2>&1 || true
"${SSH[@]}" "$DEST" sudo -n true </dev/null >/dev/null 2>&1 || true

measure "$S" stagehand "$RUNS" : : "1 connection" -- stagehand_run "$TMP/steps.yml"
STEPS_MEDIAN_RUN=$MEDIAN_RUN
cp "$TMP/steps.yml" "$TMP/steps-per-channel.yml" # its own report dirs
measure "$S" "stagehand, --one-channel-per-step" "$RUNS" : : "a channel and a sudo per step" \
	-- stagehand_run "$TMP/steps-per-channel.yml" --one-channel-per-step
measure "$S" ansible-playbook "$ANSIBLE_RUNS" ansible_reset : "pipelining, ControlPersist" \
	-- ansible_run "$TMP/steps-playbook.yml"
measure "$S" "ssh per step" "$RUNS" : : "$NSTEPS connections" -- ssh_steps
measure "$S" "ssh per step, mux" "$RUNS" mux_reset : "ControlMaster: 1 connection" \
	-- ssh_steps "${MUX[@]}"
mux_reset
measure "$S" "reference" "$RUNS" : : "1 ssh, shell loop of sudo -n true in the box" \
	-- floor_steps
SUDO_NS=$(sed -n 's/^inbox_ns=\([0-9]*\)$/\1/p' "$LAST_LOG")

U="$NSTEPS uploads of 4 KiB"
O="$NSTEPS steps of 64 KiB output"
measure "$U" stagehand "$RUNS" reset_up up_ok "1 connection" \
	-- stagehand_run "$TMP/upload.yml"
measure "$U" ansible-playbook "$ANSIBLE_RUNS" reset_up_both up_ok "copy: content" \
	-- ansible_run "$TMP/upload-playbook.yml"
measure "$O" stagehand "$RUNS" : : "1 connection" \
	-- stagehand_run "$TMP/output.yml"
measure "$O" ansible-playbook "$ANSIBLE_RUNS" ansible_reset : "command: cat" \
	-- ansible_run "$TMP/output-playbook.yml"

measure "$L" stagehand "$RUNS" reset_dest links_ok "1 alias step" \
	-- stagehand_run "$TMP/links.yml"
measure "$LR" stagehand "$RUNS" : stagehand_unchanged "nothing to change" \
	-- stagehand_run "$TMP/links.yml"
measure "$L" ansible-playbook "$ANSIBLE_RUNS" reset_both links_ok \
	"find task + file loop" -- ansible_run "$TMP/links-playbook.yml"
measure "$LR" ansible-playbook "$ANSIBLE_RUNS" ansible_reset ansible_unchanged \
	"nothing to change" -- ansible_run "$TMP/links-playbook.yml"
measure_ssh_links "ssh per step" "$NFILES connections"
measure_ssh_links "ssh per step, mux" "ControlMaster: 1 connection" "${MUX[@]}"
mux_reset
measure "$L" "reference" "$RUNS" reset_dest links_ok "1 ssh, shell loop of ln in the box" \
	-- floor_links

# ------------------------------------------------------------ reporting

# seconds of TOOL on TASK, or empty
secs_of() {
	local k
	for k in "${!R_TASK[@]}"; do
		if [[ ${R_TASK[k]} == "$1" && ${R_TOOL[k]} == "$2" && ${R_SECS[k]} != FAILED ]]; then
			echo "${R_SECS[k]}"
			return
		fi
	done
}
ratio() { # NUM DEN
	[[ -n $1 && -n $2 ]] || {
		echo -
		return
	}
	awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "-" }'
}

# Where stagehand's time goes on the 100 steps: wall time vs the steps'
# own durations (from results.json of the last run).
stagehand_breakdown() {
	local r=$TMP/report-steps.yml-${STEPS_MEDIAN_RUN:-1}/results.json
	[[ -f $r ]] || return 0
	jq -r --arg wall "$(secs_of "$S" stagehand)" '
		[.steps[]?.duration_ms | numbers] as $d
		| if ($d | length) == 0 then empty else
		  "stagehand, \($d | length) steps: \($d | add / length * 10 | round / 10) ms" +
		  " per step on average (min \($d | min), max \($d | max)); the steps sum to" +
		  " \($d | add) ms of the \(.duration_ms) ms run (results.json of the median" +
		  " run, \($wall) s wall; the rest: start-up, connect, key exchange," +
		  " auth, target probe, report)" end' "$r" 2>/dev/null || true
}

echo
echo "stagehand bench, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -sr)"
echo "  load average at start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  $("$STAGEHAND" --version 2>/dev/null | sed -n 1p)," \
	"$(ansible-playbook --version 2>/dev/null | sed -n 1p)," \
	"$(ssh -V 2>&1 | cut -d, -f1)"
echo "  seconds = median of the runs; ratio = tool / stagehand (higher: stagehand faster)"
echo "  ansible links: file list from a \`find\` task on the box (with_fileglob would glob on the controller)"
echo
printf '%-22s  %-18s  %4s  %9s  %8s  %s\n' task tool runs seconds ratio notes
printf '%-22s  %-18s  %4s  %9s  %8s  %s\n' ---- ---- ---- ------- ----- -----
for k in "${!R_TASK[@]}"; do
	base=$(secs_of "${R_TASK[k]}" stagehand)
	r=-
	[[ ${R_SECS[k]} != FAILED ]] && r=$(ratio "${R_SECS[k]}" "$base")
	printf '%-22s  %-18s  %4s  %9s  %8s  %s\n' "${R_TASK[k]}" "${R_TOOL[k]}" \
		"${R_RUNS[k]}" "${R_SECS[k]}" "$r" "${R_NOTE[k]}"
done
echo
target() { # TASK GOAL
	local a s r
	a=$(secs_of "$1" ansible-playbook)
	s=$(secs_of "$1" stagehand)
	r=$(ratio "$a" "$s")
	if [[ $r == - ]]; then
		echo "target: stagehand >= ${2}x faster than ansible-playbook on $1: not measured"
	elif awk -v a="$a" -v s="$s" -v g="$2" 'BEGIN { exit !(a / s >= g) }'; then
		echo "target: stagehand >= ${2}x faster than ansible-playbook on $1: $r (met)"
	else
		echo "target: stagehand >= ${2}x faster than ansible-playbook on $1: $r (NOT met)"
	fi
}
target "$S" 100
target "$L" 100
for t in "$U" "$O"; do
	echo "info:   $t, ansible-playbook / stagehand: $(ratio "$(secs_of "$t" ansible-playbook)" "$(secs_of "$t" stagehand)")"
done
a=$(secs_of "$S" stagehand)
[[ -z $a ]] || echo "info:   stagehand on $S: $(awk -v a="$a" -v k="$NSTEPS" \
	'BEGIN { printf "%.1f", a / k * 1000 }') ms a step, wall time of the whole run / steps (target: <= 2)"
r=$(ratio "$(secs_of "$LR" ansible-playbook)" "$(secs_of "$LR" stagehand)")
echo "info:   re-run with nothing to change, ansible-playbook / stagehand: $r"
bd=$(stagehand_breakdown)
[[ -z $bd ]] || echo "info:   $bd"
if [[ -n ${SUDO_NS:-} ]]; then
	echo "info:   sudo -n true alone, in the box: $(awk -v n="$SUDO_NS" -v k="$NSTEPS" \
		'BEGIN { printf "%.1f", n / k / 1e6 }') ms each (timed inside the reference loop)"
fi
a=$(secs_of "$S" "ssh per step")
if [[ -n $a ]]; then
	echo "info:   ssh per step: $(awk -v a="$a" -v k="$NSTEPS" \
		'BEGIN { printf "%.0f", a / k * 1000 }') ms per connection + login + sudo -n true"
fi

if ((FAILED)); then
	say "some tool failed to do the work (FAILED rows above); logs: $TMP/log"
	BENCH_KEEP=1
	exit 1
fi
exit 0
