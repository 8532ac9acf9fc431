"""Compare a callable's signature with upstream's, per nixpkgs revision, as pinned in data/upstream_api.json.

A parameter upstream passes by position must sit at the same position here (under
its name or another revision's spelling); every upstream name must be accepted
by keyword; defaults must be upstream's (``{}`` and ``None`` count as one, as do
900 and ``timedelta(seconds=900)``, and a ``None`` the driver takes as 900 seconds
and 900); timeout parameters must take ``int`` and ``timedelta``. Extra parameters
are allowed when they have defaults. ``revision_changes`` says what differs between
two revisions, so the list's ``changes`` can be checked against the data.
"""

from __future__ import annotations

import inspect
import itertools
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


def revisions(surface: dict[str, Any]) -> list[str]:
    """The pinned revisions, oldest first (``nixos-25.11``, ``nixos-26.05``, ``nixos-unstable``)."""
    return list(surface["revisions"])


def default_value(spec: dict[str, Any]) -> object:
    """A pinned default as the value upstream's signature has (``{"as": "timedelta"}``: a timedelta)."""
    value = spec["default"]
    return timedelta(seconds=value) if spec.get("as") == "timedelta" else value


def _seconds(value: object) -> object:
    return value.total_seconds() if isinstance(value, timedelta) else value


def _same_default(spec: dict[str, Any], ours: object) -> bool:
    upstream = default_value(spec)
    if upstream == ours:
        return True
    if upstream == {} and ours is None:  # upstream's mutable {} default, None here
        return True
    if upstream is None and "means" in spec:  # None that the driver takes as a number of seconds
        return ours is None or _seconds(ours) == spec["means"]
    return _seconds(upstream) == _seconds(ours)


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
            elif not _same_default(spec, slot.default):
                problems.append(f"{where}: {name!r} defaults to {slot.default!r}, upstream {default_value(spec)!r}")
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


def class_problems(cls: type, surface: dict[str, Any], only: list[str] | None = None) -> list[str]:
    """Every pinned method (of every revision, or of those in ``only``) that ``cls`` lacks or takes
    differently."""
    problems: list[str] = []
    for method, by_revision in surface["methods"].items():
        if method in surface["not_provided"]:
            continue
        function = getattr(cls, method, None)
        for revision, params in by_revision.items():
            if only is None or revision in only:
                problems += signature_problems(f"{cls.__name__}.{method} ({revision})", function, params,
                                               surface["spellings"], surface["timeout_parameters"])
    for revision, params in surface["constructor"].items():
        if only is None or revision in only:
            problems += signature_problems(f"{cls.__name__}() ({revision})", cls.__init__,  # type: ignore[misc]
                                           params, surface["spellings"], surface["timeout_parameters"])
    return problems


def revision_changes(surface: dict[str, Any], older: str, newer: str) -> dict[str, str]:
    """What differs from ``older`` to ``newer``: name -> ``added``, ``removed`` or ``changed`` (methods,
    attributes and testScript names, as the data has them; a method's name alone, no ``machine.``)."""
    found: dict[str, str] = {}
    for section in ("methods", "namespace_functions"):
        for name, by_revision in surface[section].items():
            before, after = by_revision.get(older), by_revision.get(newer)
            if before is None and after is not None:
                found[name] = "added"
            elif before is not None and after is None:
                found[name] = "removed"
            elif before != after:
                found[name] = "changed"
    if surface["constructor"].get(older) != surface["constructor"].get(newer):
        found["__init__"] = "changed"
    for section in ("attributes", "test_symbols"):
        before_names, after_names = set(surface[section][older]), set(surface[section][newer])
        found.update({name: "added" for name in after_names - before_names})
        found.update({name: "removed" for name in before_names - after_names})
    return found


def unexplained_changes(surface: dict[str, Any]) -> list[str]:
    """Every difference between consecutive revisions that the list's ``changes`` does not name
    (as `name`, `name()` or `machine.name`; the constructor's as `constructor`)."""
    problems = []
    order = revisions(surface)
    for older, newer in itertools.pairwise(order):
        entry = next((change for change in surface["changes"] if (change["from"], change["to"]) == (older, newer)),
                     None)
        if entry is None:
            problems.append(f"{older} -> {newer}: no entry in 'changes'")
            continue
        text = " ".join(entry["what"])
        for name, how in sorted(revision_changes(surface, older, newer).items()):
            spelled = ("constructor",) if name == "__init__" else (f"`{name}`", f"`{name}()`", f"`machine.{name}`")
            if not any(form in text for form in spelled):
                problems.append(f"{older} -> {newer}: {name} {how}, and 'changes' does not say so")
    return problems
