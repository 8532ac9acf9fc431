"""The shell embedded in the .nix files, extracted and checked as a builder would run it.

A ``''…''`` string is shell when it is a builder phase (``installPhase``, ``buildCommand``, …),
a systemd unit's ``script``, a ``shellHook``, the body of ``writeShellScript``/``runCommand`` or
the ``text`` of ``writeShellApplication``. Its Nix interpolations become stand-ins (a store
path for ``${…}``), its escapes are undone (``''$`` → ``$``, ``'''`` → ``''``), and the result
goes to shellcheck. Strings nested in interpolations (a ``writeShellScript`` inside an
``installPhase``) are scripts of their own.

One Nix-specific mistake is checked besides: ``placeholder "out"`` inside a ``write*``
builder's text. The placeholder is replaced by the output of the derivation whose attribute
holds it, so there it is the script file itself, never the package that embeds the script.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

STAND_IN = "/nix/store/00000000000000000000000000000000-stand-in"
_PHASES = ("installPhase", "buildPhase", "checkPhase", "installCheckPhase", "configurePhase", "unpackPhase",
           "fixupPhase", "buildCommand", "preInstall", "postInstall", "preBuild", "postBuild", "preCheck",
           "postCheck", "postFixup", "shellHook", "script", "preStart", "postStart", "preStop", "postStop",
           "reload")
_ASSIGNED = re.compile(r"\b(" + "|".join(_PHASES) + r")\s*=\s*$")
_WRITER = re.compile(r"\b(writeShellScript|writeShellScriptBin|writeScript|writeScriptBin)\s+\"[^\"]*\"\s*$")
_RUN_COMMAND = re.compile(r"\brunCommand(?:NoCC|Local)?\s+(?:\"[^\"]*\"|[\w.-]+)\s*$")
# Writers whose output is the text itself: a placeholder there names the script file.
_OWN_OUTPUT = re.compile(r"\b(writeShellScript|writeShellScriptBin|writeScript|writeScriptBin|writeText|"
                         r"writeTextFile|writeShellApplication)\b")
_PLACEHOLDER = re.compile(r"\bplaceholder\s+\"(\w+)\"")


@dataclass
class IndentedString:
    """One ``''…''`` string: where it is, its text with stand-ins, and its raw interpolations."""

    path: Path
    line: int
    context: str  # what precedes the string: decides whether it is shell
    enclosing: list[str]  # the text before each enclosing `{` and interpolation, outermost first
    after_attrs: str = ""  # when the string follows an attribute set: what precedes that set
    text: str = ""
    interpolations: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str | None:
        """Why this string is shell (the phase or builder), or None."""
        head = self.context[-200:]
        for pattern in (_WRITER, _ASSIGNED, _RUN_COMMAND):
            found = pattern.search(head)
            if found:
                return found.group(0).split()[0].rstrip("=") if pattern is not _RUN_COMMAND else "runCommand"
        if self.after_attrs and _RUN_COMMAND.search(self.after_attrs[-200:]):
            return "runCommand"
        in_application = bool(self.enclosing) and "writeShellApplication" in self.enclosing[-1][-80:]
        if in_application and re.search(r"\btext\s*=\s*$", head):
            return "writeShellApplication"
        return None

    @property
    def owner(self) -> str | None:
        """The write* builder whose output this text is, if any."""
        found = _WRITER.search(self.context[-200:])
        if found:
            return found.group(1)
        if self.kind == "writeShellApplication":
            return "writeShellApplication"
        return None

    def label(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line} ({self.kind or 'text'})"


class _Scanner:
    """A small Nix lexer: enough to find strings, interpolations and braces, not to evaluate."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.src = path, text
        self.strings: list[IndentedString] = []

    def line_of(self, index: int) -> int:
        return self.src.count("\n", 0, index) + 1

    def expression(self, i: int, stop: str | None, enclosing: list[str]) -> int:
        """Scan Nix code from ``i`` to the ``stop`` character at depth 0; return the index after it."""
        src = self.src
        braces = list(enclosing)  # the text before each open `{`, innermost last
        closed_at, closed_prefix = -1, ""  # the last `}` closed here, and the text before its `{`
        while i < len(src):
            char = src[i]
            if char == "#":
                i = src.find("\n", i)
                i = len(src) if i < 0 else i
            elif src.startswith("/*", i):
                i = src.find("*/", i) + 2
            elif char == '"':
                i = self.plain_string(i + 1, braces)
            elif src.startswith("''", i):
                after = closed_prefix if closed_at >= 0 and not src[closed_at:i].strip() else ""
                i = self.indented_string(i + 2, src[max(0, i - 300):i], braces, after)
            elif char == "{":
                braces.append(src[max(0, i - 300):i])
                i += 1
            elif char == "}":
                if len(braces) == len(enclosing) and stop == "}":
                    return i + 1
                if len(braces) > len(enclosing):
                    closed_prefix = braces.pop()
                    closed_at = i + 1
                i += 1
            else:
                i += 1
        return i

    def plain_string(self, i: int, enclosing: list[str]) -> int:
        src = self.src
        while i < len(src):
            if src[i] == "\\":
                i += 2
            elif src[i] == '"':
                return i + 1
            elif src.startswith("${", i):
                i = self.expression(i + 2, "}", enclosing)
            else:
                i += 1
        return i

    def indented_string(self, i: int, context: str, enclosing: list[str], after_attrs: str = "") -> int:
        src = self.src
        found = IndentedString(self.path, self.line_of(i), context, list(enclosing), after_attrs)
        pieces: list[str] = []
        while i < len(src):
            if src.startswith("'''", i):
                pieces.append("''")
                i += 3
            elif src.startswith("''$", i):
                pieces.append("$")
                i += 3
            elif src.startswith("''\\", i):
                pieces.append(src[i + 3])
                i += 4
            elif src.startswith("''", i):
                i += 2
                break
            elif src.startswith("${", i):
                end = self.expression(i + 2, "}", enclosing)
                found.interpolations.append(src[i + 2:end - 1])
                pieces.append(STAND_IN)
                i = end
            else:
                pieces.append(src[i])
                i += 1
        found.text = _dedent("".join(pieces))
        self.strings.append(found)
        return i


