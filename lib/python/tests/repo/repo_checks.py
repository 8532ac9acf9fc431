"""Checks of the repository's Nix side that run without building anything.

Each function returns a list of problems (empty: the check passed), so the
tests can run them on the real tree and on copies with planted errors.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[4]
# Path literals in Nix: ./x, ../x (not inside strings' ${…} or URLs).
NIX_PATH_LITERAL = re.compile(r"(?<![\w/.$])(\.\.?/[A-Za-z0-9_./+-]+)")
_REV = re.compile(r"^[0-9a-f]{40}$")
_NAR_HASH = re.compile(r"^sha256-[A-Za-z0-9+/]{43}=$")


def tracked_copy(destination: Path, root: Path = REPO) -> Path:
    """The files git tracks (what a flake's source holds), copied into ``destination``, to plant errors in."""
    listing = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True)
    for name in listing.stdout.decode().split("\0"):
        if name and (root / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, destination / name)
    return destination


def nix_files(root: Path = REPO) -> list[Path]:
    skip = {".git", ".venv", "node_modules", "out"}
    return sorted(p for p in root.rglob("*.nix") if not skip & set(p.relative_to(root).parts))


def parse_problems(root: Path = REPO) -> list[str]:
    """Every .nix file parses (nix-instantiate --parse)."""
    problems = []
    for path in nix_files(root):
        result = subprocess.run(["nix-instantiate", "--parse", str(path)], capture_output=True, text=True)
        if result.returncode != 0:
            problems.append(f"{path.relative_to(root)}: {result.stderr.strip().splitlines()[-1]}")
    return problems


def _strip_strings_and_comments(text: str) -> str:
    text = re.sub(r"#[^\n]*", "", text)
    # ''…'' strings hold shell: paths there are the guest's, not the repository's
    return re.sub(r"''.*?''", "''", text, flags=re.DOTALL)


def missing_path_problems(root: Path = REPO) -> list[str]:
    """Every ./ or ../ path literal in a .nix file exists."""
    problems = []
    for path in nix_files(root):
        for literal in NIX_PATH_LITERAL.findall(_strip_strings_and_comments(path.read_text())):
            target = (path.parent / literal.rstrip(".;")).resolve()
            if not target.exists():
                problems.append(f"{path.relative_to(root)}: {literal} does not exist")
    return problems


_READ_SCRIPT = re.compile(r"builtins\.readFile\s+(\.{1,2}/[\w./-]+\.py)")
_PORTABLE_RUN = re.compile(r"vmtest run ((?:[\w./-]+\.py\s*(?:\\\n\s*)?)+)")


def test_script_problems(root: Path = REPO) -> list[str]:
    """The testScripts the Nix checks read are exactly the files the portable runtime runs
    (Makefile and scripts/test-vm)."""
    nix_scripts: set[Path] = set()
    for path in nix_files(root):
        for literal in _READ_SCRIPT.findall(path.read_text()):
            nix_scripts.add((path.parent / literal).resolve())
    portable: set[Path] = set()
    for runner in (root / "Makefile", root / "scripts/test-vm"):
        if runner.is_file():
            for group in _PORTABLE_RUN.findall(runner.read_text()):
                portable |= {(root / name).resolve() for name in re.findall(r"[\w./-]+\.py", group)}
    if not nix_scripts:
        return ["no .nix file reads a testScript (`builtins.readFile ./script.py`)"]
    problems = [f"{p.relative_to(root)}: read by a Nix check, never run by the portable runtime"
                for p in sorted(nix_scripts - portable)]
    problems += [f"{p.relative_to(root)}: run by the portable runtime, read by no Nix check"
                 for p in sorted(portable - nix_scripts)]
    problems += [f"{p.relative_to(root)} does not exist" for p in sorted(nix_scripts) if not p.is_file()]
    return problems


def lock_problems(root: Path = REPO) -> list[str]:
    """flake.lock is version 7 JSON; every root input is fully locked and matches its url in flake.nix."""
    try:
        lock = json.loads((root / "flake.lock").read_text())
    except (OSError, json.JSONDecodeError) as error:
        return [f"flake.lock: {error}"]
    problems = []
    if lock.get("version") != 7 or lock.get("root") not in lock.get("nodes", {}):
        problems.append("flake.lock: expected version 7 with a root node")
    flake = (root / "flake.nix").read_text()
    nodes = lock.get("nodes", {})
    root_inputs = nodes.get(lock.get("root"), {}).get("inputs", {})
    if "nixpkgs" not in root_inputs:
        problems.append("flake.lock: no nixpkgs input")
    for name, node_name in root_inputs.items():
        node = nodes.get(node_name if isinstance(node_name, str) else "", {})
        locked = node.get("locked", {})
        checks = {
            "type": locked.get("type") == "github",
            "owner": bool(locked.get("owner")) and (name != "nixpkgs" or locked.get("owner") == "NixOS"),
            "repo": bool(locked.get("repo")) and (name != "nixpkgs" or locked.get("repo") == "nixpkgs"),
            "rev": bool(_REV.match(str(locked.get("rev", "")))),
            "narHash": bool(_NAR_HASH.match(str(locked.get("narHash", "")))),
            "lastModified": isinstance(locked.get("lastModified"), int) and locked["lastModified"] > 1_700_000_000,
        }
        problems += [f"flake.lock: {name} locked.{key} is missing or malformed" for key, ok in checks.items() if not ok]
        original = node.get("original", {})
        url = f"github:{original.get('owner')}/{original.get('repo')}" + (
            f"/{original['ref']}" if original.get("ref") else "")
        if f'"{url}"' not in flake:
            problems.append(f"flake.lock: {name}'s original {url!r} is not its url in flake.nix")
        for follower, target in node.get("inputs", {}).items():
            if isinstance(target, list) and f'inputs.{follower}.follows = "{"/".join(target)}"' not in flake:
                problems.append(f"flake.lock: {name}.{follower} follows {target} but flake.nix does not say so")
    return problems


def workflow_problems(root: Path = REPO) -> list[str]:
    """Workflows are YAML with `on` and jobs that each have runs-on and steps (actionlint when present)."""
    problems = []
    workflows = sorted((root / ".github/workflows").glob("*.yml"))
    if not workflows:
        return [".github/workflows: no workflows"]
    for path in workflows:
        name = path.relative_to(root)
        try:
            document = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            problems.append(f"{name}: not YAML: {error}")
            continue
        if not isinstance(document, dict):
            problems.append(f"{name}: not a mapping")
            continue
        # YAML 1.1 reads a bare `on:` key as True
        if "on" not in document and True not in document:
            problems.append(f"{name}: no `on:` trigger")
        jobs = document.get("jobs")
        if not isinstance(jobs, dict) or not jobs:
            problems.append(f"{name}: no jobs")
            continue
        for job, body in jobs.items():
            if not isinstance(body, dict) or "runs-on" not in body or not body.get("steps"):
                problems.append(f"{name}: job {job!r} needs runs-on and steps")
                continue
            for step in body["steps"]:
                if not isinstance(step, dict) or not ({"run", "uses"} & set(step)):
                    problems.append(f"{name}: job {job!r} has a step with neither run nor uses")
    actionlint = shutil.which("actionlint")
    if actionlint:
        result = subprocess.run([actionlint, "-no-color", *map(str, workflows)], capture_output=True, text=True,
                                cwd=root)
        if result.returncode != 0:
            problems += [line for line in result.stdout.splitlines() if line.strip()]
    return problems


ALL_CHECKS = (parse_problems, missing_path_problems, test_script_problems, lock_problems, workflow_problems)
