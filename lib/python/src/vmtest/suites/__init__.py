"""Whole suites a testScript runs: validating a VM (``vm_validation``) and a web stack's e2e run
(``web_stack``). Both are public; their helpers (``vm_profile``, ``suite_runner``, ``prepended``)
are internal."""

from vmtest.suites import vm_validation, web_stack

__all__ = ["vm_validation", "web_stack"]
