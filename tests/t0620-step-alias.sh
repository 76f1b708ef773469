#!/usr/bin/env bash
# The alias step kind against the real test box, on a fake Nix profile
# shaped like Stage 2's (bin/ with 1,000 entries that are symlinks into a
# store, share/postgresql/extension files, contrib/* directories):
# a regular file in the way fails the step before anything changes; plan
# lists every link and changes nothing; run links into two dests, replacing
# /usr/bin/pg_config because replace_files lists it; links go through the
# profile, resolve, and belong to the owner (chown -h); a second run is all
# ok; a removed source entry is pruned; owner drift is fixed; foreign links
# are left alone; link_target: resolved points into the store; a src and
# dests with quotes, spaces and $(...) in their names link as named and
# run nothing. A replace_files list too long for the script is refused
# before anything runs (no script with a hole where the list was).
. "$(dirname "$0")/lib.sh"
t_plan 68

# rc_is N: the last sh_run exited N; shows its output when not.

box_up "$(box_name al)" || { t_not "test box comes up"; t_done; exit 1; }

P=/var/lib/postgresql/.nix-profile
# shellcheck disable=SC2016 # expanded in the box
box_exec sh -c '
set -e
useradd -r -M tpgown
S=/nix/store/0000aaaa-fakepg; PR=/nix/store/1111bbbb-profile
mkdir -p $S/bin $S/share/postgresql/extension $S/share/postgresql/contrib/postgis-3.3 \
	$S/share/postgresql/contrib/pgrouting $PR/bin $PR/share/postgresql/extension \
	$PR/share/postgresql/contrib /var/lib/postgresql /usr/lib/postgresql/bin
cd $S/bin && seq -f "tpg-tool-%04g" 0 998 | xargs touch && touch pg_config
cd $PR/bin && ls $S/bin | sed "s|^|$S/bin/|" | xargs ln -s -t .
cd $S/share/postgresql/extension && seq -f "tpgext%02g.control" 1 40 | xargs touch
cd $PR/share/postgresql/extension && ls $S/share/postgresql/extension |
	sed "s|^|$S/share/postgresql/extension/|" | xargs ln -s -t .
echo readme > $S/share/postgresql/contrib/postgis-3.3/README
ln -s $S/share/postgresql/contrib/postgis-3.3 $S/share/postgresql/contrib/pgrouting \
	$PR/share/postgresql/contrib/
echo not-a-dir > $PR/share/postgresql/contrib/README
ln -s $PR '"$P"'
rm -f /usr/bin/pg_config && echo old > /usr/bin/pg_config
echo mine > /usr/bin/tpg-tool-0007
mkdir /usr/bin/tpg-tool-0009
ln -s /elsewhere/foreign /usr/lib/postgresql/bin/foreign
' || t_not "the fake profile is set up in the box"

cat >"$T/alias.yml" <<'YML'
stagehand: 1
stage: aliases
vars:
  profile: /var/lib/postgresql/.nix-profile
steps:
  - name: bin into the Debian paths
    alias:
      src: ${profile}/bin
      dest: [/usr/lib/postgresql/bin, /usr/bin]
      owner: tpgown
      group: tpgown
      replace_files: [pg_config]
  - name: extension files
    alias:
      src: ${profile}/share/postgresql/extension
      dest: /usr/lib/postgresql/share/postgresql/extension
      owner: tpgown
      group: tpgown
  - name: contrib directories
    alias:
      src: ${profile}/share/postgresql/contrib/
      dest: /usr/lib/postgresql/share/postgresql/contrib
      type: dirs
YML

# -- a regular file in the way: fail first, change nothing ------------------
before=$(box_snapshot)
sh_run run "$T/alias.yml" "${SSH_ARGS[@]}" --report "$T/r0"
t_ok "a regular file not in replace_files fails the run" rc_is 1
t_ok "the error names the file and the way out" \
	grep -qF "refusing to replace regular file /usr/bin/tpg-tool-0007 (add it to replace_files)" \
	<(jr "$T/r0" '.steps[0].error.message')
