"""vmtest's portable runtime: the NixOS test driver's Machine API over QEMU with Debian images.

Nothing outside this package imports it: the helpers (``vmtest.*``) run under any driver.
"""
