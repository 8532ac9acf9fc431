"""The NixOS test driver's type check, reproduced per pinned nixpkgs revision without nixpkgs.

Before a run, the driver's Nix side (``nixos/lib/testing/driver.nix``) writes a file
``testScriptWithTypes``: the declarations of ``nixos/lib/test-script-prepend.py``, then one
line for the nodes, one for the VLANs, then the testScript, and type-checks it. What the
header imports (``test_driver.machine``, ``.driver``, …) is the driver's own package, which
is not here: ``write_stubs`` writes typing stand-ins for it from the pinned list
(tests/unit/data/upstream_api.json: every method, parameter and default of that revision, the
timeout annotations it has, and which methods an ``NspawnMachine`` lacks). ``header`` writes
the prelude as that revision's driver does. Everything here is written from reading the files
the pinned list names (and, for the nixos-25.11 prelude, the copy quoted in astral-sh/ty#1527);
no upstream code is copied.

- nixos-25.11: mypy over the prelude (``Machine``, ``RetryProtocol`` with ``timeout: int``), then
  ``server: Machine; client: Machine;`` and ``vlan1: VLan;`` (``machine: Machine;`` too when the
  only node has another name).
- nixos-26.05 and nixos-unstable: ty (#509615) over the ty-era prelude, which binds what it
  declares and provides ``create_fake_qemu_machine()``, ``create_fake_nspawn_machine()`` and
  ``create_fake_vlan()`` for the lines that follow; those lines are written here as
  ``server = create_fake_qemu_machine()`` (the driver.nix of that form was not among the stored
  copies; the prelude says it calls them). mypy checks the same file here; ty too when installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Methods' return types as upstream annotates them; every other method returns Any here.
RETURNS = {
    "execute": "tuple[int, str]", "systemctl": "tuple[int, str]", "start_job": "tuple[int, str]",
    "stop_job": "tuple[int, str]", "succeed": "str", "fail": "str", "wait_until_succeeds": "str",
    "wait_until_fails": "str", "get_console_log": "str", "is_up": "bool", "get_unit_info": "dict[str, str]",
    "get_unit_property": "str", "get_screen_text": "str", "get_screen_text_variants": "list[str]",
    "get_window_names": "list[str]", "get_tty_text": "str", "send_monitor_command": "str",
    "nested": "ContextManager[None]", "ssh_backdoor_command": "str",
}
for _none in ("start", "shutdown", "crash", "reboot", "wait_for_shutdown", "log", "log_serial", "wait_for_unit",
              "require_unit_state", "sleep", "wait_for_file", "wait_for_open_port", "wait_for_open_unix_socket",
              "wait_for_closed_port", "copy_from_machine", "copy_from_vm", "copy_from_host", "copy_from_host_via_shell",
              "screenshot", "send_key", "send_chars", "send_console", "wait_for_x", "wait_for_window", "wait_for_text",
              "wait_for_console_text", "block", "unblock", "forward_port", "release", "switch_root", "connect"):
    RETURNS[_none] = "None"
PATH_ATTRIBUTES = {"out_dir", "tmp_dir", "shared_dir", "state_dir", "monitor_path", "qmp_path", "shell_path"}
DURATION_PARAMETERS = {"timeout", "timeout_seconds", "secs", "duration", "delay"}
# Upstream annotates these `X | None` although they default to a number.
OPTIONAL_DURATIONS = {("execute", "timeout"), ("send_key", "delay"), ("send_chars", "delay")}


def _old_revision(revision: str) -> bool:
    return revision in ("nixos-25.11", "nixos-26.05")


def _annotation(revision: str, method: str, name: str, spec: dict[str, Any] | None) -> str:
    """A parameter's annotation: the revision's duration type for timeouts and delays, else Any."""
    if name not in DURATION_PARAMETERS:
        return "Any"
    base = ("float" if name == "delay" else "int") if _old_revision(revision) else "Duration"
    optional = (method, name) in OPTIONAL_DURATIONS or (spec is not None and spec.get("default", 0) is None)
    return f"{base} | None" if optional else base


def _signature(revision: str, params: list[list[Any]], method: str = "__init__") -> str:
    parts = ["self"]
    keyword_only = False
    for name, spec in params:
        if name.startswith("*"):
            parts.append(f"*{name[1:]}: str")
            keyword_only = True
            continue
        if spec and spec.get("keyword_only") and not keyword_only:
            parts.append("*")
            keyword_only = True
        default = " = ..." if spec is not None else ""
        parts.append(f"{name}: {_annotation(revision, method, name, spec)}{default}")
    return ", ".join(parts)


def _method(revision: str, name: str, params: list[list[Any]]) -> str:
    return f"    def {name}({_signature(revision, params, name)}) -> {RETURNS.get(name, 'Any')}: ..."


def _attributes(names: list[str]) -> list[str]:
    lines = []
    for name in names:
        kind = "Path" if name in PATH_ATTRIBUTES else "str" if name == "name" else "Any"
        lines.append(f"    {name}: {kind}")
    return lines


def machine_module(surface: dict[str, Any], revision: str) -> str:
    """``test_driver/machine/__init__.pyi`` of ``revision``: its classes, methods and attributes."""
    methods = {name: by_revision[revision] for name, by_revision in surface["methods"].items()
               if revision in by_revision}
    attributes = surface["attributes"][revision]
    head = ["from datetime import timedelta", "from pathlib import Path",
            "from typing import Any, ContextManager", "",
            "Duration = timedelta | int | float", ""]
    if revision == "nixos-25.11":
        body = ["class Machine:", *_attributes(attributes),
                "    def __init__(self, *args: Any, **kwargs: Any) -> None: ...",
                *(_method(revision, name, params) for name, params in methods.items())]
        return "\n".join([*head, *body, ""])
    lacks = set(surface["container_lacks"][revision])
    shared = {name: params for name, params in methods.items() if name not in lacks}
    vm_only = {name: params for name, params in methods.items() if name in lacks}
    base_attributes = ["name", "out_dir", "tmp_dir", "shared_dir", "state_dir", "callbacks", "logger",
                       "keep_machine_state"]
    body = ["class BaseMachine:", *_attributes(base_attributes),
            *(_method(revision, name, params) for name, params in shared.items()), "",
            "class QemuMachine(BaseMachine):",
            *_attributes([a for a in attributes if a not in base_attributes]),
            f"    def __init__({_signature(revision, surface['constructor'][revision])}) -> None: ...",
            *(_method(revision, name, params) for name, params in vm_only.items()), "",
            "class NspawnMachine(BaseMachine):",
            "    process: Any",
            "    pid: int | None",
            "    def __init__(self, *args: Any, **kwargs: Any) -> None: ...", ""]
    return "\n".join([*head, *body])


SUPPORT_MODULES = {
    "__init__.pyi": "",
    "driver.pyi": ("from pathlib import Path\nfrom typing import Any\n\n"
                   "class Driver:\n    out_dir: Path\n    def __getattr__(self, name: str) -> Any: ...\n"),
    "vlan.pyi": ("from typing import Any\n\n"
                 "class VLan:\n    nr: int\n    def __getattr__(self, name: str) -> Any: ...\n"),
    "logger.pyi": ("from typing import Any\n\n"
                   "class AbstractLogger:\n    def __getattr__(self, name: str) -> Any: ...\n\n"
                   "class CompositeLogger(AbstractLogger):\n"
                   "    def __init__(self, logger_list: list[AbstractLogger]) -> None: ...\n"),
    "debug.pyi": ("from typing import Any\n\n"
                  "class DebugAbstract:\n    def breakpoint(self) -> None: ...\n\n"
                  "class DebugNop(DebugAbstract):\n    def __init__(self) -> None: ...\n"),
    "duration.pyi": "from datetime import timedelta\n\nDuration = timedelta | int | float\n",
}


def write_stubs(surface: dict[str, Any], revision: str, root: Path) -> Path:
    """The typing stand-in of ``test_driver`` for ``revision``, under ``root``; returns ``root``."""
    package = root / "test_driver"
    (package / "machine").mkdir(parents=True, exist_ok=True)
    for name, text in SUPPORT_MODULES.items():
        (package / name).write_text(text)
    (package / "machine" / "__init__.pyi").write_text(machine_module(surface, revision))
    return root


# nixos-25.11's prelude (mypy): the namespace declared, nothing bound.
PRELUDE_2511 = """\
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol
from unittest import TestCase

