"""What a flake's Nix side tells the testScripts (VMTEST_EXPECTATIONS, VMTEST_E2E), read back and checked.

lib/nix/vm-validation.nix and lib/nix/web-stack-e2e.nix prepend the JSON; the parsers here turn
it into the profile and the stack the suites check, and name whatever is wrong with it. Without
it (the portable runtime) the defaults are this repository's, unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vmtest.suites import vm_validation as vv
from vmtest.suites import web_stack


class Guest:
    """Answers test -e /etc/NIXOS (``nixos``) and what check_user_environment asks, from ``files``."""

    name = "vm"

    def __init__(self, nixos: bool = True, files: dict[str, str] | None = None) -> None:
        self.nixos, self.files, self.commands = nixos, files or {}, []  # type: list[str]

    def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                timeout: object = 900) -> tuple[int, str]:
        self.commands.append(command)
        if command == "test -e /etc/NIXOS":
            return (0 if self.nixos else 1), ""
        if command.startswith("getent passwd"):
            return 0, "/home/ada\n"
        path = command.split()[-1].strip("'")
        if command.startswith("readlink -f"):
            return 0, path + "\n"
        if command.startswith("test -f"):
            return (0 if path in self.files else 1), ""
        if command.startswith("cat "):
            return 0, self.files[path]
        raise AssertionError(f"unexpected command {command!r}")

    def succeed(self, *commands: str, timeout: object = None) -> str:
        return "".join(self.execute(command)[1] for command in commands)


def expectations(**fields: Any) -> str:
    return json.dumps({"version": 1, "user": "ada", **fields})


def test_without_expectations_the_profile_is_this_repositorys() -> None:
    assert vv.expected_profile(Guest(), {}) == vv.VmProfile()  # type: ignore[arg-type]
    debian = vv.expected_profile(Guest(nixos=False), {}, arch="aarch64")  # type: ignore[arg-type]
    assert (debian.user, debian.arch, debian.activation_unit) == ("baleen", "aarch64", "dotfiles-baleen.service")


def test_the_expectations_make_the_profile(tmp_path: Path) -> None:
    source = tmp_path / "gitconfig"
    source.write_text("[user]\n\tname = Ada\n\temail = ada@example.invalid\n")
    text = expectations(arch="aarch64", services=["sshd.service"], groups=["wheel"], tools=["git", "tmux"],
                        docker=False, activation_unit=None, managed_root=None, boot_budget_kvm_seconds=45,
                        managed_files={".config/git/config": {"source": str(source)}, ".tmux.conf": {"text": "x\n"}})
    profile = vv.expected_profile(Guest(), {vv.EXPECTATIONS_VARIABLE: text}, arch="x86_64")  # type: ignore[arg-type]
    assert profile == vv.VmProfile(
        user="ada", arch="aarch64", services=("sshd.service",), user_groups=("wheel",), tools=("git", "tmux"),
        activation_unit=None, managed_root=None, boot_budget_kvm_seconds=45.0, docker=False,
        managed_files={".config/git/config": source.read_text(), ".tmux.conf": "x\n"})


def test_the_guest_flavour_fills_in_what_the_expectations_leave_out() -> None:
    profile = vv.expected_profile(Guest(), {vv.EXPECTATIONS_VARIABLE: expectations()}, arch="x86_64")  # type: ignore[arg-type]
    assert (profile.user, profile.arch, profile.activation_unit) == ("ada", "x86_64", "home-manager-ada.service")


@pytest.mark.parametrize(("text", "message"), [
    ("not json", "is not JSON"),
    (json.dumps([1]), "must be a JSON object"),
    (json.dumps({"version": 2, "user": "ada"}), "version 2, this vmtest reads version 1"),
    (expectations(tool=["git"]), "unknown key(s) tool"),
    (json.dumps({"version": 1}), "user must be a non-empty string"),
    (expectations(tools="git"), "tools must be a list of strings"),
    (expectations(docker="yes"), "docker must be true or false"),
    (expectations(managed_root=3), "managed_root must be a string or null"),
    (expectations(managed_files={".vimrc": "set number"}), "managed_files['.vimrc'] must be"),
    (expectations(managed_files={".vimrc": {"source": "/nonexistent/vimrc"}}), "cannot read its source"),
    (expectations(boot_budget_kvm_seconds=True), "boot_budget_kvm_seconds must be a positive number"),
])
def test_malformed_expectations_are_named(text: str, message: str) -> None:
    with pytest.raises(vv.ExpectationsError) as caught:
        vv.parse_expectations(text)
    assert message in str(caught.value)


def test_files_without_an_activation_unit_or_a_store_are_checked_by_content() -> None:
    profile = vv.VmProfile(user="ada", activation_unit=None, managed_root=None, managed_files={".tmux.conf": "x\n"})
    guest = Guest(files={"/home/ada/.tmux.conf": "x\n"})
    assert vv.check_user_environment(guest, profile) == {".tmux.conf": "/home/ada/.tmux.conf"}  # type: ignore[arg-type]
    assert not any("systemctl" in command for command in guest.commands), "no unit is looked at"
    with pytest.raises(vv.ValidationFailed, match=r"~ada/.tmux.conf: content differs"):
        vv.check_user_environment(Guest(files={"/home/ada/.tmux.conf": "y\n"}), profile)  # type: ignore[arg-type]
    with pytest.raises(vv.ValidationFailed, match=r"~ada/.tmux.conf: does not exist"):
        vv.check_user_environment(Guest(), profile)  # type: ignore[arg-type]


def test_the_dev_tools_check_builds_only_with_make_gcc_and_git() -> None:
    script, expected = vv.dev_tools_script(vv.VmProfile())
    assert expected == ["hello from gcc", "commit by Baleen <baleen@vm.invalid>"] and "make -s hello" in script
    assert vv.dev_tools_title(vv.VmProfile()) == "dev tools over ssh: make, gcc, git"
    tmux = vv.VmProfile(tools=("git", "tmux"))
    script, expected = vv.dev_tools_script(tmux)
    assert expected == ["tools on PATH: git tmux"] and "make" not in script
    assert vv.dev_tools_title(tmux) == "dev tools over ssh: git, tmux"
    # No managed git config: the commit gets vmtest's identity (git refuses to guess one).
    script, expected = vv.dev_tools_script(vv.VmProfile(managed_files={}))
    assert expected[-1] == "commit by vmtest <vmtest@vm.invalid>"
    assert "git -c user.name=vmtest -c user.email=vmtest@vm.invalid commit" in script


STACK = web_stack.WebStack(
    name="shop-e2e", app_unit="shop.service", migrate_unit="shop-migrate.service",
    chain=("postgresql.service", "shop-migrate.service", "shop.service", "nginx.service"), port=9000,
    health_path="/healthz", healthy={"status": "ok"}, proxied_headers={"X-Frame-Options": "DENY"},
    database="shop", migrations_dir="/etc/shop/migrations", required_extensions=(), env_file="/etc/shop/env",
    helpers={"payments-mock.service": 7000}, secrets=("s3cret",), browser_log="playwright.log")


def _stack_json(**changes: Any) -> str:
    data: dict[str, Any] = {"version": 1, "name": "shop-e2e", "app_unit": "shop.service",
                            "migrate_unit": "shop-migrate.service", "chain": list(STACK.chain), "port": 9000,
                            "health_path": "/healthz", "healthy": {"status": "ok"},
                            "proxied_headers": {"X-Frame-Options": "DENY"}, "database": "shop",
                            "migrations_dir": "/etc/shop/migrations", "required_extensions": [],
                            "env_file": "/etc/shop/env", "helpers": {"payments-mock.service": 7000},
                            "secrets": ["s3cret"], "browser_log": "playwright.log"}
    data.update(changes)
    return json.dumps({key: value for key, value in data.items() if value is not None})


def test_the_stack_json_is_the_stack() -> None:
    assert web_stack.web_stack_from({web_stack.STACK_VARIABLE: _stack_json()}, STACK) == STACK
    assert STACK.backend_health_url == "http://127.0.0.1:9000/healthz"
    assert STACK.proxied_health_url == "http://server/healthz"
    assert web_stack.web_stack_from({}, STACK) == STACK


@pytest.mark.parametrize(("text", "message"), [
    (_stack_json(version=2), "version 2"),
    (_stack_json(chain=None), "missing key(s) chain"),
    (_stack_json(extra=1), "unknown key(s) extra"),
    (_stack_json(port="9000"), "port must be a port number"),
    (_stack_json(port=True), "port must be a port number"),
    (_stack_json(helpers={"mock.service": "7000"}), "helpers['mock.service'] must be a port number"),
    (_stack_json(secrets="s3cret"), "secrets must be a list of strings"),
])
def test_a_malformed_stack_is_named(text: str, message: str) -> None:
    with pytest.raises(web_stack.StackError) as caught:
        web_stack.parse_stack(text)
    assert message in str(caught.value)
