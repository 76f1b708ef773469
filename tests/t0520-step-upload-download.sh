#!/usr/bin/env bash
# The upload and download step kinds against the real test box: files,
# inline content, trees, binary data with every byte value, a 20 MB file,
# names with spaces and quotes, attributes; a second run reports ok; plan
# changes nothing; inline content holding a secret never shows in any
# output; downloads land relative to the working directory; a sha256 is
# checked before anything is sent (a mismatch reaches nothing on the box,
# in run and in plan), and a malformed one is a load error; creates skips.
. "$(dirname "$0")/lib.sh"
t_plan 66

box_up "$(box_name ud)" || { t_not "test box comes up"; t_done; exit 1; }

count() { jr "$T/$1" "[.steps[] | select(.status == \"$2\")] | length"; }
box_sha() { box_exec sha256sum "$1" | cut -d' ' -f1; }
local_sha() { sha256sum "$1" | cut -d' ' -f1; }

# ---- the local files, next to the manifest
mkdir -p "$T/m/files/tree/sub dir/deeper" "$T/m/files/tree/empty"
printf 'listen_addresses = *\n' >"$T/m/files/app conf's.conf"
for i in $(seq 0 255); do printf "\\$(printf %03o "$i")"; done >"$T/m/files/bytes.bin"
cat "$T/m/files/bytes.bin" "$T/m/files/bytes.bin" >>"$T/m/files/bytes.bin.2"
mv "$T/m/files/bytes.bin.2" "$T/m/files/bytes.bin"
head -c 20971520 /dev/urandom >"$T/m/files/big.bin"
echo one >"$T/m/files/tree/one"
echo two >"$T/m/files/tree/sub dir/two words"
printf '#!/bin/sh\necho hi\n' >"$T/m/files/tree/sub dir/deeper/run.sh"
chmod 0755 "$T/m/files/tree/sub dir/deeper/run.sh"
chmod 0700 "$T/m/files/tree/sub dir/deeper"
t_ok "the byte file holds all 256 values" test "$(od -An -tx1 -v "$T/m/files/bytes.bin" | tr -s ' \n' '\n\n' | sed '/^$/d' | sort -u | wc -l)" = 256

secret='upl-"sec"-$(id)-'"'q'"'-&\n-end'
export STAGEHAND_VAR_token=$secret
cat >"$T/m/up.yml" <<'YML'
stagehand: 1
stage: upload
secrets: [token]
steps:
  - name: a directory for the files
    path: { path: "/srv/t520/with space" }
  - name: a file with spaces and a quote in its name
    upload:
      src: files/app conf's.conf
      dest: /srv/t520/with space/app conf's.conf
      mode: "0640"
      owner: nobody
      group: nogroup
  - name: binary data with every byte value
    upload: { src: files/bytes.bin, dest: /srv/t520/bytes.bin }
  - name: a 20 MB file
    upload: { src: ./files/big.bin, dest: /srv/t520/big.bin, mode: "0600" }
  - name: inline content with a secret
    upload:
      content: "token=${token}\n"
      dest: /srv/t520/secret.env
      mode: "0600"
  - name: a tree
    upload: { src: files/tree, dest: /srv/t520/tree, group: nogroup }
YML

before=$(box_snapshot)
sh_run plan "$T/m/up.yml" "${SSH_ARGS[@]}" --report "$T/p1"
after=$(box_snapshot)
t_ok "plan succeeds" rc_is 0
t_ok "plan reports every step as would_change" test "$(count p1 would_change)" = 6
t_ok "plan changes nothing on the box" test "$before" = "$after"

run r1 "$T/m/up.yml"
t_ok "the first upload run succeeds" rc_is 0
t_ok "every step reports changed on the first run" test "$(count r1 changed)" = 6
t_ok "the file with spaces arrived intact" \
	test "$(box_sha "/srv/t520/with space/app conf's.conf")" = "$(local_sha "$T/m/files/app conf's.conf")"
t_ok "its mode, owner and group are set" \
	test "$(box_exec stat -c '%a %U %G' "/srv/t520/with space/app conf's.conf")" = "640 nobody nogroup"
