#!/usr/bin/env bash
# Boot a QEMU VM (its own kernel) from the cached VM image, in its own network namespace.
# usage: vm-up.sh NAME
# Network: namespace speaqr-NAME; slirp4netns gives the namespace user-mode NAT to the Debian
# mirror (tap0), the VM sits on a tap in that namespace (192.168.77.2, gateway .1) and is
# masqueraded out of tap0. SSH and SIP clients reach it from inside the namespace; the lab's
# public segment (common.sh) routes to its address directly (no NAT in front of the VM).
# Acceleration: KVM when /dev/kvm is usable with VMX/SVM, else software emulation (TCG);
# force either with SPEAQR_VM_ACCEL=kvm|tcg.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

name=${1:?usage: vm-up.sh NAME}
ns=$(netns_name "$name")
state=$(state_dir "$name")
address=192.168.77.2
memory=${SPEAQR_VM_MEMORY:-3072}

if [ -z "${SPEAQR_VM_ACCEL:-}" ]; then
  if [ -w /dev/kvm ] && grep -qE 'vmx|svm' /proc/cpuinfo; then SPEAQR_VM_ACCEL=kvm; else SPEAQR_VM_ACCEL=tcg; fi
fi
case $SPEAQR_VM_ACCEL in
  kvm) accel=(-accel kvm -cpu host) ;;
  tcg) accel=(-accel tcg,thread=multi -cpu max) ;;
  *) die "SPEAQR_VM_ACCEL must be kvm or tcg, not '$SPEAQR_VM_ACCEL'" ;;
esac

image=$("$here/build-vm-image.sh")
"$here/vm-down.sh" "$name" >/dev/null 2>&1 || true
mkdir -p "$state"
qemu-img create -q -f qcow2 -F raw -b "$image/disk.raw" "$state/overlay.qcow2"

ip netns add "$ns"
ip -n "$ns" link set lo up
setsid slirp4netns --configure --mtu=65520 --netns-type=path "/run/netns/$ns" tap0 \
  >"$state/slirp4netns.log" 2>&1 < /dev/null &
echo $! > "$state/slirp4netns.pid"
for _ in $(seq 50); do ip -n "$ns" -4 addr show tap0 2>/dev/null | grep -q 10.0.2.100 && break; sleep 0.1; done
ip -n "$ns" tuntap add dev vmtap mode tap
ip -n "$ns" addr add 192.168.77.1/24 dev vmtap
ip -n "$ns" link set vmtap up
in_netns "$ns" sysctl -q -w net.ipv4.ip_forward=1
attach_lab_networks "$name" "$ns" 192.168.77.0/24 "$address"
in_netns "$ns" nft -f - <<NFT
table ip speaqr_lab_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 192.168.77.0/24 oifname "tap0" masquerade
  }
}
NFT

boot_start=$SECONDS
in_netns "$ns" qemu-system-x86_64 -name "speaqr-$name" -machine q35 "${accel[@]}" \
  -smp "$(nproc)" -m "$memory" -display none -serial "file:$state/console.log" -monitor none \
  -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
  -append "root=LABEL=root rw console=ttyS0 net.ifnames=0 systemd.show_status=false" \
  -drive "file=$state/overlay.qcow2,if=virtio,format=qcow2,discard=unmap" \
  -netdev tap,id=n0,ifname=vmtap,script=no,downscript=no -device virtio-net-pci,netdev=n0 \
  -object rng-random,filename=/dev/urandom,id=rng0 -device virtio-rng-pci,rng=rng0 \
  -daemonize -pidfile "$state/qemu.pid" >"$state/qemu.log" 2>&1 \
  || die "qemu failed to start (see $state/qemu.log)"

wait_for_ssh "$ns" "$address" "$image/id_ed25519" 300 \
  || die "VM speaqr-$name did not answer SSH within 300 s (see $state/console.log)"
log "VM speaqr-$name up ($SPEAQR_VM_ACCEL): SSH answered $((SECONDS - boot_start)) s after boot"

cat > "$state/instance.env" <<ENV
SPEAQR_TARGET_KIND=vm
SPEAQR_VM_ACCEL=$SPEAQR_VM_ACCEL
SPEAQR_TARGET_NETNS=$ns
SPEAQR_SIP_ADDRESS=$address
SPEAQR_PUBLIC_ADDRESS=$address
SPEAQR_SSH_KEY=$image/id_ed25519
SPEAQR_CLIENT_NETNS=$(client_netns_name "$name" 1)
ENV
echo "$state/instance.env"
