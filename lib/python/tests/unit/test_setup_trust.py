"""A recipe's setup commands trust the host's CA bundle while they run, and the image keeps none of it.

Seen here: ``npm ci`` in the client-ts image failed with SELF_SIGNED_CERT_IN_CHAIN, as the host's
downloads go through a TLS-inspecting proxy whose CA the image's fresh ca-certificates lacks.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from vmtest.errors import ImageBuildError
from vmtest.portable.image import configure
from vmtest.portable.image.recipe import load_recipe


def recipe_with_setup(tmp_path: Path, *commands: str) -> Any:
    path = tmp_path / "box.toml"
    path.write_text("setup = [" + ", ".join(f'"{command}"' for command in commands) + "]\n")
    return load_recipe(path)


def test_setup_commands_see_the_host_bundle_which_goes_after_them(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    host = tmp_path / "host-ca.crt"
    host.write_text("-----BEGIN CERTIFICATE-----\nproxy\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(host))
    root = tmp_path / "root"
    seen: list[tuple[dict[str, str], str]] = []

    def fake_run(recipe: Any, step: str, argv: list[str], env: dict[str, str], check: bool) -> Any:
        seen.append((env, (root / configure.SETUP_CA_BUNDLE.lstrip("/")).read_text()))
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(configure, "run", fake_run)
    configure.run_setup(root, recipe_with_setup(tmp_path, "npm ci", "true"))
    assert len(seen) == 2
    for env, bundle in seen:
        assert bundle == host.read_text()
        assert {env[name] for name in configure.SETUP_CA_VARIABLES} == {configure.SETUP_CA_BUNDLE}
    assert not (root / configure.SETUP_CA_BUNDLE.lstrip("/")).exists(), "the image keeps no host file"


def test_the_bundle_goes_when_a_setup_command_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = tmp_path / "host-ca.crt"
    host.write_text("ca\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(host))
    root = tmp_path / "root"
    monkeypatch.setattr(configure, "run", lambda *args, **kwargs: subprocess.CompletedProcess([], 1, "", "boom"))
    with pytest.raises(ImageBuildError, match=r"setup\[1\] `npm ci` failed \(exit 1\):\nboom"):
        configure.run_setup(root, recipe_with_setup(tmp_path, "npm ci"))
    assert not (root / configure.SETUP_CA_BUNDLE.lstrip("/")).exists()
