# One of this repository's NixOS modules evaluated by hand, without the module system (there is
# no nixpkgs here): its options under `optionPath` take `settings` over their declared defaults
# (mkOption's `default`), the module is called with that `config`, and its `config` comes back
# with every mkIf resolved and mkDefault/mkForce unwrapped. Enough to read what a role declares
# (units, files, the values it sets) from the settings lib.<system>.* gives it; option types and
# the merging of several modules are nixpkgs' and not reproduced.
{ module, optionPath, settings, lib ? import ./lib, pkgs ? import ./stub-nixpkgs { system = "x86_64-linux"; } }:
let
  nest = path: value: if path == [ ] then value else { ${builtins.head path} = nest (builtins.tail path) value; };
  select = path: set: lib.foldl' (inner: name: inner.${name}) set path;
  called = (if builtins.isFunction module then module else import module) {
    config = nest optionPath cfg;
    inherit lib pkgs;
  };
  declared = select optionPath called.options;
  defaults = lib.mapAttrs (_: option: option.default) (lib.filterAttrs (_: option: option ? default) declared);
  cfg = defaults // settings;
  # An attribute defined by a false mkIf is no definition at all: it is left out.
  absent = value: builtins.isAttrs value && value._type or null == "if" && !value.condition;
  resolve = value:
    if builtins.isAttrs value && value._type or null == "if" then
      (if value.condition then resolve value.content else { })
    else if builtins.isAttrs value && value._type or null == "override" then resolve value.content
    else if builtins.isAttrs value && !(lib.isDerivation value) then
      lib.mapAttrs (_: resolve) (lib.filterAttrs (_: inner: !(absent inner)) value)
    else value;
in
{
  config = resolve called.config;
  inherit cfg;
}
