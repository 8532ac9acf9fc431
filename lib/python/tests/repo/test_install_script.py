"""scripts/install-system-deps.sh installs every package vmtest doctor checks for."""

from __future__ import annotations

import re

from vmtest.portable import doctor

from .repo_checks import REPO

INSTALL_SCRIPT = REPO / "scripts" / "install-system-deps.sh"


def test_the_install_script_installs_every_package_doctor_checks_for() -> None:
    listed = re.search(r"(?s)^packages=\((.*?)^\)", INSTALL_SCRIPT.read_text(), re.M)
    assert listed is not None
    installed = {line.split("#")[0].strip() for line in listed.group(1).splitlines()} - {""}
    # dpkg is essential: every Debian system has it.
    assert {tool.package for tool in doctor.TOOLS} - {"dpkg"} <= installed


def test_every_listed_package_says_what_needs_it() -> None:
    listed = re.search(r"(?s)^packages=\((.*?)^\)", INSTALL_SCRIPT.read_text(), re.M)
    assert listed is not None
    lines = [line for line in listed.group(1).splitlines() if line.strip()]
    assert lines and all("#" in line and line.split("#", 1)[1].strip() for line in lines), lines