from test_driver.debug import DebugAbstract
from test_driver.driver import Driver
from test_driver.logger import AbstractLogger
from test_driver.machine import Machine
from test_driver.vlan import VLan


class _Retry(Protocol):
    def __call__(self, fn: Callable[..., Any], timeout: int = 900) -> None: ...


class _PollingCondition(Protocol):
    def __call__(
        self, fun_: Callable[..., Any] | None = None, *, seconds_interval: float = 2.0, description: str | None = None
    ) -> Callable[[Callable[..., Any]], AbstractContextManager[Any]] | AbstractContextManager[Any]: ...


class _CreateMachine(Protocol):
    def __call__(
        self, start_command: str | dict[Any, Any], *, name: str | None = None, keep_vm_state: bool = False
    ) -> Machine: ...


start_all: Callable[[], None]
subtest: Callable[[str], AbstractContextManager[None]]
retry: _Retry
test_script: Callable[[], None]
machines: list[Machine]
vlans: list[VLan]
driver: Driver
log: AbstractLogger
create_machine: _CreateMachine
run_tests: Callable[[], None]
join_all: Callable[[], None]
serial_stdout_off: Callable[[], None]
serial_stdout_on: Callable[[], None]
polling_condition: _PollingCondition
debug: DebugAbstract
t: TestCase
"""

# The ty-era prelude (nixos-26.05, nixos-unstable): every name bound; the driver.nix lines that follow
# make each node with create_fake_qemu_machine() or create_fake_nspawn_machine(), each VLAN with
# create_fake_vlan().
PRELUDE_TY = """\
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NoReturn, Protocol
from unittest import TestCase

