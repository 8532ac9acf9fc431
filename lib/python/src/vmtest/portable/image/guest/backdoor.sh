#!/bin/bash
# The test driver's root shell on /dev/hvc0, as nixpkgs' test-instrumentation.nix
# defines it: raw, no echo, the exact marker, then a non-interactive bash.
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
exec < /dev/hvc0 > /dev/hvc0
while ! exec 2> /dev/@SERIAL@; do sleep 0.1; done
echo "connecting to host..." >&2
stty -F /dev/hvc0 raw -echo
echo "Spawning backdoor root shell..."
PS1="" exec /bin/bash --norc /dev/hvc0
