"""The driverInteractive shell: ptpython with the testScript namespace."""

from __future__ import annotations

from pathlib import Path

from vmtest.portable.runtime.driver import Driver


def interact(driver: Driver) -> None:
    """Open ptpython with the testScript namespace; nothing boots until the user asks."""
    try:
        from ptpython.repl import embed
    except ImportError:
        import code

        code.interact(local=driver.test_symbols(), banner="vmtest interactive (install ptpython for a better shell)")
        return
    embed(locals=driver.test_symbols(), history_filename=str(Path(".vmtest-history").resolve()))
