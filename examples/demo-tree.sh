#!/usr/bin/env bash
# Writes a tiny stand-in for an unpacked Raspberry Pi OS (Bookworm) root tree into the folder
# $1 (created): os-release, fstab with the SD-card lines, hostname, hosts, passwd, the ssh unit,
# and a boot/firmware folder with cmdline.txt and config.txt. Used by plan-demo.sh and
# scripts/compare-plans.
#
#   bash examples/demo-tree.sh DIR
set -euo pipefail
tree=$1
mkdir -p "$tree"/{etc/systemd/system,boot/firmware/overlays,lib/systemd/system,root,home,usr/sbin,mnt}
# What a shared root's overlay init runs (`root: shared`): util-linux, coreutils, overlayfs.
mkdir -p "$tree/lib/modules/6.6.51+rpt-rpi-v8/kernel/fs/overlayfs"
: > "$tree/usr/sbin/pivot_root"; : > "$tree/usr/sbin/chroot"
ln -s usr/sbin "$tree/sbin"
cat > "$tree/etc/os-release" <<'OS'
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
OS
cat > "$tree/etc/fstab" <<'FSTAB'
proc            /proc           proc    defaults          0       0
PARTUUID=4e639091-01  /boot/firmware  vfat    defaults          0       2
PARTUUID=4e639091-02  /               ext4    defaults,noatime  0       1
FSTAB
printf 'raspberrypi\n' > "$tree/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n\n127.0.1.1\t\traspberrypi\n' > "$tree/etc/hosts"
printf 'root:x:0:0:root:/root:/bin/bash\n' > "$tree/etc/passwd"
printf '[Unit]\nDescription=OpenBSD Secure Shell server\n' > "$tree/lib/systemd/system/ssh.service"
printf 'console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n' > "$tree/boot/firmware/cmdline.txt"
printf '# This file is no longer used: see /boot/firmware/cmdline.txt\n' > "$tree/boot/cmdline.txt"
printf 'arm_64bit=1\nauto_initramfs=1\n' > "$tree/boot/firmware/config.txt"
