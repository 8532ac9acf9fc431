"""vmtest: helpers for NixOS test-driver testScripts and a portable QEMU runtime.

Helpers take a Machine (the upstream driver's or this package's portable one)
and depend only on its public API.
"""

__version__ = "0.1.0"
