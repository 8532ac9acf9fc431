"""Pure logic behind the fault handling: redaction, the name check, the output directory, mounts, signals."""

from __future__ import annotations

import base64
import json
import os
import signal
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmtest import logs
from vmtest.portable.image.mounts import mounts_below
from vmtest.portable.outdir import OutputDirError, check_file_target, prepare_output_dir
from vmtest.portable.runtime.driver_log import CompositeLogger, JunitLogger
from vmtest.portable.runtime.namespace import namespace_names, undefined_names
from vmtest.portable.runtime.signals import RunSignals, Terminated, shielded
from vmtest.redaction import REDACTED, Redactor, encoded_forms

SECRET = "Fm2gvy8tLtzjDagyRe45Z/XLhC8BaDk5NF+bWdgvHy4="


def test_declared_values_are_redacted_in_every_encoding() -> None:
    redactor = Redactor()
    redactor.add(SECRET)
    for form in (SECRET, urllib.parse.quote(SECRET, safe=""), base64.b64encode(SECRET.encode()).decode(),
                 json.dumps(SECRET)[1:-1].replace("/", "\\/")):
        assert redactor.redact(f"before {form} after") == f"before {REDACTED} after", form
    control = Redactor(patterns=())
    assert control.redact(f"x {SECRET}") == f"x {SECRET}", "an undeclared value passes (negative control)"


@pytest.mark.fault(fault='text that looks like a secret but is an identifier (`prstoken::oid`)',
                   handling='left alone; `token: value` and `PASSWORD=value` are still redacted')
def test_patterns_leave_identifiers_alone() -> None:
    redactor = Redactor()
    text = "ERROR: type prstoken::oid does not exist; api_token: abcdef123; PASSWORD=hunter22"
    redacted = redactor.redact(text)
    assert "prstoken::oid" in redacted
    assert "api_token: [REDACTED]" in redacted and "PASSWORD=[REDACTED]" in redacted
    assert "hunter22" not in redacted and "abcdef123" not in redacted


def test_logs_still_exports_the_redactor() -> None:
    assert logs.Redactor is Redactor and logs.REDACTED == REDACTED


def test_for_driver_shares_the_runs_redactor() -> None:
    class PortableDriver:
        redactor = Redactor()

    class UpstreamDriver:
        pass

    assert Redactor.for_driver(PortableDriver()) is PortableDriver.redactor
    assert isinstance(Redactor.for_driver(UpstreamDriver()), Redactor)
    short = Redactor()
    short.add("ab")
    assert short.values == set(), "too short to redact"
    assert {"a%2Fb%2Bc%3D", "YS9iK2M9", "a\\/b+c="} <= encoded_forms("a/b+c=")


def test_composite_logger_redacts_messages_and_junit(tmp_path: Path) -> None:
    junit = JunitLogger(tmp_path / "junit.xml")
    logger = CompositeLogger([junit])
    redactor = Redactor()
    logger.redact = redactor.redact
    redactor.add("s3cr3t-value")  # declared after the wiring: the same object is consulted
    logger.log_test_error("unit failed; journal: key=s3cr3t-value")
    try:
        with logger.subtest("step"):
            raise AssertionError("raised with s3cr3t-value in it")
    except AssertionError:
        pass
    logger.close()
    text = (tmp_path / "junit.xml").read_text()
    assert "s3cr3t-value" not in text and text.count(REDACTED) >= 2


def test_composite_logger_says_what_is_running_and_closes_every_logger(tmp_path: Path) -> None:
    class Failing(JunitLogger):
        def close(self) -> None:
            raise OSError(28, "No space left on device")

    last = JunitLogger(tmp_path / "last.xml")
    logger = CompositeLogger([Failing(tmp_path / "first.xml"), last])
    assert logger.doing() == ""
    with logger.nested("waiting for unit app.service", {"machine": "server"}):
        assert logger.doing().startswith("while server: waiting for unit app.service (for ")
    with pytest.raises(OSError, match="No space"):
        logger.close()
    assert (tmp_path / "last.xml").is_file(), "a failing logger does not stop the next one"


