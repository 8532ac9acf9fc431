"""A small QMP client: greeting, ``qmp_capabilities``, commands and events."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmtest.errors import MachineError
from vmtest.waiting import Deadline, WaitTimedOut, poll


class QMPClient:
    """Connects lazily to QEMU's QMP socket (QEMU serves it with ``wait=off``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock: socket.socket | None = None
        self._reader: Any = None
        self.events: list[dict[str, Any]] = []

    def _connect(self) -> None:
        if self._sock is not None:
            return
        connected: list[socket.socket] = []

        def connect(_last_try: bool) -> bool:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.path))
            except OSError:
                sock.close()
                return False
            connected.append(sock)
            return True

        if not poll(connect, Deadline(10), interval=0.1):
            raise MachineError(f"QMP API is not ready yet ({self.path})")
        sock = connected[0]
        self._sock = sock
        self._reader = sock.makefile("r")
        greeting = json.loads(self._reader.readline())
        if "QMP" not in greeting:
            raise MachineError(f"unexpected QMP greeting: {greeting}")
        self.send("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        line = self._reader.readline()
        if not line:
            raise MachineError(f"QMP connection closed ({self.path})")
        message: dict[str, Any] = json.loads(line)
        return message

    def send(self, command: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run a QMP command; returns its ``return`` value, raises MachineError on ``error``."""
        self._connect()
        assert self._sock is not None
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self._sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            message = self._read()
            if "event" in message:
                self.events.append(message)
                continue
            if "error" in message:
                raise MachineError(f"QMP {command} failed: {message['error']}")
            result: dict[str, Any] = message.get("return", {})
            return result

    def wait_for_event(self, event_filter: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """Return the first (queued or new) event ``event_filter`` accepts; WaitTimedOut after ``timeout`` s."""
        self._connect()
        assert self._sock is not None
        for event in self.events:
            if event_filter(event):
                self.events.remove(event)
                return event
        deadline = Deadline(timeout)
        while True:
            remaining = deadline.remaining()
            if remaining <= 0:
                raise WaitTimedOut(deadline.elapsed(), timeout)
            self._sock.settimeout(remaining)
            try:
                message = self._read()
            except TimeoutError:
                raise WaitTimedOut(deadline.elapsed(), timeout) from None
            finally:
                self._sock.settimeout(None)
            if "event" in message and event_filter(message):
                return message

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
