"""Two machines on a VDE VLAN: addresses, names, block/unblock, and no route off the host."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from vmtest.portable.runtime.driver import Driver

from ..conftest import RECIPES

pytestmark = pytest.mark.vm


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"host says hi")

    def log_message(self, *args: object) -> None:
        return None


@pytest.mark.fault(fault="a guest tries to reach the host or the internet",
                   handling="no default route (IPv4 or IPv6: user-net has ipv6=off), restrict=on: nothing arrives")
def test_vlan_names_block_and_isolation(make_driver: Callable[..., Driver]) -> None:
    driver = make_driver(f"alpha={RECIPES / 'minimal.toml'}", f"beta={RECIPES / 'minimal.toml'}")
    driver.start_all()
    alpha, beta = driver.machines
    assert "192.168.1.1/24" in alpha.succeed("ip -br addr")
    assert "192.168.1.2/24" in beta.succeed("ip -br addr")
    assert beta.succeed("getent hosts alpha").split()[0] == "192.168.1.1"
    alpha.succeed("systemd-run --unit=web python3 -m http.server 8080")
    alpha.wait_for_open_port(8080, timeout=60)
    beta.wait_until_succeeds("curl -sf http://alpha:8080/ >/dev/null", timeout=60)

    alpha.block()
    beta.fail("curl -sf --max-time 3 http://alpha:8080/")
    alpha.unblock()
    beta.wait_until_succeeds("curl -sf --max-time 3 http://alpha:8080/ >/dev/null", timeout=60)

    # Hermetic: no default route, and even with one user-mode networking (restrict=on)
    # delivers nothing off the VM: a server on the host's loopback stays unreachable.
    server = HTTPServer(("127.0.0.1", 0), _Hello)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the control: the server does answer on the host
        assert alpha.succeed("ip route show default") == ""
        assert alpha.succeed("ip -6 route show default") == "", "user-net runs with ipv6=off: no RA, no route"
        assert "unreachable" in alpha.fail("ip route get 192.0.2.1 2>&1")
        alpha.succeed("ip route add default via 10.0.2.2")
        status, output = alpha.execute(f"curl -s --max-time 5 http://10.0.2.2:{port}/ 2>&1")
        assert status != 0 and "host says hi" not in output
    finally:
        server.shutdown()
