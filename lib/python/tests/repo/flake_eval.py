"""The flake's outputs evaluated here: the stub lib and stub packages (nix/flake-outputs.nix)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

FLAKE_OUTPUTS = Path(__file__).resolve().parent / "nix" / "flake-outputs.nix"


class EvaluationError(Exception):
    """nix-instantiate could not evaluate the expression; the message has its error."""


def instantiate_json(arguments: list[str]) -> Any:
    """``nix-instantiate --eval --strict --json ARGUMENTS``; the value.

    Raises EvaluationError with nix's errors (its warnings about this host's nix.conf left out).
    """
    done = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", *arguments],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if not line.startswith("warning:")]
        raise EvaluationError("\n".join(errors))
    return json.loads(done.stdout)


def evaluate(flake: Path, expression: str, revision: str | None = None) -> Any:
    """Evaluate ``expression`` with ``outputs`` bound to the flake's outputs; its value as JSON data.

    ``revision``: the nixpkgs revision the stub nixpkgs stands for (default: the flake's pin).
    """
    chosen = "" if revision is None else f' revision = "{revision}";'
    program = (f"let outputs = import {FLAKE_OUTPUTS} {{ flake = {flake.resolve()};{chosen} }}; "
               f"in {expression}")
    return instantiate_json(["-E", program])


def output_names(flake: Path) -> dict[str, Any]:
    """``{checks,packages,apps: {system: [names]}, nixosConfigurations, templates: [names], devShells: …}``."""
    names = "builtins.mapAttrs (system: set: builtins.attrNames set)"
    result: dict[str, Any] = evaluate(flake, (
        f"{{ checks = {names} outputs.checks; packages = {names} outputs.packages; apps = {names} outputs.apps; "
        f"devShells = {names} outputs.devShells; "
        "nixosConfigurations = builtins.attrNames outputs.nixosConfigurations; "
        "templates = builtins.attrNames (outputs.templates or { }); }"))
    return result
