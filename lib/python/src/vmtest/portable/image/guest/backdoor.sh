#!/bin/bash
# The test driver's root shell, as nixpkgs' test-instrumentation.nix defines it: the marker, then a
# non-interactive bash reading commands. vmtest's runtime gives it a virtio serial port
# (org.vmtest.backdoor) rather than the console /dev/hvc0 the NixOS driver gives it: QEMU drops a
# virtconsole's bytes when the host reads slower than the guest writes and throttles a serial port
# instead (hw/char/virtio-console.c, flush_buf), which lost megabytes of output on a loaded host.
# Whichever of the two this QEMU has is used, so the NixOS driver drives these images too.
export USER=root
export HOME=/root
export DISPLAY=:0.0
if [[ -e /etc/profile ]]; then
    set +o nounset
    # shellcheck disable=SC1091
    source /etc/profile
fi
export PAGER=
cd /tmp
port=/dev/virtio-ports/org.vmtest.backdoor
while [[ ! -e $port && ! -e /dev/hvc0 ]]; do sleep 0.1; done
if [[ -e $port ]]; then
    # A port opens once: one read-write descriptor serves as stdin and stdout.
    exec <> "$port" >&0
else
    exec < /dev/hvc0 > /dev/hvc0
fi
while ! exec 2> /dev/@SERIAL@; do sleep 0.1; done
echo "connecting to host..." >&2
if [[ -e $port ]]; then
    echo "Spawning backdoor root shell..."
    PS1="" exec /bin/bash --norc
fi
# The console is a terminal: raw and without echo before the marker, then read by bash as a script
# (a terminal on stdin would make it interactive).
stty -F /dev/hvc0 raw -echo
echo "Spawning backdoor root shell..."
PS1="" exec /bin/bash --norc /dev/hvc0
