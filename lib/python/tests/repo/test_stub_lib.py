"""The stub lib (nix/lib) against what nixpkgs' definitions say each function returns.

Each case is an example from the function's documentation in nixpkgs (the file named beside it;
the commits it was read at are in docs/nix-reference.md), evaluated with the stub lib. A
function that drifted from nixpkgs' semantics fails its case here before it misleads a stub
evaluation.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from .flake_eval import EvaluationError, instantiate_json

LIB = Path(__file__).resolve().parent / "nix" / "lib"

# (expression with `lib` bound, the value nixpkgs documents), by the nixpkgs file that defines it.
DOCUMENTED: dict[str, tuple[str, Any]] = {
    # lib/attrsets.nix
    "genAttrs": ('lib.genAttrs [ "foo" "bar" ] (name: "x_" + name)', {"foo": "x_foo", "bar": "x_bar"}),
    "nameValuePair": ('lib.nameValuePair "some" 6', {"name": "some", "value": 6}),
    "mapAttrs'": ('lib.mapAttrs\' (name: value: lib.nameValuePair ("foo_" + name) ("bar-" + value)) '
                  '{ x = "a"; y = "b"; }', {"foo_x": "bar-a", "foo_y": "bar-b"}),
    "filterAttrs": ('lib.filterAttrs (n: v: n == "foo") { foo = 1; bar = 2; }', {"foo": 1}),
    "optionalAttrs true": ('lib.optionalAttrs true { my = "set"; }', {"my": "set"}),
    "optionalAttrs false": ('lib.optionalAttrs false { my = "set"; }', {}),
    # lib/lists.nix
    "optional true": ('lib.optional true "foo"', ["foo"]),
    "optional false": ('lib.optional false "foo"', []),
    # lib/trivial.nix: flip concat [ 1 ] [ 2 ]
    "flip": ("lib.flip (a: b: a ++ b) [ 1 ] [ 2 ]", [2, 1]),
    # lib/strings.nix
    "splitString": ('lib.splitString "." "foo.bar.baz"', ["foo", "bar", "baz"]),
    "splitString leading": ('lib.splitString "/" "/usr/local/bin"', ["", "usr", "local", "bin"]),
    "optionalString true": ('lib.optionalString true "some-string"', "some-string"),
    "optionalString false": ('lib.optionalString false "some-string"', ""),
    "removeSuffix": ('lib.removeSuffix "front" "homefront"', "home"),
    "removeSuffix absent": ('lib.removeSuffix "xxx" "homefront"', "homefront"),
    "makeBinPath": ('lib.makeBinPath [ "/root" "/usr" "/usr/local" ]', "/root/bin:/usr/bin:/usr/local/bin"),
    "makeBinPath outputs": ('lib.makeBinPath [ { out = "/o"; bin = "/b"; } { out = "/p"; } ]', "/b/bin:/p/bin"),
    # lib/fixed-points.nix
    "fix": ('lib.fix (self: { foo = "foo"; bar = "bar"; foobar = self.foo + self.bar; })',
            {"foo": "foo", "bar": "bar", "foobar": "foobar"}),
    "extends": ('lib.fix (lib.extends (self: super: { foo = super.foo + " + "; }) '
                '(self: { foo = "foo"; bar = "bar"; foobar = self.foo + self.bar; }))',
                {"foo": "foo + ", "bar": "bar", "foobar": "foo + bar"}),
    # lib/modules.nix: mkForce is mkOverride 50
    "mkForce": ('lib.mkForce "x"', {"_type": "override", "priority": 50, "content": "x"}),
    # lib/systems: the predicates of an elaborated system
    "systems.elaborate": ('let s = lib.systems.elaborate "aarch64-darwin"; in '
                          "[ s.system s.isDarwin s.isLinux s.isAarch64 s.isx86_64 ]",
                          ["aarch64-darwin", True, False, True, False]),
    # lib/licenses.nix
    "licenses.mit": ("lib.licenses.mit.spdxId", "MIT"),
    # lib/attrsets.nix: "Any set with { type = "derivation"; } counts as a derivation."
    "isDerivation": ('[ (lib.isDerivation { type = "derivation"; }) (lib.isDerivation "foobar") ]', [True, False]),
    # lib/strings.nix
    "concatStrings": ('lib.concatStrings ["foo" "bar"]', "foobar"),
    "concatMapStringsSep": ('lib.concatMapStringsSep "-" (x: builtins.replaceStrings ["f" "o" "b" "a" "r" "z"] '
                            '["F" "O" "B" "A" "R" "Z"] x) ["foo" "bar" "baz"]', "FOO-BAR-BAZ"),
    "escapeShellArg": ("lib.escapeShellArg \"esc'ape\\nme\"", "'esc'\\''ape\nme'"),
    "escapeShellArgs": ("lib.escapeShellArgs [\"one\" \"two three\" \"four'five\"]",
                        "'one' 'two three' 'four'\\''five'"),
    # lib/options.nix: literalExpression's value (its definition; no documented example)
    "literalExpression": ('lib.literalExpression "pkgs.hello"', {"_type": "literalExpression", "text": "pkgs.hello"}),
    # lib/systems/default.nix: uname.processor is the parsed CPU's name
    "uname.processor": ('map (s: (lib.systems.elaborate s).uname.processor) [ "aarch64-darwin" "x86_64-linux" ]',
                        ["aarch64", "x86_64"]),
}


def _evaluate(expression: str) -> Any:
    return instantiate_json(["-E", f"let lib = import {LIB}; in {expression}"])


def _realise(expression: str) -> str:
    """A store path the expression gives, really added to the store (``nix-instantiate --eval`` is read-only)."""
    done = subprocess.run(["nix", "--extra-experimental-features", "nix-command", "eval", "--impure", "--raw",
                           "--expr", f"let lib = import {LIB}; in {expression}"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_the_stub_lib_returns_what_nixpkgs_documents(name: str) -> None:
    expression, expected = DOCUMENTED[name]
    assert _evaluate(expression) == expected


def _tree(root: Path) -> None:
    for name in ("Makefile", "src/a.py", "src/b/c.py", "tests/run.sh", "tests/other.sh", "docs/x.md"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)


def test_fileset_to_source_holds_exactly_the_files_of_the_set(tmp_path: Path) -> None:
    # lib/fileset/default.nix: toSource's result is a store path "…-source" with the set's files
    # at their place under root, and the directories leading to them, nothing else.
    _tree(tmp_path)
    source = _realise(f"lib.fileset.toSource {{ root = {tmp_path}; fileset = lib.fileset.unions "
                       f"[ {tmp_path}/Makefile {tmp_path}/src {tmp_path}/tests/run.sh ]; }}")
    assert source.startswith("/nix/store/") and source.endswith("-source")
    listed = subprocess.run(["find", source, "-type", "f", "-printf", "%P\n"], capture_output=True, text=True,
                            check=True).stdout.split()
    assert sorted(listed) == ["Makefile", "src/a.py", "src/b/c.py", "tests/run.sh"]
    files = _evaluate(f"map toString (lib.fileset.toList (lib.fileset.unions [ {tmp_path}/src {tmp_path}/Makefile ]))")
    assert sorted(Path(name).relative_to(tmp_path).as_posix() for name in files) == [
        "Makefile", "src/a.py", "src/b/c.py"]


@pytest.mark.parametrize(("fileset", "message"), [
    ("{root}/missing", "does not exist"),
    ("{root}/../elsewhere", "is not under root"),
])
def test_fileset_refuses_what_nixpkgs_refuses(tmp_path: Path, fileset: str, message: str) -> None:
    root = tmp_path / "root"
    _tree(root)
    (tmp_path / "elsewhere").write_text("x")
    with pytest.raises(EvaluationError, match=message):
        _evaluate(f"lib.fileset.toSource {{ root = {root}; fileset = lib.fileset.unions [ "
                  f"{fileset.format(root=root)} ]; }}")
