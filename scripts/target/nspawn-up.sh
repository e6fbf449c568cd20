#!/usr/bin/env bash
# Boot a systemd-nspawn machine from the cached sid root, in its own network namespace.
# usage: nspawn-up.sh NAME
# The machine's changes live in a tmpfs overlay (--volatile=overlay): the cached root stays pristine.
# Network: namespace speaqr-NAME with slirp4netns user-mode NAT (guest 10.0.2.100, reaches the
# Debian mirror); SSH and SIP clients reach it from inside that namespace.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

name=${1:?usage: nspawn-up.sh NAME}
ns=$(netns_name "$name")
state=$(state_dir "$name")
address=10.0.2.100

root=$("$here/build-rootfs.sh")
"$here/nspawn-down.sh" "$name" >/dev/null 2>&1 || true
mkdir -p "$state"

[ -f "$state/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "speaqr-$name" -f "$state/id_ed25519"
cp "$state/id_ed25519.pub" "$state/authorized_keys"

ip netns add "$ns"
ip -n "$ns" link set lo up
# slirp4netns keeps running in the background and is stopped by nspawn-down.sh.
setsid slirp4netns --configure --mtu=65520 --netns-type=path "/run/netns/$ns" tap0 \
  >"$state/slirp4netns.log" 2>&1 < /dev/null &
echo $! > "$state/slirp4netns.pid"
for _ in $(seq 50); do ip -n "$ns" -4 addr show tap0 2>/dev/null | grep -q "$address" && break; sleep 0.1; done
ip -n "$ns" -4 addr show tap0 | grep -q "$address" || die "slirp4netns did not configure tap0 (see $state/slirp4netns.log)"
attach_client_hosts "$name" "$address/32"

boot_start=$SECONDS
# Host is cgroup v1 without systemd; sid's systemd needs the unified hierarchy inside.
# CAP_NET_ADMIN: the appliance manages its own nftables ruleset (the namespace is the machine's own).
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 setsid systemd-nspawn --quiet --boot --directory="$root" \
  --machine="speaqr-$name" --volatile=overlay --register=no --keep-unit --resolv-conf=off \
  --network-namespace-path="/run/netns/$ns" --capability=CAP_NET_ADMIN --console=passive \
  --bind-ro="$state/authorized_keys:/root/.ssh/authorized_keys" \
  >"$state/nspawn.log" 2>&1 < /dev/null &
echo $! > "$state/nspawn.pid"

wait_for_ssh "$ns" "$address" "$state/id_ed25519" 60 \
  || die "machine speaqr-$name did not answer SSH within 60 s (see $state/nspawn.log)"
log "machine speaqr-$name up: SSH answered $((SECONDS - boot_start)) s after boot"

cat > "$state/instance.env" <<ENV
SPEAQR_TARGET_KIND=nspawn
SPEAQR_TARGET_NETNS=$ns
SPEAQR_SIP_ADDRESS=$address
SPEAQR_SSH_KEY=$state/id_ed25519
SPEAQR_CLIENT_NETNS=$(client_netns_name "$name" 1)
ENV
echo "$state/instance.env"
