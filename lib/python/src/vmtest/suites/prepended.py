"""Internal: What the Nix library prepends to a testScript: one variable holding a versioned JSON object.

``vm_validation`` reads its expectations from ``VMTEST_EXPECTATIONS``, ``web_stack`` its stack
from ``VMTEST_E2E``; both go through these two functions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def prepended_text(namespace: Mapping[str, Any], variable: str, what: str, error: type[Exception]) -> str | None:
    """The JSON text of ``variable`` in the testScript's namespace, or None when it was not prepended."""
    text = namespace.get(variable)
    if text is not None and not isinstance(text, str):
        raise error(f"{variable} must be the {what} JSON text")
    return text


def versioned_object(text: str, variable: str, version: int, error: type[Exception]) -> dict[str, Any]:
    """``text`` as a JSON object of ``version``; raises ``error`` naming ``variable`` otherwise."""
    try:
        data = json.loads(text)
    except ValueError as exception:
        raise error(f"{variable} is not JSON: {exception}") from exception
    if not isinstance(data, dict):
        raise error(f"{variable} must be a JSON object")
    if data.get("version") != version:
        raise error(f"{variable}: version {data.get('version')!r}, this vmtest reads version {version}")
    return data
