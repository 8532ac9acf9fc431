#!/bin/bash
# Configures what the portable runtime passes on the kernel command line:
#   vmtest.if=<mac>,<address/prefix>   one per NIC (user-mode net and each VLAN)
#   vmtest.hosts=<base64 of /etc/hosts lines>
# No default route and no name server: test VMs must not reach the outside.
set -u
read -r -a words < /proc/cmdline
hosts="127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback"
for word in "${words[@]}"; do
    case "$word" in
    vmtest.if=*)
        spec=${word#vmtest.if=}
        mac=${spec%%,*}
        address=${spec#*,}
        device=""
        for _ in $(seq 100); do
            for candidate in /sys/class/net/*; do
                if [ "$(cat "$candidate/address" 2>/dev/null)" = "$mac" ]; then
                    device=${candidate##*/}
                fi
            done
            [ -n "$device" ] && break
            sleep 0.1
        done
        if [ -z "$device" ]; then
            echo "vmtest-network: no interface with MAC $mac" >&2
            exit 1
        fi
        ip link set "$device" up
        ip address add "$address" dev "$device"
        ;;
    vmtest.hosts=*)
        hosts="$hosts
$(echo "${word#vmtest.hosts=}" | base64 -d)"
        ;;
    esac
done
printf '%s\n' "$hosts" > /etc/hosts
: > /etc/resolv.conf