def _dedent(text: str) -> str:
    lines = text.split("\n")
    if lines and not lines[0].strip():
        lines = lines[1:]
    indents = [len(line) - len(line.lstrip(" ")) for line in lines if line.strip()]
    cut = min(indents, default=0)
    return "\n".join(line[cut:] for line in lines)


def indented_strings(path: Path) -> list[IndentedString]:
    """Every ``''…''`` string of a .nix file, nested ones included."""
    scanner = _Scanner(path, path.read_text())
    scanner.expression(0, None, [])
    return sorted(scanner.strings, key=lambda found: found.line)


def shell_scripts(paths: list[Path]) -> list[IndentedString]:
    """The strings of ``paths`` that a builder or systemd runs as shell."""
    return [found for path in paths for found in indented_strings(path) if found.kind]


def placeholder_problems(paths: list[Path], root: Path) -> list[str]:
    """``placeholder`` used inside a write* builder's text, where it names the script itself."""
    problems = []
    for path in paths:
        for found in indented_strings(path):
            owner = found.owner
            if owner is None:
                continue
            for expression in found.interpolations:
                for output in _PLACEHOLDER.findall(expression):
                    problems.append(
                        f"{found.label(root)}: placeholder \"{output}\" inside {owner} is that script's own "
                        "output (a file), not the package that embeds it; use $out in the package's phase, "
                        "or pass the path to the script")
    return problems


def shellcheck_problems(paths: list[Path], root: Path) -> list[str]:
    """shellcheck on every embedded script (bash, as stdenv and NixOS run them)."""
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        return ["shellcheck is not installed (apt-get install shellcheck)"]
    problems = []
    with tempfile.TemporaryDirectory(prefix="vmtest-nix-shell-") as directory:
        for number, found in enumerate(shell_scripts(paths)):
            script = Path(directory) / f"script-{number}.sh"
            # stdenv's phases and NixOS's `script` run under bash; SC2154: stdenv sets $out and friends.
            script.write_text("# shellcheck shell=bash disable=SC2154\n" + found.text + "\n")
            done = subprocess.run([shellcheck, "--format=gcc", "--severity=warning", str(script)],
                                  capture_output=True, text=True, check=False)
            for line in done.stdout.splitlines():
                _, script_line, _, message = [*line.split(":", 3), "", "", ""][:4]
                source_line = found.line + int(script_line) - 1 if script_line.isdigit() else found.line
                problems.append(f"{found.path.relative_to(root)}:{source_line} ({found.kind}):{message}")
    return problems
