#!/usr/bin/env bash
# make install puts the binary and the man page under DESTDIR/PREFIX.
. "$(dirname "$0")/lib.sh"
t_plan 5

t_ok "make install succeeds" make -C "$TOP" -s install DESTDIR="$T/dest" PREFIX=/opt/sh
t_ok "the binary is installed and runs" "$T/dest/opt/sh/bin/stagehand" --version
t_ok "the man page is installed" test -s "$T/dest/opt/sh/share/man/man1/stagehand.1"
t_ok "the man page renders" sh -c "man -l '$T/dest/opt/sh/share/man/man1/stagehand.1' >/dev/null 2>&1 || groff -man -Tutf8 '$T/dest/opt/sh/share/man/man1/stagehand.1' >/dev/null"
t_ok "the man page documents every exit code" \
	sh -c "for c in 0 1 2 65 69 77 130; do grep -q \"^.B \$c\$\" '$T/dest/opt/sh/share/man/man1/stagehand.1' || exit 1; done"

t_done
