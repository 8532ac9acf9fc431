"""report.html: what Report.write() and `vmtest report` put on the page (rendering, escaping,
redaction, order, timing); the page in a real browser is tests/repo/test_report_page.py."""

from __future__ import annotations

import base64
import contextlib
import html
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import secret_forms
from vmtest.health import ChainResult
from vmtest.portable.runtime.monitor import ppm_to_png
from vmtest.redaction import Redactor
from vmtest.reporting import ci as ci_report
from vmtest.reporting import timeline
from vmtest.reporting.page import Case, case_artifacts, failed_first
from vmtest.reporting.report import Report
from vmtest.units import UnitObservation


def png(width: int = 8, height: int = 4, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A real PNG (QEMU's screendump converter, fed a PPM)."""
    return ppm_to_png(b"P6\n%d %d\n255\n" % (width, height) + bytes(rgb) * (width * height))


def guest_junit(path: Path, failing: str | None = None, message: str = "TimeoutError: Locator.click",
                timestamp: str = "") -> Path:
    """A pytest-shaped JUnit file: test_app_loads passes, ``failing`` fails with ``message``."""
    stamp = f' timestamp="{timestamp}"' if timestamp else ""
    failure = (f'<testcase classname="test_smoke" name="{failing}" time="0.3">'
               f'<failure message="{html.escape(message)}">Traceback: line 12</failure></testcase>' if failing else "")
    path.write_text(f'<testsuites><testsuite name="pytest"{stamp}>'
                    f'<testcase classname="test_smoke" name="test_app_loads[chromium]" time="0.2"/>{failure}'
                    "</testsuite></testsuites>")
    return path


def page_of(report: Report) -> str:
    report.write()
    return (report.out_dir / "report.html").read_text()


def failure_names(page: str) -> list[str]:
    return [html.unescape(name) for name in re.findall(r'<h3 class="case-name">(.*?)</h3>', page)]


def data_uris(page: str) -> list[bytes]:
    return [base64.b64decode(uri) for uri in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_a_case_name_with_markup_is_shown_as_text(tmp_path: Path) -> None:
    report = Report(tmp_path, name="escape")
    hostile = '<script>window.pwned = 1</script><img src=x onerror="alert(1)">'
    with pytest.raises(AssertionError), report.case(hostile):
        raise AssertionError(f"message with {hostile}")
    page = page_of(report)
    assert "<script" not in page.lower() and "onerror=" not in page.replace("onerror=&quot;", ""), page
    assert html.escape(hostile) in page, "the name is on the page, as text"
    assert failure_names(page) == [f"escape / {hostile}"]


def test_a_declared_secret_appears_nowhere_in_the_page(tmp_path: Path) -> None:
    secret = "s3cr&t<\"quoted'>-v4lue"  # characters html.escape changes: escaped, it would not match
    control = "undeclared-control-value"
    redactor = Redactor()
    redactor.add(secret)
    report = Report(tmp_path, name="redaction", redactor=redactor)
    with pytest.raises(RuntimeError), report.case(f"case naming {secret} and {control}"):
        raise RuntimeError(f"backend said {secret}; {control}")
    guest_junit(tmp_path / "junit-browser.xml", failing="test_send_message[chromium]", message=f"leaked {secret}")
    report.add_junit_file(tmp_path / "junit-browser.xml", "browser")
    report.observe("health_backend", {"status": 500, "body": {"error": f"db {secret}", "note": control}})
    report.observe("machines", {"server": {"up": True, "kernel": secret}})
    report.span(f"unit {secret}", report.started, report.started + 1, "unit", lane=secret)
    (tmp_path / "screenshots").mkdir()
    (tmp_path / "screenshots" / "final-state.png").write_bytes(png())
    page = page_of(report)
    forms = {**secret_forms(secret), "HTML-escaped": html.escape(secret, quote=True),
             "HTML-escaped, quotes kept": html.escape(secret, quote=False)}
    hits = [name for name, form in forms.items() if form in page]
    assert hits == [], f"the secret is on the page as: {hits}"
    assert "[REDACTED]" in page and control in page, "the control value, never declared, does arrive"
    assert data_uris(page) == [png()], "the screenshot is embedded as it is"


def test_images_are_embedded_byte_for_byte_even_when_they_hold_a_secrets_base64(tmp_path: Path) -> None:
    # A screenshot's bytes are not text: redacting base64 that happens to spell a secret would break the image.
    secret = "hunter2-secret-value"
    image = png()
    image += b"\0" * (-len(image) % 3) + secret.encode()  # aligned: the file's base64 contains the secret's
    assert base64.b64encode(secret.encode()).decode().rstrip("=") in base64.b64encode(image).decode()
    redactor = Redactor()
    redactor.add(secret)
    report = Report(tmp_path, name="images", redactor=redactor)
    with report.case("ok"):
        pass
    (tmp_path / "shot.png").write_bytes(image)
    assert data_uris(page_of(report)) == [image]


def test_failed_cases_come_first_the_earliest_failure_first(tmp_path: Path) -> None:
    report = Report(tmp_path, name="e2e")
    with report.case("server stack comes up in order"):
        pass
    with pytest.raises(AssertionError), report.case("browser smoke tests"):
        # As the e2e testScript does: the guest's JUnit is folded in inside the step that then fails.
        guest_junit(tmp_path / "junit-browser.xml", failing="test_send_message[chromium]")
        report.add_junit_file(tmp_path / "junit-browser.xml", "browser")
        raise AssertionError("browser tests failed (exit 1)")
    with report.case("after"):
        pass
    page = page_of(report)
    assert failure_names(page) == ["browser / test_send_message[chromium]", "e2e / browser smoke tests"]
    rows = re.findall(r'<tr class="case"><td class="verdict (\w+)">', page)
    assert rows == ["failed", "failed", "passed", "passed", "passed"]
    assert "TimeoutError: Locator.click" in page
    passing = Report(tmp_path / "passing", name="e2e")
    with passing.case("server stack comes up in order"):
        pass
    page = page_of(passing)
    assert failure_names(page) == [] and 'id="outcome" class="outcome passed">PASSED' in page


def test_failed_first_orders_by_end_then_unknown_starts_last() -> None:
    def case(name: str, passed: bool, start: float | None, seconds: float = 1.0) -> Case:
        return Case(name, "s", "step", passed, seconds, start, "", "")

    ordered = failed_first([case("p2", True, 5.0), case("f-late", False, 0.0, 9.0), case("f-unknown", False, None),
                            case("f-early", False, 2.0), case("p1", True, 1.0)])
    assert [c.name for c in ordered] == ["f-early", "f-late", "f-unknown", "p1", "p2"]


def test_the_page_is_written_on_failure_from_a_finally(tmp_path: Path) -> None:
    report = Report(tmp_path, name="doomed")
    with pytest.raises(RuntimeError, match="the VM died"):
        try:
            with report.case("boots"):
                pass
            with report.case("serves"):
                raise RuntimeError("the VM died")
        finally:
            assert not (tmp_path / "report.html").exists()
            report.write()
    page = (tmp_path / "report.html").read_text()
    assert 'class="outcome failed">FAILED' in page and "RuntimeError: the VM died" in page
    assert '<span id="count-failed">1</span>' in page
    for name in ("junit.xml", "summary.json"):
        assert f'href="{name}"' in page, f"the page links {name}"
    assert not list(tmp_path.glob("*.tmp")), "written atomically"


def test_a_page_that_cannot_be_drawn_does_not_hide_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> str:
        raise KeyError("planted-secret-Zq81xK")

    monkeypatch.setattr("vmtest.reporting.report.report_page.render", broken)
    report = Report(tmp_path, name="doomed", redactor=Redactor(["planted-secret-Zq81xK"]))
    with report.case("boots"):
        pass
    junit, summary, page = report.write()
    assert junit.is_file() and summary.is_file()
    text = page.read_text()
    assert "could not be drawn (KeyError" in text and 'href="junit.xml"' in text
    assert "planted-secret" not in text + capsys.readouterr().err, "the error is redacted too"


def test_guest_junit_failures_keep_their_message_in_summary_and_page(tmp_path: Path) -> None:
    report = Report(tmp_path, name="e2e")
    guest_junit(tmp_path / "g.xml", failing="test_send_message[chromium]", message="AssertionError: no reply")
    (tmp_path / "bare.xml").write_text('<testsuite name="bare"><testcase name="t"><error>Boom\nline 2</error>'
                                       "</testcase></testsuite>")
    report.add_junit_file(tmp_path / "g.xml", "browser")
    report.add_junit_file(tmp_path / "bare.xml")
    summary = json.loads(report.write()[1].read_text())
    messages = {case["name"]: case["message"] for case in summary["cases"]}
    assert messages == {"test_app_loads[chromium]": "", "test_send_message[chromium]": "AssertionError: no reply",
                        "t": "Boom"}, "a failure without a message attribute keeps its text's first line"
    assert "AssertionError: no reply" in (tmp_path / "report.html").read_text()


def test_guest_cases_are_laid_out_from_their_timestamp_or_to_end_now(tmp_path: Path) -> None:
    # A run that started 20 s ago; its guest suite 5 s into it.
    report = Report(tmp_path, name="layout", started=time.monotonic() - 20,
                    started_at=datetime.now(UTC) - timedelta(seconds=20))
    within = (report.started_at + timedelta(seconds=5)).isoformat()
    stamped = report.add_junit_file(guest_junit(tmp_path / "a.xml", failing="t2", timestamp=within))
    assert [(case.start, case.seconds) for case in stamped] == [pytest.approx((5.0, 0.2)), pytest.approx((5.2, 0.3))]
    # A guest clock years off, or seconds ahead (the cases cannot have ended after the file was
    # read), or no timestamp: the cases end when the file was folded in.
    skewed = (report.started_at - timedelta(days=400)).isoformat()
    ahead = (report.started_at + timedelta(seconds=30)).isoformat()
    for name, stamp in (("b.xml", skewed), ("c.xml", ""), ("d.xml", ahead)):
        cases = report.add_junit_file(guest_junit(tmp_path / name, failing="t2", timestamp=stamp))
        now = time.monotonic() - report.started
        assert cases[0].start is not None and cases[1].start == pytest.approx(cases[0].start + 0.2)
        assert now - 0.5 <= cases[1].start + cases[1].seconds <= now, name


class CannedMachine:
    """A machine that answers the commands observe_machine and span_chain send, from a table."""

    name = "server"

    def __init__(self, uptime: float, finished_us: int) -> None:
        self.answers = {
            "uname -m": "x86_64\n", "uname -r": "6.12.0-test\n", "systemd-detect-virt": "qemu\n",
            "systemctl list-units --failed": "", timeline.UPTIME_COMMAND: f"{uptime:.2f}\n",
            "systemctl show --value -p FinishTimestampMonotonic": f"{finished_us}\n",
        }

    def is_up(self) -> bool:
        return True

    def nested(self, msg: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def log(self, msg: str) -> None:
        pass

    def execute(self, command: str, check_return: bool = True, check_output: bool = True,
                timeout: Any = 900) -> tuple[int, str]:
        answer = next((text for prefix, text in self.answers.items() if command.startswith(prefix)), None)
        if answer is None:
            raise AssertionError(f"unexpected command {command!r}")
        return 0, answer

    def succeed(self, *commands: str, timeout: Any = None) -> str:
        return self.execute(commands[0])[1]


def test_boot_and_unit_chain_spans_come_from_the_guest_clock(tmp_path: Path) -> None:
    report = Report(tmp_path, name="spans")
    machine = CannedMachine(uptime=100.0, finished_us=20_000_000)
    record = report.observe_machine(machine)  # type: ignore[arg-type]
    # The guest's kernel started 100 s before now, which is just after the report started.
    assert record["boot"]["started_at_s"] == pytest.approx(-100.0, abs=0.5)
    assert record["boot"]["seconds"] == 20.0 and record["boot"]["finished_at_s"] == pytest.approx(-80.0, abs=0.5)
    assert record["accelerator"] == "tcg" and "TCG" in record["accelerator_reason"]
    chain = ChainResult([UnitObservation("a.service", {"InactiveExitTimestampMonotonic": "95000000",
                                                       "ActiveEnterTimestampMonotonic": "96500000"}),
                         UnitObservation("b.service", {"ActiveEnterTimestampMonotonic": "97000000"})], 3.0)
    links = report.span_chain(machine, chain)  # type: ignore[arg-type]
    assert [(span.name, span.kind, span.lane) for span in links] == [("a.service", "unit", "server"),
                                                                     ("b.service", "unit", "server")]
    assert links[0].start == pytest.approx(-5.0, abs=0.5) and links[0].end - links[0].start == pytest.approx(1.5)
    assert links[1].end == links[1].start, "no activation time known: a point at its readiness"
    unfinished = Report(tmp_path / "u", name="u").observe_machine(CannedMachine(50.0, 0))  # type: ignore[arg-type]
    assert unfinished["boot"]["seconds"] is None and unfinished["boot"]["finished_at_s"] is None
    page = page_of(report)
    assert page.count('data-kind="boot"') == 1 and page.count('data-kind="unit"') == 2
    assert "6.12.0-test" in page and "20.0 s" in page


def test_a_portable_machine_says_why_it_has_its_accelerator(tmp_path: Path) -> None:
    machine = CannedMachine(uptime=10.0, finished_us=5_000_000)
    machine.accelerator_reason = "tcg: KVM unusable: /dev/kvm is missing"  # type: ignore[attr-defined]
    record = Report(tmp_path).observe_machine(machine)  # type: ignore[arg-type]
    assert record["accelerator_reason"] == "tcg: KVM unusable: /dev/kvm is missing"


def test_case_artifacts_are_matched_by_name_and_playwright_directory(tmp_path: Path) -> None:
    files = [tmp_path / relative for relative in (
        "screenshots/browser/test_send_message_chromium_.png",
        "screenshots/browser/test_send_message_twice_chromium_.png",
        "screenshots/browser/final-state.png",
        "test-results/traced/test-smoke-py-test-send-message-chromium/trace.zip",
        "test-results/traced/test-smoke-py-test-send-message-chromium/test-failed-1.png",
        "test-results/traced/test-smoke-py-test-send-message-twice-chromium/trace.zip",
    )]
    case = Case("test_send_message[chromium]", "browser", "test", False, 1.0, 0.0, "", "")
    shots, traces = case_artifacts(files, tmp_path, case)
    assert [path.relative_to(tmp_path).as_posix() for path in shots] == [
        "screenshots/browser/test_send_message_chromium_.png",
        "test-results/traced/test-smoke-py-test-send-message-chromium/test-failed-1.png"]
    assert [path.relative_to(tmp_path).as_posix() for path in traces] == [
        "test-results/traced/test-smoke-py-test-send-message-chromium/trace.zip"]
    assert case_artifacts(files, tmp_path, Case("unrelated step", "e2e", "step", False, 1.0, 0.0, "", "")) == ([], [])


def test_vmtest_report_merges_the_runs_pages(tmp_path: Path) -> None:
    for arch, failing in (("x86_64", None), ("aarch64", "docker run")):
        report = Report(tmp_path / arch, name="vm-services")
        with report.case("sshd and docker active"):
            pass
        if failing:
            with pytest.raises(AssertionError), report.case(failing):
                raise AssertionError(f"vm: docker run: exit 125 on {arch}")
        report.observe("machines", {"vm": {"up": True, "architecture": arch, "accelerator": "tcg"}})
        report.span("boot", report.started - 30, report.started - 2, "boot", "vm")
        report.write(junit_name="services-junit.xml", summary_name="services-summary.json",
                     html_name="services-report.html")
    _, _, page_path = ci_report.merge(tmp_path)
    page = page_path.read_text()
    assert failure_names(page) == ["aarch64/vm-services / docker run"]
    assert "vm: docker run: exit 125 on aarch64" in page and 'class="outcome failed">FAILED' in page
    assert re.findall(r'data-lane="([^"]+)"', page).count("aarch64/vm") == 1
    assert {"x86_64/vm", "aarch64/vm-services", "x86_64/vm-services"} <= set(re.findall(r'data-lane="([^"]+)"', page))
    for relative in ("x86_64/services-report.html", "aarch64/services-summary.json"):
        assert f'href="{relative}"' in page
    assert "<td>aarch64/vm</td><td>yes</td><td>aarch64</td>" in page
