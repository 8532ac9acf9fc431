"""Conformance: upstream-style testScripts per area, run in the driver's namespace on real VMs.

Each script asserts upstream's documented behaviour with its own negative control
(a wait that must fail, raising RequestedAssertionFailed as upstream's does). Areas
here: console and keyboard, systemd jobs, lifecycle (the run record), OCR and X11
(the parts a twin without a desktop can show). The logic without VMs:
tests/unit/test_machine_logic.py.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable

import pytest

from vmtest.portable.runtime.driver import Driver

from ..conftest import RECIPES

pytestmark = pytest.mark.vm
MINIMAL = RECIPES / "minimal.toml"

# The negative controls: `must_fail(lambda: …)` raises unless the call raises
# RequestedAssertionFailed (an AssertionError, as upstream's) whose text contains `says`.
PRELUDE = '''
def must_fail(call, says):
    try:
        call()
    except AssertionError as error:
        assert says in str(error), f"failed, but without {says!r}: {error}"
        return
    raise Exception(f"expected a failure saying {says!r}")
'''

CONSOLE_AND_KEYBOARD = PRELUDE + r'''
machine.wait_for_unit("multi-user.target")

with subtest("wait_for_console_text searches all text gathered during the call"):
    machine.succeed("printf 'span-a-1\\nspan-b-2\\n' > /dev/ttyS0")
    machine.wait_for_console_text(r"span-a-\d\n(?:.*\n)*?span-b-\d", timeout=60)
    # negative control: lines consumed by a call are not seen by the next
    must_fail(lambda: machine.wait_for_console_text("span-a-1", timeout=3), "console text")
    assert "span-b-2" in machine.get_console_log()
    assert any("span-a-1" in line for line in machine.full_console_log)

SUBMITTED = r"^(?![\s\S]*login: conformance)"  # the typed name is no longer on the screen

with subtest("send_key maps one character as send_chars does"):
    machine.wait_until_tty_matches("1", "login:", timeout=120)
    machine.send_chars("conformance")
    machine.wait_until_tty_matches("1", "login: conformance", timeout=30)
    # negative control: typed but not submitted, the name stays on the screen
    must_fail(lambda: machine.wait_until_tty_matches("1", SUBMITTED, timeout=3), "never matched")

with subtest("dump_tty_contents copies the tty into the journal"):
    machine.dump_tty_contents("1")
    machine.wait_until_succeeds("journalctl -b --no-pager | grep -q 'login: conformance'", timeout=30)

with subtest("send_key sends one character as its key: Return submits the line"):
    machine.send_key("\n")  # Return, as upstream maps it
    machine.wait_until_tty_matches("1", SUBMITTED, timeout=60)
'''

SYSTEMD_JOBS = PRELUDE + '''
machine.wait_for_job("multi-user.target")
# negative control: a unit that fails makes wait_for_job fail at once, as wait_for_unit does
machine.start_job("broken.service")
must_fail(lambda: machine.wait_for_job("broken.service"), "reached state 'failed'")
'''

# After a stop and a start with no command since, the run record must not report the old
# boot's connection against the new start.
LIFECYCLE = PRELUDE + '''
machine.wait_for_unit("multi-user.target")
first_connection = machine.connected_at
machine.STOP()
machine.start()
# negative control: the stale figure the record used to report is negative here
assert first_connection - machine.started_at < 0
assert machine.boot_seconds() is None
'''

OCR = PRELUDE + '''
machine.wait_for_unit("multi-user.target")
machine.wait_until_tty_matches("1", "login:", timeout=120)
machine.wait_for_text("login", timeout=120)
assert any("login" in text for text in machine.get_screen_text_variants())
# negative control
must_fail(lambda: machine.wait_for_text("text-nobody-displays", timeout=5), "on the screen (OCR)")
'''

# The minimal twin runs no X server: what it can show is the failure, named.
X11_WITHOUT_A_DESKTOP = PRELUDE + '''
machine.wait_for_unit("multi-user.target")
must_fail(lambda: machine.wait_for_x(timeout=3), "missing: the graphical session target")
'''


def run_script(make_driver: Callable[..., Driver], script: str) -> Driver:
    driver = make_driver(f"machine={MINIMAL}", script=script)
    driver.test_script()
    return driver


def test_console_and_keyboard(make_driver: Callable[..., Driver]) -> None:
    run_script(make_driver, CONSOLE_AND_KEYBOARD)


def test_systemd_jobs(make_driver: Callable[..., Driver]) -> None:
    run_script(make_driver, SYSTEMD_JOBS)


@pytest.mark.parametrize("stop", ["shutdown", "crash"])
def test_lifecycle_run_record_is_never_negative(make_driver: Callable[..., Driver], stop: str) -> None:
    driver = run_script(make_driver, LIFECYCLE.replace("STOP", stop))
    driver.terminate()
    record = json.loads((driver.out_dir / "vmtest-run.json").read_text())
    assert record["machines"]["machine"]["boot_to_backdoor_seconds"] is None


def test_lifecycle_run_record_measures_a_boot(make_driver: Callable[..., Driver]) -> None:
    # the positive side: a start followed by a command is measured
    driver = run_script(make_driver, 'machine.start()\nmachine.succeed("true")\n')
    driver.terminate()
    seconds = json.loads((driver.out_dir / "vmtest-run.json").read_text())["machines"]["machine"][
        "boot_to_backdoor_seconds"]
    assert seconds is not None and seconds > 0


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs tesseract-ocr on the host")
def test_ocr(make_driver: Callable[..., Driver]) -> None:
    run_script(make_driver, OCR)


def test_x11_without_a_desktop(make_driver: Callable[..., Driver]) -> None:
    run_script(make_driver, X11_WITHOUT_A_DESKTOP)
