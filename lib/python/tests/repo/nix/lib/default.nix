# A small `lib` for the stub evaluations in tests/repo: the nixpkgs lib functions this repository
# calls, with the same names and the semantics their nixpkgs definitions give, written here (no
# nixpkgs code is carried into this repository). Each function names the nixpkgs file it mirrors;
# the commits those files were read at are in docs/nix-reference.md ("The stub lib"), and
# tests/repo/test_stub_lib.py checks each one against the examples its nixpkgs documentation gives.
# It evaluates on Debian's Nix 2.8: nothing here needs a builtin newer than that.
let
  inherit (builtins)
    attrNames concatMap concatStringsSep elem filter foldl' head isPath isString listToAttrs
    pathExists readDir split stringLength substring
    ;

  # lib/trivial.nix
  flip = f: a: b: f b a;

  # lib/fixed-points.nix
  fix = f: let x = f x; in x;
  extends = overlay: f: final: let prev = f final; in prev // overlay final prev;

  # lib/attrsets.nix
  nameValuePair = name: value: { inherit name value; };
  genAttrs = names: f: listToAttrs (map (n: nameValuePair n (f n)) names);
  mapAttrs' = f: set: listToAttrs (map (name: f name set.${name}) (attrNames set));
  filterAttrs = pred: set:
    listToAttrs (concatMap (name: let value = set.${name}; in
      if pred name value then [ (nameValuePair name value) ] else [ ]) (attrNames set));
  optionalAttrs = cond: as: if cond then as else { };
  getOutput = output: pkg: if pkg ? outputSpecified && pkg.outputSpecified then pkg else pkg.${output} or pkg.out or pkg;
  # "Any set with { type = "derivation"; } counts as a derivation."
  isDerivation = x: builtins.isAttrs x && x ? type && x.type == "derivation";

  # lib/lists.nix
  optional = cond: element: if cond then [ element ] else [ ];
  optionals = cond: elements: if cond then elements else [ ];
  last = list: builtins.elemAt list (builtins.length list - 1);

  # lib/strings.nix
  optionalString = cond: string: if cond then string else "";
  concatStrings = concatStringsSep "";
  concatMapStringsSep = sep: f: list: concatStringsSep sep (map f list);
  escapeShellArg = arg: "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString arg)}'";
  escapeShellArgs = concatMapStringsSep " " escapeShellArg;
  hasPrefix = prefix: s: substring 0 (stringLength prefix) s == prefix;
  hasSuffix = suffix: s:
    let n = stringLength s; m = stringLength suffix; in
    m <= n && substring (n - m) m s == suffix;
  removeSuffix = suffix: s:
    if hasSuffix suffix s then substring 0 (stringLength s - stringLength suffix) s else s;
  removePrefix = prefix: s:
    if hasPrefix prefix s then substring (stringLength prefix) (stringLength s - stringLength prefix) s else s;
  # The separator is taken literally, as nixpkgs' escapeRegex makes it.
  escapeRegex = s: builtins.replaceStrings
    [ "\\" "[" "{" "(" ")" "^" "$" "?" "*" "+" "|" "." ] [ "\\\\" "\\[" "\\{" "\\(" "\\)" "\\^" "\\$" "\\?" "\\*" "\\+" "\\|" "\\." ] s;
  splitString = sep: s: filter isString (split (escapeRegex sep) (toString s));
  makeSearchPathOutput = output: subDir: pkgs:
    concatStringsSep ":" (map (pkg: "${getOutput output pkg}/${subDir}") (filter (x: x != null) pkgs));
  makeBinPath = makeSearchPathOutput "bin" "bin";

  # lib/modules.nix and lib/options.nix: the values modules are built from (the module system
  # itself is not reproduced: nothing here evaluates a NixOS configuration).
  mkOverride = priority: content: { _type = "override"; inherit priority content; };
  mkForce = mkOverride 50;
  mkDefault = mkOverride 1000;
  mkIf = condition: content: { _type = "if"; inherit condition content; };
  mkMerge = contents: { _type = "merge"; inherit contents; };
  mkOption = attrs: attrs // { _type = "option"; };
  mkEnableOption = name: mkOption { default = false; example = true; description = "Whether to enable ${name}."; type = types.bool; };
  literalExpression = text:
    if !(builtins.isString text) then throw "literalExpression expects a string."
    else { _type = "literalExpression"; inherit text; };
  # lib/types.nix: only the names, as option declarations carry them.
  types = let type = name: { _type = "option-type"; inherit name; }; in {
    str = type "str";
    bool = type "bool";
    int = type "int";
    port = type "port";
    path = type "path";
    package = type "package";
    attrs = type "attrs";
    lines = type "lines";
    listOf = element: type "listOf" // { nestedTypes.elemType = element; };
    attrsOf = element: type "attrsOf" // { nestedTypes.elemType = element; };
    nullOr = element: type "nullOr" // { nestedTypes.elemType = element; };
    enum = values: type "enum" // { functor.payload = values; };
    submodule = module: type "submodule" // { inherit module; };
    deferredModule = type "deferredModule";
    raw = type "raw";
  };

  # lib/systems/default.nix: `elaborate` of a system double, the predicates this repository reads.
  systems.elaborate = system:
    let parts = splitString "-" system; cpu = head parts; kernel = last parts; in {
      inherit system;
      parsed = { cpu.name = cpu; kernel.name = kernel; };
      # `uname -p`: the CPU's name (ppc/mips variants aside, which no system here is).
      uname.processor = cpu;
      isLinux = kernel == "linux";
      isDarwin = kernel == "darwin";
      isx86_64 = cpu == "x86_64";
      isAarch64 = cpu == "aarch64";
    };

  # lib/licenses.nix
  licenses.mit = { shortName = "mit"; spdxId = "MIT"; fullName = "MIT License"; free = true; redistributable = true; };

  # lib/fileset/default.nix: a file set is the files under some paths. `toSource` gives a store
  # path named "source" holding exactly those files (and the directories leading to them) at
  # their place relative to `root`; a path that does not exist, or lies outside `root`, is an error.
  fileset =
    let
      coerce = context: value:
        if value._type or null == "fileset" then value
        else if isPath value then
          (if pathExists value then { _type = "fileset"; paths = [ value ]; }
           else throw "lib.fileset.${context}: ${toString value} does not exist.")
        else throw "lib.fileset.${context}: not a file set or a path: ${builtins.typeOf value}";
      under = parent: child: child == parent || hasPrefix "${parent}/" child;
      filesOf = path:
        if (if dirOf path == path then "directory" else (readDir (dirOf path)).${baseNameOf path}) == "directory"
        then concatMap (name: filesOf (path + "/${name}")) (attrNames (readDir path))
        else [ path ];
      unique = foldl' (kept: path: if elem path kept then kept else kept ++ [ path ]) [ ];
    in {
      unions = sets: let coerced = map (coerce "unions") sets; in {
        _type = "fileset";
        paths = concatMap (set: set.paths) coerced;
      };
      union = a: b: fileset.unions [ a b ];
      toList = set: unique (concatMap filesOf (coerce "toList" set).paths);
      toSource = { root, fileset }:
        let
          members = map toString (coerce "toSource" fileset).paths;
          rootString = toString root;
          outside = filter (member: !(under rootString member)) members;
          wanted = path: type:
            builtins.any (member: under member path || (type == "directory" && under path member)) members;
        in
        if outside != [ ] then throw "lib.fileset.toSource: ${head outside} is not under root ${rootString}."
        else builtins.path { name = "source"; path = root; filter = path: type: wanted (toString path) type; };
    };
in
{
  inherit flip fix extends nameValuePair genAttrs mapAttrs' filterAttrs optionalAttrs getOutput isDerivation
    optional optionals last optionalString hasPrefix hasSuffix removeSuffix removePrefix escapeRegex splitString
    concatStrings concatMapStringsSep escapeShellArg escapeShellArgs
    makeSearchPathOutput makeBinPath mkOverride mkForce mkDefault mkIf mkMerge mkOption mkEnableOption
    literalExpression types systems licenses fileset;
  inherit head elem filter foldl' listToAttrs attrNames concatMap concatStringsSep;
  inherit (builtins) mapAttrs attrValues concatLists functionArgs;
  mapAttrsToList = f: set: map (name: f name set.${name}) (attrNames set);
}
