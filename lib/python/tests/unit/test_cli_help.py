"""``vmtest --help``: every verb and every argument of each says what it is."""

from __future__ import annotations

import argparse

from vmtest.portable.cli import parser


def _undocumented(top: argparse.ArgumentParser) -> list[str]:
    missing = []
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            documented = {choice.dest for choice in action._choices_actions if choice.help}
            for verb, sub in action.choices.items():
                if verb not in documented:
                    missing.append(f"vmtest {verb}")
                missing += [f"vmtest {verb} {name}" for name in _undocumented(sub)]
        elif not action.help and not isinstance(action, argparse._HelpAction):
            missing.append("/".join(action.option_strings) or action.dest)
    return missing


def test_every_verb_and_argument_has_help() -> None:
    assert _undocumented(parser()) == []


def test_an_argument_without_help_is_found() -> None:
    top = parser()
    subparsers = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    subparsers.choices["cache"].add_argument("--undocumented", action="store_true")
    assert _undocumented(top) == ["vmtest cache --undocumented"]
