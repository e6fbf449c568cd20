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

# Client hosts of a target: network namespaces speaqr-NAME-client1..N, each on the "public"
# segment 198.51.100.0/24 (a bridge in the target's namespace, 198.51.100.1), host k at
# 198.51.100.(10+k), routing the target's own network through the bridge. Their packets reach
# the appliance on a real interface with their own source address (not on lo), so its firewall
# and bans see them as hosts on the internet.
SPEAQR_CLIENT_HOSTS=${SPEAQR_CLIENT_HOSTS:-3}
client_netns_name() { printf 'speaqr-%s-client%s' "$1" "$2"; }

attach_client_hosts() {
  local name=$1 target_net=$2 ns k cns
  ns=$(netns_name "$name")
  ip -n "$ns" link add brclients type bridge
  ip -n "$ns" addr add 198.51.100.1/24 dev brclients
  ip -n "$ns" link set brclients up
  for k in $(seq "$SPEAQR_CLIENT_HOSTS"); do
    cns=$(client_netns_name "$name" "$k")
    ip netns del "$cns" 2>/dev/null || true
    ip netns add "$cns"
    ip -n "$cns" link set lo up
    ip -n "$cns" link add eth0 type veth peer name "vclient$k" netns "$ns"
    ip -n "$ns" link set "vclient$k" master brclients up
    ip -n "$cns" addr add "198.51.100.$((10 + k))/24" dev eth0
    ip -n "$cns" link set eth0 up
    ip -n "$cns" route add "$target_net" via 198.51.100.1
  done
}

detach_client_hosts() {
  local name=$1 k
  for k in $(seq "$SPEAQR_CLIENT_HOSTS"); do ip netns del "$(client_netns_name "$name" "$k")" 2>/dev/null || true; done
}
