"""What the image's configuration steps share: running host tools, apt's configuration, the step log.

Every step runs host tools through ``run``, which names the recipe and the
step when a tool fails; a step's duration goes to stderr, the build log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping

from vmtest.errors import ImageBuildError
from vmtest.portable.image.recipe import Recipe

# PATH inside the image's chroot; /usr/local first, where the recording helper shadows live.
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DOC_EXCLUDES = ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/info/*", "/usr/share/locale/*")


def run(recipe: Recipe, item: str, argv: list[str], *, env: Mapping[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a host tool, capturing its output; with ``check``, raise ImageBuildError naming the recipe,
    ``item`` and the tool's output when it fails."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if check and result.returncode != 0:
        raise ImageBuildError(
            f"recipe {recipe.path}: {item}: `{' '.join(argv)}` failed "
            f"(exit {result.returncode}): {(result.stderr or result.stdout).strip()[-2000:]}"
        )
    return result


def apt_config(recipe: Recipe) -> str:
    """mmdebstrap's apt configuration for the image; raises ImageBuildError outside an mmdebstrap hook."""
    config = os.environ.get("MMDEBSTRAP_APT_CONFIG")
    if not config:
        raise ImageBuildError(f"recipe {recipe.path}: package installation must run as an mmdebstrap hook")
    return config


def apt_env(recipe: Recipe) -> dict[str, str]:
    """The environment for host apt calls on the image."""
    return {**os.environ, "APT_CONFIG": apt_config(recipe)}


def step_line(label: str, seconds: float) -> str:
    """The build log's line for step ``label`` ending after ``seconds`` (``build_progress`` reads it back)."""
    return f"vmtest-step: {label} took {seconds:.1f} s"


def step_done(label: str, started: float) -> float:
    """Log how long step ``label`` took since ``started``; returns now, for the next step."""
    now = time.monotonic()
    print(step_line(label, now - started), file=sys.stderr, flush=True)
    return now
