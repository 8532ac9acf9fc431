"""Run one action per machine at once, on daemon threads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["each_in_parallel"]

Item = TypeVar("Item")


def each_in_parallel(items: Sequence[Item], action: Callable[[Item], object],
                     name: Callable[[Item], str]) -> dict[str, BaseException]:
    """Call ``action(item)`` for every item at once and wait for all; returns what each failing call
    raised, by ``name(item)``.

    Daemon threads, not a thread pool: an interrupt that lands while a pool starts or shuts down
    its workers can leave one waiting for work, and the interpreter then waits for it at exit.
    """
    failures: dict[str, BaseException] = {}

    def run(item: Item) -> None:
        try:
            action(item)
        except BaseException as error:  # reported to the thread that waits
            failures[name(item)] = error

    threads = [threading.Thread(target=run, args=(item,), name=f"each-{name(item)}", daemon=True) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures
