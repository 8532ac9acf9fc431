"""scripts/install-system-deps.sh installs every package vmtest doctor checks for."""

from __future__ import annotations

import re

from vmtest.portable import doctor

from .repo_checks import REPO

INSTALL_SCRIPT = REPO / "scripts" / "install-system-deps.sh"


def _package_lines() -> list[str]:
    """The lines of the script's ``packages=( … )`` list, blank ones left out."""
    listed = re.search(r"(?s)^packages=\((.*?)^\)", INSTALL_SCRIPT.read_text(), re.M)
    assert listed is not None, f"{INSTALL_SCRIPT} has no packages=( … ) list"
    return [line for line in listed.group(1).splitlines() if line.strip()]


def test_the_install_script_installs_every_package_doctor_checks_for() -> None:
    installed = {line.split("#")[0].strip() for line in _package_lines()}
    # dpkg is essential: every Debian system has it.
    assert {tool.package for tool in doctor.TOOLS} - {"dpkg"} <= installed


def test_every_listed_package_says_what_needs_it() -> None:
    lines = _package_lines()
    assert lines and all("#" in line and line.split("#", 1)[1].strip() for line in lines), lines
