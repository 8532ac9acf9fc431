"""Internal: The helpers' verbs of the ``vmtest`` command: ``report`` (merge a CI job's suite runs) and
``verdict`` (pass or fail on a Nix test's artifacts).

They need no portable runtime: the Nix library runs ``python3 -m vmtest.cli verdict DIR``. The
``vmtest`` console script (``vmtest.portable.cli``) adds these verbs beside the runtime's own
with ``add_commands``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from vmtest.reporting import ci

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def error(message: str) -> None:
    """Say ``vmtest: message`` on stderr; a terminal that hung up (EIO) does not change the exit status."""
    with contextlib.suppress(OSError):
        print(f"vmtest: {message}", file=sys.stderr)


def report(args: argparse.Namespace) -> int:
    """``vmtest report DIR``: 0 when every merged case passed, else 1 (also when DIR holds no suite)."""
    try:
        junit, summary, page = ci.merge(Path(args.directory))
    except (FileNotFoundError, ET.ParseError) as problem:
        error(str(problem))
        return EXIT_FAILED
    result = json.loads(summary.read_text())
    print(f"vmtest: {result['tests']['tests']} cases, {len(result['failed_cases'])} failed; "
          f"{junit}, {summary}, {page}")
    for case in result["failed_cases"]:
        print(f"  FAILED {case}")
    return 0 if result["result"] == "passed" else EXIT_FAILED


def verdict(args: argparse.Namespace) -> int:
    """``vmtest verdict DIR``: 0 when the run passed, 1 when it failed, 2 when DIR is not a test's artifacts."""
    try:
        passed, message = ci.verdict(Path(args.directory))
    except FileNotFoundError as problem:
        error(f"{args.directory} is not a test's artifacts: {problem.strerror}: {problem.filename}")
        return EXIT_BAD_INPUT
    print(message, file=sys.stdout if passed else sys.stderr)
    return 0 if passed else EXIT_FAILED


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``report`` and ``verdict`` on ``commands`` (a parser's subparsers)."""
    report_parser = commands.add_parser("report", help="merge the suite runs under DIR into DIR/junit.xml, "
                                                       "DIR/summary.json and DIR/report.html")
    report_parser.add_argument("directory", metavar="DIR",
                               help="a directory holding suite runs (each with its JUnit file and summary)")
    report_parser.set_defaults(handler=report)
    verdict_parser = commands.add_parser("verdict", help="pass or fail on a Nix test's artifacts (DIR/driver-exit-"
                                                         "status), naming the failed cases")
    verdict_parser.add_argument("directory", metavar="DIR",
                                help="a Nix test's artifacts (`nix build .#checks.<system>.<name>.artifacts`)")
    verdict_parser.set_defaults(handler=verdict)


def parser() -> argparse.ArgumentParser:
    """The helpers' verbs alone (what ``python -m vmtest.cli`` takes)."""
    top = argparse.ArgumentParser(prog="vmtest", description=__doc__)
    add_commands(top.add_subparsers(dest="command", required=True))
    return top


def dispatch(top: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse ``argv`` with ``top`` and run the chosen verb's handler; returns its exit status."""
    args = top.parse_args(argv)
    code: int = args.handler(args)
    return code


def main(argv: list[str] | None = None) -> int:
    return dispatch(parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
