"""Internal: What a validated VM must provide (``VmProfile``), and the expectations a flake gives for it.

What a flake expects of its own VM reaches the testScripts as JSON: vmtest's
``lib.<system>.vmValidation`` (lib/nix/vm-validation.nix) prepends
``VMTEST_EXPECTATIONS = "<json>"`` to tests/vm/*.py, and ``expected_profile`` reads it
(``parse_expectations`` checks its keys and types). Without it (the portable runtime,
``vmtest run tests/vm/boot.py``) the profile is this repository's VM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmtest.machine_api import Machine
from vmtest.suites.prepended import prepended_text, versioned_object

# Seconds to a finished boot under KVM (vmtest.suites.vm_validation says how it is judged).
BOOT_BUDGET_KVM_SECONDS = 30.0
# Files the user environment manages, relative to the home directory, and their exact
# content: the same files on NixOS (Home Manager) and on the Debian twin (machines/dotfiles).
DEFAULT_MANAGED_FILES: Mapping[str, str] = {
    ".config/git/config": (
        "[init]\n\tdefaultBranch = main\n[user]\n\temail = baleen@vm.invalid\n\tname = Baleen\n"
    ),
    ".vimrc": "set number\nset expandtab\nset shiftwidth=2\n",
}
@dataclass(frozen=True)
class VmProfile:
    """What the validated VM must provide.

    ``activation_unit`` None: no unit activates the user environment (the files are still
    checked); ``managed_root`` None: the managed files may be anything with the right content
    (no link into a store). ``docker`` False: no container check (and no tiny rootfs needed).
    """

    user: str = "baleen"
    arch: str | None = None
    services: tuple[str, ...] = ("sshd.service", "docker.service")
    user_groups: tuple[str, ...] = ("wheel", "docker")
    tools: tuple[str, ...] = ("git", "vim", "make", "gcc", "ssh")
    activation_unit: str | None = "home-manager-baleen.service"
    managed_root: str | None = "/nix/store/"
    managed_files: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MANAGED_FILES))
    tiny_rootfs: str = "/etc/vmtest/tiny-rootfs.tar"
    boot_budget_kvm_seconds: float = BOOT_BUDGET_KVM_SECONDS
    docker: bool = True


def profile_for(machine: Machine, *, user: str = "baleen", arch: str | None = None, **overrides: Any) -> VmProfile:
    """The profile of ``machine``: Home Manager on NixOS (``/etc/NIXOS``), the dotfiles unit on Debian.

    ``overrides`` are VmProfile fields; they win over what the flavour implies.
    """
    nixos = machine.execute("test -e /etc/NIXOS")[0] == 0
    flavour: dict[str, Any] = {
        "activation_unit": f"home-manager-{user}.service" if nixos else f"dotfiles-{user}.service",
        "managed_root": "/nix/store/" if nixos else f"/usr/share/dotfiles/{user}/",
    }
    return VmProfile(user=user, arch=arch, **{**flavour, **overrides})


# The testScript variable lib/nix/vm-validation.nix prepends: the expectations as JSON text.
EXPECTATIONS_VARIABLE = "VMTEST_EXPECTATIONS"
EXPECTATIONS_VERSION = 1


class ExpectationsError(ValueError):
    """The expectations JSON is malformed: the message names the key and what was wrong."""


def _strings(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ExpectationsError(f"{EXPECTATIONS_VARIABLE}: {key} must be a list of strings, got {value!r}")
    return tuple(value)


def _optional_string(key: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ExpectationsError(f"{EXPECTATIONS_VARIABLE}: {key} must be a string or null, got {value!r}")
    return value


def _managed_files(value: Any) -> dict[str, str]:
    """``{path: {"text": content}}`` or ``{path: {"source": file}}``: the content, read now (a source is a
    store path on the driver's host, in the testScript's closure)."""
    if not isinstance(value, dict):
        raise ExpectationsError(f"{EXPECTATIONS_VARIABLE}: managed_files must be an object, got {value!r}")
    files: dict[str, str] = {}
    for relative, spec in value.items():
        if not isinstance(spec, dict) or len(spec) != 1 or not ({"text", "source"} & set(spec)):
            raise ExpectationsError(f"{EXPECTATIONS_VARIABLE}: managed_files[{relative!r}] must be "
                                    f'{{"text": …}} or {{"source": …}}, got {spec!r}')
        if "text" in spec:
            files[relative] = str(spec["text"])
        else:
            try:
                files[relative] = Path(str(spec["source"])).read_text()
            except OSError as error:
                raise ExpectationsError(f"{EXPECTATIONS_VARIABLE}: managed_files[{relative!r}]: cannot read "
                                        f"its source: {error}") from error
    return files


def parse_expectations(text: str) -> dict[str, Any]:
    """VmProfile fields from the expectations JSON (version 1); raises ExpectationsError naming the key.

    Keys: ``user`` (required), ``arch``, ``services``, ``groups``, ``tools``, ``docker``,
    ``activation_unit``, ``managed_root``, ``managed_files``, ``boot_budget_kvm_seconds``.
    """
    data = versioned_object(text, EXPECTATIONS_VARIABLE, EXPECTATIONS_VERSION, ExpectationsError)
    known = {"version", "user", "arch", "services", "groups", "tools", "docker", "activation_unit",
             "managed_root", "managed_files", "boot_budget_kvm_seconds"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ExpectationsError(f"{EXPECTATIONS_VARIABLE}: unknown key(s) {', '.join(unknown)}")
    if not isinstance(data.get("user"), str) or not data["user"]:
        raise ExpectationsError(f"{EXPECTATIONS_VARIABLE}: user must be a non-empty string")
    fields: dict[str, Any] = {"user": data["user"]}
    if "arch" in data:
        fields["arch"] = _optional_string("arch", data["arch"])
    for key, name in (("services", "services"), ("groups", "user_groups"), ("tools", "tools")):
        if key in data:
            fields[name] = _strings(key, data[key])
    if "docker" in data:
        if not isinstance(data["docker"], bool):
            raise ExpectationsError(f"{EXPECTATIONS_VARIABLE}: docker must be true or false")
        fields["docker"] = data["docker"]
    for key in ("activation_unit", "managed_root"):
        if key in data:
            fields[key] = _optional_string(key, data[key])
    if "managed_files" in data:
        fields["managed_files"] = _managed_files(data["managed_files"])
    if "boot_budget_kvm_seconds" in data:
        budget = data["boot_budget_kvm_seconds"]
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0:
            raise ExpectationsError(f"{EXPECTATIONS_VARIABLE}: boot_budget_kvm_seconds must be a positive number")
        fields["boot_budget_kvm_seconds"] = float(budget)
    return fields


def expected_profile(machine: Machine, namespace: Mapping[str, Any], *, arch: str | None = None) -> VmProfile:
    """The profile the testScript was given (``VMTEST_EXPECTATIONS`` in its namespace), else this repository's.

    ``arch`` is the fallback architecture (the portable make targets' ``VMTEST_EXPECT_ARCH``);
    the expectations' own ``arch`` wins. The guest's flavour (NixOS or Debian) gives the
    activation unit and the managed root unless the expectations name them.
    """
    text = prepended_text(namespace, EXPECTATIONS_VARIABLE, "expectations'", ExpectationsError)
    if text is None:
        return profile_for(machine, arch=arch)
    fields = parse_expectations(text)
    fields.setdefault("arch", arch)
    return profile_for(machine, **fields)
