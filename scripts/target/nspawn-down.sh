#!/usr/bin/env bash
# Stop the nspawn machine NAME and remove its network namespace (only what nspawn-up.sh started).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

name=${1:?usage: nspawn-down.sh NAME}
state=$(state_dir "$name")
ns=$(netns_name "$name")
# On SIGTERM nspawn asks the container's systemd for an orderly shutdown (--kill-signal default).
stop_pid_file "$state/nspawn.pid" TERM 30
stop_pid_file "$state/slirp4netns.pid" TERM 5
ip netns del "$ns" 2>/dev/null || true
ip netns del "$ns-router" 2>/dev/null || true
detach_lab_networks "$name"
rm -f "$state/instance.env"
log "machine speaqr-$name stopped"
