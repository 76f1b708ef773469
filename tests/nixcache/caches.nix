# tests/nixcache/caches.nix: the store paths of the test binary caches,
# built offline by make-caches.sh (Nix 2.8, private chroot store, sandbox on
# with the host's /usr bind-mounted so that /bin/sh and the PostgreSQL files
# are reachable). Nothing here is fetched.
{ system ? builtins.currentSystem
  # Digest of the host's PostgreSQL files (make-caches.sh): part of every
  # derivation that copies them, so new host files give new store paths.
, inputsId ? "none"
  # Debian 11's PostgreSQL 13, unpacked by tests/pg13/fetch.sh.
, pg13Root ? "/var/cache/stagehand-pg13/root"
  # The same for Debian's arm64 packages (make-caches.sh --aarch64), whose
  # files the sandbox shows at /arm64pg.
, arm64Id ? "none" }:
let
  shFor = sys: id: args: name: builtins.derivation {
    inherit name;
    system = sys;
    builder = "/bin/sh";
    args = [ "-c" args ];
    PATH = "/usr/bin";
    STAGEHAND_INPUTS_ID = id;
  };
  sh = shFor system inputsId;

  # (a) small: 4 paths that reference each other; the root refers to itself.
  small-a = builtins.toFile "small-a" "leaf of the small closure\n";
  small-b = builtins.toFile "small-b" "small-b uses ${small-a}\n";
  small-c = sh ''
    echo "small-c uses ${small-a} and ${small-b}" > $out
  '' "small-c";
  small-root = sh ''
    mkdir -p $out/share
    echo "${small-c}" > $out/share/c
    echo "${small-b}" > $out/share/b
    echo "$out" > $out/share/self
  '' "small-root";

  # (b) the PostgreSQL 15 bundle: lib and share as their own paths, the root
  # holds bin/ in Debian's layout (lib/postgresql/15/bin) so that postgres
  # finds its share and pkglib dirs relative to itself. ROOT is where
  # Debian's files are: "" (the host's) or /arm64pg; SH builds for a system.
  pgLib = sh: root: sh ''
    cp -a ${root}/usr/lib/postgresql/15/lib $out
  '' "postgresql-15-lib";
  pgShare = sh: root: sh ''
    cp -a ${root}/usr/share/postgresql/15 $out
  '' "postgresql-15-share";
  pgBundle = sh: root: lib: share: variant: sh ''
    mkdir -p $out/lib/postgresql/15 $out/share/postgresql
    cp -a ${root}/usr/lib/postgresql/15/bin $out/lib/postgresql/15/bin
    ln -s ${lib} $out/lib/postgresql/15/lib
    ln -s ${share} $out/share/postgresql/15
    ln -s lib/postgresql/15/bin $out/bin
    echo "postgresql bundle ${variant} for stagehand tests" > $out/VARIANT
  '' "postgresql-bundle-15-${variant}";
  pg-lib = pgLib sh "";
  pg-share = pgShare sh "";
  bundle = pgBundle sh "" pg-lib pg-share;

  # The same bundle for aarch64-linux: the builder is still the host's
  # /bin/sh (cp needs no arm64 CPU); the files are Debian's arm64 ones.
  shArm = shFor "aarch64-linux" arm64Id;
  bundle-aarch64 = pgBundle shArm "/arm64pg" (pgLib shArm "/arm64pg")
    (pgShare shArm "/arm64pg") "1";

  # A bundle whose postgres cannot start (it exits 1 at once): the
  # upgrade stage's health check fails and it must roll back.
  bundle-broken = sh ''
    mkdir -p $out/lib/postgresql/15 $out/share/postgresql
    cp -a /usr/lib/postgresql/15/bin $out/lib/postgresql/15/bin
    chmod u+w $out/lib/postgresql/15/bin
    rm $out/lib/postgresql/15/bin/postgres
    printf '#!/bin/sh\necho "postgres: broken on purpose (stagehand test bundle)" >&2\nexit 1\n' \
      > $out/lib/postgresql/15/bin/postgres
    chmod 555 $out/lib/postgresql/15/bin/postgres
    chmod u-w $out/lib/postgresql/15/bin
    ln -s ${pg-lib} $out/lib/postgresql/15/lib
    ln -s ${pg-share} $out/share/postgresql/15
    ln -s lib/postgresql/15/bin $out/bin
    echo "postgresql bundle broken for stagehand tests" > $out/VARIANT
  '' "postgresql-bundle-15-broken";

  # (b2) a PostgreSQL 13 bundle from Debian 11's packages (the old major of
  # the major-upgrade tests), in the 15 bundle's layout. Its programs need
  # libraries bookworm no longer ships (libicu67, libssl1.1, libldap-2.4),
  # kept in lib/deb: bin/ holds wrappers that put lib/deb into
  # LD_LIBRARY_PATH and exec the real programs in real/lib/postgresql/13/bin.
  # real/ is Debian's layout (postgres and initdb find share/ and lib/
  # relative to themselves only when their dir ends in lib/postgresql/13/bin;
  # pg_ctl and initdb find postgres next to themselves, with the library
  # path inherited); share/ and lib/postgresql/13/lib link into it. Only
  # the server's, the client's and the libraries' dirs of the unpacked tree
  # are imported.
  pg13-src = let
    root = toString pg13Root;
    n = builtins.stringLength root;
    wanted = r: builtins.elem r [ "/usr" "/usr/lib" "/usr/share"
        "/usr/lib/postgresql" "/usr/share/postgresql" ]
      || builtins.match "/usr/(lib|share)/postgresql/13(/.*)?" r != null
      || builtins.match "/usr/lib/[a-z0-9_]+-linux-gnu(/.*)?" r != null;
  in builtins.path {
    name = "debian11-postgresql-13";
    path = /. + root;
    filter = p: t: wanted (builtins.substring n (builtins.stringLength p) p);
  };
  bundle13 = sh ''
    set -e
    R=$out/real
    B=$R/lib/postgresql/13
    mkdir -p $B $R/share/postgresql $out/lib/postgresql/13/bin \
      $out/share/postgresql
    cp -a ${pg13-src}/usr/lib/postgresql/13/bin $B/bin
    cp -a ${pg13-src}/usr/lib/postgresql/13/lib $B/lib
    cp -a ${pg13-src}/usr/share/postgresql/13 $R/share/postgresql/13
    cp -a ${pg13-src}/usr/lib/*-linux-gnu $out/lib/deb
    ln -s ../../../real/lib/postgresql/13/lib $out/lib/postgresql/13/lib
    ln -s ../../real/share/postgresql/13 $out/share/postgresql/13
    for f in $B/bin/*; do
      n=''${f##*/}
      w=$out/lib/postgresql/13/bin/$n
      { echo '#!/bin/sh'
        echo "LD_LIBRARY_PATH=$out/lib/deb\''${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
        echo 'export LD_LIBRARY_PATH'
        echo "exec $B/bin/$n \"\$@\""
      } > $w
      chmod 555 $w
    done
    ln -s lib/postgresql/13/bin $out/bin
    echo "postgresql 13 bundle (Debian 11) for stagehand tests" > $out/VARIANT
    $out/bin/postgres --version | grep -q '(PostgreSQL) 13\.'
    $out/bin/pg_ctl --version | grep -q '(PostgreSQL) 13\.'
    $out/bin/initdb -D $TMPDIR/db -U t >/dev/null
  '' "postgresql-bundle-13";

  # (c) big: 1 root + 31 inner nodes + 968 leaves = 1,000 paths; each inner
  # node also refers to the previous one (shared references).
  leaf = i: builtins.toFile "big-leaf-${toString i}" "leaf ${toString i}\n";
  inner = j: prev: builtins.toFile "big-node-${toString j}"
    (builtins.concatStringsSep "\n" (
      [ prev ] ++ builtins.genList (k: leaf (j * 31 + k)) (if j == 30 then 38 else 31)
    ) + "\n");
  nodes = builtins.foldl' (acc: j: acc ++ [
    (inner j (if j == 0 then "first" else builtins.elemAt acc (j - 1)))
  ]) [ ] (builtins.genList (j: j) 31);
  big-root = builtins.toFile "big-root" (builtins.concatStringsSep "\n" nodes + "\n");

  # (d) split: the root sits in cache1 signed by key 1, its dependencies
  # only in cache2 signed by key 2.
  split-dep = builtins.toFile "split-dep" "only in cache2\n";
  split-mid = builtins.toFile "split-mid" "split-mid uses ${split-dep}\n";
  split-root = builtins.toFile "split-root" "split-root uses ${split-mid}\n";
in {
  inherit small-root pg-lib pg-share big-root split-root split-mid split-dep;
  bundle = bundle "1";
  bundle2 = bundle "2";
  inherit bundle-broken bundle13 bundle-aarch64;
}
