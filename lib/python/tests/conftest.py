"""Shared fixtures: recipes, and drivers that boot real VMs from them."""

from __future__ import annotations

import base64
import gzip
import json
import signal
import subprocess
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import pytest

from vmtest.portable.runtime.driver import Driver
from vmtest.portable.runtime.driver_log import CompositeLogger, JunitLogger, TerminalLogger
from vmtest.portable.runtime.spec import prepare_machines
from vmtest.progress.events import Emit

RECIPES = Path(__file__).parent / "recipes"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# pytest tears fixtures down on KeyboardInterrupt but not on SIGTERM: without this, a CI
# timeout or `kill` would leave the fixtures' QEMUs running.
signal.signal(signal.SIGTERM, _interrupt)


def vm_processes() -> list[str]:
    """Every live qemu-system, vde_switch or systemd-nspawn process (to prove none is left behind).

    Zombies are dead already: they only wait for a parent (here, sometimes a PID 1
    that never reaps) and are not counted.
    """
    result = subprocess.run(["ps", "-eo", "pid=,stat=,args="], capture_output=True, text=True, check=True)
    live = []
    for line in result.stdout.splitlines():
        fields = line.split(None, 2)
        if len(fields) < 3:
            continue
        pid, stat, args = fields
        if not stat.startswith("Z") and any(name in args for name in ("qemu-system", "vde_switch", "systemd-nspawn")):
            live.append(f"{pid} {args}")  # not the state: R/S flips while a process lives
    return live


# A guest kernel panic is not what a VM test tests, and TCG sometimes crashes a guest's kernel
# (seen here: "Fatal exception in interrupt" while systemd starts units): a VM test whose error names
# a kernel panic runs once more (pytest-rerunfailures), and pytest's summary counts it as rerun.
GUEST_PANIC = "Kernel panic"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("vm") is not None:
            item.add_marker(pytest.mark.flaky(reruns=1, only_rerun=[GUEST_PANIC]))


def guest_panic(out: Path) -> str | None:
    """The first kernel panic line in a run's serial logs (``out/serial/*.log``), or None."""
    for log in sorted((out / "serial").glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if GUEST_PANIC in line:
                return f"{log.stem}: {line.strip()}"
    return None


def secret_forms(secret: str) -> dict[str, str]:
    """How ``secret`` may appear in an artifact, spelt out here independently of vmtest.redaction."""
    return {
        "plain": secret,
        "URL-encoded": urllib.parse.quote(secret, safe=""),
        "base64": base64.b64encode(secret.encode()).decode(),
        "JSON-escaped": json.dumps(secret)[1:-1].replace("/", "\\/"),
    }


def secret_hits(directory: Path, secrets: Iterable[str], extra: Mapping[str, str] | None = None) -> list[str]:
    """``where: form`` for every secret found in any file under ``directory`` (gzip opened) or in ``extra``."""
    texts = {str(path): path.read_bytes() for path in directory.rglob("*") if path.is_file()}
    texts = {name: gzip.decompress(data) if name.endswith(".gz") else data for name, data in texts.items()}
    texts.update({name: text.encode() for name, text in (extra or {}).items()})
    return [f"{name}: {form} {secret[:6]}…" for secret in secrets
            for form, encoded in secret_forms(secret).items()
            for name, data in texts.items() if encoded.encode() in data]


@pytest.fixture
def make_driver(tmp_path: Path) -> Iterator[Callable[..., Driver]]:
    """Factory for drivers over recipes (``name=recipe.toml`` specs), with progress events to ``progress``
    and checkpoints in ``checkpoints`` if given; all are torn down after the test."""
    drivers: list[Driver] = []

    def make(*specs: str, script: str = "", progress: Emit | None = None, script_path: Path | None = None,
             checkpoints: Path | None = None, fresh: bool = False) -> Driver:
        configs = prepare_machines(list(specs))
        out = tmp_path / f"out{len(drivers)}"
        logger = CompositeLogger([TerminalLogger(), JunitLogger(out / "junit.xml")])
        driver = Driver(configs, script, out, logger, progress=progress, script_path=script_path,
                        checkpoints=checkpoints, fresh=fresh)
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.terminate()