t_ok "every collision is named, a directory too" \
	grep -qF "2 collisions: " <(jr "$T/r0" '.steps[0].error.message' | grep -F "refusing to replace directory /usr/bin/tpg-tool-0009")
t_ok "later steps did not run" \
	test "$(jr "$T/r0" '[.steps[1,2].status] | unique | join(",")')" = not_run
t_ok "nothing at all changed on the box (collisions are checked first)" \
	test "$before" = "$(box_snapshot)"
t_ok "the regular file is untouched" \
	test "$(box_exec cat /usr/bin/tpg-tool-0007)" = mine
box_exec sh -c 'rm /usr/bin/tpg-tool-0007 && rmdir /usr/bin/tpg-tool-0009'

# -- plan ----------------------------------------------------------------
before=$(box_snapshot)
sh_run plan "$T/alias.yml" "${SSH_ARGS[@]}" --report "$T/p"
t_ok "plan succeeds" rc_is 0
t_ok "plan marks all three steps would_change" \
	test "$(jr "$T/p" '[.steps[].status] | unique | join(",")')" = would_change
t_ok "plan counts 1,999 new links and one replaced file" \
	test "$(jr "$T/p" '.steps[0].details | "\(.linked) \(.replaced)"')" = "1999 1"
t_ok "plan names the pg_config replacement" \
	grep -qx "replaced regular file /usr/bin/pg_config -> $P/bin/pg_config" \
	<(jr "$T/p" '.steps[0].changes[]')
t_ok "plan names the dest directory it would create" \
	grep -qx "created directory /usr/lib/postgresql/share/postgresql/extension" \
	<(jr "$T/p" '.steps[1].changes[]')
t_ok "plan changed nothing on the box" test "$before" = "$(box_snapshot)"

# -- run -------------------------------------------------------------------
sh_run run "$T/alias.yml" "${SSH_ARGS[@]}" --report "$T/r1"
t_ok "the run succeeds" rc_is 0
t_ok "all three steps changed" \
	test "$(jr "$T/r1" '[.steps[].status] | unique | join(",")')" = changed
t_ok "1,999 links made, one file replaced, in one step" \
	test "$(jr "$T/r1" '.steps[0].details | "\(.linked) \(.replaced) \(.unchanged) \(.pruned)"')" = "1999 1 0 0"
echo "# 2,000 links into two dests took $(jr "$T/r1" '.steps[0].duration_ms') ms"
t_ok "one change line per link" \
	test "$(jr "$T/r1" '.steps[0].changes | length')" = 2000
t_ok "change lines come sorted by name, dest by dest" \
	test "$(jr "$T/r1" '.steps[0].changes | map([splits(" ")] | map(select(startswith("/")))[0]) |
		(.[0:1000] == (.[0:1000] | sort)) and (.[1000:] == (.[1000:] | sort)) and
		.[0] == "/usr/lib/postgresql/bin/pg_config" and .[1000] == "/usr/bin/pg_config"')" = true
t_ok "links go through the profile, not into the store" \
	test "$(box_exec readlink /usr/bin/tpg-tool-0500)" = "$P/bin/tpg-tool-0500"
t_ok "pg_config is now a link to the profile's" \
	test "$(box_exec readlink /usr/bin/pg_config)" = "$P/bin/pg_config"
