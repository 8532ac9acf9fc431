"""Internal: ``vmtest.checkpoint`` (re-exported by vmtest). Checkpoints in a testScript: resume booted
machines instead of running the block that boots them.

    with checkpoint("stack-healthy", [server, client]) as resumed:
        if not resumed:
            server.start()
            ...
        health.wait_for_unit_chain(server, CHAIN)

On vmtest's portable runtime (machines with a ``checkpoint_store``), the first run saves every
machine's whole state when the block ends without an error; a later run whose key matches (the
images, the machines' start scripts, QEMU's version and the testScript's text up to the block's
end) resumes them all together, and ``resumed`` is True. Under the NixOS test driver machines
have no store: the block always runs, with ``resumed`` False (README says why).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from vmtest.machine_api import CheckpointSite as CheckpointSite
from vmtest.machine_api import CheckpointSites, KeepsCheckpoints, unwrapped

__all__ = ["CheckpointSite", "checkpoint"]


@contextmanager
def _checkpoint(name: str, machines: Sequence[Any], filename: str, line: int) -> Iterator[bool]:
    found = (unwrapped(m) for m in machines)
    kept = [m.checkpoint_store if isinstance(m, KeepsCheckpoints) else None for m in found]
    stores = {id(store): store for store in kept}
    store: CheckpointSites | None = next(iter(stores.values()), None) if len(stores) == 1 else None
    if len(stores) > 1 and all(stores.values()):
        raise ValueError(f"checkpoint {name!r}: the machines belong to different runs")
    if store is None:
        for machine in machines[:1]:
            machine.log(f"checkpoint {name!r}: no checkpoints for these machines (this driver keeps none, "
                        "or a container is among them); the block runs")
        yield False
        return
    site = store.site(name, machines, filename, line)
    resumed = site.resume()
    yield resumed
    if not resumed:
        site.save()
    site.left()


def checkpoint(name: str, machines: Sequence[Any]) -> Any:
    """A context manager yielding True when ``machines`` were resumed from checkpoint ``name``
    (skip the work that made their state), else False; on a clean exit from a block that was not
    resumed, it saves them. Raises ValueError for machines of different runs."""
    caller = sys._getframe(1)
    return _checkpoint(name, list(machines), caller.f_code.co_filename, caller.f_lineno)