from test_driver.debug import DebugAbstract, DebugNop
from test_driver.driver import Driver
from test_driver.logger import AbstractLogger, CompositeLogger
from test_driver.machine import BaseMachine, NspawnMachine, QemuMachine
from test_driver.vlan import VLan


class _CreateMachine(Protocol):
    def __call__(
        self, start_command: str | dict[Any, Any], *, name: str | None = None, keep_machine_state: bool = False,
        **kwargs: Any,
    ) -> QemuMachine: ...


class _PollingCondition(Protocol):
    def __call__(
        self, fun_: Callable[..., Any] | None = None, *, seconds_interval: float = 2.0, description: str | None = None
    ) -> Callable[[Callable[..., Any]], AbstractContextManager[Any]] | AbstractContextManager[Any]: ...


class _Assertions(TestCase):
    pass


def _type_information_only() -> NoReturn:
    raise RuntimeError("declarations for the type check; the driver runs the script")


debug: DebugAbstract = DebugNop()
machines: list[BaseMachine] = []
machines_qemu: list[QemuMachine] = []
machines_nspawn: list[NspawnMachine] = []
vlans: list[VLan] = []
t = _Assertions()
log: AbstractLogger = CompositeLogger([])


def create_fake_driver() -> Driver:
    _type_information_only()


def create_fake_qemu_machine() -> QemuMachine:
    _type_information_only()


def create_fake_nspawn_machine() -> NspawnMachine:
    _type_information_only()


def create_fake_vlan() -> VLan:
    _type_information_only()


driver = create_fake_driver()


def create_machine(start_command: str, name: str | None = None, keep_machine_state: bool = False) -> QemuMachine:
    _type_information_only()


def retry(fn: Callable[..., Any], timeout_seconds: int = 900) -> None: ...
def polling_condition(
    fun: Callable[..., Any] | None, seconds_interval: float = 0.0, description: str | None = None
) -> Any: ...
def start_all() -> None: ...
def join_all() -> None: ...
def run_tests() -> None: ...
def test_script() -> None: ...
def serial_stdout_on() -> None: ...
def serial_stdout_off() -> None: ...
def dump_machine_ssh() -> None: ...


@contextmanager
def subtest(name: str) -> Generator[None, None, None]:
    yield
"""


def _the_only_machine(vms: list[str], containers: list[str]) -> list[str]:
    """driver.nix's alias: ``machine`` for the only node (a VM) when it has another name."""
    return ["machine"] if len(vms) == 1 and "machine" not in vms + containers else []


def header(revision: str, vms: list[str], containers: list[str] | None = None, vlans: tuple[int, ...] = (1,)) -> str:
    """What the driver of ``revision`` prepends to a testScript with these nodes and VLANs."""
    containers = containers or []
    names = list(vms) + _the_only_machine(list(vms), containers)
    if revision == "nixos-25.11":
        if containers:
            raise ValueError("nixos-25.11 has no containers")
        return (PRELUDE_2511 + " ".join(f"{name}: Machine;" for name in names) + "\n"
                + " ".join(f"vlan{nr}: VLan;" for nr in vlans) + "\n")
    lines = [f"{name} = create_fake_qemu_machine()" for name in names]
    lines += [f"{name} = create_fake_nspawn_machine()" for name in containers]
    lines += [f"vlan{nr} = create_fake_vlan()" for nr in vlans]
    return PRELUDE_TY + "\n".join(lines) + "\n"


def mypy_config(root: Path, stubs: Path) -> Path:
    """A mypy configuration with the driver's options (``--no-implicit-optional``; not strict) and the stubs."""
    config = root / "mypy.ini"
    config.write_text(f"[mypy]\nmypy_path = {stubs}\nno_implicit_optional = True\npython_version = 3.13\n"
                      f"cache_dir = {root / 'cache'}\n")
    return config
