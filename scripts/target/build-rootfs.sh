#!/usr/bin/env bash
# Build (or reuse) the Debian sid base root shared by the nspawn and VM targets.
# The root is cached under $SPEAQR_CACHE_DIR/roots/, keyed by the package list,
# the mirror and this script, so a change to any of them builds a new root.
# Prints the root's path on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

packages=systemd,systemd-sysv,dbus,openssh-server,python3,python3-apt,iproute2,ca-certificates,sudo,udev,kmod,netbase,procps,less
key=$( { echo "$packages"; echo "$SPEAQR_MIRROR"; cat "$0" "$here/common.sh"; } | sha256sum | cut -c1-16)
root=$SPEAQR_CACHE_DIR/roots/sid-$key
if [ -f "$root/.speaqr-complete" ]; then
  log "reusing cached root $root"
  echo "$root"; exit 0
fi

mkdir -p "$SPEAQR_CACHE_DIR/debs" "$SPEAQR_CACHE_DIR/roots"
rm -rf "$root.tmp"
log "debootstrap sid into $root (cold build)"
start=$SECONDS
debootstrap --variant=minbase --include="$packages" --cache-dir="$SPEAQR_CACHE_DIR/debs" \
  sid "$root.tmp" "$SPEAQR_MIRROR" > "$SPEAQR_CACHE_DIR/debootstrap.log" 2>&1 \
  || die "debootstrap failed, see $SPEAQR_CACHE_DIR/debootstrap.log"

# The reachable sid snapshot can be older than its Valid-Until.
echo 'Acquire::Check-Valid-Until "false";' > "$root.tmp/etc/apt/apt.conf.d/99speaqr-lab-mirror"
echo 'nameserver 10.0.2.3' > "$root.tmp/etc/resolv.conf"
echo 'speaqr-target' > "$root.tmp/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 speaqr-target\n' > "$root.tmp/etc/hosts"
: > "$root.tmp/etc/machine-id"
mkdir -p "$root.tmp/root/.ssh" && chmod 0700 "$root.tmp/root/.ssh"
printf 'PermitRootLogin prohibit-password\nUseDNS no\n' > "$root.tmp/etc/ssh/sshd_config.d/speaqr-lab.conf"
# Consoles are not used; networking is configured from outside (netns / kernel cmdline).
chroot "$root.tmp" systemctl mask getty@tty1.service serial-getty@ttyS0.service console-getty.service >/dev/null 2>&1 || true
chroot "$root.tmp" systemctl enable ssh.service >/dev/null 2>&1
chroot "$root.tmp" apt-get clean
touch "$root.tmp/.speaqr-complete"
mv "$root.tmp" "$root"
log "root built in $((SECONDS - start)) s"
echo "$root"
