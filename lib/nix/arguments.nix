# Checks a vmtest lib function's arguments before anything is evaluated with them, so that a
# missing one, a misspelt one or one of the wrong kind is a `throw` naming the function and the
# argument (and what it is for), not an error from deep inside nixpkgs' testing framework.
#
#   check {
#     function = "vmtest.lib.x86_64-linux.vmValidation";   # named in every message
#     required = { user = { kind = "string"; about = "the login user of your VM"; }; };
#     optional = { name = { kind = "string"; about = "…"; }; };
#   } args
#
# returns `args` unchanged when they are fine. Kinds: "string", "list", "attrs", "bool", "int", "number",
# "function", "package" (a derivation), "path" (a path, or a string such as a store path),
# "module" (a NixOS module: an attribute set, a function or a path), "any".
{ lib }:
let
  isKind = kind: value:
    {
      string = builtins.isString value;
      list = builtins.isList value;
      attrs = builtins.isAttrs value;
      bool = builtins.isBool value;
      int = builtins.isInt value;
      number = builtins.isInt value || builtins.isFloat value;
      function = builtins.isFunction value;
      package = lib.isDerivation value;
      path = builtins.isPath value || builtins.isString value || lib.isDerivation value;
      module = builtins.isAttrs value || builtins.isFunction value || builtins.isPath value;
      any = true;
    }.${kind} or (throw "vmtest arguments.nix: unknown kind ${kind}");
  described = name: spec: "`${name}` (${spec.kind}: ${spec.about})";
in
{
  check = { function, required, optional ? { } }: args:
    let
      specs = required // optional;
      given = if builtins.isAttrs args then builtins.attrNames args else [ ];
      missing = builtins.filter (name: !(builtins.elem name given)) (builtins.attrNames required);
      unknown = builtins.filter (name: !(specs ? ${name})) given;
      wrong = builtins.filter (name: specs ? ${name} && !(isKind specs.${name}.kind args.${name})) given;
    in
    if !(builtins.isAttrs args) then
      throw "${function}: takes an attribute set of arguments, got a ${builtins.typeOf args}"
    else if missing != [ ] then
      throw "${function}: the argument ${described (builtins.head missing) required.${builtins.head missing}} is required"
    else if unknown != [ ] then
      throw ("${function}: unknown argument `${builtins.head unknown}`; it takes "
        + builtins.concatStringsSep ", " (map (name: "`${name}`") (builtins.attrNames specs)))
    else if wrong != [ ] then
      let name = builtins.head wrong; in
      throw "${function}: the argument ${described name specs.${name}} is a ${builtins.typeOf args.${name}}"
    else
      args;
}