t_ok "a new file without mode gets 0644" test "$(box_exec stat -c %a /srv/t520/bytes.bin)" = 644
t_ok "every byte value survives the transfer" \
	test "$(box_sha /srv/t520/bytes.bin)" = "$(local_sha "$T/m/files/bytes.bin")"
t_ok "the 20 MB file arrived intact" \
	test "$(box_sha /srv/t520/big.bin)" = "$(local_sha "$T/m/files/big.bin")"
t_ok "the secret content reached the box intact" \
	test "$(box_exec cat /srv/t520/secret.env)" = "token=$secret"
t_ok "the tree's files arrived intact" \
	test "$(box_exec sh -c 'cd /srv/t520/tree && find . -type f -exec sha256sum {} + | sort')" = \
	"$(cd "$T/m/files/tree" && find . -type f -exec sha256sum {} + | sort)"
t_ok "the tree's empty directory exists" box_exec test -d /srv/t520/tree/empty
t_ok "tree entries keep their local modes" \
	test "$(box_exec stat -c %a "/srv/t520/tree/sub dir/deeper" "/srv/t520/tree/sub dir/deeper/run.sh")" = "$(printf '700\n755')"
t_ok "tree entries get the group" \
	test "$(box_exec stat -c %G "/srv/t520/tree/sub dir/two words")" = nogroup
t_ok "no temp files are left behind" \
	test -z "$(box_exec find /srv/t520 -name '.stagehand*')"

run r2 "$T/m/up.yml"
t_ok "the second upload run succeeds" rc_is 0
t_ok "the second run reports zero changed" test "$(count r2 changed)" = 0

sh_run plan "$T/m/up.yml" "${SSH_ARGS[@]}" --report "$T/p2"
t_ok "plan after the run reports nothing to change" test "$(count p2 would_change)" = 0

t_exit 1 "the secret is in no report file, stdout or stderr" \
	grep -rlF -- "$secret" "$T/r1" "$T/r2" "$T/p1" "$T/p2" "$T/out" "$T/err"

# ---- drift is detected and repaired
box_exec chmod 0644 /srv/t520/big.bin
box_exec sh -c 'echo tampered >> "/srv/t520/tree/sub dir/two words"'
run r3 "$T/m/up.yml"
t_ok "drift is repaired" rc_is 0
t_ok "only the drifted steps report changed" test "$(count r3 changed)" = 2
t_ok "a mode drift is reported as a mode change" \
	sh -c "jq -r '.steps[3].changes[]' '$T/r3/results.json' | grep -qx 'mode /srv/t520/big.bin: 644 -> 600'"
t_ok "a content drift is reported as a content change" \
	sh -c "jq -r '.steps[5].changes[]' '$T/r3/results.json' | grep -qx 'content /srv/t520/tree/sub dir/two words'"
t_ok "the drifted file is restored" \
	test "$(box_exec cat "/srv/t520/tree/sub dir/two words")" = two

# ---- sha256: checked on the controller before anything is sent
printf 'pinned installer stand-in\n' >"$T/m/files/pinned.bin"
printf 'some other bytes\n' >"$T/m/files/other.bin"
sha_pinned=$(local_sha "$T/m/files/pinned.bin")
sha_other=$(local_sha "$T/m/files/other.bin")
sha_content=$(printf 'k=v\n' | sha256sum | cut -d' ' -f1)
cat >"$T/m/sha.yml" <<YML
stagehand: 1
stage: upload-sha
steps:
  - name: a file with its digest
    upload: { src: files/pinned.bin, dest: /srv/t520/pinned.bin, sha256: $sha_pinned }
  - name: content with its digest
    upload: { content: "k=v\\n", dest: /srv/t520/pinned.env, sha256: $sha_content }
YML
run r6 "$T/m/sha.yml"
t_ok "uploads with a matching sha256 succeed" rc_is 0
t_ok "both report changed" test "$(count r6 changed)" = 2
t_ok "the checked file arrived intact" \
	test "$(box_sha /srv/t520/pinned.bin)" = "$sha_pinned"
t_ok "the checked content arrived intact" \
	test "$(box_sha /srv/t520/pinned.env)" = "$sha_content"

