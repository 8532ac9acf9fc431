"""VLans: one ``vde_switch`` hub per VLAN number, as the upstream driver runs them."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from vmtest.errors import MachineError
from vmtest.runtime.logger import AbstractLogger
from vmtest.runtime.process import terminate_group


class VLan:
    """A VDE hub for VLAN ``nr``; exports ``QEMU_VDE_SOCKET_<nr>`` for start scripts."""

    def __init__(self, nr: int, tmp_dir: Path, logger: AbstractLogger) -> None:
        self.nr = nr
        self.socket_dir = tmp_dir / f"vde{nr}.ctl"
        self.logger = logger
        self.logger.info(f"start vlan {nr}")
        try:
            self.process = subprocess.Popen(
                ["vde_switch", "--sock", str(self.socket_dir), "--dirmode", "0700", "--hub"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise MachineError("VLANs need vde_switch (apt-get install vde2)") from None
        self.pid = self.process.pid
        deadline = time.monotonic() + 10
        while not (self.socket_dir / "ctl").exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = self.process.stdout.read().decode(errors="replace") if self.process.stdout else ""
                self.stop()
                raise MachineError(f"vde_switch for vlan {nr} did not start: {output.strip()}")
            time.sleep(0.02)
        os.environ[f"QEMU_VDE_SOCKET_{nr}"] = str(self.socket_dir)
        self.logger.info(f"running vlan (pid {self.pid}; ctl {self.socket_dir})")

    def __repr__(self) -> str:
        return f"<Vlan Nr. {self.nr}>"

    def stop(self) -> None:
        """Stop the switch (and anything in its process group)."""
        terminate_group(self.process)
        os.environ.pop(f"QEMU_VDE_SOCKET_{self.nr}", None)
