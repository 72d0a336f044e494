#!/usr/bin/env bash
# Builds pinetboot and runs its main job: a plan of examples/single-pi.yaml against a
# throwaway root, seeded with a tiny stand-in for an unpacked Raspberry Pi OS (Bookworm) tree
# at /srv/rootfs/bookworm-lite. Nothing outside the throwaway root is read or written.
#
#   bash examples/plan-demo.sh            # plan only
#   sudo bash examples/plan-demo.sh apply # also apply, inside a private mount namespace, then plan
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cargo build --quiet --manifest-path "$here/../Cargo.toml"
bin="$here/../target/debug/pinetboot"
root=$(mktemp -d "${TMPDIR:-/tmp}/pinetboot-demo.XXXXXX")
tree="$root/srv/rootfs/bookworm-lite"
mkdir -p "$tree"/{etc/systemd/system,boot/firmware/overlays,lib/systemd/system,root,home} "$root/etc"
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
printf 'proc /proc proc defaults 0 0\n' > "$root/etc/fstab"
echo "throwaway root: $root" >&2
"$bin" --root "$root" --config "$here/single-pi.yaml" plan
if [ "${1:-}" = apply ]; then
  unshare -m --propagation private sh -ec '
    "$1" --root "$2" --config "$3" apply
    "$1" --root "$2" --config "$3" plan' sh "$bin" "$root" "$here/single-pi.yaml"
fi
