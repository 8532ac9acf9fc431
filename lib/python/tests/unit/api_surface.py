"""Compare a callable's signature with upstream's, as pinned in data/upstream_api.json.

A parameter upstream passes by position must sit at the same position here (under
its name or the other generation's spelling); every upstream name must be accepted
by keyword; defaults must be upstream's (``{}`` and ``None`` count as one, as do
900 and ``timedelta(seconds=900)``); timeout parameters must take ``int`` and
``timedelta``. Extra parameters are allowed when they have defaults.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from datetime import timedelta
from pathlib import Path
from typing import Any

PINNED = Path(__file__).parent / "data" / "upstream_api.json"
Params = list[list[Any]]  # [[name, null | {"default": …, "keyword_only": bool}], …]
POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def pinned() -> dict[str, Any]:
    """The pinned upstream surface."""
    data: dict[str, Any] = json.loads(PINNED.read_text())
    return data


def _same_default(upstream: object, ours: object) -> bool:
    if upstream == ours:
        return True
    if upstream == {} and ours is None:  # upstream's mutable {} default, None here
        return True
    as_seconds = [value.total_seconds() if isinstance(value, timedelta) else value for value in (upstream, ours)]
    return as_seconds[0] == as_seconds[1]


def _accepts(hint: object, wanted: type) -> bool:
    if hint is wanted:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_accepts(arg, wanted) for arg in typing.get_args(hint))
    return False


def signature_problems(where: str, function: object, upstream: Params,
                       spellings: list[list[str]], timeout_names: list[str]) -> list[str]:
    """What keeps ``function`` from taking every call upstream's signature ``upstream`` takes."""
    if not callable(function):
        return [f"{where}: missing (not callable: {function!r})"]
    ours = [p for p in inspect.signature(function).parameters.values() if p.name != "self"]
    by_name = {p.name: p for p in ours if p.kind is not inspect.Parameter.VAR_POSITIONAL}
    hints = typing.get_type_hints(function)
    problems: list[str] = []
    keyword_only = False
    for index, (name, spec) in enumerate(upstream):
        if name.startswith("*"):
            keyword_only = True
            if index >= len(ours) or ours[index].kind is not inspect.Parameter.VAR_POSITIONAL:
                problems.append(f"{where}: parameter {index} must be {name}")
            continue
        keyword_only = keyword_only or bool(spec and spec.get("keyword_only"))
        same = {name} | {other for pair in spellings if name in pair for other in pair}
        named = by_name.get(name)
        if named is None or named.kind is inspect.Parameter.POSITIONAL_ONLY:
            problems.append(f"{where}: no parameter {name!r}")
            continue
        slot = named
        if not keyword_only:
            if index >= len(ours) or ours[index].kind not in POSITIONAL or ours[index].name not in same:
                problems.append(f"{where}: {name!r} must be positional parameter {index}")
                continue
            slot = ours[index]
        if spec is not None:
            if slot.default is inspect.Parameter.empty:
                problems.append(f"{where}: {name!r} is required, upstream defaults it to {spec['default']!r}")
            elif not _same_default(spec["default"], slot.default):
                problems.append(f"{where}: {name!r} defaults to {slot.default!r}, upstream {spec['default']!r}")
        if name in timeout_names and slot.name in hints:
            for wanted in (int, timedelta):
                if not _accepts(hints[slot.name], wanted):
                    problems.append(f"{where}: {slot.name!r} does not take {wanted.__name__} timeouts")
    known = {name for name, _ in upstream}
    for extra in ours:
        if (extra.name not in known and extra.default is inspect.Parameter.empty
                and extra.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)):
            problems.append(f"{where}: extra parameter {extra.name!r} has no default")
    return problems


def class_problems(cls: type, surface: dict[str, Any]) -> list[str]:
    """Every pinned method (both generations) that ``cls`` lacks or takes differently."""
    problems: list[str] = []
    for method, generations in surface["methods"].items():
        if method in surface["not_provided"]:
            continue
        function = getattr(cls, method, None)
        for generation, params in generations.items():
            problems += signature_problems(f"{cls.__name__}.{method} ({generation})", function, params,
                                           surface["spellings"], surface["timeout_parameters"])
    for generation, params in surface["constructor"].items():
        problems += signature_problems(f"{cls.__name__}() ({generation})", cls.__init__, params,  # type: ignore[misc]
                                       surface["spellings"], surface["timeout_parameters"])
    return problems
