"""Tables in README.md that a script generates: the text between a start and an end marker.

tests/repo/fault_table.py and tests/repo/api_table.py each make one; their tests fail
when README's copy differs from what the script makes now.
"""

from __future__ import annotations

import sys
from pathlib import Path


def between(text: str, start: str, end: str) -> str:
    """The table as ``text`` has it (markers included), or ``""`` without both markers."""
    if start not in text or end not in text:
        return ""
    return text[text.index(start):text.index(end) + len(end)]


def main(argv: list[str], readme: Path, start: str, end: str, wanted: str, tool: str) -> int:
    """``--write``: put ``wanted`` between the markers in ``readme``; otherwise print it."""
    if "--write" in argv:
        text = readme.read_text()
        current = between(text, start, end)
        if not current:
            print(f"{tool}: {readme} has no table markers", file=sys.stderr)
            return 2
        readme.write_text(text.replace(current, wanted))
        return 0
    print(wanted)
    return 0