# shellcheck disable=SC2016
t_ok "every link in both dests resolves" box_exec sh -c '
	n=0; for f in /usr/bin/tpg-tool-* /usr/bin/pg_config /usr/lib/postgresql/bin/tpg-* \
		/usr/lib/postgresql/share/postgresql/extension/*; do
		test -L "$f" && test -e "$f" || { echo "bad: $f"; exit 1; }; n=$((n+1)); done
	test $n = 2039'
t_ok "the links themselves belong to the owner (chown -h)" \
	test "$(box_exec stat -c %U:%G /usr/bin/tpg-tool-0001 /usr/lib/postgresql/bin/pg_config | sort -u)" = tpgown:tpgown
t_ok "their store targets were not chowned" \
	test "$(box_exec stat -L -c %U /usr/bin/tpg-tool-0001)" = root
t_ok "a created dest directory belongs to the owner" \
	test "$(box_exec stat -c %U:%G /usr/lib/postgresql/share/postgresql/extension)" = tpgown:tpgown
t_ok "type dirs links the contrib directories" \
	box_exec test -L /usr/lib/postgresql/share/postgresql/contrib/postgis-3.3 -a \
	-e /usr/lib/postgresql/share/postgresql/contrib/postgis-3.3/README -a \
	-L /usr/lib/postgresql/share/postgresql/contrib/pgrouting
t_ok "type dirs leaves the files out" \
	box_exec test ! -e /usr/lib/postgresql/share/postgresql/contrib/README
t_ok "a foreign link in a dest is left alone" \
	test "$(box_exec readlink /usr/lib/postgresql/bin/foreign)" = /elsewhere/foreign
t_ok "no staging directory is left behind" \
	box_exec sh -c '! ls -a /usr/bin /usr/lib/postgresql/bin | grep -q stagehand-tmp'

sh_run run "$T/alias.yml" "${SSH_ARGS[@]}" --report "$T/r2"
t_ok "the second run is all ok" \
	test "$(jr "$T/r2" '[.steps[].status] | unique | join(",")')" = ok
t_ok "with zero changes" test "$(jr "$T/r2" '[.steps[].changes[]] | length')" = 0
t_ok "and every link counted unchanged" \
	test "$(jr "$T/r2" '.steps[0].details.unchanged')" = 2000

# -- prune, owner drift, a link pointing elsewhere ---------------------------
box_exec sh -c "rm $P/bin/tpg-tool-0998 && chown -h root:root /usr/bin/tpg-tool-0001 &&
	ln -sfn /elsewhere /usr/lib/postgresql/bin/tpg-tool-0002"
sh_run run "$T/alias.yml" "${SSH_ARGS[@]}" --report "$T/r3"
t_ok "the run after the source lost an entry succeeds" rc_is 0
t_ok "the stale link is pruned once in each dest" \
	test "$(jr "$T/r3" '.steps[0].details.pruned')" = 2
t_ok "the pruned link is gone" box_exec test ! -L /usr/bin/tpg-tool-0998
t_ok "owner drift on a link is fixed and reported" \
	grep -qx "owner /usr/bin/tpg-tool-0001: root:root -> tpgown:tpgown" \
	<(jr "$T/r3" '.steps[0].changes[]')
t_ok "the link has its owner back" \
	test "$(box_exec stat -c %U /usr/bin/tpg-tool-0001)" = tpgown
t_ok "a link pointing elsewhere is replaced and reported" \
	grep -qx "replaced link /usr/lib/postgresql/bin/tpg-tool-0002 (was -> /elsewhere) -> $P/bin/tpg-tool-0002" \
	<(jr "$T/r3" '.steps[0].changes[]')
t_ok "exactly those four changes" \
	test "$(jr "$T/r3" '.steps[0].changes | length')" = 4
t_ok "the other steps stay ok" \
	test "$(jr "$T/r3" '[.steps[1,2].status] | unique | join(",")')" = ok

# -- link_target: resolved ---------------------------------------------------
box_exec sh -c 'mkdir -p /opt/tpg-rsrc && cd /opt/tpg-rsrc &&
	ln -s /var/lib/postgresql/.nix-profile/bin/tpg-tool-0001 postmaster &&
	ln -s /var/lib/postgresql/.nix-profile/bin/tpg-tool-0003 tpg-tool-0003'
cat >"$T/resolved.yml" <<'YML'
stagehand: 1
stage: resolved
steps:
  - name: into the store
    alias:
      src: /opt/tpg-rsrc
      dest: /opt/tpg-resolved
      link_target: resolved
      prune: false
YML
sh_run run "$T/resolved.yml" "${SSH_ARGS[@]}" --report "$T/r4"
t_ok "resolved links are made" rc_is 0
t_ok "and point into the store" \
	test "$(box_exec readlink /opt/tpg-resolved/tpg-tool-0003)" = \
	/nix/store/0000aaaa-fakepg/bin/tpg-tool-0003
t_ok "also for an entry named unlike its target" \
	test "$(box_exec readlink /opt/tpg-resolved/postmaster)" = \
	/nix/store/0000aaaa-fakepg/bin/tpg-tool-0001
sh_run run "$T/resolved.yml" "${SSH_ARGS[@]}" --report "$T/r5"
t_ok "and a second run leaves them ok" test "$(jr "$T/r5" '.steps[0].status')" = ok

# -- a source name that cannot be listed safely ------------------------------
box_exec sh -c 'mkdir -p /opt/tpg-nl/src && touch /opt/tpg-nl/src/ok "/opt/tpg-nl/src/two
lines"'
cat >"$T/nl.yml" <<'YML'
stagehand: 1
stage: newline
steps:
  - name: names with a newline
    alias: { src: /opt/tpg-nl/src, dest: /opt/tpg-nl/dest }
YML
before=$(box_snapshot)
sh_run run "$T/nl.yml" "${SSH_ARGS[@]}" --report "$T/r6"
t_ok "a source name with a newline fails the step" rc_is 1
t_ok "naming it" grep -qF "control characters in their names in /opt/tpg-nl/src: two?lines" \
	<(jr "$T/r6" '.steps[0].error.message')
t_ok "and nothing was linked" test "$before" = "$(box_snapshot)"

# -- a source that does not exist yet ----------------------------------------
cat >"$T/nosrc.yml" <<'YML'
stagehand: 1
stage: nosrc
steps:
  - name: profile not installed yet
    alias: { src: /opt/tpg-later/bin, dest: /opt/tpg-later-dest }
YML
sh_run plan "$T/nosrc.yml" "${SSH_ARGS[@]}" --report "$T/p7"
t_ok "plan of a source an earlier step would create says so" \
	test "$(jr "$T/p7" '.steps[0].status + ": " + .steps[0].changes[0]')" = \
	"would_change: link the entries of /opt/tpg-later/bin (it does not exist yet)"
sh_run run "$T/nosrc.yml" "${SSH_ARGS[@]}" --report "$T/r7"
t_ok "run fails on it" rc_is 1
t_ok "naming the missing source" has_text \
	"source directory /opt/tpg-later/bin does not exist" \
	jr "$T/r7" '.steps[0].error.message'
t_ok "without creating the dest" box_exec test ! -e /opt/tpg-later-dest

# -- names a shell would read: every path goes through sh_quote ----------------
# A src and two dests with a space, a single quote, $(...) and a glob; if
# any one of them reached the box's shell unquoted, the links would land
# elsewhere (or a command would run).
# shellcheck disable=SC2016 # the $(...) is part of the names
HS='/srv/t620/it'"'"'s src' HD1='/srv/t620/dest $(touch /tmp/t620-pwned) *' HD2="/srv/t620/a 'b'"
box_exec mkdir -p "$HS" && box_exec touch "$HS/one" "$HS/tw'o"
cat >"$T/hostile.yml" <<YML
stagehand: 1
stage: hostile-names
steps:
  - name: quoted names
    alias:
      src: "$HS"
      dest: ['$HD1', "$HD2"]
YML
run r8 "$T/hostile.yml"
t_ok "an alias with quotes, spaces and \$(...) in its paths succeeds" rc_is 0
t_ok "both dests got both links, each to its source" \
	test "$(box_exec sh -c 'for d in "$1" "$2"; do readlink "$d/one" "$d/tw'"'"'o"; done' _ "$HD1" "$HD2" | tr '\n' '|')" = \
	"$HS/one|$HS/tw'o|$HS/one|$HS/tw'o|"
t_ok "the dests hold nothing else" \
	test "$(box_exec find "$HD1" "$HD2" -mindepth 1 | wc -l)" = 4
t_ok "nothing in the names ran" box_exec test ! -e /tmp/t620-pwned
t_ok "and nothing was made beside them" \
	test "$(box_exec find /srv/t620 -mindepth 1 -maxdepth 1 | LC_ALL=C sort | tr '\n' '|')" = \
	"$HD2|${HD1%%/tmp/*}|$HS|"

# -- a script too long to build is refused, not run with a hole ---------------
# 1,100 replace_files entries of 4,004 bytes: 4.4 MB, more than the list's
# 4 MiB buffer. The script must not run with the list cut short (or missing).
box_exec sh -c 'mkdir -p /opt/tpg-big/src && touch /opt/tpg-big/src/one'
{
	printf 'stagehand: 1\nstage: big\nvars:\n  p: %s\nsteps:\n' \
		"$(head -c 4000 /dev/zero | tr '\0' x)"
	printf '  - name: too many replace_files\n    alias:\n'
	printf '      src: /opt/tpg-big/src\n      dest: /opt/tpg-big/dest\n'
	printf '      replace_files:\n'
	# shellcheck disable=SC2016 # ${p} is the manifest's variable
	seq -f '        - ${p}%04g' 1 1100
} >"$T/big.yml"
before=$(box_snapshot)
run r9 "$T/big.yml"
t_ok "an alias whose script would pass the maximum fails the step" rc_is 1
t_ok "saying the script is too long" grep -qF "script too long" \
	<(jr "$T/r9" '.steps[0].error.message')
t_ok "and nothing ran on the box" test "$before" = "$(box_snapshot)"

# -- offline ---------------------------------------------------------------
sh_run plan --offline "$T/alias.yml"
t_ok "plan --offline describes the alias" \
	grep -qF "alias $P/bin/* -> /usr/lib/postgresql/bin, /usr/bin (files, prune, owner tpgown:tpgown, replace pg_config)" "$T/out"

cat >"$T/bad.yml" <<'YML'
stagehand: 1
stage: bad
steps:
  - name: relative
    alias: { src: profile/bin, dest: /usr/bin }
YML
sh_run check "$T/bad.yml"
t_ok "a relative src is refused offline (65)" rc_is 65
t_ok "with file:line:col" grep -q "bad.yml:5:" "$T/err"

# check BODY MESSAGE: the alias body is refused offline with MESSAGE.
check_bad() {
	printf 'stagehand: 1\nstage: bad\nsteps:\n  - name: x\n    alias: %s\n' \
		"$1" >"$T/bad.yml"
	sh_run check "$T/bad.yml"
	rc_is 65 && grep -qF "bad.yml:5:" "$T/err" && grep -qF "$2" "$T/err" ||
		{ cat "$T/err"; false; }
}
t_ok "dest is required" check_bad "{ src: /p }" "alias needs dest"
t_ok "a dest listed twice is refused" \
	check_bad "{ src: /p, dest: [/a, /a/] }" "dest /a listed twice"
t_ok "dest may not be src" check_bad "{ src: /p/, dest: /p }" "dest /p is src"
t_ok "an unknown type is refused" check_bad "{ src: /p, dest: /x, type: links }" \
	"type must be files, dirs or all, not 'links'"
t_ok "replace_files takes basenames or absolute paths" \
	check_bad "{ src: /p, dest: /x, replace_files: [bin/pg_config] }" \
	"not 'bin/pg_config'"
t_ok "an invalid owner is refused" check_bad "{ src: /p, dest: /x, owner: 'a b' }" \
	"owner must be a name or a number"
t_ok "an unknown link_target is refused" \
	check_bad "{ src: /p, dest: /x, link_target: store }" \
	"link_target must be via_src or resolved"
t_ok "unknown keys are refused" check_bad "{ src: /p, dest: /x, colour: red }" \
	"unknown key 'colour'"

t_done
