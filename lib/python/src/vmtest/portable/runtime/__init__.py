"""The portable runtime: the NixOS test driver\x27s Machine API over Debian QEMU VMs."""
