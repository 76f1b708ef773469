#!/bin/bash
# t0020-layers: every #include "..." under provisioner/ points at its own
# folder or a layer below it, as provisioner/LAYERS lists them, and every
# folder is in that table. The check is run on the tree, and on copies with
# an upward include, a sibling include and an unlisted folder, which it
# must refuse naming the file and line. A header named *_int.h (curl's
# convention) is private to its folder: only that folder may include it.
. "$(dirname "$0")/lib.sh"
t_plan 7

# layers_check ROOT: prints one line per violation; exit 1 when any.
layers_check() {
	local files
	mapfile -t files < <(find "$1" -mindepth 2 -name '*.[ch]' | sort)
	awk -v root="$1" '
	FNR == 1 && FILENAME ~ /LAYERS$/ { table = 1 }
	table && FILENAME ~ /LAYERS$/ {
		sub(/#.*/, "")
		if (NF < 2) next
		rank++
		for (i = 2; i <= NF; i++) { level[$i] = rank; layer[$i] = $1 }
		next
	}
	FNR == 1 {
		f = FILENAME; sub("^" root "/", "", f)
		dir = f; sub("/.*", "", dir)
		if (!(dir in level)) {
			print FILENAME ": folder " dir "/ is not in LAYERS"; bad = 1
		}
	}
	/^[ \t]*#[ \t]*include[ \t]*"/ {
		inc = $0; sub(/^[^"]*"/, "", inc); sub(/".*/, "", inc)
		to = inc; sub("/.*", "", to)
		if (inc !~ /\//) {
			print FILENAME ":" FNR ": #include \"" inc "\" names no folder"; bad = 1
		} else if (!(to in level)) {
			print FILENAME ":" FNR ": #include \"" inc "\": folder " to "/ is not in LAYERS"; bad = 1
		} else if (inc ~ /_int\.h$/ && to != dir) {
			print FILENAME ":" FNR ": #include \"" inc "\": a *_int.h header is private to " to "/"; bad = 1
		} else if (dir in level && to != dir && level[to] <= level[dir]) {
			print FILENAME ":" FNR ": #include \"" inc "\": " layer[dir] " (" dir "/) may not include " \
			    (level[to] == level[dir] ? "its sibling " : "the layer above it, ") layer[to] " (" to "/)"
			bad = 1
		}
	}
	END { exit bad }
	' "$1/LAYERS" "${files[@]}"
}

t_ok "provisioner/ includes only point down the layers of provisioner/LAYERS" \
	layers_check "$TOP/provisioner"

n=$(find "$TOP/provisioner" -mindepth 1 -maxdepth 1 -name '*.[ch]' | wc -l)
t_ok "no source file sits outside a layer folder" test "$n" = 0

cp -R "$TOP/provisioner" "$T/up"
printf '#include "run/runner.h"\n' >>"$T/up/transport/knownhosts.c"
layers_check "$T/up" >"$T/up.out"
t_ok "an include of a layer above is refused, naming the file and line" \
	grep -q "transport/knownhosts.c:[0-9]*: #include \"run/runner.h\": transport (transport/) may not include the layer above it, run (run/)" "$T/up.out"

cp -R "$TOP/provisioner" "$T/sib"
printf '#include "nix/narinfo.h"\n' >>"$T/sib/pg/tap.c"
layers_check "$T/sib" >"$T/sib.out"
t_ok "an include of a sibling is refused" \
	grep -q "pg/tap.c:[0-9]*: #include \"nix/narinfo.h\": domain (pg/) may not include its sibling domain (nix/)" "$T/sib.out"

cp -R "$TOP/provisioner" "$T/new"
mkdir "$T/new/extra" && printf 'int x;\n' >"$T/new/extra/x.c"
layers_check "$T/new" >"$T/new.out"
t_ok "a folder that is not in the table is refused" \
	grep -q "extra/x.c: folder extra/ is not in LAYERS" "$T/new.out"

cp -R "$TOP/provisioner" "$T/priv"
printf '#include "transport/ssh_int.h"\n' >>"$T/priv/target/remote.c"
layers_check "$T/priv" >"$T/priv.out"
t_ok "a folder's private *_int.h header is refused outside the folder" \
	grep -q "target/remote.c:[0-9]*: #include \"transport/ssh_int.h\": a \*_int.h header is private to transport/" "$T/priv.out"

cp -R "$TOP/provisioner" "$T/flat"
printf '#include "util.h"\n' >>"$T/flat/util/json.c"
layers_check "$T/flat" >"$T/flat.out"
t_ok "an include without its folder is refused" \
	grep -q "util/json.c:[0-9]*: #include \"util.h\" names no folder" "$T/flat.out"

t_done
