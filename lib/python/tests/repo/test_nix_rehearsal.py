"""vmtest's Nix build and check phase, rehearsed here as buildPythonPackage runs them.

Every VM check pulls vmtest in through extraPythonPackages, check phase included, so a unit
test that only passes inside this repository fails every Nix check. The negative controls
plant each kind of such test in a copy of the package and require the rehearsal to fail on it
while plain pytest in the copy passes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from . import nix_rehearsal
from .repo_checks import REPO

PACKAGE = REPO / "lib/python"



@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One venv with exactly the declared inputs, shared by the rehearsals below."""
    package = nix_rehearsal.evaluate_python_package(PACKAGE / "package.nix")
    return nix_rehearsal.make_venv(package, tmp_path_factory.mktemp("venv") / "venv")


def test_package_nix_declares_what_the_rehearsal_reads() -> None:
    package = nix_rehearsal.evaluate_python_package(PACKAGE / "package.nix")
    assert package.enabled_test_paths == ("tests/unit",)
    relative = {str(path.relative_to(package.root)) for path in package.files}
    assert "src/vmtest/health.py" in relative and "tests/unit/test_recipe.py" in relative
    assert not any(name.startswith(("tests/repo/", "tests/integration/")) for name in relative)


def test_the_check_phase_passes_as_nix_runs_it(venv: Path, tmp_path: Path) -> None:
    rehearsal = nix_rehearsal.rehearse(PACKAGE / "package.nix", tmp_path, python=venv)
    assert rehearsal.passed, rehearsal.output[-6000:]
    summary = rehearsal.output.strip().splitlines()[-1]
    assert " passed" in summary and "error" not in summary, summary


def _planted_copy(tmp_path: Path, test_body: str) -> Path:
    """A repository-like copy: flake.nix beside lib/python, whose only unit test is ``test_body``."""
    repo = tmp_path / "repo"
    (repo / "lib").mkdir(parents=True)
    (repo / "flake.nix").write_text("{ outputs = _: { }; }\n")
    copy = repo / "lib/python"
    copy.mkdir()
    for name in ("package.nix", "pyproject.toml"):
        shutil.copy(PACKAGE / name, copy / name)
    shutil.copytree(PACKAGE / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(PACKAGE / "tests/recipes", copy / "tests/recipes")
    for name in ("__init__.py", "conftest.py"):
        shutil.copy(PACKAGE / "tests" / name, copy / "tests" / name)
    (copy / "tests/unit").mkdir()
    (copy / "tests/unit/__init__.py").write_text("")
    (copy / "tests/unit/test_planted.py").write_text(test_body)
    return copy


def _passes_in_place(copy: Path) -> bool:
    """Plain pytest in the copy, with this repository's dev venv: what `make test` would see."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit"],
                          cwd=copy, capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(copy / "src")})
    return done.returncode == 0


PLANTED = {
    "an undeclared import": (
        "import yaml\n\ndef test_planted():\n    assert yaml.safe_load('a: 1') == {'a': 1}\n",
        "No module named 'yaml'",
    ),
    "a file outside the fileset": (
        "from pathlib import Path\n\ndef test_planted():\n"
        "    assert (Path(__file__).resolve().parents[4] / 'flake.nix').read_text()\n",
        "No such file or directory",
    ),
    "an undeclared tool": (
        "import subprocess\n\ndef test_planted():\n"
        "    subprocess.run(['systemctl', '--version'], check=True, capture_output=True)\n",
        "'systemctl'",
    ),
}


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_the_rehearsal_fails_where_nix_would(kind: str, venv: Path, tmp_path: Path) -> None:
    body, expected = PLANTED[kind]
    copy = _planted_copy(tmp_path, body)
    assert _passes_in_place(copy), "the planted test must pass in the repository, as it did on main"
    rehearsal = nix_rehearsal.rehearse(copy / "package.nix", tmp_path / "work", python=venv)
    assert not rehearsal.passed and rehearsal.phase == "check"
    assert expected in rehearsal.output, rehearsal.output[-4000:]
