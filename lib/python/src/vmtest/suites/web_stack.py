"""What the web-stack e2e testScript checks, as one value a flake can set.

The e2e testScript (e2e-test/test_script.py) brings up a server (PostgreSQL, the app's
migrations, the app, nginx, and any helper services such as mocks) and a client that runs a
browser suite against it. Every name it relies on is a ``WebStack`` field. The script holds
the Alicia suite's values (what ``make e2e`` runs); vmtest's ``lib.<system>.webStackE2e``
(lib/nix/web-stack-e2e.nix) declares the units for any app and prepends
``VMTEST_E2E = "<json>"`` with their names, which ``web_stack_from`` reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from vmtest.suites.prepended import prepended_text, versioned_object

__all__ = [
    "StackError", "WebStack", "parse_stack", "web_stack_from"
]

# The testScript variable lib/nix/web-stack-e2e.nix prepends: the stack as JSON text.
STACK_VARIABLE = "VMTEST_E2E"
STACK_VERSION = 1


class StackError(ValueError):
    """The stack JSON is malformed: the message names the key and what was wrong."""


@dataclass(frozen=True)
class WebStack:
    """The units, paths and values the e2e testScript relies on.

    ``chain``: the server's units in the order they come up (the last one serves the client);
    ``helpers``: unit → port of services started after the stack (mocks), waited for before the
    browser suite; ``secrets``: values redacted from every artifact before the server is up
    (the env file's values are added once it is); ``browser_log``: the browser suite's log in
    its OUTDIR, copied to ``logs/client/``.
    """

    name: str
    app_unit: str
    migrate_unit: str
    chain: tuple[str, ...]
    port: int
    health_path: str
    healthy: Mapping[str, Any]
    proxied_headers: Mapping[str, str]
    database: str
    migrations_dir: str
    required_extensions: tuple[str, ...]
    env_file: str
    helpers: Mapping[str, int] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    browser_log: str = "pytest.log"

    @property
    def backend_health_url(self) -> str:
        """The app's own health endpoint, from the server itself."""
        return f"http://127.0.0.1:{self.port}{self.health_path}"

    @property
    def proxied_health_url(self) -> str:
        """The health endpoint through nginx, from the client."""
        return f"http://server{self.health_path}"


def _check(key: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if (isinstance(value, bool) and kind is int) or not isinstance(value, kind):
        raise StackError(f"{STACK_VARIABLE}: {key} must be {what}, got {value!r}")
    return value


def _strings(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise StackError(f"{STACK_VARIABLE}: {key} must be a list of strings, got {value!r}")
    return tuple(value)


def parse_stack(text: str) -> WebStack:
    """A WebStack from its JSON (version 1: every field of WebStack, ``version`` besides); raises
    StackError naming the key that is missing, unknown or of the wrong type."""
    data = versioned_object(text, STACK_VARIABLE, STACK_VERSION, StackError)
    names = {item.name for item in fields(WebStack)}
    unknown = sorted(set(data) - names - {"version"})
    missing = sorted(item.name for item in fields(WebStack)
                     if item.name not in data and item.name not in ("helpers", "secrets", "browser_log"))
    if unknown or missing:
        raise StackError(f"{STACK_VARIABLE}: " + "; ".join(
            part for part in (f"unknown key(s) {', '.join(unknown)}" if unknown else "",
                              f"missing key(s) {', '.join(missing)}" if missing else "") if part))
    helpers = _check("helpers", data.get("helpers", {}), dict, "an object of unit: port")
    for unit, port in helpers.items():
        _check(f"helpers[{unit!r}]", port, int, "a port number")
    return WebStack(
        name=_check("name", data["name"], str, "a string"),
        app_unit=_check("app_unit", data["app_unit"], str, "a string"),
        migrate_unit=_check("migrate_unit", data["migrate_unit"], str, "a string"),
        chain=_strings("chain", data["chain"]),
        port=_check("port", data["port"], int, "a port number"),
        health_path=_check("health_path", data["health_path"], str, "a string"),
        healthy=_check("healthy", data["healthy"], dict, "an object"),
        proxied_headers=_check("proxied_headers", data["proxied_headers"], dict, "an object"),
        database=_check("database", data["database"], str, "a string"),
        migrations_dir=_check("migrations_dir", data["migrations_dir"], str, "a string"),
        required_extensions=_strings("required_extensions", data["required_extensions"]),
        env_file=_check("env_file", data["env_file"], str, "a string"),
        helpers=dict(helpers),
        secrets=_strings("secrets", data.get("secrets", [])),
        browser_log=_check("browser_log", data.get("browser_log", "pytest.log"), str, "a string"),
    )


def web_stack_from(namespace: Mapping[str, Any], default: WebStack) -> WebStack:
    """The stack the testScript was given (``VMTEST_E2E`` in its namespace), else ``default``."""
    text = prepended_text(namespace, STACK_VARIABLE, "stack's", StackError)
    if text is None:
        return replace(default)
    return parse_stack(text)
