#!/usr/bin/env bash
# Boot a systemd-nspawn machine from the cached sid root, in its own network namespace.
# usage: nspawn-up.sh NAME
# The machine's changes live in a tmpfs overlay (--volatile=overlay): the cached root stays pristine.
# Network: namespace speaqr-NAME with slirp4netns user-mode NAT (guest 10.0.2.100, reaches the
# Debian mirror); SSH and the in-namespace SIP clients reach it there. The lab's public segment
# (common.sh) sits behind a router namespace speaqr-NAME-router that gives the machine a public
# address by 1:1 NAT, the usual cloud VM: 198.51.100.2 <-> its private 172.30.0.2 (eth1).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

name=${1:?usage: nspawn-up.sh NAME}
ns=$(netns_name "$name")
state=$(state_dir "$name")
address=10.0.2.100
public_address=198.51.100.2

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
router="$ns-router"
ip netns del "$router" 2>/dev/null || true
ip netns add "$router"
ip -n "$router" link set lo up
ip -n "$ns" link add eth1 type veth peer name lan0 netns "$router"
ip -n "$ns" addr add 172.30.0.2/24 dev eth1
ip -n "$ns" link set eth1 up
ip -n "$router" addr add 172.30.0.1/24 dev lan0
ip -n "$router" link set lan0 up
in_netns "$router" sysctl -q -w net.ipv4.ip_forward=1
ip -n "$ns" route add "$LAB_PUBLIC_NET" via 172.30.0.1
ip -n "$ns" route add unreachable "$LAB_NAT_LAN"
attach_lab_networks "$name" "$router" "$public_address/32" "$public_address"
ip -n "$router" addr add "$public_address/24" dev brclients
in_netns "$router" nft -f - <<NFT
table ip speaqr_lab_one_to_one_nat {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr $public_address dnat to 172.30.0.2
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 172.30.0.2 snat to $public_address
  }
}
NFT

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
SPEAQR_PUBLIC_ADDRESS=$public_address
SPEAQR_SSH_KEY=$state/id_ed25519
SPEAQR_CLIENT_NETNS=$(client_netns_name "$name" 1)
ENV
echo "$state/instance.env"
