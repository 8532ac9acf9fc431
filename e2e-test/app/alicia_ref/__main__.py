"""``alicia server``: run the reference backend with the ALICIA_* configuration."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] != ["server"]:
        print("usage: alicia server", file=sys.stderr)
        return 2
    from alicia_ref.server import serve

    serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