def test_undefined_machine_names_are_found_before_boot() -> None:
    known = namespace_names(["server", "my-client"], [1])
    assert {"server", "my_client", "vlan1", "start_all", "subtest"} <= known and "machine" not in known
    script = ("import json\nstart_all()\nserver.succeed('true')\nserverr.succeed('x')\n"
              "def f():\n    global late\n    late = 1\nprint(late, json, [i for i in range(2)])\n")
    assert undefined_names(script, "s.py", known) == [("serverr", 4)]
    assert undefined_names("from os import *\nanything()\n", "s.py", known) == []
    assert undefined_names("globals()['x']\n", "s.py", known) == []


def test_output_dir_is_checked_and_made_fresh(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert prepare_output_dir(out) is None and out.is_dir()
    (out / "vmtest-run.json").write_text("{}")
    (out / "serial").mkdir()
    (out / "serial" / "machine.log").write_text("the previous run's panic\n")
    moved = prepare_output_dir(out)
    assert moved == tmp_path / "out.previous" and (moved / "serial" / "machine.log").is_file()
    assert list(out.iterdir()) == []
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(OutputDirError, match="holds no earlier vmtest run"):
        prepare_output_dir(foreign)
    assert (foreign / "notes.txt").read_text() == "keep"
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputDirError, match="is not a directory"):
        prepare_output_dir(tmp_path / "file")
    with pytest.raises(OutputDirError, match="not writable"):
        prepare_output_dir(Path("/proc/forbidden"))
    with pytest.raises(OutputDirError, match="not writable"):
        check_file_target(Path("/proc/forbidden/junit.xml"))


def test_mounts_below_a_build_dir_deepest_first(tmp_path: Path) -> None:
    root = tmp_path / "build" / "rootfs"
    mountinfo = "\n".join([
        "22 1 0:21 / /proc rw - proc proc rw",
        f"90 1 0:5 / {root}/proc rw - proc proc rw",
        f"91 90 0:6 / {root}/proc/sys/fs/binfmt_misc rw - binfmt_misc x rw",
        f"92 1 0:7 / {root}/dev/pts rw - devpts devpts rw",
        f"93 1 0:8 / {tmp_path}/build-other rw - tmpfs t rw",
        "94 1 0:9 / /with\\040space rw - tmpfs t rw",
    ])
    found = mounts_below(tmp_path / "build", mountinfo)
    assert found[0] == root / "proc/sys/fs/binfmt_misc"
    assert set(found) == {root / "proc", root / "proc/sys/fs/binfmt_misc", root / "dev/pts"}
    assert mounts_below(Path("/with space"), mountinfo) == [Path("/with space")]


@pytest.fixture
def own_handlers() -> Iterator[None]:
    """RunSignals keeps ignoring signals after a stopped run: give this process its handlers back."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.usefixtures("own_handlers")
def test_first_signal_unwinds_later_ones_are_noted(capfd: pytest.CaptureFixture[str]) -> None:
    with RunSignals() as signals, pytest.raises(Terminated):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):
            pass
    assert signals.first == "SIGTERM"
    with RunSignals() as signals:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100):
                pass
        with pytest.raises(KeyboardInterrupt):  # not stopping yet: the interruption was lost
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):
                pass
        signals.stopping = True
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):
            pass
    assert signals.received == [signal.SIGINT, signal.SIGTERM, signal.SIGINT, signal.SIGTERM]
    assert "vmtest: SIGTERM ignored: already stopping after SIGINT" in capfd.readouterr().err
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN, "the run has ended: still ignored"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN


def test_shielded_block_cannot_be_interrupted(capfd: pytest.CaptureFixture[str]) -> None:
    finished = False
    with shielded() as received:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):
            pass
        finished = True
    assert finished and received == [signal.SIGINT, signal.SIGTERM]
    assert "vmtest: SIGINT ignored: tearing down" in capfd.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "the old handler is back"
