"""OCR of a screenshot with the host's tesseract, preprocessed as the upstream driver does.

Upstream (``test_driver/machine/ocr.py``) runs ``tesseract IMAGE - --oem 2 -c
debug_file=/dev/null --psm 11`` on the raw screenshot and, for the variants, on two
ImageMagick-processed copies (one negated). The same commands run here; what
differs: the three runs go one after another (upstream: a thread pool), and when
the installed language data has no legacy engine (``--oem 2`` needs it, Debian's
``tesseract-ocr-eng`` may ship LSTM data only) the run is repeated with the default
engine instead of failing.
"""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vmtest.errors import MachineError

# The preprocessing of upstream's _preprocess_screenshot, in its order; "-negate" goes
# between the two halves for the inverted variant.
MAGICK_HEAD = ["-filter", "Catrom", "-density", "72", "-resample", "300", "-contrast", "-normalize",
               "-despeckle", "-type", "grayscale", "-sharpen", "1", "-posterize", "3"]
MAGICK_TAIL = ["-gamma", "100", "-blur", "1x65535"]
# What tesseract prints when --oem 2 asks for engine data that is not installed.
_NO_LEGACY_ENGINE = ("legacy", "components are not present", "Failed loading language")


def tesseract_command(image: Path, engine_mode: int = 2) -> list[str]:
    """The tesseract invocation upstream uses (``--psm 11``: sparse text, any order)."""
    return ["tesseract", str(image), "-", "--oem", str(engine_mode), "-c", "debug_file=/dev/null",
            "--psm", "11"]


def magick_command(image: Path, output: Path, negate: bool) -> list[str]:
    """ImageMagick's preprocessing of ``image`` into ``output`` (IM7 ``magick``, else IM6 ``convert``)."""
    tool = ["magick", "convert"] if shutil.which("magick") else ["convert"]
    return [*tool, *MAGICK_HEAD, *(["-negate"] if negate else []), *MAGICK_TAIL, str(image), str(output)]


def _require(tool: str, package: str, machine: str) -> None:
    if shutil.which(tool) is None:
        raise MachineError(
            f"{machine}: OCR needs `{tool}` on the host, which is not installed "
            f"(Debian: apt-get install {package}; scripts/install-system-deps.sh lists it)"
        )


def run_tesseract(image: Path, machine: str) -> str:
    """The text tesseract reads in ``image``; raises MachineError naming the machine and tesseract's error."""
    _require("tesseract", "tesseract-ocr", machine)
    done = subprocess.run(tesseract_command(image), capture_output=True, check=False)
    if done.returncode != 0 and any(hint in done.stderr.decode(errors="replace") for hint in _NO_LEGACY_ENGINE):
        done = subprocess.run(tesseract_command(image, engine_mode=3), capture_output=True, check=False)
    if done.returncode != 0:
        raise MachineError(
            f"{machine}: OCR failed with exit code {done.returncode} on {image}: "
            f"{done.stderr.decode(errors='replace').strip()[-500:]}"
        )
    return done.stdout.decode("utf-8", errors="replace")


def preprocess(image: Path, negate: bool, machine: str) -> Path:
    """A copy of ``image`` processed for OCR (``.positive.png`` / ``.negative.png`` beside it)."""
    if shutil.which("magick") is None:
        _require("convert", "imagemagick", machine)
    output = image.with_name(f"{image.stem}.{'negative' if negate else 'positive'}.png")
    done = subprocess.run(magick_command(image, output, negate), capture_output=True, check=False)
    if done.returncode != 0:
        raise MachineError(
            f"{machine}: image processing for OCR failed with exit code {done.returncode}: "
            f"{done.stderr.decode(errors='replace').strip()[-500:]}"
        )
    return output


def ocr_variants(image: Path, machine: str, variants: bool = True) -> list[str]:
    """Tesseract's reading of ``image``, then (with ``variants``) of its two processed copies.

    The three readings run at once, as upstream's thread pool runs them; the pool is joined
    before this returns, and the first error raised is raised here.
    """
    if not variants:
        return [run_tesseract(image, machine)]

    def read(negate: bool | None) -> str:
        return run_tesseract(image if negate is None else preprocess(image, negate, machine), machine)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return list(pool.map(read, (None, False, True)))
