"""VLans: one ``vde_switch`` hub per VLAN number, as the upstream driver runs them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from vmtest.errors import MachineError
from vmtest.portable.runtime.driver_log import AbstractLogger
from vmtest.portable.runtime.process import spawn, terminate_group
from vmtest.waiting import Deadline, poll


class VLan:
    """A VDE hub for VLAN ``nr``; exports ``QEMU_VDE_SOCKET_<nr>`` for start scripts."""

    def __init__(self, nr: int, tmp_dir: Path, logger: AbstractLogger) -> None:
        self.nr = nr
        self.socket_dir = tmp_dir / f"vde{nr}.ctl"
        self.logger = logger
        self.logger.info(f"start vlan {nr}")
        try:
            # spawn: the switch gets SIGKILL if vmtest dies without a teardown.
            self.process = spawn(
                ["vde_switch", "--sock", str(self.socket_dir), "--dirmode", "0700", "--hub"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise MachineError("VLANs need vde_switch (apt-get install vde2)") from None
        self.pid = self.process.pid
        control = self.socket_dir / "ctl"
        poll(lambda _: control.exists() or self.process.poll() is not None, Deadline(10), interval=0.02)
        if not control.exists():
            output = self.process.stdout.read().decode(errors="replace") if self.process.stdout else ""
            self.stop()
            raise MachineError(f"vde_switch for vlan {nr} did not start: {output.strip()}")
        os.environ[f"QEMU_VDE_SOCKET_{nr}"] = str(self.socket_dir)
        self.logger.info(f"running vlan (pid {self.pid}; ctl {self.socket_dir})")

    def __repr__(self) -> str:
        return f"<Vlan Nr. {self.nr}>"

    def stop(self) -> None:
        """Stop the switch (and anything in its process group)."""
        terminate_group(self.process)
        os.environ.pop(f"QEMU_VDE_SOCKET_{self.nr}", None)
