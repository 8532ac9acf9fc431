"""Debian machine images from recipes (the portable runtime\x27s twin of NixOS modules)."""
