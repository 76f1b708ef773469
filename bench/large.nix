# bench/large.nix: the bench's large closure (bench/closure.sh): 6 paths of
# one 50 MB file of random bytes each (so their xz NARs stay about as
# large: about 300 MB in all) and a root that refers to them. Built by Nix
# in the bench's own chroot store, sandbox on, /bin from the host's /usr.
{ system ? builtins.currentSystem, seed ? "0" }:
let
  sh = name: script: builtins.derivation {
    inherit name system;
    builder = "/bin/sh";
    args = [ "-c" script ];
    PATH = "/usr/bin";
    SEED = seed;
  };
  blob = i: sh "large-blob-${toString i}" ''
    mkdir $out
    head -c 52428800 /dev/urandom > $out/blob
  '';
  blobs = map blob [ 1 2 3 4 5 6 ];
in
sh "large-root" ''
  mkdir $out
  for b in ${builtins.concatStringsSep " " blobs}; do echo "$b"; done > $out/refs
''
