# Shared settings for the test-target scripts (sourced, not run).
# shellcheck shell=bash
SPEAQR_CACHE_DIR=${SPEAQR_CACHE_DIR:-/var/cache/speaqr-sip}
SPEAQR_STATE_DIR=${SPEAQR_STATE_DIR:-/run/speaqr-sip}
SPEAQR_MIRROR=${SPEAQR_MIRROR:-http://deb.debian.org/debian}

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

netns_name() { printf 'speaqr-%s' "$1"; }
state_dir() { printf '%s/%s' "$SPEAQR_STATE_DIR" "$1"; }

# Run a command inside the target's network namespace.
in_netns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# Wait until SSH answers inside the namespace; $1 netns, $2 address, $3 key, $4 timeout seconds.
wait_for_ssh() {
  local ns=$1 address=$2 key=$3 timeout=$4 start=$SECONDS
  until in_netns "$ns" ssh -q -i "$key" -o BatchMode=yes -o ConnectTimeout=2 \
      -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "root@$address" true 2>/dev/null; do
    (( SECONDS - start < timeout )) || return 1
    sleep 1
  done
}

# Stop a process we started, by the PID we recorded; escalate to SIGKILL after $3 seconds.
stop_pid_file() {
  local file=$1 signal=${2:-TERM} grace=${3:-20} pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -s "$signal" "$pid" 2>/dev/null || true
    for _ in $(seq "$grace"); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$file"
}