# other.bin with pinned.bin's digest, over the file sha.yml put there
cat >"$T/m/sha-wrong.yml" <<YML
stagehand: 1
stage: upload-sha-wrong
steps:
  - name: a file that is not the pinned one
    upload: { src: files/other.bin, dest: /srv/t520/pinned.bin, sha256: $sha_pinned }
YML
before=$(box_snapshot)
run r7 "$T/m/sha-wrong.yml"
t_ok "an upload whose file does not match its sha256 fails" rc_is 1
t_ok "the error names the file and the expected and actual digests" \
	has_text "files/other.bin: sha256 mismatch: expected $sha_pinned, actual $sha_other" \
	jr "$T/r7" '.steps[0].error'
t_ok "no remote command ran for the step" \
	test "$(jr "$T/r7" '.steps[0].exit_status')" = null
t_ok "the target file is untouched" \
	test "$(box_sha /srv/t520/pinned.bin)" = "$sha_pinned"
t_ok "no .stagehand temp file is left" \
	test -z "$(box_exec find /srv/t520 -name '.stagehand*')"
t_ok "the box is byte-for-byte unchanged by the failed upload" \
	test "$before" = "$(box_snapshot)"
sh_run plan "$T/m/sha-wrong.yml" "${SSH_ARGS[@]}" --report "$T/p7"
t_ok "plan fails on the mismatch too" rc_is 1
t_ok "plan reports the mismatch as the step's failure, with no remote command" \
	test "$(jr "$T/p7" '[.steps[0].status, .steps[0].exit_status, (.steps[0].error.message | contains("sha256 mismatch"))] | join(" ")')" = "failed  true"

# creates: an existing path skips the step (nothing sent), a missing one
# does not
cat >"$T/m/creates.yml" <<'YML'
stagehand: 1
stage: upload-creates
steps:
  - name: skipped, the marker exists
    upload: { content: "x", dest: /srv/t520/created-1, creates: /srv/t520/pinned.bin }
  - name: sent, the marker is missing
    upload: { content: "x", dest: /srv/t520/created-2, creates: /srv/t520/no-marker }
YML
sh_run plan "$T/m/creates.yml" "${SSH_ARGS[@]}" --report "$T/p10"
t_ok "plan: creates that exists is ok, a missing one would change" \
	test "$(jr "$T/p10" '[.steps[].status] | join(" ")')" = "ok would_change"
run r10 "$T/m/creates.yml"
t_ok "run: creates that exists is ok and says so, a missing one uploads" \
	test "$(jr "$T/r10" '[.steps[0].status, .steps[0].details.skipped_by, .steps[1].status] | join(" ")')" = "ok creates changed"
t_ok "nothing was uploaded by the skipped step" \
	test "$(box_exec sh -c 'ls /srv/t520/created-*')" = /srv/t520/created-2

# a malformed digest and a digest for a directory are load errors: run
# exits 65 at the value's position and never logs in (as in t0360)
cat >"$T/m/sha-malformed.yml" <<YML
stagehand: 1
stage: upload-sha-malformed
steps:
  - name: upper case is not what sha256sum prints
    upload:
      src: files/pinned.bin
      dest: /srv/t520/x
      sha256: ${sha_pinned^^}
YML
cat >"$T/m/sha-tree.yml" <<YML
stagehand: 1
stage: upload-sha-tree
steps:
  - name: a digest for a tree
    upload: { src: files/tree, dest: /srv/t520/x, sha256: $sha_pinned }
YML
before=$(box_snapshot)
logins_before=$(grep -c 'Accepted publickey' "$TESTBOX_STATE/sshd.log" || true)
run r8 "$T/m/sha-malformed.yml"
t_ok "a malformed sha256 is an invalid manifest under run" rc_is 65
t_ok "the error is at the value's line and column" \
	grep -q 'sha-malformed.yml:8:15: sha256 must be 64 lowercase hex digits' "$T/err"
run r9 "$T/m/sha-tree.yml"
t_ok "sha256 with a directory src is an invalid manifest under run" rc_is 65
t_ok "the error is at the value's line and column" \
	grep -q 'sha-tree.yml:5:59: sha256 is for a single file or content' "$T/err"
t_ok "neither load error logged in to the box" \
	test "$logins_before" = "$(grep -c 'Accepted publickey' "$TESTBOX_STATE/sshd.log" || true)"
