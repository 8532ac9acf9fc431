"""``make bench``'s container-against-VM ratios: only keys both runs measured, as numbers."""

from __future__ import annotations

from vmtest.portable.bench import _ratios


def test_ratios_of_the_keys_both_runs_have() -> None:
    vm = {"wall_s": 200.0, "stack_healthy_after_s": 26.0, "passed": True}
    containers = {"wall_s": 20.0, "stack_healthy_after_s": None, "passed": True}
    assert _ratios(vm, containers, ("wall_s", "stack_healthy_after_s", "passed")) == {"wall_ratio": 0.1}
    assert _ratios({}, containers, ("wall_s",)) == {}, "a failed VM section gives no ratio, not an error"
    assert _ratios({"wall_s": 0}, containers, ("wall_s",)) == {}
