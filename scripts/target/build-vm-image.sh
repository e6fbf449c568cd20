#!/usr/bin/env bash
# Build (or reuse) the QEMU VM image made from the cached sid root: a kernel, an initrd and a
# raw ext4 disk labelled "root". Cached under $SPEAQR_CACHE_DIR/vm/, keyed by the root and this
# script. Prints the image directory on stdout.
#
# SPEAQR_VM_PREINSTALL: the Debian packages the roles install, baked into the image: under
# software emulation apt takes ~5 min for them. The roles still declare and check them; the
# nspawn target proves installation from an empty root. Set it empty for a bare image.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

vm_address=192.168.77.2
vm_gateway=192.168.77.1
preinstall=${SPEAQR_VM_PREINSTALL-asterisk asterisk-modules fail2ban mariadb-server nftables python3-cryptography python3-pymysql python3-systemd python3-venv}
root=$("$here/build-rootfs.sh")
key=$( { echo "$root"; echo "$preinstall"; cat "$0"; } | sha256sum | cut -c1-16)
image=$SPEAQR_CACHE_DIR/vm/sid-$key
if [ -f "$image/.speaqr-complete" ]; then
  log "reusing cached VM image $image"
  echo "$image"; exit 0
fi

start=$SECONDS
work=$image.tmp
rm -rf "$work"; mkdir -p "$work"
log "building VM image in $work"
cp -a "$root" "$work/root"
vmroot=$work/root
cleanup() {
  for m in dev/pts dev proc sys; do umount "$vmroot/$m" 2>/dev/null || true; done
}
trap cleanup EXIT
mount -t proc proc "$vmroot/proc"; mount -t sysfs sys "$vmroot/sys"
mount --bind /dev "$vmroot/dev"; mount --bind /dev/pts "$vmroot/dev/pts"

# dracut must build a generic initrd that can mount an ext4 root on virtio.
mkdir -p "$vmroot/etc/dracut.conf.d"
cat > "$vmroot/etc/dracut.conf.d/10-speaqr-vm.conf" <<CONF
hostonly="no"
filesystems+=" ext4 "
add_drivers+=" virtio_blk virtio_pci virtio_net virtio_console "
CONF
cp /etc/resolv.conf "$vmroot/etc/resolv.conf"
chroot "$vmroot" apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive chroot "$vmroot" apt-get install -y -qq --no-install-recommends \
  linux-image-amd64 dracut $preinstall > "$work/apt.log" 2>&1 \
  || die "package install failed, see $work/apt.log"
chroot "$vmroot" apt-get clean
# No systemd-resolved (its LLMNR listens on every address): slirp4netns's DNS through the NAT.
echo 'nameserver 10.0.2.3' > "$vmroot/etc/resolv.conf"

cat > "$vmroot/etc/systemd/network/10-speaqr-lab.network" <<NET
[Match]
Name=en* eth*

[Network]
Address=$vm_address/24
Gateway=$vm_gateway
NET
chroot "$vmroot" systemctl enable systemd-networkd.service >/dev/null 2>&1
echo 'LABEL=root / ext4 rw,relatime 0 1' > "$vmroot/etc/fstab"
ssh-keygen -q -t ed25519 -N '' -C speaqr-vm -f "$work/id_ed25519"
install -m 0600 "$work/id_ed25519.pub" "$vmroot/root/.ssh/authorized_keys"
cleanup; trap - EXIT

cp "$vmroot"/boot/vmlinuz-* "$work/vmlinuz"
cp "$vmroot"/boot/initrd.img-* "$work/initrd.img"
mkfs.ext4 -q -L root -d "$vmroot" "$work/disk.raw" 8G >&2
rm -rf "$vmroot"
touch "$work/.speaqr-complete"
rm -rf "$image"; mv "$work" "$image"
log "VM image built in $((SECONDS - start)) s"
echo "$image"