t_ok "neither load error changed the box" test "$before" = "$(box_snapshot)"

# ---- failures
cat >"$T/m/bad.yml" <<'YML'
stagehand: 1
stage: upload-bad
steps:
  - name: into a missing directory
    upload: { content: "x", dest: /srv/t520-missing/x }
YML
run r4 "$T/m/bad.yml"
t_ok "an upload into a missing directory fails" rc_is 1
t_ok "the error names the directory" \
	has_text /srv/t520-missing/ jr "$T/r4" '.steps[0].error'

cat >"$T/m/nosrc.yml" <<'YML'
stagehand: 1
stage: upload-nosrc
steps:
  - name: missing source
    upload: { src: files/nope, dest: /srv/x }
YML
sh_run check "$T/m/nosrc.yml"
t_ok "a missing src is an invalid manifest" rc_is 65
t_ok "the error has the position and the path" grep -q 'nosrc.yml:[0-9]*:[0-9]*: .*files/nope' "$T/err"

# ---- download, relative to the working directory
cat >"$T/m/down.yml" <<'YML'
stagehand: 1
stage: download
steps:
  - name: one file
    download: { src: "/srv/t520/with space/app conf's.conf", dest: "got/app conf.conf" }
  - name: binary
    download: { src: /srv/t520/big.bin, dest: got/big.bin }
  - name: a tree
    download: { src: /srv/t520/tree, dest: got/tree }
YML
mkdir -p "$T/work"
(cd "$T/work" && sh_run run "$T/m/down.yml" "${SSH_ARGS[@]}" --report "$T/d1" && echo "$RC" >"$T/rc")
t_ok "the first download run succeeds" test "$(cat "$T/rc")" = 0
t_ok "every download reports changed" test "$(count d1 changed)" = 3
t_ok "dest is relative to the working directory" test -f "$T/work/got/app conf.conf"
t_ok "the downloaded file is intact" cmp "$T/work/got/app conf.conf" "$T/m/files/app conf's.conf"
t_ok "the downloaded 20 MB file is intact" cmp "$T/work/got/big.bin" "$T/m/files/big.bin"
t_ok "the downloaded tree is intact" diff -r "$T/work/got/tree" "$T/m/files/tree"
t_ok "the tree keeps the remote modes" test "$(stat -c %a "$T/work/got/tree/sub dir/deeper/run.sh")" = 755

(cd "$T/work" && sh_run run "$T/m/down.yml" "${SSH_ARGS[@]}" --report "$T/d2" && echo "$RC" >"$T/rc")
t_ok "the second download run succeeds" test "$(cat "$T/rc")" = 0
t_ok "the second download run reports zero changed" test "$(count d2 changed)" = 0

echo changed >>"$T/work/got/tree/one"
(cd "$T/work" && sh_run plan "$T/m/down.yml" "${SSH_ARGS[@]}" --report "$T/d3" && echo "$RC" >"$T/rc")
t_ok "plan sees the local drift" test "$(jr "$T/d3" '.steps[2].status')" = would_change
t_ok "plan leaves the local drift alone" grep -q changed "$T/work/got/tree/one"
(cd "$T/work" && sh_run run "$T/m/down.yml" "${SSH_ARGS[@]}" --report "$T/d4" && echo "$RC" >"$T/rc")
t_ok "run repairs the local drift" test "$(cat "$T/work/got/tree/one")" = one
t_ok "only the drifted tree reports changed" test "$(count d4 changed)" = 1

cat >"$T/m/down-bad.yml" <<'YML'
stagehand: 1
stage: download-bad
steps:
  - name: missing remote file
    download: { src: /srv/t520/nope, dest: got/nope }
YML
(cd "$T/work" && sh_run run "$T/m/down-bad.yml" "${SSH_ARGS[@]}" --report "$T/d5" && echo "$RC" >"$T/rc")
t_ok "a missing remote file fails the step" test "$(cat "$T/rc")" = 1
t_ok "no partial local file is left" \
	test -z "$(find "$T/work/got" -name 'nope*' -o -name '.stagehand*')"

unset STAGEHAND_VAR_token
t_done
