"""The Machine API's X11 helpers, over guest commands as upstream runs them.

Upstream's checks, unchanged: the systemd journal of this boot says a graphical
session target was reached ("Reached target Current graphical", the description of
``graphical-session.target``) and ``/tmp/.X11-unix/X0`` exists; window names come
from ``xwininfo -root -tree`` (Debian: ``x11-utils``). One difference: the backdoor
shell of a Debian twin has no ``DISPLAY``, so ``:0`` is used when it is unset (the
NixOS test instrumentation sets it).
"""

from __future__ import annotations

import re

from vmtest.errors import RequestedAssertionFailed
from vmtest.portable.runtime.base_machine import BaseMachine
from vmtest.waiting import Deadline, Timeout, WaitTimedOut, retry_or_raise, timed_out

GRAPHICAL_REACHED = 'journalctl -b SYSLOG_IDENTIFIER=systemd | grep "Reached target Current graphical"'
X0_SOCKET = "[ -e /tmp/.X11-unix/X0 ]"
WINDOW_NAMES = (r"DISPLAY=${DISPLAY:-:0} xwininfo -root -tree"
                r" | sed 's/.*0x[0-9a-f]* \"\([^\"]*\)\".*/\1/; t; d'")


class X11Machine(BaseMachine):
    """``wait_for_x``, ``get_window_names`` and ``wait_for_window`` for any backend with ``execute``."""

    def wait_for_x(self, timeout: Timeout = 900) -> None:
        """Wait until a graphical session was reached and the X server's socket exists.

        Raises RequestedAssertionFailed on timeout, saying which of the two was missing.
        """
        deadline = Deadline.of(timeout)
        missing = "the graphical session target"

        def check_x(_last_try: bool) -> bool:
            nonlocal missing
            if self.execute(GRAPHICAL_REACHED)[0] != 0:
                missing = "the graphical session target ('Reached target Current graphical' in the journal)"
                return False
            missing = "the X server socket /tmp/.X11-unix/X0"
            return self.execute(X0_SOCKET)[0] == 0

        def no_x(_: WaitTimedOut) -> RequestedAssertionFailed:
            return RequestedAssertionFailed(
                timed_out(self.name, "the X11 server", deadline.elapsed(), deadline.limit) + f"; missing: {missing}"
            )

        with self.nested("waiting for the X11 server"):
            retry_or_raise(check_x, timeout, no_x)

    def get_window_names(self) -> list[str]:
        """The names of the X11 windows (``xwininfo -root -tree``); raises if xwininfo fails."""
        return self.succeed(WINDOW_NAMES).splitlines()

    def wait_for_window(self, regexp: str, timeout: Timeout = 900) -> None:
        """Wait until an X11 window whose name matches ``regexp`` exists; RequestedAssertionFailed on timeout."""
        pattern = re.compile(regexp)
        deadline = Deadline.of(timeout)
        names: list[str] = []

        def window_is_visible(_last_try: bool) -> bool:
            nonlocal names
            names = self.get_window_names()
            return any(pattern.search(name) for name in names)

        def never_appeared(_: WaitTimedOut) -> RequestedAssertionFailed:
            return RequestedAssertionFailed(
                timed_out(self.name, f"a window matching /{regexp}/", deadline.elapsed(), deadline.limit)
                + f"; windows: {', '.join(names)[:1000]!r}"
            )

        with self.nested("waiting for a window to appear"):
            retry_or_raise(window_is_visible, timeout, never_appeared)
