# nixpkgs lib at `path`, usable by Debian's Nix 2.8: before 2.14 there is no
# builtins.readFileType, which lib.filesystem.pathType (and so lib.fileset) is; the polyfill
# answers the same from builtins.readDir of the parent.
path:
let
  lib = import path;
in
if builtins ? readFileType then lib
else lib.extend (final: prev: {
  filesystem = prev.filesystem // {
    pathType = p: if dirOf p == p then "directory" else (builtins.readDir (dirOf p)).${baseNameOf p};
  };
})
