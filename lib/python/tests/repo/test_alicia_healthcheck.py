"""The e2e server's ExecStartPost health check keeps its deadline when each try is slow.

A backend that answers 503 slowly (as the broken-database fault's does under TCG) must fail the
check at its deadline, not after a fixed number of tries. Both twins run the same loop.
"""

from __future__ import annotations

import subprocess
import threading
import time
import tomllib
from http.server import BaseHTTPRequestHandler, HTTPServer

from .repo_checks import REPO

UNITS = REPO / "e2e-test/machines/server/units.toml"
# The NixOS twin: vmtest's e2e server role, which the Alicia check (e2e-test/nix/default.nix) uses.
NIX_SERVER = REPO / "lib/nix/modules/e2e-server.nix"
DEADLINE_LINE = "while (( SECONDS < 30 )); do"


class _SlowUnhealthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(0.5)  # a try costs what a curl costs under TCG
        self.send_response(503)
        self.end_headers()
        self.wfile.write(b'{"status": "error", "database": "unreachable"}')

    def log_message(self, *args: object) -> None:
        return None


def test_the_check_fails_at_its_deadline_however_slow_each_try() -> None:
    script = tomllib.loads(UNITS.read_text())["files"]["/usr/lib/alicia/alicia-healthcheck"]["text"]
    assert DEADLINE_LINE in script, "the check's loop runs to a deadline"
    assert DEADLINE_LINE in NIX_SERVER.read_text(), "the NixOS twin runs the same loop"
    server = HTTPServer(("127.0.0.1", 0), _SlowUnhealthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # the same loop, with a 3 s deadline and the test server's port
        short = script.replace(DEADLINE_LINE, DEADLINE_LINE.replace("30", "3")).replace(
            "127.0.0.1:8888", f"127.0.0.1:{server.server_address[1]}").replace(
            "127.0.0.1/8888", f"127.0.0.1/{server.server_address[1]}")
        started = time.monotonic()
        result = subprocess.run(["bash", "-c", short], capture_output=True, text=True, timeout=30)
        took = time.monotonic() - started
    finally:
        server.shutdown()
    assert result.returncode == 1 and "Backend failed to become healthy" in result.stdout, result
    assert took < 6, f"a 3 s deadline took {took:.1f} s"
