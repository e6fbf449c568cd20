#!/usr/bin/env bash
# Power off the VM NAME and remove its network namespace (only what vm-up.sh started).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

name=${1:?usage: vm-down.sh NAME}
state=$(state_dir "$name")
ns=$(netns_name "$name")
# SIGTERM makes QEMU quit at once; the disk is a throwaway overlay, so no guest shutdown is needed.
stop_pid_file "$state/qemu.pid" TERM 10
stop_pid_file "$state/slirp4netns.pid" TERM 5
ip netns del "$ns" 2>/dev/null || true
detach_lab_networks "$name"
rm -f "$state/instance.env" "$state/overlay.qcow2"
log "VM speaqr-$name stopped"
