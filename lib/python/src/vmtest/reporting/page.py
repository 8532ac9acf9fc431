"""Internal: ``report.html``: one self-contained page of a run, from the data ``summary.json`` holds.

``render`` takes a summary (``Report.summary()``'s shape, or ``vmtest report``'s merge of
several) and the output directory, and returns the page: the outcome; the failed cases
first, each with its message, its screenshots inline and links to its traces; a timeline
of spans and cases as CSS bars (readable without JavaScript); every case; the machines;
health bodies, the migration report and the other observations; every other screenshot;
and a relative link to every file of the directory. No network, no script: styles and
images are inline. Every text is redacted, then escaped. Images are embedded as bytes, not
redacted: base64 of pixels is not text, a secret's base64 form found in it would be a
coincidence (and replacing it would break the image), and the PNG lies unredacted in the
directory anyway. A secret drawn on a screen is beyond any text redaction.
"""

from __future__ import annotations

import base64
import html
import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmtest.redaction import Redactor
from vmtest.waiting import format_seconds

# Keys of a summary the page shows in sections of their own; the others are observations.
LAYOUT_KEYS = frozenset({"name", "result", "started_at", "duration_seconds", "tests", "cases", "spans", "machines"})
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
# Larger images are linked, not embedded: the page must stay quick to open and to upload.
MAX_EMBEDDED_BYTES = 8 * 1024 * 1024
MAX_LISTED_FILES = 2000
DATA_URI = re.compile(r"(data:image/[a-z]+;base64,[A-Za-z0-9+/=]*)")
TICK_STEPS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d1d1f; background: #fff; }
h1 { margin: 0 0 .3em; font-size: 1.5em; } h2 { margin: 1.6em 0 .5em; border-bottom: 1px solid #ddd; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; white-space: pre-wrap; word-break: break-word; }
table { border-collapse: collapse; } td, th { text-align: left; padding: .2em .8em .2em 0; vertical-align: top; }
.outcome { display: inline-block; padding: .2em .8em; border-radius: 4px; color: #fff; font-weight: bold; }
.outcome.passed { background: #1a7f37; } .outcome.failed { background: #cf222e; }
.verdict.passed { color: #1a7f37; } .verdict.failed { color: #cf222e; font-weight: bold; }
.failure { border-left: 4px solid #cf222e; padding: .2em 1em; margin: 1em 0; background: #fff8f8; }
.failure img, .shot img { max-width: 100%; border: 1px solid #ccc; }
.shot { display: inline-block; margin: 0 1em 1em 0; max-width: 48%; vertical-align: top; }
.lane h3 { margin: .8em 0 .2em; font-size: 1em; }
.row, .axis { display: grid; grid-template-columns: 22em 1fr 6em; gap: .6em; align-items: center; }
.label { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.track { position: relative; height: 1.1em; background: #f3f3f3; }
.axis .track { background: none; height: 1.4em; border-bottom: 1px solid #999; }
.tick { position: absolute; bottom: 0; font-size: .8em; color: #555; border-left: 1px solid #999;
        padding-left: 2px; height: 1.2em; white-space: nowrap; }
.bar { position: absolute; top: 0; bottom: 0; min-width: 3px; border-radius: 2px; }
.kind-boot { background: #0969da; } .kind-unit { background: #8250df; } .kind-step { background: #6e7781; }
.kind-test { background: #1b7c83; } .bar.failed { background: #cf222e; }
.time { font-variant-numeric: tabular-nums; color: #555; }
"""


@dataclass(frozen=True)
class Case:
    """A case as the page shows it; ``where`` is the directory (relative) its artifacts are under."""

    name: str
    suite: str
    kind: str
    passed: bool
    seconds: float
    start: float | None
    message: str
    where: str

    @property
    def end(self) -> float:
        """When it ended (seconds from the run's start); cases of unknown start sort last."""
        return (self.start if self.start is not None else float("inf")) + self.seconds


@dataclass(frozen=True)
class Bar:
    """One bar of the timeline."""

    lane: str
    name: str
    kind: str
    start: float
    end: float
    passed: bool


def _case(record: Mapping[str, Any]) -> Case:
    start = record.get("start")
    return Case(str(record.get("name", "?")), str(record.get("suite", "")), str(record.get("kind", "step")),
                bool(record.get("passed")), float(record.get("seconds") or 0.0),
                float(start) if start is not None else None, str(record.get("message", "")),
                str(record.get("where", "")))


def failed_first(cases: Iterable[Case]) -> list[Case]:
    """Failed cases first, the earliest to end first (the first failure is the likeliest cause),
    then the passed ones in the order they ran."""
    listed = list(cases)
    failed = sorted((case for case in listed if not case.passed), key=lambda case: case.end)
    passed = sorted((case for case in listed if case.passed),
                    key=lambda case: case.start if case.start is not None else float("inf"))
    return failed + passed


def slug(text: str) -> str:
    """``text`` lower-cased with every run of other characters than letters and digits as one ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def case_artifacts(files: Sequence[Path], root: Path, case: Case) -> tuple[list[Path], list[Path]]:
    """The screenshots and traces of ``case`` among ``files`` (under ``root / case.where``).

    A screenshot is a PNG named after the case (the e2e client's ``screenshots/browser/<test>.png``)
    or any PNG in a directory named after its node id (pytest-playwright's ``--output``:
    ``<file>-py-<test>/test-failed-1.png``); a trace is a ``.zip`` in such a directory.
    """
    key = slug(case.name)
    if not key:
        return [], []
    base = root / case.where

    def in_case_directory(path: Path) -> bool:
        return any(slug(part) == key or slug(part).endswith(f"-{key}") for part in path.relative_to(base).parts[:-1])

    shots, traces = [], []
    for path in files:
        if not path.is_relative_to(base):
            continue
        if path.suffix.lower() in IMAGE_TYPES and (slug(path.stem) == key or in_case_directory(path)):
            shots.append(path)
        elif path.suffix == ".zip" and in_case_directory(path):
            traces.append(path)
    return shots, traces


def _data_uri(path: Path) -> str | None:
    """The image as a data: URI; None when it is too large or cannot be read."""
    try:
        if path.stat().st_size > MAX_EMBEDDED_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    return f"data:{IMAGE_TYPES[path.suffix.lower()]};base64,{base64.b64encode(data).decode()}"


def _seconds(value: float | None) -> str:
    return "?" if value is None else format_seconds(value)


def _tick_step(length: float) -> float:
    return next((step for step in TICK_STEPS if length / step <= 10), TICK_STEPS[-1])


class _Page:
    """The page's parts; ``t`` redacts then escapes every text that goes into it."""

    def __init__(self, summary: Mapping[str, Any], out_dir: Path, redactor: Redactor, own_name: str) -> None:
        self.summary = summary
        self.out_dir = out_dir
        self.redactor = redactor
        self.cases = failed_first(_case(record) for record in summary.get("cases", []))
        self.files = sorted(path for path in out_dir.rglob("*")
                            if path.is_file() and path.suffix != ".tmp" and path != out_dir / own_name)
        self.shown: set[Path] = set()

    def t(self, value: object) -> str:
        return html.escape(self.redactor.redact(str(value)), quote=True)

    def link(self, path: Path, text: str | None = None) -> str:
        relative = path.relative_to(self.out_dir).as_posix()
        return f'<a href="{self.t(urllib.parse.quote(relative))}">{self.t(text or relative)}</a>'

    def image(self, path: Path) -> str:
        self.shown.add(path)
        uri = _data_uri(path)
        caption = self.link(path)
        if uri is None:
            return f"<p>{caption} (too large to embed, or unreadable)</p>"
        # The data URI is not passed through t(): it is not text (see the module's docstring).
        return f'<img src="{uri}" alt="{self.t(path.name)}"><br>{caption}'

    def header(self) -> str:
        result = "passed" if self.summary.get("result") == "passed" else "failed"
        failed = sum(not case.passed for case in self.cases)
        return (f"<header><h1>{self.t(self.summary.get('name', 'vmtest'))}</h1>"
                f'<p><span id="outcome" class="outcome {result}">{result.upper()}</span> '
                f'<span id="counts"><span id="count-total">{len(self.cases)}</span> cases, '
                f'<span id="count-passed">{len(self.cases) - failed}</span> passed, '
                f'<span id="count-failed">{failed}</span> failed</span>, '
                f'<span id="duration">{self.t(_seconds(self.summary.get("duration_seconds")))}</span>'
                f"{self.t(', started ' + str(self.summary['started_at'])) if self.summary.get('started_at') else ''}"
                "</p></header>")

    def failures(self) -> str:
        failed = [case for case in self.cases if not case.passed]
        if not failed:
            return '<section id="failures"><h2>Failed cases</h2><p>None.</p></section>'
        parts = ['<section id="failures"><h2>Failed cases</h2>']
        for case in failed:
            shots, traces = case_artifacts(self.files, self.out_dir, case)
            parts.append(f'<article class="failure"><h3 class="case-name">{self.t(case.suite)} / {self.t(case.name)}'
                         f"</h3><p>after {self.t(_seconds(case.seconds))}</p>"
                         f'<pre class="message">{self.t(case.message or "(no message)")}</pre>')
            parts += [f'<p class="screenshot">{self.image(shot)}</p>' for shot in shots]
            parts += [f'<p class="trace">trace: {self.link(trace)} (open it with <code>playwright show-trace</code>)'
                      "</p>" for trace in traces]
            parts.append("</article>")
        return "".join(parts) + "</section>"

    def bars(self) -> list[Bar]:
        bars = [Bar(str(span.get("lane") or "run"), str(span.get("name", "?")), str(span.get("kind", "span")),
                    float(span.get("start", 0.0)), float(span.get("end", 0.0)), bool(span.get("passed", True)))
                for span in self.summary.get("spans", [])]
        bars += [Bar(case.suite, case.name, case.kind, case.start, case.start + case.seconds, case.passed)
                 for case in self.cases if case.start is not None]
        return bars

    def timeline(self) -> str:
        bars = self.bars()
        if not bars:
            return '<section id="timeline"><h2>Timeline</h2><p>Nothing was timed.</p></section>'
        low = min(0.0, *(bar.start for bar in bars))
        high = max(float(self.summary.get("duration_seconds") or 0.0), *(bar.end for bar in bars))
        length = max(high - low, 1e-3)

        def percent(value: float) -> float:
            return (value - low) / length * 100

        step = _tick_step(length)
        ticks = [step * index for index in range(int(low // step), int(high // step) + 1)]
        axis = "".join(f'<span class="tick" style="left:{percent(tick):.3f}%">{self.t(f"{tick:g} s")}</span>'
                       for tick in ticks if low <= tick <= high)
        lanes: dict[str, list[Bar]] = {}
        for bar in sorted(bars, key=lambda bar: (bar.start, bar.end)):
            lanes.setdefault(bar.lane, []).append(bar)
        parts = ['<section id="timeline"><h2>Timeline</h2>',
                 f'<div class="axis"><span></span><span class="track">{axis}</span><span></span></div>']
        for lane, lane_bars in lanes.items():
            parts.append(f'<div class="lane"><h3>{self.t(lane)}</h3>')
            for bar in lane_bars:
                verdict = "passed" if bar.passed else "failed"
                title = f"{bar.name}: {_seconds(bar.start)} to {_seconds(bar.end)} ({bar.kind}, {verdict})"
                parts.append(
                    f'<div class="row"><span class="label" title="{self.t(bar.name)}">{self.t(bar.name)}</span>'
                    f'<span class="track"><span class="bar kind-{self.t(slug(bar.kind))} {verdict}" '
                    f'data-kind="{self.t(bar.kind)}" data-lane="{self.t(lane)}" title="{self.t(title)}" '
                    f'style="left:{percent(bar.start):.3f}%;width:{percent(bar.end) - percent(bar.start):.3f}%">'
                    f'</span></span><span class="time">{self.t(_seconds(bar.end - bar.start))}</span></div>')
            parts.append("</div>")
        return "".join(parts) + "</section>"

    def case_table(self) -> str:
        rows = "".join(
            f'<tr class="case"><td class="verdict {"passed" if case.passed else "failed"}">'
            f'{"PASS" if case.passed else "FAIL"}</td><td>{self.t(case.suite)}</td><td>{self.t(case.name)}</td>'
            f'<td class="time">{self.t(_seconds(case.seconds))}</td></tr>'
            for case in self.cases)
        return (f'<section id="cases"><h2>Cases</h2><table><tr><th></th><th>suite</th><th>case</th><th>time</th>'
                f"</tr>{rows}</table></section>")

    def machines(self) -> str:
        machines: Mapping[str, Any] = self.summary.get("machines") or {}
        if not machines:
            return ""
        columns = ("up", "architecture", "accelerator", "accelerator_reason", "kernel", "boot", "failed_units")
        head = "".join(f"<th>{self.t(column.replace('_', ' '))}</th>" for column in columns)
        rows = []
        for name, record in machines.items():
            record = record if isinstance(record, Mapping) else {"up": record}
            boot = record.get("boot")
            cells = {**record, "boot": _seconds(boot.get("seconds")) if isinstance(boot, Mapping)
                     else _seconds(record.get("boot_seconds")) if record.get("boot_seconds") is not None else ""}
            rows.append(f"<tr><td>{self.t(name)}</td>" + "".join(
                f"<td>{self.t(_cell(cells.get(column)))}</td>" for column in columns) + "</tr>")
        return (f'<section id="machines"><h2>Machines</h2><table><tr><th>machine</th>{head}</tr>{"".join(rows)}'
                "</table></section>")

    def observations(self) -> str:
        observed = {key: value for key, value in self.summary.items() if key not in LAYOUT_KEYS}
        groups = (("health", "Health", [key for key in observed if key.startswith("health")]),
                  ("migrations", "Migrations", [key for key in observed if key.startswith("migration")]))
        grouped = {key for _, _, keys in groups for key in keys}
        parts = []
        for anchor, title, keys in (*groups, ("observations", "Other observations",
                                              [key for key in observed if key not in grouped])):
            if keys:
                parts.append(f'<section id="{anchor}"><h2>{title}</h2>' + "".join(
                    f"<h3>{self.t(key)}</h3><pre>{self.t(json.dumps(observed[key], indent=2, default=str))}</pre>"
                    for key in keys) + "</section>")
        return "".join(parts)

    def screenshots(self) -> str:
        rest = [path for path in self.files if path.suffix.lower() in IMAGE_TYPES and path not in self.shown]
        if not rest:
            return ""
        return ('<section id="screenshots"><h2>Screenshots</h2>'
                + "".join(f'<figure class="shot">{self.image(path)}</figure>' for path in rest) + "</section>")

    def file_list(self) -> str:
        listed = self.files[:MAX_LISTED_FILES]
        rows = "".join(f"<tr><td>{self.link(path)}</td><td class='time'>{path.stat().st_size} B</td></tr>"
                       for path in listed)
        more = (f"<p>and {len(self.files) - len(listed)} more files</p>" if len(self.files) > len(listed) else "")
        return f'<section id="files"><h2>Files</h2><table>{rows}</table>{more}</section>'


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) or "none"
    return str(value)


def _redact_outside_images(document: str, redactor: Redactor) -> str:
    """``document`` with ``redactor`` applied to everything but its data: URIs."""
    return "".join(part if DATA_URI.fullmatch(part) else redactor.redact(part) for part in DATA_URI.split(document))


def render(summary: Mapping[str, Any], out_dir: Path, redactor: Redactor, own_name: str = "report.html") -> str:
    """The page of the run whose summary is ``summary`` and whose files are in ``out_dir``.

    ``summary`` has ``Report.summary()``'s keys (``cases`` may carry ``where``, the directory
    under ``out_dir`` their artifacts are in); ``own_name`` is the page's file, left out of
    the file list. Raises OSError when ``out_dir`` cannot be listed.
    """
    page = _Page(summary, out_dir, redactor, own_name)
    # Order matters: the failures claim their screenshots before the gallery shows the rest.
    body = "".join((page.header(), page.failures(), page.timeline(), page.case_table(), page.machines(),
                    page.observations(), page.screenshots(), page.file_list()))
    document = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f"<title>{page.t(summary.get('name', 'vmtest'))}: {page.t(summary.get('result', 'failed'))}</title>"
                f"<style>{STYLE}</style></head><body>{body}</body></html>\n")
    # Again over the whole page, declared values only (their patterns could swallow markup next to a
    # text): a safety net for any text that missed t().
    return _redact_outside_images(document, Redactor(values=set(redactor.values), patterns=()))
