"""Ready-made testScript libraries built on vmtest's helpers (``vm_validation``)."""
