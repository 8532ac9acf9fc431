"""What goes through the QEMU monitor: screen, keyboard and links, and the encodings they need."""

from __future__ import annotations

import io
import re
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vmtest.errors import MachineError, RequestedAssertionFailed
from vmtest.portable.runtime import ocr
from vmtest.portable.runtime.base_machine import BaseMachine
from vmtest.waiting import Deadline, Timeout, WaitTimedOut, retry_or_raise, timed_out

CHAR_TO_KEY = {
    **{c: c for c in "abcdefghijklmnopqrstuvwxyz0123456789"},
    **{c.upper(): f"shift-{c}" for c in "abcdefghijklmnopqrstuvwxyz"},
    " ": "spc", "\n": "ret", "\t": "tab", "-": "minus", "=": "equal", ",": "comma",
    ".": "dot", "/": "slash", ";": "semicolon", "'": "apostrophe", "[": "bracket_left",
    "]": "bracket_right", "\\": "backslash", "`": "grave_accent", "!": "shift-1",
    "@": "shift-2", "#": "shift-3", "$": "shift-4", "%": "shift-5", "^": "shift-6",
    "&": "shift-7", "*": "shift-8", "(": "shift-9", ")": "shift-0", "_": "shift-minus",
    "+": "shift-equal", ":": "shift-semicolon", '"': "shift-apostrophe", "<": "shift-comma",
    ">": "shift-dot", "?": "shift-slash", "|": "shift-backslash", "~": "shift-grave_accent",
    "{": "shift-bracket_left", "}": "shift-bracket_right",
}


def ppm_to_png(ppm: bytes) -> bytes:
    """Convert a binary PPM (what QEMU's ``screendump`` writes) to PNG."""
    fields: list[bytes] = []
    stream = io.BytesIO(ppm)
    while len(fields) < 4:
        line = stream.readline()
        if not line:
            raise ValueError("truncated PPM header")
        fields += line.split(b"#", 1)[0].split()
    magic, width, height, maxval = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
    if magic != b"P6" or maxval != 255:
        raise ValueError(f"unsupported PPM ({magic!r}, maxval {maxval})")
    pixels = stream.read(width * height * 3)
    if len(pixels) != width * height * 3:
        raise ValueError("truncated PPM pixel data")
    stride = width * 3
    raw = b"".join(b"\0" + pixels[row * stride:(row + 1) * stride] for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def clean_monitor_answer(raw: str) -> str:
    """The monitor's answer without the readline echo of the command and the prompt."""
    text = _ANSI_ESCAPE.sub("", raw).replace("\r", "")
    _, _, answer = text.partition("\n")
    return answer.removesuffix("(qemu) ")


class MonitorMachine(BaseMachine):
    """The Machine API's screen, keyboard and network-link methods, for a backend with a QEMU monitor."""

    state_dir: Path

    def send_monitor_command(self, command: str) -> str:
        """Send a QEMU human-monitor command; returns its answer."""
        raise NotImplementedError

    @contextmanager
    def _screen_dump(self) -> Iterator[tuple[Path, str]]:
        """Dump the screen to a PPM in the state directory; yields (path, monitor answer), then deletes it."""
        ppm = self.state_dir / "screenshot.ppm"
        answer = self.send_monitor_command(f"screendump {ppm}")
        try:
            yield ppm, answer
        finally:
            ppm.unlink(missing_ok=True)
            for processed in ppm.parent.glob(f"{ppm.stem}.*.png"):
                processed.unlink(missing_ok=True)

    def screenshot(self, filename: str) -> None:
        """Save the screen as PNG, as upstream's does: ``.png`` added if the name has no dot, in out_dir
        if it has no ``/``, else at that path (a relative one from the working directory). The
        directory must exist: upstream's shell redirection into it fails otherwise, and so does this
        (MachineError); a testScript makes its directories itself."""
        if "." not in filename:
            filename += ".png"
        target = Path(filename) if "/" in filename else self.out_dir / filename
        with self.nested(f"making screenshot {target}"), self._screen_dump() as (ppm, answer):
            try:
                target.write_bytes(ppm_to_png(ppm.read_bytes()))
            except (OSError, ValueError) as error:
                raise MachineError(
                    f"{self.name}: cannot make a screenshot ({error}); monitor said: {answer.strip()!r}"
                ) from None

    # -- OCR (tesseract on the host) -----------------------------------------------------------

    def get_screen_text_variants(self) -> list[str]:
        """Readings of the screen by OCR: the raw screenshot and two processed copies.

        Raises MachineError when tesseract (Debian ``tesseract-ocr``) or ImageMagick is missing.
        """
        with self._screen_dump() as (ppm, _):
            return ocr.ocr_variants(ppm, self.name)

    def get_screen_text(self) -> str:
        """The screen's text by OCR of the raw screenshot; raises MachineError without tesseract."""
        with self._screen_dump() as (ppm, _):
            return ocr.ocr_variants(ppm, self.name, variants=False)[0]

    def wait_for_text(self, regex: str, timeout: Timeout = 900) -> None:
        """Wait until one OCR reading of the screen matches ``regex``; RequestedAssertionFailed on timeout."""
        deadline = Deadline.of(timeout)
        variants: list[str] = []

        def screen_matches(_last_try: bool) -> bool:
            nonlocal variants
            variants = self.get_screen_text_variants()
            return any(re.search(regex, text) for text in variants)

        def never_seen(_: WaitTimedOut) -> RequestedAssertionFailed:
            readings = " | ".join(" ".join(text.split())[:300] for text in variants)
            return RequestedAssertionFailed(
                timed_out(self.name, f"/{regex}/ on the screen (OCR)", deadline.elapsed(), deadline.limit)
                + f"; last OCR readings: {readings!r}"
            )

        with self.nested(f"waiting for {regex} to appear on screen"):
            retry_or_raise(screen_matches, timeout, never_seen)

    def send_key(self, key: str, delay: float | None = 0.01, log: bool = True) -> None:
        """Press ``key``: a QEMU key name (``ctrl-alt-delete``) or one character, mapped as ``send_chars`` does."""
        # Upstream maps a single character through CHAR_TO_KEY too, so send_key("\n") presses Return.
        key = CHAR_TO_KEY.get(key, key)
        if log:
            self.log(f"sending key {key!r}")
        self.send_monitor_command(f"sendkey {key}")
        if delay is not None:
            time.sleep(delay)

    def send_chars(self, chars: str, delay: float | None = 0.01) -> None:
        """Type ``chars`` on the keyboard."""
        with self.nested(f"sending keys {chars!r}"):
            for char in chars:
                if char not in CHAR_TO_KEY:
                    raise MachineError(f"{self.name}: no key for character {char!r}")
                self.send_key(CHAR_TO_KEY[char], delay, log=False)

    def block(self) -> None:
        """Take the first VLAN NIC's link down."""
        self.send_monitor_command("set_link virtio-net-pci.1 off")

    def unblock(self) -> None:
        """Bring the first VLAN NIC's link back up."""
        self.send_monitor_command("set_link virtio-net-pci.1 on")

    def forward_port(self, host_port: int = 8080, guest_port: int = 80) -> None:
        """Forward 127.0.0.1:host_port on the host to guest_port (loopback only, never all interfaces)."""
        answer = self.send_monitor_command(f"hostfwd_add tcp:127.0.0.1:{int(host_port)}-:{int(guest_port)}")
        if "could not" in answer.lower() or "error" in answer.lower():
            raise MachineError(f"{self.name}: forwarding port {host_port} -> {guest_port} failed: {answer.strip()}")

